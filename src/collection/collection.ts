// CollectionSpec → kernel objects: BTF, maps (with initial contents,
// frozen .rodata), programs (linked, map references rewritten), in an order
// that lets a failure release everything created before it.

import { BPF_MAP_TYPE, BPF_PROG_TYPE, BPF_ATTACH_TYPE, btfLoad, possibleCpus, pageSize, errnoName, FD } from '../syscall/index.js';
import { TsbpfError, NotSupportedError, ClosedError } from '../errors.js';
import { Btf } from '../btf/btf.js';
import { marshalFuncInfos, marshalLineInfos } from '../btf/ext.js';
import { loadKernelBtf, loadBtfFile } from '../btf/kernel.js';
import { applyCoreRelocations, CoreCandidateCache, CORE_POISON_IMM, type CoreResult } from '../btf/core.js';
import { Externs } from './externs.js';
import { Globals, type GlobalVariable } from './globals.js';
import { checkBpffsPath } from '../maps/pin.js';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { CollectionSpec, MapSpec, ProgramSpec } from '../elf/spec.js';
import { BpfMap, mapTypeName } from '../maps/map.js';
import { Program, programTypeName, VerifierError, functionBtfId } from '../programs/program.js';
import {
  linkProgram, setImm, setSrcReg, BPF_PSEUDO_MAP_FD, BPF_PSEUDO_MAP_VALUE, OP_LD_IMM64, INSN_SIZE, type LinkedProgram,
} from './linker.js';

export interface CollectionOptions {
  /** Load only these programs (default: every program whose section is not `?`-prefixed). */
  programs?: string[];
  /** Verifier log level for every program (the log is kept on `Program.verifierLog`). */
  logLevel?: number;
  /** Use these existing maps instead of creating the ones with the same name. Not closed by the collection. */
  mapReplacements?: Record<string, BpfMap>;
  /**
   * Directory (in a bpffs) for maps declared with `__uint(pinning, LIBBPF_PIN_BY_NAME)`: a map pinned
   * there under its name is reused when compatible (an incompatible one is an error naming the
   * difference); otherwise the new map is pinned there. Default /sys/fs/bpf (mounted when missing).
   */
  pinPath?: string;
  /**
   * Target BTF for CO-RE relocation: a parsed Btf or the path of a raw BTF file or an ELF with .BTF
   * (BTFHub-style, for kernels without /sys/kernel/btf). Like libbpf's btf_custom_path it affects CO-RE
   * only: attach targets (tp_btf, fentry, lsm, iter) and ksyms always use the running kernel's BTF.
   * Default: /sys/kernel/btf/vmlinux, parsed once per process.
   */
  kernelBtf?: Btf | string;
  /** Values for `.kconfig` externs that override the kernel config (`CONFIG_*`, `LINUX_KERNEL_VERSION`, ...). */
  kconfig?: Record<string, string | number | bigint | boolean>;
  /** Kernel config file to read `.kconfig` externs from (default /proc/config.gz, then /boot/config-$(uname -r)). */
  kconfigFile?: string;
  /**
   * Targets of `freplace` programs, by program name: the loaded program (or the name of a program of this
   * collection that comes earlier in the object) and its global function to replace (default: the name
   * after `freplace/` in the section).
   */
  attachTargets?: Record<string, { program: Program | string; function?: string }>;
}

export class CollectionError extends TsbpfError {}

/** Map types that refuse BTF key/value type ids at creation. */
const NO_BTF_KV = new Set<number>([
  BPF_MAP_TYPE.PERF_EVENT_ARRAY, BPF_MAP_TYPE.CGROUP_ARRAY, BPF_MAP_TYPE.STACK_TRACE, BPF_MAP_TYPE.ARRAY_OF_MAPS,
  BPF_MAP_TYPE.HASH_OF_MAPS, BPF_MAP_TYPE.DEVMAP, BPF_MAP_TYPE.DEVMAP_HASH, BPF_MAP_TYPE.CPUMAP, BPF_MAP_TYPE.XSKMAP,
  BPF_MAP_TYPE.SOCKMAP, BPF_MAP_TYPE.SOCKHASH, BPF_MAP_TYPE.QUEUE, BPF_MAP_TYPE.STACK, BPF_MAP_TYPE.RINGBUF,
  BPF_MAP_TYPE.USER_RINGBUF, BPF_MAP_TYPE.PROG_ARRAY, BPF_MAP_TYPE.REUSEPORT_SOCKARRAY, BPF_MAP_TYPE.BLOOM_FILTER,
]);

