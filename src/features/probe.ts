// Kernel feature probes: which program types, map types, helpers (per program type), link types and
// attach types the running kernel has. Program types are probed by loading a two-instruction program,
// map types by creating a tiny map, helpers by loading a program that calls the helper and reading the
// verifier's verdict; every fd is closed at once. Results are cached per process.
//
// Link and attach types are read from the kernel's BTF (`enum bpf_link_type`, `enum bpf_attach_type`):
// what the kernel defines, without attaching anything (attaching needs a target for each type).

import { BPF_ATTACH_TYPE, BPF_FUNC, BPF_LINK_TYPE, BPF_MAP_TYPE, BPF_PROG_TYPE } from '../syscall/kernel-defs.generated.js';
import { BpfCall, btfLoad, progLoad } from '../syscall/bpf.js';
import { BpfError, E } from '../syscall/errors.js';
import { FD } from '../syscall/fd.js';
import { Btf } from '../btf/btf.js';
import { loadKernelBtf } from '../btf/kernel.js';

const EXIT_0 = Buffer.from([
  0xb7, 0x00, 0, 0, 0, 0, 0, 0, // r0 = 0
  0x95, 0x00, 0, 0, 0, 0, 0, 0, // exit
]);

/** ENOTSUPP (kernel-internal 524): "known, but not in this configuration". */
const ENOTSUPP = 524;

/** The expected attach type a program type needs to load at all. */
const PROG_ATTACH: Partial<Record<number, number>> = {
  [BPF_PROG_TYPE.CGROUP_SOCK_ADDR]: BPF_ATTACH_TYPE.CGROUP_INET4_CONNECT,
  [BPF_PROG_TYPE.CGROUP_SOCKOPT]: BPF_ATTACH_TYPE.CGROUP_GETSOCKOPT,
  [BPF_PROG_TYPE.SK_LOOKUP]: BPF_ATTACH_TYPE.SK_LOOKUP,
  [BPF_PROG_TYPE.NETFILTER]: BPF_ATTACH_TYPE.NETFILTER,
  [BPF_PROG_TYPE.TRACING]: BPF_ATTACH_TYPE.TRACE_FENTRY,
  [BPF_PROG_TYPE.LSM]: BPF_ATTACH_TYPE.LSM_MAC,
};

/** Load flags a program type needs: syscall programs are sleepable (BPF_F_SLEEPABLE). */
const PROG_FLAGS: Partial<Record<number, number>> = { [BPF_PROG_TYPE.SYSCALL]: 1 << 4 };

/** Program types that only load with a BTF attach target: probed by whether the verifier got to it. */
const NEEDS_TARGET = new Set<number>([BPF_PROG_TYPE.TRACING, BPF_PROG_TYPE.LSM, BPF_PROG_TYPE.EXT, BPF_PROG_TYPE.STRUCT_OPS]);

function name(table: Record<string, number>, v: number): string {
  for (const [k, n] of Object.entries(table)) if (n === v) return k.toLowerCase();
  return `type_${v}`;
}

/** Lower-case names of the program types tsbpf knows (BPF_PROG_TYPE without UNSPEC), by number. */
export function knownProgramTypes(): { type: number; name: string }[] {
  return Object.values(BPF_PROG_TYPE).filter((v) => v !== 0).map((v) => ({ type: v, name: name(BPF_PROG_TYPE, v) }));
}

export function knownMapTypes(): { type: number; name: string }[] {
  const seen = new Set<number>();
  const out: { type: number; name: string }[] = [];
  // The first name of a value wins (CGROUP_STORAGE_DEPRECATED and CGROUP_STORAGE share 19: say the latter).
  for (const [k, v] of Object.entries(BPF_MAP_TYPE)) {
    if (v === 0 || seen.has(v) || k.endsWith('_DEPRECATED')) continue;
    seen.add(v);
    out.push({ type: v, name: k.toLowerCase() });
  }
  return out;
}

