// bpf(2): one generic entry point plus a typed wrapper per command tsbpf
// uses. Attrs are built in the native arena from the generated layouts; every
// pointer in an attr points into the same arena, so nothing the kernel reads
// or writes can be moved or freed by the GC during the call.

import { BPF_CMD } from './kernel-defs.generated.js';
import { arena, NR, rawSyscall3 } from './native.js';
import { layoutSize, writeFields, writeBytesField, readU32, readField, type FieldName, type LayoutName } from './layout.js';
import { BpfError, E } from './errors.js';
import { FD } from './fd.js';

export type BpfCmd = keyof typeof BPF_CMD;

/**
 * One bpf() call under construction. Reserve all arena bytes up front:
 * `new BpfCall(layout, extraBytes)` resets the arena and allocates the attr.
 */
export class BpfCall<L extends LayoutName> {
  readonly layout: L;
  readonly attrOff: number;
  readonly attrAddr: bigint;
  readonly size: number;

  constructor(layout: L, extraBytes = 0, size = layoutSize(layout)) {
    this.layout = layout;
    this.size = size;
    arena.reserve(size + extraBytes + 64);
    arena.reset();
    const a = arena.alloc(size);
    this.attrOff = a.off;
    this.attrAddr = a.addr;
  }

  set(values: Partial<Record<FieldName<L>, number | bigint | boolean>>): this {
    writeFields(arena.view, this.attrOff, this.layout, values);
    return this;
  }

  setName(field: FieldName<L>, name: string): this {
    writeBytesField(arena.view, this.attrOff, this.layout, field, Buffer.from(name, 'utf8'));
    return this;
  }

  /** Copy bytes into the arena; returns their address for a pointer field. */
  in(data: Uint8Array): bigint {
    return data.length === 0 ? 0n : arena.copyIn(data);
  }

  str(s: string): bigint {
    return arena.cString(s);
  }

  /** Reserve an output region; read it back with `read()` after the call. */
  out(size: number): { off: number; addr: bigint } {
    return arena.alloc(size);
  }

  read(region: { off: number }, size: number, into?: Buffer, intoOff = 0): Buffer {
    const src = arena.view.subarray(region.off, region.off + size);
    if (into) {
      into.set(src, intoOff);
      return into;
    }
    return Buffer.from(src);
  }

  get(name: FieldName<L>): number {
    return readU32(arena.view, this.attrOff, this.layout, name);
  }

  /** Run; returns the result or `-errno` (never throws for kernel errors). */
  tryRun(cmd: BpfCmd): number {
    return rawSyscall3(NR.bpf, BigInt(BPF_CMD[cmd]), this.attrAddr, BigInt(this.size));
  }

  /** Run; throws BpfError naming `context` on failure. Retries EAGAIN a few times. */
  run(cmd: BpfCmd, context?: string): number {
    let r = this.tryRun(cmd);
    for (let i = 0; r === -E.EAGAIN && i < 5; i++) r = this.tryRun(cmd);
    if (r < 0) throw new BpfError(cmd, -r, context);
    return r;
  }

  /** Run a command that returns a new fd. */
  runFd(cmd: BpfCmd, context?: string): FD {
    return new FD(this.run(cmd, context));
  }
}

// ---------------------------------------------------------------------------
// Maps

export interface MapCreateAttr {
  mapType: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags?: number;
  innerMapFd?: number;
  numaNode?: number;
  name?: string;
  ifindex?: number;
  btfFd?: number;
  btfKeyTypeId?: number;
  btfValueTypeId?: number;
  btfVmlinuxValueTypeId?: number;
  mapExtra?: bigint;
}

