// Externs of a BPF object: `.kconfig` variables (values from the kernel
// config and a few computed LINUX_* ones, served from a read-only array map
// named ".kconfig") and `.ksyms` symbols (kernel variables, typed through BTF
// or typeless through kallsyms, and kfuncs). `Externs.prepare` resolves them
// all once per collection; `patch` then rewrites each reference in a linked
// program.
//
// Semantics follow libbpf's (so that objects written for it load the same):
// - `.kconfig` externs are laid out by decreasing alignment, then increasing
//   size, then name; CONFIG_* come from the kernel config, LINUX_KERNEL_VERSION,
//   LINUX_HAS_SYSCALL_WRAPPER and LINUX_HAS_BPF_COOKIE are computed; a __weak
//   extern nobody can set is 0, a strong one is an error.
// - typed `.ksyms` variables become BPF_PSEUDO_BTF_ID loads of the kernel
//   VAR's id (plus the module BTF fd); typeless ones the kallsyms address.
// - kfunc calls become BPF_PSEUDO_KFUNC_CALL with the kernel FUNC's id and,
//   for a module, an index into the program's fd_array (index 0 is never used).
// - a missing __weak symbol loads as 0; a call to a missing __weak kfunc
//   becomes a call to the invalid helper 2002000000 + extern index, which the
//   verifier only rejects if it can reach it (`bpf_ksym_exists()` guards).
// One deliberate difference: when no kernel config file exists at all, weak
// CONFIG_* externs are 0 (libbpf fails the load); strong ones fail, naming the
// extern and the files tried.

import type { Btf } from '../btf/btf.js';
import type { BtfDatasec, BtfFunc, BtfFuncProto, BtfVar } from '../btf/types.js';
import { internalMapName, BPF_F_MMAPABLE, BPF_F_RDONLY_PROG } from '../elf/index.js';
import type { CollectionSpec, MapSpec } from '../elf/spec.js';
import { BPF_MAP_TYPE, FD } from '../syscall/index.js';
import {
  defaultKconfigPaths, encodeKconfig, ExternError, kconfigKind, parseKconfig, readKconfigFile, runningKernelVersion,
  type KconfigSlot, type KconfigValue,
} from './kconfig.js';
import {
  essentialName, hasBpfCookie, hasSyscallWrapper, loadModuleBtfs, ownType, readKallsyms, skipModifiers, typesCompatible,
  type ModuleBtf,
} from './ksyms.js';
import { BPF_PSEUDO_BTF_ID, BPF_PSEUDO_KFUNC_CALL, BPF_PSEUDO_MAP_VALUE, INSN_SIZE, OP_CALL, OP_LD_IMM64 } from './linker.js';

export { ExternError } from './kconfig.js';
export type { ModuleBtf } from './ksyms.js';

export const KCONFIG_SECTION = '.kconfig';
export const KSYMS_SECTION = '.ksyms';
/** Call immediates from here on mark a call to a missing __weak kfunc (plus the extern's index). */
export const POISON_KFUNC_CALL = 2002000000;
/** Name of the VAR that stands in for kfuncs in the `.ksyms` DATASEC handed to the kernel. */
const DUMMY_KSYM = 'dummy_ksym';

export interface ExternOptions {
  /** The kernel's BTF (vmlinux), loaded on first use. */
  kernelBtf: () => Btf;
  /** Values for CONFIG_* / LINUX_* externs, used before the config file (y/n/m, numbers, strings, booleans). */
  kconfig?: Record<string, string | number | bigint | boolean>;
  /** Kernel config to read. Default: /proc/config.gz, then /boot/config-$(uname -r). */
  kconfigFile?: string;
  /**
   * Kernel module BTFs to search after vmlinux (default: every loaded module, found through the kernel's
   * BTF objects). Meant for tests; the fds are not closed by `close()`.
   */
  moduleBtfs?: () => ModuleBtf[];
}

/** One extern as the object declares it, taken from the object's BTF before sanitizeBtf() rewrites it. */
interface ExternDecl {
  name: string;
  section: typeof KCONFIG_SECTION | typeof KSYMS_SECTION;
  /** VAR or FUNC id in the object's BTF. */
  id: number;
  isFunc: boolean;
  /** The VAR's type, or the FUNC's prototype. */
  type: number;
}