const progCache = new Map<number, boolean>();
const mapCache = new Map<number, boolean>();
const helperCache = new Map<number, Map<number, boolean>>();

function closeFd(n: number): void {
  new FD(n).close();
}

/** Does the kernel have program type `type`? */
export function probeProgramType(type: number): boolean {
  const cached = progCache.get(type);
  if (cached !== undefined) return cached;
  let ok: boolean;
  if (NEEDS_TARGET.has(type)) {
    // No attach target: the load fails, but a known type fails in the verifier's attach checks with a
    // log, while an unknown one is refused with EINVAL before any log is written.
    const r = progLoad({ progType: type, insns: EXIT_0, license: 'GPL', expectedAttachType: PROG_ATTACH[type], attachBtfId: 1 }, 1, 4096);
    r.fd?.close();
    ok = r.fd !== undefined || r.errno !== E.EINVAL || r.log.trim().length > 0;
  } else {
    const r = progLoad({ progType: type, insns: EXIT_0, license: 'GPL', expectedAttachType: PROG_ATTACH[type], flags: PROG_FLAGS[type] }, 0, 0);
    ok = r.fd !== undefined;
    r.fd?.close();
  }
  progCache.set(type, ok);
  return ok;
}

let probeBtf: { fd: FD; intId: number } | null | undefined;

/** A tiny BTF (an int) for map types that need BTF key/value types; closed by closeProbeResources(). */
function tinyBtf(): { fd: FD; intId: number } | null {
  if (probeBtf !== undefined) return probeBtf;
  const b = Btf.empty();
  const intId = b.addType({ kind: 'int', name: 'int', size: 4, signed: true, char: false, bool: false, bitsOffset: 0, bits: 32 });
  const r = btfLoad(b.marshal());
  probeBtf = 'fd' in r ? { fd: r.fd, intId } : null;
  return probeBtf;
}

function createMap(a: { type: number; key: number; value: number; max: number; flags?: number; innerFd?: number; btf?: { fd: number; key: number; value: number }; vmlinuxValue?: number; extra?: bigint }): number {
  const c = new BpfCall('bpf_attr.map_create');
  c.set({
    map_type: a.type,
    key_size: a.key,
    value_size: a.value,
    max_entries: a.max,
    map_flags: a.flags ?? 0,
    inner_map_fd: a.innerFd ?? 0,
    btf_fd: a.btf?.fd ?? 0,
    btf_key_type_id: a.btf?.key ?? 0,
    btf_value_type_id: a.btf?.value ?? 0,
    btf_vmlinux_value_type_id: a.vmlinuxValue ?? 0,
    map_extra: a.extra ?? 0n,
  });
  const r = c.tryRun('MAP_CREATE');
  if (r >= 0) closeFd(r);
  return r;
}

const F_NO_PREALLOC = 1;
const F_MMAPABLE = 1 << 10;