export function mapCreate(a: MapCreateAttr, context?: string): FD {
  const c = new BpfCall('bpf_attr.map_create');
  c.set({
    map_type: a.mapType,
    key_size: a.keySize,
    value_size: a.valueSize,
    max_entries: a.maxEntries,
    map_flags: a.flags ?? 0,
    inner_map_fd: a.innerMapFd ?? 0,
    numa_node: a.numaNode ?? 0,
    map_ifindex: a.ifindex ?? 0,
    btf_fd: a.btfFd ?? 0,
    btf_key_type_id: a.btfKeyTypeId ?? 0,
    btf_value_type_id: a.btfValueTypeId ?? 0,
    btf_vmlinux_value_type_id: a.btfVmlinuxValueTypeId ?? 0,
    map_extra: a.mapExtra ?? 0n,
  });
  if (a.name) c.setName('map_name', a.name);
  return c.runFd('MAP_CREATE', context);
}

const ELEM = 'bpf_attr.map_elem' as const;

/**
 * Look up `key`; the value is written into `out` (at `outOff`). Returns false
 * when the key does not exist (ENOENT). Sizes are checked by the caller.
 */
export function mapLookup(fd: number, key: Uint8Array, out: Buffer, outOff: number, valueSize: number, flags = 0, context?: string, andDelete = false): boolean {
  const c = new BpfCall(ELEM, key.length + valueSize + 16);
  const k = c.in(key);
  const v = c.out(valueSize);
  c.set({ map_fd: fd, key: k, value: v.addr, flags });
  const cmd = andDelete ? 'MAP_LOOKUP_AND_DELETE_ELEM' : 'MAP_LOOKUP_ELEM';
  const r = c.tryRun(cmd);
  if (r === -E.ENOENT) return false;
  if (r < 0) throw new BpfError(cmd, -r, context);
  c.read(v, valueSize, out, outOff);
  return true;
}

/**
 * Bloom filter "peek": MAP_LOOKUP_ELEM with no key, the value copied *in*. Returns false when the
 * value is certainly absent (ENOENT).
 */
export function mapPeekValue(fd: number, value: Uint8Array, context?: string): boolean {
  const c = new BpfCall(ELEM, value.length + 16);
  const v = c.in(value);
  c.set({ map_fd: fd, key: 0n, value: v });
  const r = c.tryRun('MAP_LOOKUP_ELEM');
  if (r === -E.ENOENT) return false;
  if (r < 0) throw new BpfError('MAP_LOOKUP_ELEM', -r, context);
  return true;
}

export function mapUpdate(fd: number, key: Uint8Array, value: Uint8Array, flags: number, context?: string): void {
  const c = new BpfCall(ELEM, key.length + value.length + 16);
  const k = c.in(key);
  const v = c.in(value);
  c.set({ map_fd: fd, key: k, value: v, flags });
  c.run('MAP_UPDATE_ELEM', context);
}

/** Returns false when the key did not exist. */
export function mapDelete(fd: number, key: Uint8Array, context?: string): boolean {
  const c = new BpfCall(ELEM, key.length + 8);
  const k = c.in(key);
  c.set({ map_fd: fd, key: k });
  const r = c.tryRun('MAP_DELETE_ELEM');
  if (r === -E.ENOENT) return false;
  if (r < 0) throw new BpfError('MAP_DELETE_ELEM', -r, context);
  return true;
}

/** Next key after `key` (or the first key when `key` is null). Returns false at the end. */
export function mapNextKey(fd: number, key: Uint8Array | null, out: Buffer, keySize: number, context?: string): boolean {
  const c = new BpfCall(ELEM, keySize * 2 + 16);
  const k = key ? c.in(key) : 0n;
  const n = c.out(keySize);
  c.set({ map_fd: fd, key: k, next_key: n.addr });
  const r = c.tryRun('MAP_GET_NEXT_KEY');
  if (r === -E.ENOENT) return false;
  if (r < 0) throw new BpfError('MAP_GET_NEXT_KEY', -r, context);
  c.read(n, keySize, out, 0);
  return true;
}

export function mapFreeze(fd: number, context?: string): void {
  const c = new BpfCall(ELEM);
  c.set({ map_fd: fd });
  c.run('MAP_FREEZE', context);
}

// ---------------------------------------------------------------------------
// BTF