/** Declarations by name, recorded per BTF object so that a BTF sanitized in place can be prepared again. */
const declarations = new WeakMap<Btf, Map<string, ExternDecl>>();
const sanitized = new WeakSet<Btf>();

function declarationsOf(btf: Btf): Map<string, ExternDecl> {
  const known = declarations.get(btf);
  if (known) return known;
  const decls = new Map<string, ExternDecl>();
  for (const t of btf.types()) {
    if (t.kind !== 'datasec' || (t.name !== KCONFIG_SECTION && t.name !== KSYMS_SECTION)) continue;
    for (const vsi of t.vars) {
      const v = btf.type(vsi.type);
      if (v.kind !== 'var' && v.kind !== 'func') continue;
      if (decls.has(v.name)) continue;
      decls.set(v.name, { name: v.name, section: t.name, id: v.id, isFunc: v.kind === 'func', type: v.type });
    }
  }
  declarations.set(btf, decls);
  return decls;
}

interface KconfigExtern extends KconfigSlot {
  weak: boolean;
  align: number;
  /** Byte offset in the .kconfig map value. */
  offset: number;
  set: boolean;
}

type KsymResolution =
  | { kind: 'btf'; btfId: number; module?: ModuleBtf }
  | { kind: 'address'; address: bigint }
  | { kind: 'missing' };

interface KsymExtern {
  name: string;
  weak: boolean;
  isFunc: boolean;
  /** Index in this object's extern list, for poisoned calls. */
  index: number;
  resolution: KsymResolution;
}

function isWeakReloc(r: object): boolean {
  return (r as { weak?: unknown }).weak === true;
}

const alignUp = (n: number, a: number): number => Math.ceil(n / a) * a;

export class Externs {
  /** The ".kconfig" map to create (filled in, frozen after load), or undefined when the object has no .kconfig externs. */
  readonly kconfigMap?: MapSpec;
  readonly #kconfig = new Map<string, KconfigExtern>();
  /** Bytes of the .kconfig map value. */
  #kconfigSize = 0;
  readonly #ksyms = new Map<string, KsymExtern>();
  /** Module BTF fds by fd_array index (index 0 unused). */
  readonly #fdArray: number[] = [];
  readonly #fdIndex = new Map<ModuleBtf, number>();
  readonly #ownedFds: FD[] = [];
  #modules?: ModuleBtf[];
  #closed = false;

  private constructor() {}

  /**
   * Resolves every extern `spec` declares. Reads the kernel config only for CONFIG_* externs the options
   * don't set, /proc/kallsyms only for typeless ksyms, kernel BTF only for typed ksyms and kfuncs, and
   * module BTF only for those vmlinux lacks. Throws ExternError (a TsbpfError) naming the extern when a
   * strong extern cannot be resolved or an extern's type cannot be served.
   */
  static prepare(spec: CollectionSpec, o: ExternOptions): Externs {
    const ex = new Externs();
    try {
      ex.#prepare(spec, o);
    } catch (e) {
      ex.close();
      throw e;
    }
    return ex;
  }

  #prepare(spec: CollectionSpec, o: ExternOptions): void {
    // Which externs the code refers to, and whether any reference says __weak.
    const used = new Map<string, { weak: boolean }>();
    for (const fn of Object.values(spec.functions)) {
      for (const r of fn.relocations) {
        if (r.kind !== 'extern') continue;
        const u = used.get(r.name);
        if (u) u.weak ||= isWeakReloc(r);
        else used.set(r.name, { weak: isWeakReloc(r) });
      }
    }
    const btf = spec.btf;
    const decls = btf ? declarationsOf(btf) : new Map<string, ExternDecl>();
    if (used.size === 0 && decls.size === 0) return;
    if (!btf) {
      const first = used.keys().next().value as string;
      throw new ExternError(first, `extern ${first}: the object has no BTF to declare its externs (compile with -g)`);
    }
    for (const name of used.keys()) {
      if (!decls.has(name)) {
        const kinds = btf.typesByName(name).map((t) => t.kind);
        throw new ExternError(
          name,
          `extern ${name} is neither in ${KCONFIG_SECTION} nor in ${KSYMS_SECTION} ` +
            `(declare it with __kconfig or __ksym${kinds.length ? `; its BTF is ${kinds.join(', ')}` : ''})`,
        );
      }
    }
    // An extern the code never refers to is harmless when absent: treat it as weak.
    const weakOf = (name: string): boolean => used.get(name)?.weak ?? true;