/** Does the kernel have map type `type`? */
export function probeMapType(type: number): boolean {
  const cached = mapCache.get(type);
  if (cached !== undefined) return cached;
  const T = BPF_MAP_TYPE;
  let r: number;
  switch (type) {
    case T.LPM_TRIE:
      r = createMap({ type, key: 8, value: 8, max: 1, flags: F_NO_PREALLOC });
      break;
    case T.ARRAY_OF_MAPS:
    case T.HASH_OF_MAPS: {
      const inner = createInner();
      r = inner < 0 ? inner : createMap({ type, key: 4, value: 4, max: 1, innerFd: inner });
      if (inner >= 0) closeFd(inner);
      break;
    }
    case T.STACK_TRACE:
      r = createMap({ type, key: 4, value: 8, max: 1 });
      break;
    case T.CGROUP_STORAGE:
    case T.PERCPU_CGROUP_STORAGE:
      r = createMap({ type, key: 16, value: 8, max: 0 });
      break;
    case T.QUEUE:
    case T.STACK:
      r = createMap({ type, key: 0, value: 4, max: 1 });
      break;
    case T.BLOOM_FILTER:
      r = createMap({ type, key: 0, value: 4, max: 1 });
      break;
    case T.RINGBUF:
    case T.USER_RINGBUF:
      r = createMap({ type, key: 0, value: 0, max: 4096 });
      break;
    case T.ARENA:
      r = createMap({ type, key: 0, value: 0, max: 1, flags: F_MMAPABLE });
      break;
    case T.SK_STORAGE:
    case T.INODE_STORAGE:
    case T.TASK_STORAGE:
    case T.CGRP_STORAGE: {
      const b = tinyBtf();
      r = b ? createMap({ type, key: 4, value: 4, max: 0, flags: F_NO_PREALLOC, btf: { fd: b.fd.value, key: b.intId, value: b.intId } }) : -E.EINVAL;
      break;
    }
    case T.STRUCT_OPS:
      // No struct_ops value type given: a kernel that knows the map type says ENOTSUPP (or EINVAL/ENOENT
      // from the BTF lookup) only after accepting the type; an unknown type never gets that far.
      r = createMap({ type, key: 4, value: 4, max: 1, vmlinuxValue: 1 });
      if (r === -ENOTSUPP || r === -E.ENOENT) r = 0;
      break;
    default:
      r = createMap({ type, key: 4, value: 4, max: 1 });
  }
  const ok = r >= 0;
  mapCache.set(type, ok);
  return ok;
}

function createInner(): number {
  const c = new BpfCall('bpf_attr.map_create');
  c.set({ map_type: BPF_MAP_TYPE.ARRAY, key_size: 4, value_size: 4, max_entries: 1 });
  return c.tryRun('MAP_CREATE');
}

/**
 * Program types whose helpers `probeHelpers` checks by default: the ones a plain two-instruction
 * program loads as (no attach target needed).
 */
export const MAIN_HELPER_PROG_TYPES: readonly number[] = [
  BPF_PROG_TYPE.SOCKET_FILTER, BPF_PROG_TYPE.KPROBE, BPF_PROG_TYPE.SCHED_CLS, BPF_PROG_TYPE.TRACEPOINT, BPF_PROG_TYPE.XDP,
  BPF_PROG_TYPE.PERF_EVENT, BPF_PROG_TYPE.CGROUP_SKB, BPF_PROG_TYPE.RAW_TRACEPOINT, BPF_PROG_TYPE.SYSCALL,
];

/**
 * Is helper `helper` (BPF_FUNC id) callable from programs of `progType`? A program calling it is loaded
 * with a log: the verifier refuses unknown or disallowed helpers with "invalid func"/"unknown func"
 * and anything else (argument checks) means the helper exists for that type.
 */
export function probeHelper(progType: number, helper: number): boolean {
  let m = helperCache.get(progType);
  if (!m) helperCache.set(progType, (m = new Map()));
  const cached = m.get(helper);
  if (cached !== undefined) return cached;
  let ok = false;
  if (probeProgramType(progType) && !NEEDS_TARGET.has(progType)) {
    const insns = Buffer.alloc(24);
    insns[0] = 0x85; // call helper
    insns.writeInt32LE(helper, 4);
    insns[8] = 0xb7; // r0 = 0
    insns[16] = 0x95; // exit
    const r = progLoad({ progType, insns, license: 'GPL', expectedAttachType: PROG_ATTACH[progType], flags: PROG_FLAGS[progType] }, 1, 8192);
    r.fd?.close();
    ok = r.fd !== undefined || (r.log.length > 0 && !/invalid func|unknown func|program of this type cannot use helper/.test(r.log));
  }
  m.set(helper, ok);
  return ok;
}

/** Names (`bpf_map_lookup_elem`) of the helpers `progType` programs may call. */
export function probeHelpers(progType: number): string[] {
  const out: string[] = [];
  for (const [k, id] of Object.entries(BPF_FUNC)) {
    if (id === 0) continue;
    if (probeHelper(progType, id)) out.push(`bpf_${k}`);
  }
  return out;
}

