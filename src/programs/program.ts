// A BPF program in the kernel: loading (with verifier-log retries), info,
// BPF_PROG_TEST_RUN.

import {
  BPF_PROG_TYPE, FD, progLoad, progTestRun, objGetInfo, objPin, objGet, getFdById, layoutSize, readU32, readU64,
  readBytesField, readField, writeFields, E, errnoName, BpfError, type TestRunResult,
} from '../syscall/index.js';
import { ClosedError, NotSupportedError, TsbpfError } from '../errors.js';
import { checkBpffsPath } from '../maps/pin.js';
import { Btf } from '../btf/btf.js';
import { loadKernelBtf } from '../btf/kernel.js';
import type { LineInfo } from '../btf/types.js';

export type { TestRunResult };

/** BPF_PROG_TEST_RUN flags (include/uapi/linux/bpf.h). */
export const TestRunFlags = {
  /** BPF_F_TEST_RUN_ON_CPU: run on `cpu` (raw_tp programs). Set for you when `cpu` is given. */
  onCpu: 1,
  /** BPF_F_TEST_XDP_LIVE_FRAMES: XDP frames really go out (XDP_TX, XDP_REDIRECT) or up the stack (XDP_PASS). */
  xdpLiveFrames: 2,
  /** BPF_F_TEST_SKB_CHECKSUM_COMPLETE (6.11+). */
  skbChecksumComplete: 4,
} as const;

export const ProgramType = BPF_PROG_TYPE;

const TYPE_NAMES = new Map<number, string>(Object.entries(BPF_PROG_TYPE).map(([k, v]) => [v as number, k]));
export function programTypeName(type: number): string {
  return TYPE_NAMES.get(type) ?? `UNKNOWN(${type})`;
}

/** The verifier rejected a program. `log` has the whole verifier log. */
export class VerifierError extends TsbpfError {
  readonly program: string;
  readonly errno: string;
  readonly errnoCode: number;
  readonly log: string;
  /** Index of the instruction the verifier stopped at, when the log says. */
  readonly insn?: number;
  /** Source position of that instruction, from line_info. */
  readonly source?: { file: string; line: number; column: number; text: string };
  /** true when the log did not fit even the largest buffer tried. */
  readonly truncated: boolean;

  /** What tsbpf knows about the cause beyond the log (e.g. the CO-RE relocation that failed). */
  readonly note?: string;

  constructor(program: string, errnoCode: number, log: string, truncated: boolean, lineInfos: LineInfo[], note?: string) {
    const lines = log.trimEnd().split('\n');
    const insn = failingInsn(lines);
    const src = insn === undefined ? undefined : lineFor(lineInfos, insn);
    const tail = lines.slice(-12).map((l) => '  ' + l).join('\n');
    const where = src ? `\n  at ${src.file}:${src.line}:${src.column}: ${src.text.trim()}` : '';
    super(
      `program "${program}": the verifier rejected it (${errnoName(errnoCode)})${note ? `: ${note}` : ''}${where}\n` +
        (log ? `verifier log (last lines; full log on .log):\n${tail}` : '(the kernel gave no verifier log)') +
        (truncated ? '\n  (log truncated)' : ''),
    );
    this.program = program;
    this.errno = errnoName(errnoCode);
    this.errnoCode = errnoCode;
    this.log = log;
    this.insn = insn;
    this.source = src;
    this.truncated = truncated;
    this.note = note;
  }

  /** The same error with an explanation added to its first line. */
  withNote(note: string, lineInfos: LineInfo[]): VerifierError {
    return new VerifierError(this.program, this.errnoCode, this.log, this.truncated, lineInfos, note);
  }
}

/** The instruction index the verifier last printed before giving up. */
function failingInsn(lines: string[]): number | undefined {
  for (let i = lines.length - 1; i >= 0; i--) {
    const m = /^(\d+): \([0-9a-f]{2}\)/.exec(lines[i]);
    if (m) return Number(m[1]);
  }
  return undefined;
}

function lineFor(infos: LineInfo[], insn: number): { file: string; line: number; column: number; text: string } | undefined {
  let best: LineInfo | undefined;
  for (const li of infos) {
    if (li.insnOff <= insn && (!best || li.insnOff >= best.insnOff)) best = li;
  }
  if (!best || best.line === 0) return undefined;
  return { file: best.fileName, line: best.line, column: best.column, text: best.lineText };
}