    // Index externs in a stable order (kconfig layout order, then ksyms by name) for poisoned calls.
    const kconfigDecls = [...decls.values()].filter((d) => d.section === KCONFIG_SECTION);
    const ksymDecls = [...decls.values()].filter((d) => d.section === KSYMS_SECTION && used.has(d.name));
    this.#layoutKconfig(btf, kconfigDecls, weakOf);
    ksymDecls.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    let index = this.#kconfig.size;
    for (const d of ksymDecls) {
      this.#ksyms.set(d.name, { name: d.name, weak: weakOf(d.name), isFunc: d.isFunc, index: index++, resolution: { kind: 'missing' } });
    }

    if (this.#kconfig.size > 0) {
      const value = this.#fillKconfig(o);
      const datasec = btf.tryFindType(KCONFIG_SECTION, 'datasec');
      const map: MapSpec = {
        name: KCONFIG_SECTION,
        kernelName: internalMapName(spec.objectName, KCONFIG_SECTION),
        type: BPF_MAP_TYPE.ARRAY,
        keySize: 4,
        valueSize: this.#kconfigSize,
        maxEntries: 1,
        flags: BPF_F_RDONLY_PROG | BPF_F_MMAPABLE,
        pinning: 'none',
        contents: [{ key: Buffer.alloc(4), value }],
        freeze: true,
        origin: 'data',
        section: KCONFIG_SECTION,
      };
      if (datasec) map.valueType = datasec.id;
      (this as { kconfigMap?: MapSpec }).kconfigMap = map;
    }
    if (this.#ksyms.size > 0) this.#resolveKsyms(btf, ksymDecls, o);
  }

  // ---- .kconfig ----

  #layoutKconfig(btf: Btf, decls: ExternDecl[], weakOf: (name: string) => boolean): void {
    const exts: KconfigExtern[] = [];
    for (const d of decls) {
      if (d.isFunc) throw new ExternError(d.name, `extern ${d.name}: functions cannot be ${KCONFIG_SECTION} externs`);
      const k = kconfigKind(btf, d.type);
      if (!k) {
        throw new ExternError(
          d.name,
          `extern ${d.name}: ${KCONFIG_SECTION} supports enum libbpf_tristate, bool, char, 1/2/4/8-byte integers ` +
            `and char arrays, not ${describeType(btf, d.type)}`,
        );
      }
      const size = btf.sizeof(d.type);
      const align = btf.alignof(d.type);
      exts.push({ name: d.name, kind: k.kind, signed: k.signed, size, align, weak: weakOf(d.name), offset: 0, set: false });
    }
    exts.sort((a, b) => b.align - a.align || a.size - b.size || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    let off = 0;
    for (const e of exts) {
      e.offset = alignUp(off, e.align);
      off = e.offset + e.size;
      this.#kconfig.set(e.name, e);
    }
    this.#kconfigSize = off;
  }