/** Map types whose value is an fd (filled after creation). */
const FD_VALUE_TYPES = new Set<number>([
  BPF_MAP_TYPE.PROG_ARRAY, BPF_MAP_TYPE.ARRAY_OF_MAPS, BPF_MAP_TYPE.HASH_OF_MAPS, BPF_MAP_TYPE.PERF_EVENT_ARRAY,
  BPF_MAP_TYPE.CGROUP_ARRAY,
]);

/** Program kinds whose attach target is a kernel BTF id resolved at load time. */
function btfAttachTarget(p: ProgramSpec): { name: string; kind: 'typedef' | 'func' } | undefined {
  if (!p.attachTo) return undefined;
  const target = p.attachTo;
  switch (p.type) {
    case BPF_PROG_TYPE.TRACING:
      if (p.expectedAttachType === BPF_ATTACH_TYPE.TRACE_RAW_TP) return { name: `btf_trace_${target}`, kind: 'typedef' };
      if (p.expectedAttachType === BPF_ATTACH_TYPE.TRACE_ITER) return { name: `bpf_iter_${target}`, kind: 'func' };
      return { name: target, kind: 'func' };
    case BPF_PROG_TYPE.LSM:
      return { name: `bpf_lsm_${target}`, kind: 'func' };
    default:
      return undefined;
  }
}

export class Collection {
  readonly spec: CollectionSpec;
  readonly maps: Record<string, BpfMap> = {};
  readonly programs: Record<string, Program> = {};
  /**
   * Global variables (.data, .bss, .rodata...) by name, live: read and written through an mmap of their
   * data map (no syscall) where the kernel allows it. `.rodata` is read-only after load.
   */
  readonly variables: Record<string, GlobalVariable> = {};
  #globals: Globals | undefined;
  #owned: (BpfMap | Program)[] = [];
  #closed = false;