function kernelEnum(enumName: string, prefix: string): string[] | undefined {
  try {
    const t = loadKernelBtf().tryFindType(enumName, 'enum');
    if (!t || t.kind !== 'enum') return undefined;
    return t.values
      .filter((v) => v.name.startsWith(prefix) && !/^__|MAX_|__MAX/.test(v.name.slice(prefix.length)) && !v.name.endsWith('__MAX_BPF_ATTACH_TYPE'))
      .map((v) => v.name.slice(prefix.length).toLowerCase());
  } catch {
    return undefined;
  }
}

/** Link types the kernel defines (from its BTF), or tsbpf's own list when the kernel has no BTF. */
export function kernelLinkTypes(): { names: string[]; source: 'kernel-btf' | 'tsbpf' } {
  const k = kernelEnum('bpf_link_type', 'BPF_LINK_TYPE_');
  if (k) return { names: k.filter((n) => n !== 'unspec'), source: 'kernel-btf' };
  return { names: Object.keys(BPF_LINK_TYPE).filter((n) => n !== 'UNSPEC').map((n) => n.toLowerCase()), source: 'tsbpf' };
}

export function kernelAttachTypes(): { names: string[]; source: 'kernel-btf' | 'tsbpf' } {
  const k = kernelEnum('bpf_attach_type', 'BPF_');
  if (k) return { names: k, source: 'kernel-btf' };
  return { names: Object.keys(BPF_ATTACH_TYPE).map((n) => n.toLowerCase()), source: 'tsbpf' };
}

export interface FeatureReport {
  programTypes: Record<string, boolean>;
  mapTypes: Record<string, boolean>;
  /** Helpers available per program type (for the program types probed). */
  helpers: Record<string, string[]>;
  linkTypes: string[];
  attachTypes: string[];
  /** Where link/attach types came from. */
  typesSource: 'kernel-btf' | 'tsbpf';
}

let report: FeatureReport | undefined;

/**
 * Probe everything (once per process): program and map types, helpers for `helperProgTypes` (default
 * MAIN_HELPER_PROG_TYPES; 'all' for every program type that loads without an attach target).
 */
export function probeKernelFeatures(o: { helperProgTypes?: readonly number[] | 'all' } = {}): FeatureReport {
  if (report && o.helperProgTypes === undefined) return report;
  // Without the right to use bpf() at all, every probe would fail and some (the types that need an attach
  // target) would read as present: say so instead of printing a wrong table.
  const access = createMap({ type: BPF_MAP_TYPE.ARRAY, key: 4, value: 4, max: 1 });
  if (access === -E.EPERM) throw new BpfError('MAP_CREATE', E.EPERM, 'probing kernel features');
  const programTypes: Record<string, boolean> = {};
  for (const t of knownProgramTypes()) programTypes[t.name] = probeProgramType(t.type);
  const mapTypes: Record<string, boolean> = {};
  for (const t of knownMapTypes()) mapTypes[t.name] = probeMapType(t.type);
  const helperTypes = o.helperProgTypes === 'all'
    ? knownProgramTypes().map((t) => t.type).filter((t) => !NEEDS_TARGET.has(t))
    : (o.helperProgTypes ?? MAIN_HELPER_PROG_TYPES);
  const helpers: Record<string, string[]> = {};
  for (const t of helperTypes) {
    if (probeProgramType(t)) helpers[name(BPF_PROG_TYPE, t)] = probeHelpers(t);
  }
  const links = kernelLinkTypes();
  const attach = kernelAttachTypes();
  const r: FeatureReport = { programTypes, mapTypes, helpers, linkTypes: links.names, attachTypes: attach.names, typesSource: links.source };
  if (o.helperProgTypes === undefined) report = r;
  return r;
}

/** Close the probe BTF (kept open between map probes). Idempotent. */
export function closeProbeResources(): void {
  if (probeBtf) probeBtf.fd.close();
  probeBtf = undefined;
}