export interface ProgramLoadOptions {
  name: string;
  type: number;
  insns: Uint8Array;
  license: string;
  expectedAttachType?: number;
  kernelVersion?: number;
  flags?: number;
  btfFd?: number;
  /** Marshalled bpf_func_info / bpf_line_info records (offsets in instructions). */
  funcInfo?: Uint8Array;
  lineInfo?: Uint8Array;
  /** Line info as data, used to point verifier errors at source lines. */
  lineInfos?: LineInfo[];
  attachBtfId?: number;
  attachBtfObjFd?: number;
  attachProgFd?: number;
  fdArray?: Uint8Array;
  /** Always load with this verifier log level (1 or 2): the log is kept on `Program.verifierLog`. */
  logLevel?: number;
  /** Initial log buffer size for the retry with a log (default 256 KiB). */
  logSize?: number;
}

const MAX_LOG = 64 << 20;

export interface ProgramInfo {
  id: number;
  type: number;
  name: string;
  tag: string;
  /** Instructions after the verifier's rewrites. */
  xlatedInsns: number;
  jitedBytes: number;
  loadTime: bigint;
  runTimeNs: bigint;
  runCount: bigint;
  mapIds: number[];
  btfId: number;
  verifiedInsns: number;
  /** Runs skipped because the program was already running on the CPU (5.12+). */
  recursionMisses: bigint;
  /** Number of functions of the JITed image (the program and its subprograms). */
  jitedFuncs: number;
  lineInfoCount: number;
  funcInfoCount: number;
  /** BTF id of the attach target (fentry, freplace, lsm, ...) and the id of the BTF object holding it. */
  attachBtfId: number;
  attachBtfObjId: number;
  gplCompatible: boolean;
  createdByUid: number;
}

/** Run statistics (collected while BPF_ENABLE_STATS or kernel.bpf_stats_enabled is on). */
export interface ProgramStats {
  runCount: bigint;
  runTimeNs: bigint;
  recursionMisses: bigint;
}

/** The JITed code and where each function and source line starts in it. */
export interface JitedInfo {
  /** Machine code of all functions, concatenated (empty when the kernel hides it: kptr_restrict). */
  image: Buffer;
  /** Length in bytes of each function's code, in image order. */
  funcLens: number[];
  /** Kernel address of each function. */
  ksyms: bigint[];
  /** Kernel address of the code of each line_info record (same order as the program's line info). */
  lineAddrs: bigint[];
}

export interface RunOptions {
  /** Packet data for networking programs. */
  data?: Uint8Array;
  /** Room for data out (default: data length + 256 when data is given). */
  dataOutSize?: number;
  /** Context struct passed in (e.g. args of a raw_tp or `syscall` program). */
  ctx?: Uint8Array;
  ctxOutSize?: number;
  repeat?: number;
  /** TestRunFlags bits. */
  flags?: number;
  /** Run on this CPU (raw_tp programs; sets TestRunFlags.onCpu). */
  cpu?: number;
  /** With TestRunFlags.xdpLiveFrames: frames per batch (default: the kernel's 64). */
  batchSize?: number;
}

/** Largest dataOutSize/ctxOutSize of a test run. */
const MAX_RUN_OUT = 64 << 20;

export class Program {
  readonly name: string;
  readonly type: number;
  /** Verifier log, when loaded with `logLevel`. */
  readonly verifierLog: string;
  /**
   * The attach type given at load (BPF_ATTACH_TYPE_*, 0 when none): attach helpers take their default hook
   * from it. Unknown (0) for programs opened by id or pin: the kernel does not report it.
   */
  readonly expectedAttachType: number;
  #fd: FD;

  constructor(fd: FD, name: string, type: number, verifierLog = '', expectedAttachType = 0) {
    this.#fd = fd;
    this.name = name;
    this.type = type;
    this.verifierLog = verifierLog;
    this.expectedAttachType = expectedAttachType;
  }