  constructor(spec: CollectionSpec, options: CollectionOptions = {}) {
    this.spec = spec;
    // A pin directory outside a bpffs is refused before anything is loaded.
    if (options.pinPath !== undefined) checkBpffsPath(options.pinPath);
    let btfFd: FD | undefined;
    let externs: Externs | undefined;
    try {
      // CO-RE relocates against the BTF the user names (like libbpf's btf_custom_path); attach targets
      // and ksyms need ids of the running kernel's own BTF.
      let coreBtfCache: Btf | undefined;
      const coreBtf = (): Btf => {
        if (!coreBtfCache) {
          const k = options.kernelBtf;
          coreBtfCache = k === undefined ? loadKernelBtf() : typeof k === 'string' ? loadBtfFile(k) : k;
        }
        return coreBtfCache;
      };
      const kernelBtf = loadKernelBtf;
      const wanted = this.#selectPrograms(options.programs);
      // Loading never changes the spec: work on a copy of the object's BTF (externs sanitize it,
      // line info may add strings).
      const objBtf = spec.btf ? Btf.parse(spec.btf.marshal()) : undefined;
      externs = Externs.prepare(spec, { kernelBtf, kconfig: options.kconfig, kconfigFile: options.kconfigFile });
      if (objBtf) externs.sanitizeBtf(objBtf);
      // 1. Link every program (pure) and apply CO-RE, so line-info strings are known before BTF is marshalled.
      const linked = new Map<string, LinkedProgram>();
      const coreResults = new Map<string, CoreResult[]>();
      // One candidate cache per object: libbpf narrows candidate lists across all of an object's
      // relocations, which can decide later ones.
      const coreCache = new CoreCandidateCache();
      for (const p of wanted) {
        const l = linkProgram(spec, p);
        linked.set(p.name, l);
        if (l.coreRelos.length) {
          if (!objBtf) throw new CollectionError(`program "${p.name}" has CO-RE relocations but the object has no BTF`);
          const results = applyCoreRelocations(l.insns, l.coreRelos, objBtf, [coreBtf()], { programName: p.name, cache: coreCache });
          // Like libbpf, an inconsistent relocation (ambiguous candidates, an instruction that does not hold
          // the local value, ...) refuses the object even if the code is dead.
          const fatal = results.find((r) => r.fatal);
          if (fatal) {
            throw new CollectionError(
              `program "${p.name}": CO-RE relocation of ${fatal.description} (${fatal.kindName}, instruction ${fatal.insn}) failed: ${fatal.reason ?? 'inconsistent'}`,
            );
          }
          coreResults.set(p.name, results);
        }
      }
      const lineInfoBufs = new Map<string, Buffer>();
      if (objBtf) {
        for (const [name, l] of linked) {
          if (l.lineInfos.length) lineInfoBufs.set(name, marshalLineInfos(l.lineInfos, objBtf));
        }
      }
      // 2. BTF.
      let btfError: string | undefined;
      if (objBtf) {
        const raw = objBtf.marshal();
        const r = btfLoad(raw);
        if ('fd' in r) btfFd = r.fd;
        else {
          const withLog = btfLoad(raw, 1 << 20);
          btfError = `BTF_LOAD failed with ${errnoName(r.errno)}${'log' in withLog && withLog.log ? `: ${withLog.log.trim().split('\n').slice(-3).join(' | ')}` : ''}`;
        }
      }
      // 3. Maps (plus the .kconfig map when the object has kconfig externs).
      const mapSpecs = Object.values(spec.maps);
      const reused = new Set<string>();
      if (externs.kconfigMap) mapSpecs.push(externs.kconfigMap);
      for (const ms of mapSpecs) {
        const repl = options.mapReplacements?.[ms.name];
        if (repl) {
          this.maps[ms.name] = repl;
          continue;
        }
        const pinned = ms.pinning === 'byName' ? this.#pinnedMap(ms, options.pinPath ?? '/sys/fs/bpf') : undefined;
        if (pinned?.reused) {
          this.maps[ms.name] = pinned.map;
          this.#owned.push(pinned.map);
          reused.add(ms.name);
          continue;
        }
        const m = this.#createMap(ms, btfFd);
        this.maps[ms.name] = m;
        this.#owned.push(m);
        if (pinned) m.pin(pinned.path);
      }
      // JS-value access (map.get/set) for maps with BTF key/value types.
      if (spec.btf) {
        for (const ms of mapSpecs) {
          const m = this.maps[ms.name];
          // Every map of ours knows its object's BTF (readers resolve `decode: 'event'` in it).
          if (m && !m.btf && !options.mapReplacements?.[ms.name]) m.setTypes(spec.btf);
          if (m && (ms.keyType || ms.valueType) && ms.origin !== 'data') {
            try {
              m.setTypes(spec.btf, ms.keyType, ms.valueType);
            } catch {
              /* a type without a fixed size (or a mismatch): raw bytes only */
            }
          }
        }
      }
      for (const ms of mapSpecs) {
        // Replaced and reused pinned maps keep the contents they have.
        if (options.mapReplacements?.[ms.name] || reused.has(ms.name)) continue;
        this.#fillMap(ms, false);
      }
      // 4. Programs.
      const fdArray = externs.fdArray();
      for (const p of wanted) {
        const l = linked.get(p.name)!;
        this.#resolveRelocs(p, l, externs);
        let attachBtfId: number | undefined;
        const t = btfAttachTarget(p);
        if (t) {
          const ty = kernelBtf().tryFindType(t.name, t.kind);
          if (!ty) {
            throw new CollectionError(`program "${p.name}": attach target "${p.attachTo}" not found in kernel BTF (looked for ${t.kind} ${t.name})`);
          }
          attachBtfId = ty.id;
        }
        let attachProgFd: number | undefined;
        if (p.type === BPF_PROG_TYPE.EXT) {
          const tgt = options.attachTargets?.[p.name];
          const fn = tgt?.function ?? p.attachTo;
          if (!tgt || !fn) {
            throw new CollectionError(`freplace program "${p.name}" needs its target: pass { attachTargets: { ${p.name}: { program, function } } }`);
          }
          const target = typeof tgt.program === 'string' ? this.programs[tgt.program] : tgt.program;
          if (!target) throw new CollectionError(`freplace program "${p.name}": target program "${String(tgt.program)}" is not loaded (yet)`);
          attachProgFd = target.fd;
          attachBtfId = functionBtfId(target, fn);
        }
        const useBtf = btfFd !== undefined && l.funcInfos.length > 0;
        if (btfError && hasGlobalSubprogs(spec, l)) {
          throw new CollectionError(`program "${p.name}" has global subprograms, which need BTF, but the kernel refused the object's BTF (${btfError})`);
        }
        let prog: Program;
        try {
          prog = Program.load({
          name: p.name,
          type: p.type,
          insns: l.insns,
          license: p.license || spec.license,
          expectedAttachType: p.expectedAttachType,
          kernelVersion: p.kernelVersion || spec.kernelVersion,
          flags: p.flags,
          btfFd: useBtf ? btfFd!.value : undefined,
          funcInfo: useBtf ? marshalFuncInfos(l.funcInfos) : undefined,
          lineInfo: useBtf ? lineInfoBufs.get(p.name) : undefined,
          lineInfos: l.lineInfos,
          attachBtfId,
          attachProgFd,
          fdArray,
          logLevel: options.logLevel,
          });
        } catch (e) {
          throw explainFailure(e, coreResults.get(p.name), l, externs);
        }
        this.programs[p.name] = prog;
        this.#owned.push(prog);
      }
      // 5. Contents that refer to programs (prog arrays).
      for (const ms of mapSpecs) {
        if (options.mapReplacements?.[ms.name] || reused.has(ms.name)) continue;
        this.#fillMap(ms, true);
      }
      // 6. Live globals (after .rodata is frozen: a frozen map can only be mapped read-only).
      this.#globals = new Globals(spec, this.maps);
      Object.assign(this.variables, this.#globals.variables);
    } catch (e) {
      this.close();
      throw e;
    } finally {
      btfFd?.close();
      externs?.close();
    }
  }

  #selectPrograms(names?: string[]): ProgramSpec[] {
    const all = Object.values(this.spec.programs);
    const chosen = names
      ? names.map((n) => {
          const p = this.spec.programs[n];
          if (!p) throw new CollectionError(`no program "${n}" in the object (it has: ${Object.keys(this.spec.programs).join(', ') || 'none'})`);
          return p;
        })
      : all.filter((p) => p.autoload);
    for (const p of chosen) {
      if (p.type === BPF_PROG_TYPE.UNSPEC) {
        throw new CollectionError(
          `program "${p.name}": section "${p.section}" does not name a program type tsbpf knows ` +
            '(see libbpf\'s section names: tp/, raw_tp/, xdp, tc, ...); load only the other programs with { programs: [...] }',
        );
      }
      if (p.type === BPF_PROG_TYPE.STRUCT_OPS) {
        throw new NotSupportedError(`struct_ops program "${p.name}"`, undefined, 'tsbpf does not create struct_ops maps yet');
      }
    }
    return chosen;
  }