/** Load raw BTF. On failure with a log buffer, returns the log on the thrown error's `log`. */
export function btfLoad(data: Uint8Array, logSize = 0): { fd: FD } | { errno: number; log: string } {
  const c = new BpfCall('bpf_attr.btf_load', data.length + logSize + 16);
  const d = c.in(data);
  const log = logSize > 0 ? c.out(logSize) : undefined;
  c.set({ btf: d, btf_size: data.length, btf_log_level: log ? 1 : 0, btf_log_size: logSize, btf_log_buf: log?.addr ?? 0n });
  let r = c.tryRun('BTF_LOAD');
  for (let i = 0; r === -E.EAGAIN && i < 5; i++) r = c.tryRun('BTF_LOAD');
  if (r >= 0) return { fd: new FD(r) };
  return { errno: -r, log: log ? cString(c.read(log, logSize)) : '' };
}

function cString(b: Buffer): string {
  const z = b.indexOf(0);
  return b.toString('utf8', 0, z < 0 ? b.length : z);
}

// ---------------------------------------------------------------------------
// Programs

export interface ProgLoadAttr {
  progType: number;
  insns: Uint8Array;
  license: string;
  name?: string;
  kernVersion?: number;
  flags?: number;
  expectedAttachType?: number;
  btfFd?: number;
  funcInfo?: Uint8Array;
  funcInfoRecSize?: number;
  lineInfo?: Uint8Array;
  lineInfoRecSize?: number;
  attachBtfId?: number;
  attachBtfObjFd?: number;
  attachProgFd?: number;
  fdArray?: Uint8Array;
  ifindex?: number;
}

export interface ProgLoadResult {
  fd?: FD;
  errno: number;
  log: string;
  /** Size the kernel says the full log needs (0 when the kernel does not report it). */
  logTrueSize: number;
}

/** One BPF_PROG_LOAD attempt, with a verifier log of `logSize` bytes at `logLevel` (0: no log). */
export function progLoad(a: ProgLoadAttr, logLevel: number, logSize: number): ProgLoadResult {
  const extra = a.insns.length + a.license.length + 1 + (a.funcInfo?.length ?? 0) + (a.lineInfo?.length ?? 0) +
    (a.fdArray?.length ?? 0) + (logLevel ? logSize : 0) + 64;
  const c = new BpfCall('bpf_attr.prog_load', extra);
  const insns = c.in(a.insns);
  const lic = c.str(a.license);
  const fi = a.funcInfo?.length ? c.in(a.funcInfo) : 0n;
  const li = a.lineInfo?.length ? c.in(a.lineInfo) : 0n;
  const fdArr = a.fdArray?.length ? c.in(a.fdArray) : 0n;
  const log = logLevel ? c.out(logSize) : undefined;
  c.set({
    prog_type: a.progType,
    insn_cnt: a.insns.length / 8,
    insns,
    license: lic,
    log_level: logLevel,
    log_size: log ? logSize : 0,
    log_buf: log?.addr ?? 0n,
    kern_version: a.kernVersion ?? 0,
    prog_flags: a.flags ?? 0,
    expected_attach_type: a.expectedAttachType ?? 0,
    prog_btf_fd: a.btfFd ?? 0,
    func_info_rec_size: fi ? (a.funcInfoRecSize ?? 8) : 0,
    func_info: fi,
    func_info_cnt: fi ? a.funcInfo!.length / (a.funcInfoRecSize ?? 8) : 0,
    line_info_rec_size: li ? (a.lineInfoRecSize ?? 16) : 0,
    line_info: li,
    line_info_cnt: li ? a.lineInfo!.length / (a.lineInfoRecSize ?? 16) : 0,
    attach_btf_id: a.attachBtfId ?? 0,
    fd_array: fdArr,
    prog_ifindex: a.ifindex ?? 0,
  });
  if (a.attachProgFd) c.set({ attach_prog_fd: a.attachProgFd });
  else if (a.attachBtfObjFd) c.set({ attach_btf_obj_fd: a.attachBtfObjFd });
  if (a.name) c.setName('prog_name', a.name);
  let r = c.tryRun('PROG_LOAD');
  for (let i = 0; r === -E.EAGAIN && i < 5; i++) r = c.tryRun('PROG_LOAD');
  const logText = log ? cString(c.read(log, logSize)) : '';
  const logTrueSize = c.get('log_true_size');
  arena.trim();
  if (r >= 0) return { fd: new FD(r), errno: 0, log: logText, logTrueSize };
  return { errno: -r, log: logText, logTrueSize };
}

