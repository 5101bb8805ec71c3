// A BPF program in the kernel: loading (with verifier-log retries), info,
// BPF_PROG_TEST_RUN.

import {
  BPF_PROG_TYPE, FD, progLoad, progTestRun, objGetInfo, objPin, objGet, getFdById, layoutSize, readU32, readU64,
  readBytesField, writeFields, E, errnoName, BpfError, type TestRunResult,
} from '../syscall/index.js';
import { ClosedError, TsbpfError } from '../errors.js';
import type { LineInfo } from '../btf/types.js';

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
  flags?: number;
  cpu?: number;
}

export class Program {
  readonly name: string;
  readonly type: number;
  /** Verifier log, when loaded with `logLevel`. */
  readonly verifierLog: string;
  #fd: FD;

  constructor(fd: FD, name: string, type: number, verifierLog = '') {
    this.#fd = fd;
    this.name = name;
    this.type = type;
    this.verifierLog = verifierLog;
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
    if (r.fd) return new Program(r.fd, o.name, o.type, r.log);
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
        return new Program(r.fd, o.name, o.type, r.log);
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
    return Program.fromFd(objGet(path, 0, `pinned program ${path}`));
  }

  get fd(): number {
    try {
      return this.#fd.value;
    } catch {
      throw new ClosedError(`program "${this.name}" is closed`);
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
    for (const k of ['repeat', 'dataOutSize', 'ctxOutSize', 'cpu'] as const) {
      const v = o[k];
      if (v !== undefined && (!Number.isInteger(v) || v < 0 || v > 0xffffffff)) {
        throw new TypeError(`program "${this.name}": run option ${k} must be an integer in [0, 2^32), got ${v}`);
      }
    }
    return progTestRun(
      this.fd,
      {
        dataIn: o.data,
        dataSizeOut: o.dataOutSize ?? (o.data ? o.data.length + 256 : 0),
        ctxIn: o.ctx,
        ctxSizeOut: o.ctxOutSize,
        repeat: o.repeat,
        flags: o.flags,
        cpu: o.cpu,
      },
      `program "${this.name}" (${programTypeName(this.type)}): test run`,
    );
  }

  pin(path: string): void {
    objPin(this.fd, path, `program "${this.name}": pin to ${path}`);
  }

  clone(): Program {
    return new Program(this.#fd.dup(), this.name, this.type, this.verifierLog);
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
  };
}