  #fillKconfig(o: ExternOptions): Buffer {
    const data = Buffer.alloc(this.#kconfigSize);
    const set = (e: KconfigExtern, v: KconfigValue, source: string, fromOptions: boolean): void => {
      encodeKconfig(e, v, data, e.offset, source, fromOptions);
      e.set = true;
    };
    // 1. The caller's values win.
    const overrides = o.kconfig ?? {};
    for (const [name, v] of Object.entries(overrides)) {
      const e = this.#kconfig.get(name);
      if (e) set(e, v, `option kconfig.${name}`, true);
    }
    // 2. Virtual LINUX_* values.
    for (const e of this.#kconfig.values()) {
      if (e.set) continue;
      if (e.name.startsWith('CONFIG_')) continue;
      if (!e.name.startsWith('LINUX_')) {
        throw new ExternError(
          e.name,
          `extern ${e.name}: ${KCONFIG_SECTION} externs must be named CONFIG_* (from the kernel config) or LINUX_* (computed by the loader)`,
        );
      }
      let v: number | boolean | undefined;
      switch (e.name) {
        case 'LINUX_KERNEL_VERSION':
          v = runningKernelVersion();
          if (v === 0) throw new ExternError(e.name, `extern ${e.name}: cannot tell the kernel version from uname`);
          break;
        case 'LINUX_HAS_SYSCALL_WRAPPER':
          v = hasSyscallWrapper(o.kernelBtf);
          break;
        case 'LINUX_HAS_BPF_COOKIE':
          v = hasBpfCookie();
          break;
        default:
          if (!e.weak) {
            throw new ExternError(
              e.name,
              `extern ${e.name}: unknown LINUX_* value (tsbpf computes LINUX_KERNEL_VERSION, LINUX_HAS_SYSCALL_WRAPPER, ` +
                `LINUX_HAS_BPF_COOKIE); declare it __weak to get 0, or pass it in the kconfig option`,
            );
          }
      }
      if (v !== undefined) set(e, typeof v === 'boolean' ? (v ? 1 : 0) : v, 'the running kernel', false);
    }
    // 3. The kernel config, only when some CONFIG_* is still unset.
    const unset = [...this.#kconfig.values()].filter((e) => !e.set && e.name.startsWith('CONFIG_'));
    let configDescription = 'no kernel config file';
    if (unset.length > 0) {
      const paths = o.kconfigFile !== undefined ? [o.kconfigFile] : defaultKconfigPaths();
      const tried: string[] = [];
      const file = readKconfigFile(paths, tried);
      if (file) {
        configDescription = file.path;
        const values = parseKconfig(file.text, new Set(unset.map((e) => e.name)));
        for (const e of unset) {
          const v = values.get(e.name);
          if (v !== undefined) set(e, v, file.path, false);
        }
      } else {
        configDescription = `no kernel config file (tried ${tried.join(', ')})`;
      }
    }
    for (const e of this.#kconfig.values()) {
      if (e.set || e.weak) continue;
      const where = e.name.startsWith('CONFIG_') ? configDescription : 'the loader';
      throw new ExternError(
        e.name,
        `extern ${e.name} (strong) has no value: not set in ${where}; declare it __weak to get 0, or pass it in the kconfig option`,
      );
    }
    return data;
  }

  // ---- .ksyms ----

  #resolveKsyms(btf: Btf, decls: ExternDecl[], o: ExternOptions): void {
    const typeless: KsymExtern[] = [];
    const typedVars: KsymExtern[] = [];
    for (const d of decls) {
      const ext = this.#ksyms.get(d.name)!;
      const local = d.isFunc ? d.type : skipModifiers(btf, d.type);
      if (!d.isFunc && local === 0) {
        typeless.push(ext);
        continue;
      }
      this.#resolveTyped(btf, d, ext, local, o);
      if (!d.isFunc && ext.resolution.kind === 'btf') typedVars.push(ext);
    }
    if (typeless.length === 0 && typedVars.length === 0) return;
    // Typeless symbols get their address from kallsyms. Typed variables need to be there too: the
    // verifier finds their address by name in kallsyms, which lacks data symbols on kernels built
    // without CONFIG_KALLSYMS_ALL.
    let found: Map<string, bigint>;
    let ambiguous: Map<string, [bigint, bigint]>;
    try {
      ({ found, ambiguous } = readKallsyms(new Set([...typeless, ...typedVars].map((e) => e.name))));
    } catch (e) {
      const strong = typeless.find((x) => !x.weak);
      if (strong) {
        throw new ExternError(strong.name, `extern ${strong.name}: cannot read /proc/kallsyms: ${(e as Error).message}`, { cause: e });
      }
      return; // typed variables: leave it to the verifier
    }
    for (const ext of typeless) {
      const amb = ambiguous.get(ext.name);
      if (amb) {
        throw new ExternError(
          ext.name,
          `extern ${ext.name}: /proc/kallsyms lists it at two addresses (0x${amb[0].toString(16)} and 0x${amb[1].toString(16)})`,
        );
      }
      const addr = found.get(ext.name);
      if (addr === undefined) {
        if (!ext.weak) throw new ExternError(ext.name, `extern ${ext.name} (strong, typeless __ksym) is not in /proc/kallsyms`);
        continue;
      }
      if (addr === 0n && !ext.weak) {
        throw new ExternError(
          ext.name,
          `extern ${ext.name}: /proc/kallsyms shows address 0 (addresses are hidden: needs root or kernel.kptr_restrict=0)`,
        );
      }
      ext.resolution = { kind: 'address', address: addr };
    }
    for (const ext of typedVars) {
      if (found.has(ext.name)) continue;
      if (ext.weak) {
        ext.resolution = { kind: 'missing' };
        continue;
      }
      throw new ExternError(
        ext.name,
        `extern ${ext.name} (typed __ksym variable) is in kernel BTF but not in /proc/kallsyms, where the verifier ` +
          `looks up its address (kernel built without CONFIG_KALLSYMS_ALL?); declare it __weak to get NULL instead`,
      );
    }
  }