export interface TestRunAttr {
  dataIn?: Uint8Array;
  dataSizeOut?: number;
  ctxIn?: Uint8Array;
  ctxSizeOut?: number;
  repeat?: number;
  flags?: number;
  cpu?: number;
  batchSize?: number;
}

export interface TestRunResult {
  retval: number;
  duration: number;
  dataOut?: Buffer;
  ctxOut?: Buffer;
}

export function progTestRun(progFd: number, a: TestRunAttr, context?: string): TestRunResult {
  const dataOutSize = a.dataSizeOut ?? 0;
  const ctxOutSize = a.ctxSizeOut ?? 0;
  const c = new BpfCall('bpf_attr.test', (a.dataIn?.length ?? 0) + dataOutSize + (a.ctxIn?.length ?? 0) + ctxOutSize + 64);
  const din = a.dataIn ? c.in(a.dataIn) : 0n;
  const dout = dataOutSize ? c.out(dataOutSize) : undefined;
  const cin = a.ctxIn ? c.in(a.ctxIn) : 0n;
  const cout = ctxOutSize ? c.out(ctxOutSize) : undefined;
  c.set({
    prog_fd: progFd,
    data_in: din,
    data_size_in: a.dataIn?.length ?? 0,
    data_out: dout?.addr ?? 0n,
    data_size_out: dataOutSize,
    ctx_in: cin,
    ctx_size_in: a.ctxIn?.length ?? 0,
    ctx_out: cout?.addr ?? 0n,
    ctx_size_out: ctxOutSize,
    repeat: a.repeat ?? 0,
    flags: a.flags ?? 0,
    cpu: a.cpu ?? 0,
    batch_size: a.batchSize ?? 0,
  });
  c.run('PROG_TEST_RUN', context);
  const res: TestRunResult = { retval: c.get('retval'), duration: c.get('duration') };
  if (dout) res.dataOut = c.read(dout, Math.min(c.get('data_size_out'), dataOutSize));
  if (cout) res.ctxOut = c.read(cout, Math.min(c.get('ctx_size_out'), ctxOutSize));
  return res;
}

// ---------------------------------------------------------------------------
// Object info, ids, pinning

/**
 * BPF_OBJ_GET_INFO_BY_FD into a zeroed `size`-byte struct. `prefill` writes
 * input fields first (e.g. pointers and counts for xlated instructions);
 * `extraOut` lists output buffers the prefill points into.
 */
export function objGetInfo(
  fd: number,
  size: number,
  extraBytes = 0,
  prefill?: (info: { view: Buffer; off: number }, out: (n: number) => bigint) => void,
  context?: string,
): { info: Buffer; outs: Buffer[] } {
  const c = new BpfCall('bpf_attr.info', size + extraBytes + 64);
  const inf = c.out(size);
  const regions: { off: number; size: number }[] = [];
  if (prefill) {
    prefill({ view: arenaView(), off: inf.off }, (n: number) => {
      const r = c.out(n);
      regions.push({ off: r.off, size: n });
      return r.addr;
    });
  }
  c.set({ bpf_fd: fd, info_len: size, info: inf.addr });
  c.run('OBJ_GET_INFO_BY_FD', context);
  return { info: c.read(inf, size), outs: regions.map((r) => c.read(r, r.size)) };
}

function arenaView(): Buffer {
  return arena.view;
}

export function objPin(fd: number, path: string, context?: string): void {
  const c = new BpfCall('bpf_attr.obj', path.length * 4 + 8);
  c.set({ pathname: c.str(path), bpf_fd: fd });
  c.run('OBJ_PIN', context);
}

