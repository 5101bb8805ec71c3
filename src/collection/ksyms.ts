// `.ksyms` externs: where kernel symbols are found. Typeless ones (`extern
// const void sym __ksym`) by address in /proc/kallsyms; typed variables and
// kfuncs by BTF id in vmlinux BTF or, failing that, in a kernel module's BTF
// (whose fd the program must pass along). Also the kernel probes behind the
// LINUX_HAS_* virtual `.kconfig` values.

import { readFileSync } from 'node:fs';
import { arch } from 'node:os';
import type { Btf } from '../btf/btf.js';
import type { BtfKind, BtfType } from '../btf/types.js';
import { loadKernelModuleBtf } from '../btf/kernel.js';
import {
  BPF_FUNC, BPF_PROG_TYPE, FD, getFdById, getNextId, layoutSize, objGetInfo, progLoad, readU32, writeFields,
} from '../syscall/index.js';

export const KALLSYMS_PATH = '/proc/kallsyms';

/**
 * Addresses of `wanted` names in a kallsyms listing (`address type name [module]` per line). A local
 * data symbol that LLVM's LTO renamed to `name.llvm.<hash>` counts as `name`. A name listed at two
 * different addresses is ambiguous and reported in `ambiguous` (with both addresses) instead.
 */
export function parseKallsyms(
  text: string,
  wanted: ReadonlySet<string>,
): { found: Map<string, bigint>; ambiguous: Map<string, [bigint, bigint]> } {
  const found = new Map<string, bigint>();
  const ambiguous = new Map<string, [bigint, bigint]>();
  // A handful of names in ~100k lines: search for each name rather than split every line.
  for (const name of wanted) {
    if (name === '') continue;
    const needle = ' ' + name;
    for (let pos = text.indexOf(needle); pos >= 0; pos = text.indexOf(needle, pos + needle.length)) {
      const after = pos + needle.length;
      const next = text[after];
      const type = text[pos - 1];
      const whole = next === undefined || next === '\n' || next === '\t' || next === '\r' || next === ' ';
      if (!whole && !(type === 'd' && text.startsWith('.llvm.', after))) continue;
      // The name must be the third field: "<hex address> <type> name".
      if (pos < 3 || text[pos - 2] !== ' ') continue;
      const lineStart = text.lastIndexOf('\n', pos - 2) + 1;
      const hex = text.slice(lineStart, pos - 2);
      if (!/^[0-9a-fA-F]+$/.test(hex)) continue;
      const addr = BigInt('0x' + hex);
      const prev = found.get(name);
      if (prev === undefined) found.set(name, addr);
      else if (prev !== addr && !ambiguous.has(name)) ambiguous.set(name, [prev, addr]);
    }
  }
  return { found, ambiguous };
}

/** Reads /proc/kallsyms (or `path`) and looks up `wanted` in it. */
export function readKallsyms(wanted: ReadonlySet<string>, path = KALLSYMS_PATH): ReturnType<typeof parseKallsyms> {
  return parseKallsyms(readFileSync(path, 'latin1'), wanted);
}

// ---------------------------------------------------------------------------
// Kernel module BTF

/** A kernel module's BTF: split BTF on top of vmlinux, and an fd of the kernel's BTF object. */
export interface ModuleBtf {
  name: string;
  btf: Btf;
  /** The kernel BTF object's fd (what fd_array and ld_imm64 refer to the module with). */
  fd: number;
}

/**
 * Every loaded kernel module with BTF: walks the kernel's BTF objects (BPF_BTF_GET_NEXT_ID), keeps those
 * that are kernel BTF other than vmlinux, and parses each from /sys/kernel/btf/<name>. The caller owns
 * the returned FDs.
 */