  /** Load a program: first without a log (fast), then again with a growing log to explain a failure. */
  static load(o: ProgramLoadOptions): Program {
    const attr = {
      progType: o.type,
      insns: o.insns,
      license: o.license,
      name: kernelProgName(o.name),
      kernVersion: o.kernelVersion,
      flags: o.flags,
      expectedAttachType: o.expectedAttachType,
      btfFd: o.btfFd,
      funcInfo: o.funcInfo,
      lineInfo: o.lineInfo,
      attachBtfId: o.attachBtfId,
      attachBtfObjFd: o.attachBtfObjFd,
      attachProgFd: o.attachProgFd,
      fdArray: o.fdArray,
    };
    let size = o.logSize ?? 256 * 1024;
    let level = o.logLevel ?? 0;
    let r = progLoad(attr, level, level ? size : 0);
    if (r.fd) return new Program(r.fd, o.name, o.type, r.log, o.expectedAttachType ?? 0);
    const ctx = `program "${o.name}" (${programTypeName(o.type)})`;
    if (r.errno === E.EPERM) {
      // Not a verifier matter: privileges, or the kernel refusing the program type before verifying.
      throw new BpfError('PROG_LOAD', r.errno, ctx);
    }
    level ||= 1;
    for (;;) {
      r = progLoad(attr, level, size);
      if (r.fd) {
        // Loaded with a log after failing without one: a transient failure. Keep it.
        return new Program(r.fd, o.name, o.type, r.log, o.expectedAttachType ?? 0);
      }
      const needMore = r.errno === E.ENOSPC || (r.logTrueSize > size);
      if (needMore && size < MAX_LOG) {
        size = Math.min(MAX_LOG, r.logTrueSize > size ? r.logTrueSize + 1 : size * 4);
        continue;
      }
      if (!r.log.trim()) {
        // No log at all: the kernel refused the attributes or the program type before the verifier
        // ran (E2BIG: a field this kernel does not know; ENOTSUPP/EOPNOTSUPP: unsupported type).
        throw new BpfError('PROG_LOAD', r.errno, ctx,
          r.errno === E.EINVAL ? 'the kernel refused the program type, attach type or flags before verifying it' : undefined);
      }
      throw new VerifierError(o.name, r.errno, r.log, needMore, o.lineInfos ?? []);
    }
  }

  static fromFd(fd: FD): Program {
    const info = readProgramInfo(fd.value);
    return new Program(fd, info.name, info.type);
  }

  static fromId(id: number): Program {
    return Program.fromFd(getFdById('PROG_GET_FD_BY_ID', id, `program id ${id}`));
  }

  static fromPin(path: string): Program {
    checkBpffsPath(path);
    return Program.fromFd(objGet(path, 0, `pinned program ${path}`));
  }

  get fd(): number {
    try {
      return this.#fd.value;
    } catch {
      throw new ClosedError(`program "${this.name}" (${programTypeName(this.type)}) is closed: it can no longer be used (load it again, or close it later)`);
    }
  }

  get closed(): boolean {
    return this.#fd.closed;
  }

  info(): ProgramInfo {
    return readProgramInfo(this.fd);
  }

  /**
   * The instructions as the kernel holds them after verification and rewrites
   * (BPF_OBJ_GET_INFO_BY_FD xlated_prog_insns): map fds appear as map ids.
   */
  xlated(): Buffer {
    return readXlated(this.fd);
  }

  /** Run once (or `repeat` times) with BPF_PROG_TEST_RUN. */
  run(o: RunOptions = {}): TestRunResult {
    if (o.data !== undefined && !(o.data instanceof Uint8Array)) throw new TypeError(`program "${this.name}": run data must be a Buffer/Uint8Array`);
    if (o.ctx !== undefined && !(o.ctx instanceof Uint8Array)) throw new TypeError(`program "${this.name}": run ctx must be a Buffer/Uint8Array`);
    for (const k of ['repeat', 'dataOutSize', 'ctxOutSize', 'cpu', 'batchSize', 'flags'] as const) {
      const v = o[k];
      if (v !== undefined && (!Number.isInteger(v) || v < 0 || v > 0xffffffff)) {
        throw new TypeError(`program "${this.name}": run option ${k} must be an integer in [0, 2^32), got ${v}`);
      }
    }
    // Room for output is allocated before the call: a size no test run can fill is refused here
    // instead of failing deep in the allocator (the kernel caps packets far below this).
    for (const k of ['dataOutSize', 'ctxOutSize'] as const) {
      const v = o[k];
      if (v !== undefined && v > MAX_RUN_OUT) {
        throw new TypeError(`program "${this.name}": run option ${k} is ${v} bytes; at most ${MAX_RUN_OUT} (64 MiB) is accepted`);
      }
    }
    let flags = o.flags ?? 0;
    if (o.cpu !== undefined) flags |= TestRunFlags.onCpu;
    const live = (flags & TestRunFlags.xdpLiveFrames) !== 0;
    if (live && (o.dataOutSize || o.ctxOutSize)) {
      throw new TypeError(`program "${this.name}": live XDP frames give no data or ctx back (no dataOutSize/ctxOutSize)`);
    }
    if (o.batchSize !== undefined && !live) throw new TypeError(`program "${this.name}": batchSize needs TestRunFlags.xdpLiveFrames`);
    const ctx = `program "${this.name}" (${programTypeName(this.type)}): test run`;
    const dataSizeOut = o.dataOutSize ?? (o.data && !live ? o.data.length + 256 : 0);
    try {
      return progTestRun(
        this.fd,
        { dataIn: o.data, dataSizeOut, ctxIn: o.ctx, ctxSizeOut: o.ctxOutSize, repeat: o.repeat, flags, cpu: o.cpu, batchSize: o.batchSize },
        ctx,
      );
    } catch (e) {
      if (e instanceof BpfError && e.errnoCode === E.ENOSPC) {
        throw new BpfError('PROG_TEST_RUN', e.errnoCode, ctx, `the output does not fit: raise dataOutSize (${dataSizeOut}) or ctxOutSize (${o.ctxOutSize ?? 0})`);
      }
      if (e instanceof BpfError && (e.errnoCode === E.ENOTSUP || e.errnoCode === 524)) {
        throw new NotSupportedError(`BPF_PROG_TEST_RUN of ${programTypeName(this.type)} programs${flags ? ` with flags 0x${flags.toString(16)}` : ''}`, undefined, e.message);
      }
      throw e;
    }
  }