export function objGet(path: string, flags = 0, context?: string): FD {
  const c = new BpfCall('bpf_attr.obj', path.length * 4 + 8);
  c.set({ pathname: c.str(path), file_flags: flags });
  return c.runFd('OBJ_GET', context);
}

/** Next id after `start` for PROG/MAP/LINK/BTF_GET_NEXT_ID; null at the end. */
export function getNextId(cmd: 'PROG_GET_NEXT_ID' | 'MAP_GET_NEXT_ID' | 'LINK_GET_NEXT_ID' | 'BTF_GET_NEXT_ID', start: number): number | null {
  const c = new BpfCall('bpf_attr.get_id');
  c.set({ start_id: start });
  const r = c.tryRun(cmd);
  if (r === -E.ENOENT) return null;
  if (r < 0) throw new BpfError(cmd, -r);
  return c.get('next_id');
}

export function getFdById(cmd: 'PROG_GET_FD_BY_ID' | 'MAP_GET_FD_BY_ID' | 'LINK_GET_FD_BY_ID' | 'BTF_GET_FD_BY_ID', id: number, context?: string): FD {
  const c = new BpfCall('bpf_attr.get_id');
  // start_id, prog_id, map_id, btf_id and link_id share one u32 slot.
  c.set({ start_id: id });
  return c.runFd(cmd, context);
}

// ---------------------------------------------------------------------------
// Attachment

export function rawTracepointOpen(progFd: number, name: string | null, context?: string): FD {
  const c = new BpfCall('bpf_attr.raw_tracepoint', (name?.length ?? 0) + 16);
  c.set({ name: name ? c.str(name) : 0n, prog_fd: progFd });
  return c.runFd('RAW_TRACEPOINT_OPEN', context);
}

export interface LinkCreateAttr {
  progFd: number;
  /** The target fd (cgroup, netns, perf event, program for freplace), or 0. */
  targetFd?: number;
  /** The target interface (XDP, tcx, netkit); shares its slot with targetFd. */
  targetIfindex?: number;
  attachType: number;
  flags?: number;
  targetBtfId?: number;
  bpfCookie?: bigint;
  /** BPF_TRACE_ITER: the bpf_iter_link_info bytes (map fd, cgroup, task). */
  iterInfo?: Uint8Array;
  /** Other fields of the attach-type union, by their layout name (`'tcx.relative_fd'`, `'netfilter.pf'`). */
  fields?: Partial<Record<FieldName<'bpf_attr.link_create'>, number | bigint>>;
  /** Pointer fields of the union: the bytes are copied next to the attr and the field gets their address. */
  pointers?: Partial<Record<FieldName<'bpf_attr.link_create'>, Uint8Array>>;
}

function pointersSize(p?: Partial<Record<string, Uint8Array>>): number {
  let n = 0;
  for (const v of Object.values(p ?? {})) n += (v?.length ?? 0) + 16;
  return n;
}

/** BPF_LINK_CREATE; returns the link fd. */
export function linkCreate(a: LinkCreateAttr, context?: string): FD {
  const c = new BpfCall('bpf_attr.link_create', pointersSize(a.pointers) + (a.iterInfo?.length ?? 0) + 16);
  c.set({ prog_fd: a.progFd, attach_type: a.attachType, flags: a.flags ?? 0 });
  if (a.targetIfindex) c.set({ target_ifindex: a.targetIfindex });
  else c.set({ target_fd: a.targetFd ?? 0 });
  if (a.targetBtfId) c.set({ target_btf_id: a.targetBtfId });
  if (a.bpfCookie) c.set({ 'perf_event.bpf_cookie': a.bpfCookie });
  if (a.iterInfo) c.set({ iter_info: c.in(a.iterInfo), iter_info_len: a.iterInfo.length });
  if (a.fields) c.set(a.fields);
  for (const [name, bytes] of Object.entries(a.pointers ?? {})) {
    if (bytes) c.set({ [name]: c.in(bytes) } as Partial<Record<FieldName<'bpf_attr.link_create'>, bigint>>);
  }
  return c.runFd('LINK_CREATE', context);
}