  #resolveTyped(btf: Btf, d: ExternDecl, ext: KsymExtern, local: number, o: ExternOptions): void {
    const kind = d.isFunc ? 'func' : 'var';
    const lookup = d.isFunc ? essentialName(d.name) : d.name;
    const what = d.isFunc ? 'kfunc' : 'typed __ksym variable';
    let kernel: Btf;
    try {
      kernel = o.kernelBtf();
    } catch (e) {
      if (ext.weak) return;
      throw new ExternError(d.name, `extern ${d.name} (${what}) needs kernel BTF: ${(e as Error).message}`, { cause: e });
    }
    let target = kernel.tryFindType(lookup, kind);
    let targetBtf = kernel;
    let module: ModuleBtf | undefined;
    if (!target) {
      for (const m of this.#moduleBtfs(o)) {
        const t = ownType(m.btf, lookup, kind);
        if (t) {
          target = t;
          targetBtf = m.btf;
          module = m;
          break;
        }
      }
    }
    if (!target) {
      if (ext.weak) return;
      throw new ExternError(d.name, `extern ${d.name} (${what}) is not in the kernel's BTF (vmlinux or a loaded module)`);
    }
    const targetType = target.kind === 'func' ? target.type : skipModifiers(targetBtf, (target as BtfVar).type);
    if (!typesCompatible(btf, local, targetBtf, targetType)) {
      // A weak kfunc whose prototype differs counts as absent; a variable of the wrong type is an error.
      if (d.isFunc && ext.weak) return;
      throw new ExternError(
        d.name,
        `extern ${d.name}: declared as ${describeType(btf, local)}, but ${module ? module.name : 'vmlinux'} has ` +
          `${describeType(targetBtf, targetType)} (BTF id ${target.id})`,
      );
    }
    ext.resolution = module ? { kind: 'btf', btfId: target.id, module } : { kind: 'btf', btfId: target.id };
    if (module && d.isFunc && !this.#fdIndex.has(module)) {
      if (this.#fdArray.length === 0) this.#fdArray.push(0); // index 0 means vmlinux: never a module's
      if (this.#fdArray.length > 0x7fff) {
        throw new ExternError(d.name, `extern ${d.name}: too many kernel modules for a call's 16-bit fd_array index`);
      }
      this.#fdIndex.set(module, this.#fdArray.length);
      this.#fdArray.push(module.fd);
    }
  }