export function loadModuleBtfs(): { module: ModuleBtf; owner: FD }[] {
  const L = 'bpf_btf_info' as const;
  const size = layoutSize(L);
  const out: { module: ModuleBtf; owner: FD }[] = [];
  let id = 0;
  for (;;) {
    const next = getNextId('BTF_GET_NEXT_ID', id);
    if (next === null) break;
    id = next;
    let fd: FD;
    try {
      fd = getFdById('BTF_GET_FD_BY_ID', id, `BTF object ${id}`);
    } catch {
      continue; // gone since we listed it (a module unloaded)
    }
    let keep = false;
    try {
      const NAME_MAX = 64;
      const r = objGetInfo(fd.value, size, NAME_MAX + 8, (inf, o) => {
        writeFields(inf.view, inf.off, L, { name: o(NAME_MAX), name_len: NAME_MAX });
      });
      if (readU32(r.info, 0, L, 'kernel_btf') === 0) continue;
      const raw = r.outs[0];
      const z = raw.indexOf(0);
      const name = raw.toString('utf8', 0, z < 0 ? raw.length : z);
      if (name === '' || name === 'vmlinux') continue;
      let btf: Btf;
      try {
        btf = loadKernelModuleBtf(name);
      } catch {
        continue;
      }
      out.push({ module: { name, btf, fd: fd.value }, owner: fd });
      keep = true;
    } finally {
      if (!keep) fd.close();
    }
  }
  return out;
}

/** The first type of `kind` named `name` that `btf` owns itself (not its base's), or undefined. */
export function ownType(btf: Btf, name: string, kind: BtfKind): BtfType | undefined {
  const first = btf.base ? btf.base.length : 1;
  return btf.typesByName(name).find((t) => t.kind === kind && t.id >= first);
}

// ---------------------------------------------------------------------------
// Type compatibility of an extern's declaration with the kernel's

/** Follows typedefs and qualifiers; returns the id reached (0 for void). */
export function skipModifiers(btf: Btf, id: number): number {
  for (let hops = 0; hops <= 64; hops++) {
    const t = btf.type(id);
    switch (t.kind) {
      case 'typedef':
      case 'const':
      case 'volatile':
      case 'restrict':
      case 'type_tag':
        id = t.type;
        break;
      default:
        return id;
    }
  }
  return id;
}

// Compatibility and essential names follow libbpf's CO-RE rules, which libbpf applies to ksyms too:
// the relocator's implementations are the ones used.
export { typesAreCompatible as typesCompatible, essentialName } from '../btf/core.js';

// ---------------------------------------------------------------------------
// Probes behind LINUX_HAS_SYSCALL_WRAPPER and LINUX_HAS_BPF_COOKIE

/** Prefix of the architecture's syscall entry points (`__x64_sys_bpf`), as the kernel names them. */
export function syscallPrefix(nodeArch: string = arch()): string | undefined {
  switch (nodeArch) {
    case 'x64':
      return 'x64';
    case 'ia32':
      return 'ia32';
    case 'arm64':
      return 'arm64';
    case 'arm':
      return 'arm';
    case 's390x':
      return 's390x';
    case 's390':
      return 's390';
    case 'riscv64':
      return 'riscv';
    case 'ppc64':
    case 'ppc':
      return 'powerpc';
    case 'mips':
    case 'mipsel':
      return 'mips';
    default:
      return undefined;
  }
}

let syscallWrapper: boolean | undefined;

/**
 * Whether syscalls enter the kernel through per-architecture wrappers (`__x64_sys_bpf` exists), which is
 * what kprobes on syscalls must attach to. Looked up in kernel BTF, else in /proc/kallsyms.
 */
export function hasSyscallWrapper(kernelBtf: () => Btf): boolean {
  if (syscallWrapper !== undefined) return syscallWrapper;
  const pfx = syscallPrefix();
  if (!pfx) return (syscallWrapper = false);
  const name = `__${pfx}_sys_bpf`;
  try {
    if (kernelBtf().tryFindType(name, 'func')) return (syscallWrapper = true);
  } catch {
    // no kernel BTF: ask kallsyms
  }
  try {
    return (syscallWrapper = readKallsyms(new Set([name])).found.has(name));
  } catch {
    return (syscallWrapper = false);
  }
}

let bpfCookie: boolean | undefined;

/** Whether programs can call bpf_get_attach_cookie(): a tracepoint program that does loads. */
export function hasBpfCookie(): boolean {
  if (bpfCookie !== undefined) return bpfCookie;
  const insns = Buffer.alloc(16);
  insns[0] = 0x85; // call
  insns.writeInt32LE(BPF_FUNC.get_attach_cookie, 4);
  insns[8] = 0x95; // exit
  const r = progLoad({ progType: BPF_PROG_TYPE.TRACEPOINT, insns, license: 'GPL' }, 0, 0);
  r.fd?.close();
  return (bpfCookie = r.fd !== undefined);
}