/**
 * BPF_LINK_UPDATE: swap the link's program for `newProgFd`. With `oldProgFd` the kernel swaps only if the
 * link still runs that program (BPF_F_REPLACE), else fails with EPERM.
 */
export function linkUpdate(linkFd: number, newProgFd: number, oldProgFd?: number, context?: string): void {
  const c = new BpfCall('bpf_attr.link_update');
  c.set({ link_fd: linkFd, new_prog_fd: newProgFd });
  if (oldProgFd !== undefined) c.set({ old_prog_fd: oldProgFd, flags: BPF_F_REPLACE });
  c.run('LINK_UPDATE', context);
}

/** BPF_F_REPLACE: for link updates and cgroup attach, replace only the named program. */
export const BPF_F_REPLACE = 1 << 2;

export interface ProgAttachAttr {
  targetFd: number;
  progFd: number;
  attachType: number;
  /** BPF_F_ALLOW_OVERRIDE (1), BPF_F_ALLOW_MULTI (2), BPF_F_REPLACE (4), BPF_F_BEFORE/AFTER (8/16), ... */
  flags?: number;
  replaceProgFd?: number;
  relativeFd?: number;
  expectedRevision?: bigint;
}

/** BPF_PROG_ATTACH: the fd-less attach of cgroup, sockmap, flow dissector, lirc and legacy tc programs. */
export function progAttach(a: ProgAttachAttr, context?: string): void {
  const c = new BpfCall('bpf_attr.prog_attach');
  c.set({ target_fd: a.targetFd, attach_bpf_fd: a.progFd, attach_type: a.attachType, attach_flags: a.flags ?? 0 });
  if (a.replaceProgFd !== undefined) c.set({ replace_bpf_fd: a.replaceProgFd });
  if (a.relativeFd !== undefined) c.set({ relative_fd: a.relativeFd });
  if (a.expectedRevision !== undefined) c.set({ expected_revision: a.expectedRevision });
  c.run('PROG_ATTACH', context);
}

/** BPF_PROG_DETACH of `progFd` (or, for single-program hooks, whatever is attached when progFd is 0). */
export function progDetach(targetFd: number, attachType: number, progFd = 0, context?: string): void {
  const c = new BpfCall('bpf_attr.prog_attach');
  c.set({ target_fd: targetFd, attach_bpf_fd: progFd, attach_type: attachType });
  c.run('PROG_DETACH', context);
}

/** BPF_PROG_QUERY: ids of the programs attached to `targetFd` for `attachType` (up to `max`). */
export function progQuery(targetFd: number, attachType: number, max = 64, context?: string): { ids: number[]; attachFlags: number; revision: bigint } {
  const c = new BpfCall('bpf_attr.query', max * 4 + 16);
  const ids = c.out(max * 4);
  c.set({ target_fd: targetFd, attach_type: attachType, prog_ids: ids.addr, prog_cnt: max });
  c.run('PROG_QUERY', context);
  const n = Math.min(c.get('prog_cnt'), max);
  const raw = c.read(ids, n * 4);
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(raw.readUInt32LE(i * 4));
  const revision = BigInt(readField(arena.view, c.attrOff, 'bpf_attr.query', 'revision'));
  return { ids: out, attachFlags: c.get('attach_flags'), revision };
}

/** BPF_ITER_CREATE: an fd whose read() runs the iterator program of `linkFd`. */
export function iterCreate(linkFd: number, context?: string): FD {
  const c = new BpfCall('bpf_attr.iter_create');
  c.set({ link_fd: linkFd });
  return c.runFd('ITER_CREATE', context);
}

/** BPF_ENABLE_STATS: run-time statistics (run_time_ns, run_cnt) are collected while the fd is open. */
export function enableStats(type: number, context?: string): FD {
  const c = new BpfCall('bpf_attr.enable_stats');
  c.set({ type });
  return c.runFd('ENABLE_STATS', context);
}

export function linkDetach(linkFd: number, context?: string): void {
  const c = new BpfCall('bpf_attr.link_detach');
  c.set({ link_fd: linkFd });
  c.run('LINK_DETACH', context);
}