  /** The pin of a LIBBPF_PIN_BY_NAME map: an existing compatible map to reuse, or the path to pin at. */
  #pinnedMap(ms: MapSpec, dir: string): { path: string; reused: boolean; map: BpfMap } | { path: string; reused: false; map?: undefined } {
    const path = join(dir, ms.name);
    checkBpffsPath(path);
    if (!existsSync(path)) return { path, reused: false };
    const m = BpfMap.fromPin(path);
    const want = this.#effectiveSize(ms);
    const diffs: string[] = [];
    if (m.type !== ms.type) diffs.push(`type ${mapTypeName(m.type)} (want ${mapTypeName(ms.type)})`);
    if (m.keySize !== want.keySize) diffs.push(`key size ${m.keySize} (want ${want.keySize})`);
    if (m.valueSize !== want.valueSize) diffs.push(`value size ${m.valueSize} (want ${want.valueSize})`);
    if (m.maxEntries !== want.maxEntries) diffs.push(`max entries ${m.maxEntries} (want ${want.maxEntries})`);
    if (m.flags !== ms.flags) {
      diffs.push(`flags 0x${m.flags.toString(16)} (want 0x${ms.flags.toString(16)})`);
    }
    if (diffs.length) {
      m.close();
      throw new CollectionError(`map "${ms.name}": the map pinned at ${path} is incompatible: ${diffs.join(', ')}; unpin it (rm ${path}) or fix the definition`);
    }
    return { path, reused: true, map: m };
  }

  #effectiveSize(ms: MapSpec): { keySize: number; valueSize: number; maxEntries: number } {
    let { keySize, valueSize, maxEntries } = ms;
    if (ms.type === BPF_MAP_TYPE.PERF_EVENT_ARRAY) {
      if (maxEntries === 0) maxEntries = possibleCpus().length;
      keySize ||= 4;
      valueSize ||= 4;
    }
    if (ms.type === BPF_MAP_TYPE.ARRAY_OF_MAPS || ms.type === BPF_MAP_TYPE.HASH_OF_MAPS) valueSize ||= 4;
    if (ms.type === BPF_MAP_TYPE.RINGBUF || ms.type === BPF_MAP_TYPE.USER_RINGBUF) maxEntries = ringbufSize(maxEntries);
    return { keySize, valueSize, maxEntries };
  }

  #createMap(ms: MapSpec, btfFd: FD | undefined): BpfMap {
    const { keySize, valueSize, maxEntries } = this.#effectiveSize(ms);
    let inner: BpfMap | undefined;
    try {
      if (ms.innerMap) inner = this.#createMap({ ...ms.innerMap, kernelName: ms.innerMap.kernelName || 'inner' }, btfFd);
      const withBtf = btfFd !== undefined && !NO_BTF_KV.has(ms.type) && (ms.keyType !== undefined || ms.valueType !== undefined);
      const base = {
        name: ms.kernelName,
        type: ms.type,
        keySize,
        valueSize,
        maxEntries,
        flags: ms.flags,
        numaNode: ms.numaNode,
        mapExtra: ms.mapExtra,
        innerMap: inner,
      };
      try {
        return BpfMap.create(withBtf ? { ...base, btfFd: btfFd!.value, btfKeyTypeId: ms.keyType ?? 0, btfValueTypeId: ms.valueType ?? 0 } : base);
      } catch (e) {
        if (!withBtf) throw e;
        // Some kernels refuse BTF for some map types or value layouts: retry without, as libbpf does.
        return BpfMap.create(base);
      }
    } finally {
      inner?.close();
    }
  }

  #fillMap(ms: MapSpec, programsPhase: boolean): void {
    const m = this.maps[ms.name];
    for (const entry of ms.contents) {
      const v = entry.value;
      const isProg = !(v instanceof Uint8Array) && 'program' in v;
      if (isProg !== programsPhase) continue;
      let value: Uint8Array;
      if (v instanceof Uint8Array) {
        value = v;
      } else if ('program' in v) {
        const p = this.programs[v.program];
        if (!p) {
          if (this.spec.programs[v.program] && !this.spec.programs[v.program].autoload) continue;
          if (this.spec.programs[v.program]) continue; // not selected for loading
          throw new CollectionError(`map "${ms.name}": initial value refers to unknown program "${v.program}"`);
        }
        value = u32(p.fd);
      } else {
        const inner = this.maps[v.map];
        if (!inner) throw new CollectionError(`map "${ms.name}": initial value refers to unknown map "${v.map}"`);
        value = u32(inner.fd);
      }
      if (!FD_VALUE_TYPES.has(ms.type) && value.length !== m.valueSize) {
        throw new CollectionError(`map "${ms.name}": initial value is ${value.length} bytes, value size is ${m.valueSize}`);
      }
      m.update(entry.key, value);
    }
    if (!programsPhase && ms.freeze) m.freeze();
  }

  #resolveRelocs(p: ProgramSpec, l: LinkedProgram, externs: Externs): void {
    const insns = l.insns;
    for (const r of l.relocs) {
      const op = insns[r.insn * INSN_SIZE];
      if (r.kind === 'map' || r.kind === 'mapValue') {
        if (op !== OP_LD_IMM64) {
          throw new CollectionError(`program "${p.name}": instruction ${r.insn} refers to map "${r.map}" but is not a 64-bit immediate load`);
        }
        const m = this.maps[r.map];
        if (!m) throw new CollectionError(`program "${p.name}": refers to map "${r.map}", which the object does not define`);
        if (r.kind === 'map') {
          setSrcReg(insns, r.insn, BPF_PSEUDO_MAP_FD);
          setImm(insns, r.insn, m.fd);
          setImm(insns, r.insn + 1, 0);
        } else {
          setSrcReg(insns, r.insn, BPF_PSEUDO_MAP_VALUE);
          setImm(insns, r.insn, m.fd);
          setImm(insns, r.insn + 1, r.offset);
        }
      } else if (r.kind === 'extern') {
        externs.patch(insns, r, (name) => {
          const m = this.maps[name];
          if (!m) throw new CollectionError(`program "${p.name}": extern "${r.name}" needs map "${name}", which was not created`);
          return m.fd;
        });
      }
    }
  }

  /** Bytes of a global variable, read now (shorthand for `variables[name].get()`). */
  readVariable(name: string): Buffer {
    return this.#variable(name).get();
  }

  /** Overwrite a global variable in a writable data map (.data, .bss): `variables[name].set(value)`. */
  writeVariable(name: string, value: Uint8Array): void {
    const v = this.#variable(name);
    if (v.readonly) throw new CollectionError(`variable "${name}" is read-only: its map is frozen after load; set it on the spec before loading`);
    if (!(value instanceof Uint8Array) || value.length !== v.size) {
      throw new TypeError(`variable "${name}" is ${v.size} bytes; got ${value instanceof Uint8Array ? value.length + ' bytes' : typeof value}`);
    }
    v.set(Buffer.from(value.buffer, value.byteOffset, value.byteLength));
  }

  #check(what: string): void {
    if (this.#closed) {
      throw new ClosedError(`collection "${this.spec.objectName}": ${what}: the collection is closed (its maps and programs too); load the object again`);
    }
  }

  #variable(name: string): GlobalVariable {
    this.#check(`variable "${name}"`);
    const v = this.variables[name];
    if (!v) throw new CollectionError(`no variable "${name}" (the object has: ${Object.keys(this.spec.variables).join(', ') || 'none'})`);
    return v;
  }

  /** Close every map and program this collection created. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    // Unmap before closing the maps: no view may outlive its mapping.
    this.#globals?.close();
    for (const o of this.#owned.reverse()) o.close();
    this.#owned = [];
  }

  [Symbol.dispose](): void {
    this.close();
  }

  describe(): { programs: { name: string; type: string }[]; maps: { name: string; type: string }[] } {
    this.#check('describe');
    return {
      programs: Object.values(this.programs).map((p) => ({ name: p.name, type: programTypeName(p.type) })),
      maps: Object.values(this.maps).map((m) => ({ name: m.name, type: mapTypeName(m.type) })),
    };
  }
}

/**
 * When the verifier stops at an instruction a failed CO-RE relocation poisoned, say which relocation
 * failed in source terms instead of leaving the user with "invalid func unknown#195896080".
 */