  #moduleBtfs(o: ExternOptions): ModuleBtf[] {
    if (this.#modules) return this.#modules;
    if (o.moduleBtfs) return (this.#modules = o.moduleBtfs());
    const loaded = loadModuleBtfs();
    for (const l of loaded) this.#ownedFds.push(l.owner);
    return (this.#modules = loaded.map((l) => l.module));
  }

  // ---- BTF ----

  /**
   * Makes the object's BTF acceptable to BPF_BTF_LOAD, in place, as libbpf does: `.kconfig` VARs become
   * global variables at their offsets in the .kconfig map; every `.ksyms` entry becomes a 4-byte int VAR
   * (kfuncs share one "dummy_ksym" VAR; their FUNCs become global and unnamed parameters get a name).
   * Call it on the BTF that will be marshalled (the spec's, or a copy); calling it twice does nothing more.
   */
  sanitizeBtf(btf: Btf): void {
    if (sanitized.has(btf)) return;
    // Record the declarations first: the rewrite below loses the ksym variables' types.
    declarationsOf(btf);
    const kconfigSec = btf.tryFindType(KCONFIG_SECTION, 'datasec') as BtfDatasec | undefined;
    if (kconfigSec) {
      const vars = kconfigSec.vars.map((vsi) => {
        const v = btf.type(vsi.type);
        if (v.kind !== 'var') return vsi;
        if (v.linkage === 'extern') btf.setType({ ...v, linkage: 'global' });
        const e = this.#kconfig.get(v.name);
        return e ? { ...vsi, offset: e.offset, size: e.size } : vsi;
      });
      vars.sort((a, b) => a.offset - b.offset);
      btf.setType({ ...kconfigSec, size: this.#kconfigSize || kconfigSec.size, vars });
    }
    const ksymsSec = btf.tryFindType(KSYMS_SECTION, 'datasec') as BtfDatasec | undefined;
    if (ksymsSec) {
      let intId = 0;
      for (const t of btf.types()) {
        if (t.kind === 'int' && t.bits === 32 && t.bitsOffset === 0) {
          intId = t.id;
          break;
        }
      }
      if (intId === 0) {
        intId = btf.addType({ kind: 'int', name: 'int', size: 4, signed: true, char: false, bool: false, bitsOffset: 0, bits: 32 });
      }
      let dummy = 0;
      const vars = ksymsSec.vars.map((vsi, i) => {
        const t = btf.type(vsi.type);
        let type = vsi.type;
        if (t.kind === 'var') {
          btf.setType({ ...t, type: intId, linkage: 'global' });
        } else if (t.kind === 'func') {
          if (dummy === 0) dummy = btf.addType({ kind: 'var', name: DUMMY_KSYM, type: intId, linkage: 'global' });
          this.#sanitizeKfunc(btf, t);
          type = dummy;
        }
        return { type, offset: i * 4, size: 4 };
      });
      btf.setType({ ...ksymsSec, size: vars.length * 4, vars });
    }
    sanitized.add(btf);
  }

  #sanitizeKfunc(btf: Btf, f: BtfFunc): void {
    if (f.linkage !== 'global') btf.setType({ ...f, linkage: 'global' });
    const proto = btf.type(f.type);
    if (proto.kind !== 'func_proto') return;
    // The kernel wants every parameter of a global function named.
    if (proto.params.some((p) => p.type !== 0 && p.name === '')) {
      const params = proto.params.map((p) => (p.type !== 0 && p.name === '' ? { ...p, name: DUMMY_KSYM } : p));
      btf.setType({ ...(proto as BtfFuncProto), params });
    }
  }

  // ---- instructions ----

  /**
   * Rewrites the reference to extern `r.name` at instruction `r.insn` of a linked program (`r.offset`: the
   * addend clang left in the ld_imm64). `mapFd` gives the fd of the ".kconfig" map.
   */
  patch(insns: Buffer, r: { insn: number; name: string; offset: number }, mapFd: (mapName: string) => number): void {
    const at = r.insn * INSN_SIZE;
    if (at < 0 || at + INSN_SIZE > insns.length) {
      throw new ExternError(r.name, `extern ${r.name}: instruction ${r.insn} is outside the program`);
    }
    const op = insns[at];
    const isCall = op === OP_CALL;
    if (!isCall && op !== OP_LD_IMM64) {
      throw new ExternError(r.name, `extern ${r.name}: instruction ${r.insn} (opcode 0x${op.toString(16)}) is neither a call nor a 64-bit load`);
    }
    if (!isCall && at + 2 * INSN_SIZE > insns.length) {
      throw new ExternError(r.name, `extern ${r.name}: the 64-bit load at instruction ${r.insn} is cut off`);
    }
    const setSrc = (src: number): void => {
      insns[at + 1] = (insns[at + 1] & 0x0f) | (src << 4);
    };
    const setImm = (idx: number, v: number): void => {
      insns.writeInt32LE(v | 0, at + idx * INSN_SIZE + 4);
    };

    const kc = this.#kconfig.get(r.name);
    if (kc) {
      if (isCall) throw new ExternError(r.name, `extern ${r.name} is a ${KCONFIG_SECTION} variable but instruction ${r.insn} calls it`);
      setSrc(BPF_PSEUDO_MAP_VALUE);
      setImm(0, mapFd(KCONFIG_SECTION));
      setImm(1, kc.offset + r.offset);
      return;
    }
    const ks = this.#ksyms.get(r.name);
    if (!ks) throw new ExternError(r.name, `extern ${r.name} was not prepared (is it declared __kconfig or __ksym?)`);
    const res = ks.resolution;
    if (isCall) {
      if (!ks.isFunc) throw new ExternError(r.name, `extern ${r.name} is a variable but instruction ${r.insn} calls it`);
      if (res.kind === 'btf') {
        setSrc(BPF_PSEUDO_KFUNC_CALL);
        insns[at + 1] &= 0xf0; // dst_reg 0
        insns.writeInt16LE(res.module ? this.#fdIndex.get(res.module)! : 0, at + 2);
        setImm(0, res.btfId);
      } else {
        // Missing __weak kfunc: an invalid helper call that is fine as long as it is dead code.
        insns[at] = OP_CALL;
        insns[at + 1] = 0;
        insns.writeInt16LE(0, at + 2);
        setImm(0, POISON_KFUNC_CALL + ks.index);
      }
      return;
    }
    switch (res.kind) {
      case 'btf':
        setSrc(BPF_PSEUDO_BTF_ID);
        setImm(0, res.btfId);
        setImm(1, res.module ? res.module.fd : 0);
        return;
      case 'address':
        setSrc(0);
        setImm(0, Number(res.address & 0xffffffffn));
        setImm(1, Number((res.address >> 32n) & 0xffffffffn));
        return;
      case 'missing':
        setSrc(0);
        setImm(0, 0);
        setImm(1, 0);
        return;
    }
  }

  /** The program's fd_array: u32 fds of the module BTFs kfunc calls name by index (index 0 unused), or undefined. */
  fdArray(): Buffer | undefined {
    if (this.#fdArray.length === 0) return undefined;
    const b = Buffer.alloc(this.#fdArray.length * 4);
    this.#fdArray.forEach((fd, i) => b.writeInt32LE(fd, i * 4));
    return b;
  }

  /** The name of the missing __weak kfunc a poisoned call immediate stands for (for verifier messages). */
  poisonedCallName(imm: number): string | undefined {
    const idx = imm - POISON_KFUNC_CALL;
    for (const k of this.#ksyms.values()) if (k.index === idx) return k.name;
    return undefined;
  }

  /** How each extern was resolved, for diagnostics and tests. */
  describe(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const e of this.#kconfig.values()) out[e.name] = `kconfig +${e.offset} (${e.kind}, ${e.size} bytes${e.set ? '' : ', unset: 0'})`;
    for (const k of this.#ksyms.values()) {
      const r = k.resolution;
      out[k.name] =
        r.kind === 'btf'
          ? `${k.isFunc ? 'kfunc' : 'ksym'} btf id ${r.btfId}${r.module ? ` in ${r.module.name}` : ''}`
          : r.kind === 'address'
            ? `ksym 0x${r.address.toString(16)}`
            : `missing (weak)`;
    }
    return out;
  }

  /** Closes the module BTF fds this object opened. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const fd of this.#ownedFds) fd.close();
    this.#ownedFds.length = 0;
  }
}

function describeType(btf: Btf, id: number): string {
  const t = btf.type(id);
  if (t.kind === 'void') return 'void';
  return t.name ? `${t.kind} ${t.name}` : t.kind;
}