  /** Run statistics from bpf_prog_info (zero unless stats are enabled: see enableStats()). */
  stats(): ProgramStats {
    const i = readProgramInfo(this.fd);
    return { runCount: i.runCount, runTimeNs: i.runTimeNs, recursionMisses: i.recursionMisses };
  }

  /** The JITed machine code of the program (empty when not JITed or hidden by kernel.kptr_restrict). */
  jited(): Buffer {
    return readJited(this.fd).image;
  }

  /** JITed code with function lengths and addresses and the address of each source line. */
  jitedInfo(): JitedInfo {
    return readJited(this.fd);
  }

  /** The BTF the program was loaded with (its func and line info, and the functions freplace can target). */
  btf(): Btf {
    const id = this.info().btfId;
    if (!id) throw new TsbpfError(`program "${this.name}" was loaded without BTF`);
    return readBtfById(id);
  }

  pin(path: string): void {
    const fd = this.fd; // closed: ClosedError before the path is looked at
    checkBpffsPath(path, { pin: true });
    objPin(fd, path, `program "${this.name}": pin to ${path}`);
  }

  clone(): Program {
    this.fd; // ClosedError naming the program, not the fd
    return new Program(this.#fd.dup(), this.name, this.type, this.verifierLog, this.expectedAttachType);
  }

  close(): void {
    this.#fd.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** Kernel program names: at most 15 chars of [A-Za-z0-9_.]. */
export function kernelProgName(name: string): string {
  return name.replace(/[^A-Za-z0-9_.]/g, '_').slice(0, 15);
}

/** Translated instructions of any program fd. */
export function readXlated(fd: number): Buffer {
  const L = 'bpf_prog_info' as const;
  const size = layoutSize(L);
  const len = readU32(objGetInfo(fd, size).info, 0, L, 'xlated_prog_len');
  if (len === 0) return Buffer.alloc(0);
  const r = objGetInfo(fd, size, len + 8, (inf, out) => {
    writeFields(inf.view, inf.off, L, { xlated_prog_len: len, xlated_prog_insns: out(len) });
  });
  return r.outs[0];
}

export function readProgramInfo(fd: number): ProgramInfo {
  const L = 'bpf_prog_info' as const;
  const size = layoutSize(L);
  // First pass learns how many map ids there are; second fetches them.
  const first = objGetInfo(fd, size).info;
  const nrMaps = readU32(first, 0, L, 'nr_map_ids');
  let mapIds: number[] = [];
  let info = first;
  if (nrMaps > 0) {
    const r = objGetInfo(fd, size, nrMaps * 4 + 8, (inf, out) => {
      const addr = out(nrMaps * 4);
      writeFields(inf.view, inf.off, L, { nr_map_ids: nrMaps, map_ids: addr });
    });
    info = r.info;
    const ids = r.outs[0];
    mapIds = Array.from({ length: nrMaps }, (_, i) => ids.readUInt32LE(i * 4));
  }
  const nameBytes = readBytesField(info, 0, L, 'name');
  const z = nameBytes.indexOf(0);
  return {
    id: readU32(info, 0, L, 'id'),
    type: readU32(info, 0, L, 'type'),
    name: nameBytes.toString('utf8', 0, z < 0 ? nameBytes.length : z),
    tag: readBytesField(info, 0, L, 'tag').toString('hex'),
    xlatedInsns: readU32(info, 0, L, 'xlated_prog_len') / 8,
    jitedBytes: readU32(info, 0, L, 'jited_prog_len'),
    loadTime: readU64(info, 0, L, 'load_time'),
    runTimeNs: readU64(info, 0, L, 'run_time_ns'),
    runCount: readU64(info, 0, L, 'run_cnt'),
    mapIds,
    btfId: readU32(info, 0, L, 'btf_id'),
    verifiedInsns: readU32(info, 0, L, 'verified_insns'),
    recursionMisses: readU64(info, 0, L, 'recursion_misses'),
    jitedFuncs: readU32(info, 0, L, 'nr_jited_func_lens'),
    lineInfoCount: readU32(info, 0, L, 'nr_line_info'),
    funcInfoCount: readU32(info, 0, L, 'nr_func_info'),
    attachBtfId: readU32(info, 0, L, 'attach_btf_id'),
    attachBtfObjId: readU32(info, 0, L, 'attach_btf_obj_id'),
    gplCompatible: Number(readField(info, 0, L, 'gpl_compatible')) !== 0,
    createdByUid: readU32(info, 0, L, 'created_by_uid'),
  };
}

/** JITed image, function lengths and addresses, and line addresses of any program fd. */
export function readJited(fd: number): JitedInfo {
  const L = 'bpf_prog_info' as const;
  const size = layoutSize(L);
  const first = objGetInfo(fd, size).info;
  const len = readU32(first, 0, L, 'jited_prog_len');
  const nFuncs = readU32(first, 0, L, 'nr_jited_func_lens');
  const nKsyms = readU32(first, 0, L, 'nr_jited_ksyms');
  const nLines = readU32(first, 0, L, 'nr_jited_line_info');
  const lineRec = readU32(first, 0, L, 'jited_line_info_rec_size') || 8;
  if (len === 0) return { image: Buffer.alloc(0), funcLens: [], ksyms: [], lineAddrs: [] };
  const r = objGetInfo(fd, size, len + nFuncs * 4 + nKsyms * 8 + nLines * lineRec + 64, (inf, out) => {
    writeFields(inf.view, inf.off, L, {
      jited_prog_len: len,
      jited_prog_insns: out(len),
      nr_jited_func_lens: nFuncs,
      jited_func_lens: out(nFuncs * 4),
      nr_jited_ksyms: nKsyms,
      jited_ksyms: out(nKsyms * 8),
      nr_jited_line_info: nLines,
      jited_line_info_rec_size: lineRec,
      jited_line_info: out(nLines * lineRec),
    });
  });
  // The kernel zeroes the pointers instead of copying when raw addresses may not be shown (kptr_restrict).
  const shown = readU64(r.info, 0, L, 'jited_prog_insns') !== 0n;
  const [img, lens, ks, lines] = r.outs;
  return {
    image: shown ? img : Buffer.alloc(0),
    funcLens: Array.from({ length: nFuncs }, (_, i) => lens.readUInt32LE(i * 4)),
    ksyms: readU64(r.info, 0, L, 'jited_ksyms') !== 0n ? Array.from({ length: nKsyms }, (_, i) => ks.readBigUInt64LE(i * 8)) : [],
    lineAddrs: readU64(r.info, 0, L, 'jited_line_info') !== 0n ? Array.from({ length: nLines }, (_, i) => lines.readBigUInt64LE(i * lineRec)) : [],
  };
}

/** A BTF object of the kernel by id (a program's or map's BTF), parsed; kernel module BTF is split on vmlinux. */
export function readBtfById(id: number): Btf {
  const fd = getFdById('BTF_GET_FD_BY_ID', id, `BTF id ${id}`);
  try {
    const L = 'bpf_btf_info' as const;
    const size = layoutSize(L);
    const first = objGetInfo(fd.value, size, 0, undefined, `BTF id ${id}: info`).info;
    const btfSize = readU32(first, 0, L, 'btf_size');
    const r = objGetInfo(fd.value, size, btfSize + 64, (inf, out) => {
      writeFields(inf.view, inf.off, L, { btf: out(btfSize), btf_size: btfSize });
    }, `BTF id ${id}: data`);
    const kernel = readU32(r.info, 0, L, 'kernel_btf') !== 0;
    const raw = r.outs[0];
    // A kernel module's BTF is split BTF on top of vmlinux (its type ids start after vmlinux's).
    return Btf.parse(raw, kernel && !parsesAlone(raw) ? { base: loadKernelBtf() } : {});
  } finally {
    fd.close();
  }
}

function parsesAlone(raw: Buffer): boolean {
  try {
    Btf.parse(raw);
    return true;
  } catch {
    return false;
  }
}

/** BTF id of global function `name` in the BTF `target` was loaded with (for freplace). */
export function functionBtfId(target: Program, name: string): number {
  const ty = target.btf().tryFindType(name, 'func');
  if (!ty) throw new TsbpfError(`program "${target.name}" has no function "${name}" in its BTF (freplace needs a global function)`);
  return ty.id;
}