function explainFailure(e: unknown, results: CoreResult[] | undefined, l: LinkedProgram, externs: Externs): unknown {
  if (!(e instanceof VerifierError)) return e;
  // A reachable call to a missing __weak kfunc was poisoned like libbpf does.
  const kf = /unknown#(\d+)/.exec(e.log);
  const kfunc = kf ? externs.poisonedCallName(Number(kf[1])) : undefined;
  if (kfunc) {
    return e.withNote(`calls kfunc ${kfunc}, which this kernel lacks (it is __weak: guard the call with bpf_ksym_exists(${kfunc}))`, l.lineInfos);
  }
  const failed = (results ?? []).filter((r) => r.poisoned);
  if (!failed.length) return e;
  const mentionsPoison = e.log.includes(String(CORE_POISON_IMM)) || e.log.includes(`0x${CORE_POISON_IMM.toString(16)}`);
  const at = failed.find((r) => r.insn === e.insn) ?? (mentionsPoison ? failed[0] : undefined);
  if (!at) return e;
  const others = failed.length > 1 ? ` (${failed.length - 1} more failed relocation(s) in this program)` : '';
  return e.withNote(`CO-RE relocation failed: ${at.description}${at.reason ? `: ${at.reason}` : ''} (instruction ${at.insn})${others}`, l.lineInfos);
}

/**
 * Ring buffer sizes must be a power-of-two number of pages: round up as libbpf does, so an object
 * declaring `max_entries 1000` loads.
 */
export function ringbufSize(requested: number): number {
  const page = pageSize();
  if (requested > 0 && requested % page === 0 && (requested & (requested - 1)) === 0) return requested;
  let pages = Math.max(1, Math.ceil(requested / page));
  let pow = 1;
  while (pow < pages) pow *= 2;
  pages = pow;
  return pages * page;
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
}

function hasGlobalSubprogs(spec: CollectionSpec, l: LinkedProgram): boolean {
  return l.layout.slice(1).some((k) => spec.functions[k]?.global);
}
