// uprobes and uretprobes (a perf event on the uprobe PMU plus a bpf_link, or the perf ioctls before 5.15) and
// uprobe_multi links (BPF_TRACE_UPROBE_MULTI, 6.6+): a kprobe-type program on instructions of a native
// executable or shared library, found by symbol through src/elf/binary.ts.

import {
  BPF_ATTACH_TYPE, BPF_PROG_TYPE, PERF_EVENT_IOC, BpfError, SyscallError, E, FD, ioctl, linkCreate, perfEventOpenUprobe,
} from '../syscall/index.js';
import { NotSupportedError, TsbpfError } from '../errors.js';
import { openBinary, type NativeElf } from '../elf/binary.js';
import type { Program } from '../programs/program.js';
import { Link } from './link.js';

/** BPF_F_UPROBE_MULTI_RETURN (include/uapi/linux/bpf.h, a #define). */
const BPF_F_UPROBE_MULTI_RETURN = 1;

export interface UprobeOptions {
  /** Path of the executable or library, a library name (`libc.so.6`) or a program in $PATH. */
  binary: string;
  /** Function to probe (its `.symtab`/`.dynsym` entry); without it `offset` is a file offset. */
  symbol?: string;
  /** Bytes past the symbol, or the file offset when there is no symbol. */
  offset?: number | bigint;
  /** Only this process (-1 or undefined: every process; 0: this process). */
  pid?: number;
  /** A uretprobe: fire when the function returns (read the return value with PT_REGS_RC). */
  retprobe?: boolean;
  /** BPF cookie (bpf_get_attach_cookie). */
  cookie?: bigint;
  /** File offset of a u16 semaphore the kernel increments while the probe exists (USDT; 4.20+). */
  refCtrOffset?: number | bigint;
}

/** Where a probe goes: resolved path, file offset, and a readable description. */
export interface ProbeTarget {
  path: string;
  offset: number;
  /** `path:symbol+0x10` or `path:0x1234` */
  description: string;
  elf: NativeElf;
}

function normPid(pid: number | undefined): number {
  if (pid === undefined || pid === -1) return -1;
  if (!Number.isInteger(pid) || pid < -1) throw new TypeError(`pid must be a process id, 0 (this process) or -1 (every process), not ${pid}`);
  return pid === 0 ? process.pid : pid;
}

/** Check that `prog` is a kprobe-type program (uprobes run BPF_PROG_TYPE_KPROBE programs). */
export function checkKprobeProgram(prog: Program, what: string, section: string): void {
  if (prog.type !== BPF_PROG_TYPE.KPROBE) {
    throw new TsbpfError(
      `program "${prog.name}" cannot be attached as ${what}: it is of program type ${prog.type}, not BPF_PROG_TYPE_KPROBE ` +
        `(declare it with SEC("${section}"))`,
    );
  }
}

/** Resolve binary + symbol + offset to a file offset, with errors naming program, binary and symbol. */
export function resolveProbeTarget(progName: string, binary: string, symbol: string | undefined, offset: number | bigint | undefined, pid?: number): ProbeTarget {
  const prefix = `attach "${progName}" to ${binary}${symbol ? `:${symbol}` : ''}`;
  let elf: NativeElf;
  try {
    elf = openBinary(binary, pid);
  } catch (e) {
    if (e instanceof TsbpfError) {
      e.message = `${prefix}: ${e.message}`;
      throw e;
    }
    throw e;
  }
  const extra = offset === undefined ? 0 : Number(offset);
  if (!Number.isSafeInteger(extra) || extra < 0) throw new TypeError(`${prefix}: offset must be a non-negative integer, not ${offset}`);
  if (symbol) {
    let found;
    try {
      found = elf.findFunction(symbol);
    } catch (e) {
      if (e instanceof TsbpfError) e.message = `${prefix}: ${e.message}`;
      throw e;
    }
    const description = `${elf.path}:${symbol}${extra ? `+0x${extra.toString(16)}` : ''}`;
    if (extra && found.symbol.size && extra >= found.symbol.size) {
      throw new TsbpfError(`${prefix}: offset 0x${extra.toString(16)} is past the end of ${symbol} (${found.symbol.size} bytes)`);
    }
    return { path: elf.path, offset: found.offset + extra, description, elf };
  }
  if (offset === undefined) throw new TypeError(`${prefix}: give a symbol or a file offset`);
  return { path: elf.path, offset: extra, description: `${elf.path}:0x${extra.toString(16)}`, elf };
}

/**
 * Attach a perf event already opened on a uprobe/kprobe to `prog`: a bpf_link (5.15+), else the perf
 * ioctls. Takes ownership of `perf` (closed on failure).
 */
export function linkPerfEvent(prog: Program, perf: FD, kind: string, target: string, cookie: bigint | undefined, extra: { detach?: () => void } = {}): Link {
  const context = `attach "${prog.name}" to ${kind} ${target}`;
  try {
    try {
      const fd = linkCreate({ progFd: prog.fd, targetFd: perf.value, attachType: BPF_ATTACH_TYPE.PERF_EVENT, bpfCookie: cookie }, context);
      return new Link(kind, target, prog.name, { fd, perf, ...extra });
    } catch (e) {
      // Before 5.15 there is no perf_event bpf_link: use the ioctls.
      if (!(e instanceof BpfError) || (e.errnoCode !== E.EINVAL && e.errnoCode !== E.E2BIG && e.errnoCode !== E.EOPNOTSUPP)) throw e;
      if (cookie) throw new NotSupportedError('BPF cookies on perf events', '5.15');
      ioctl(perf.value, PERF_EVENT_IOC.SET_BPF, prog.fd, context);
      ioctl(perf.value, PERF_EVENT_IOC.ENABLE, 0, `enable ${kind} ${target}`);
      return new Link(kind, target, prog.name, { perf, ...extra });
    }
  } catch (e) {
    perf.close();
    throw e;
  }
}

/**
 * Attach a kprobe-type program to a function (or any instruction) of a native binary: a uprobe, or with
 * `retprobe` a uretprobe. `binary` may be a library name (`libc.so.6`).
 */
export function attachUprobe(prog: Program, opts: UprobeOptions): Link {
  const kind = opts.retprobe ? 'uretprobe' : 'uprobe';
  checkKprobeProgram(prog, kind, kind);
  const pid = normPid(opts.pid);
  const t = resolveProbeTarget(prog.name, opts.binary, opts.symbol, opts.offset, pid);
  const target = pid === -1 ? t.description : `${t.description} (pid ${pid})`;
  const perf = perfEventOpenUprobe(
    { path: t.path, offset: t.offset, retprobe: opts.retprobe, refCtrOffset: opts.refCtrOffset },
    pid,
    `attach "${prog.name}" to ${kind} ${target}`,
  );
  return linkPerfEvent(prog, perf, kind, target, opts.cookie);
}

export interface UprobeMultiOptions {
  /** Path of the executable or library, or a library name (`libc.so.6`). */
  binary: string;
  /** Function names, or one glob (`fx_*`, `?alloc`) matched against every function symbol. */
  symbols?: string[] | string;
  /**
   * Without `symbols`: file offsets. With a `symbols` array: bytes past each symbol (same length).
   */
  offsets?: (number | bigint)[];
  /** USDT semaphores: file offsets, one per probe (0: none). */
  refCtrOffsets?: (number | bigint)[];
  /** Only this process (-1 or undefined: every process; 0: this process). */
  pid?: number;
  /** uretprobes instead of uprobes. */
  retprobe?: boolean;
  /** One BPF cookie per probe (in the order of `symbols`, or of the matched functions by address). */
  cookies?: bigint[];
}

/**
 * Attach one program to many instructions of one binary at once with a uprobe_multi link (6.6+). The
 * program must be loaded with expected attach type BPF_TRACE_UPROBE_MULTI: `SEC("uprobe.multi")` or
 * `SEC("uretprobe.multi")`. The link's target lists the attached functions.
 */
export function attachUprobeMulti(prog: Program, opts: UprobeMultiOptions): Link {
  const kind = opts.retprobe ? 'uretprobe_multi' : 'uprobe_multi';
  checkKprobeProgram(prog, kind, opts.retprobe ? 'uretprobe.multi' : 'uprobe.multi');
  const pid = normPid(opts.pid);
  const prefix = `attach "${prog.name}" to ${kind} ${opts.binary}`;
  let elf: NativeElf;
  try {
    elf = openBinary(opts.binary, pid);
  } catch (e) {
    if (e instanceof TsbpfError) e.message = `${prefix}: ${e.message}`;
    throw e;
  }
  let points: { name: string; offset: number }[];
  let what: string;
  if (typeof opts.symbols === 'string') {
    if (opts.offsets) throw new TypeError(`${prefix}: offsets cannot be combined with a symbol pattern`);
    points = elf.matchFunctions(opts.symbols);
    what = opts.symbols;
    if (points.length === 0) throw new TsbpfError(`${prefix}: no function in ${elf.path} matches "${opts.symbols}"`);
  } else if (opts.symbols) {
    if (opts.symbols.length === 0) throw new TypeError(`${prefix}: symbols is empty`);
    if (opts.offsets && opts.offsets.length !== opts.symbols.length) {
      throw new TypeError(`${prefix}: ${opts.offsets.length} offsets for ${opts.symbols.length} symbols`);
    }
    points = opts.symbols.map((s, i) => {
      let off;
      try {
        off = elf.findFunction(s).offset;
      } catch (e) {
        if (e instanceof TsbpfError) e.message = `${prefix}: ${e.message}`;
        throw e;
      }
      return { name: s, offset: off + Number(opts.offsets?.[i] ?? 0) };
    });
    what = opts.symbols.join(',');
  } else if (opts.offsets?.length) {
    points = opts.offsets.map((o) => ({ name: `0x${Number(o).toString(16)}`, offset: Number(o) }));
    what = points.map((p) => p.name).join(',');
  } else {
    throw new TypeError(`${prefix}: give symbols (names or a glob) or offsets`);
  }
  const n = points.length;
  for (const [name, list] of [['cookies', opts.cookies], ['refCtrOffsets', opts.refCtrOffsets]] as const) {
    if (list && list.length !== n) throw new TypeError(`${prefix}: ${list.length} ${name} for ${n} probes`);
  }
  const u64s = (vals: (number | bigint)[]): Buffer => {
    const b = Buffer.alloc(8 * n);
    vals.forEach((v, i) => b.writeBigUInt64LE(BigInt.asUintN(64, BigInt(v)), i * 8));
    return b;
  };
  const target = `${elf.path}:${what}`;
  const context = `attach "${prog.name}" to ${kind} ${target} (${n} probe${n === 1 ? '' : 's'})`;
  try {
    const fd = linkCreate(
      {
        progFd: prog.fd,
        attachType: BPF_ATTACH_TYPE.TRACE_UPROBE_MULTI,
        fields: { 'uprobe_multi.cnt': n, 'uprobe_multi.flags': opts.retprobe ? BPF_F_UPROBE_MULTI_RETURN : 0, 'uprobe_multi.pid': pid === -1 ? 0 : pid },
        pointers: {
          'uprobe_multi.path': Buffer.from(elf.path + '\0', 'utf8'),
          'uprobe_multi.offsets': u64s(points.map((p) => p.offset)),
          ...(opts.cookies ? { 'uprobe_multi.cookies': u64s(opts.cookies) } : {}),
          ...(opts.refCtrOffsets ? { 'uprobe_multi.ref_ctr_offsets': u64s(opts.refCtrOffsets) } : {}),
        },
      },
      context,
    );
    return new Link(kind, target, prog.name, { fd });
  } catch (e) {
    if (e instanceof SyscallError) {
      if (e.errnoCode === E.EINVAL) {
        e.message +=
          `; is "${prog.name}" loaded with expected attach type BPF_TRACE_UPROBE_MULTI (SEC("uprobe.multi") / SEC("uretprobe.multi"))? ` +
          'uprobe_multi links also need Linux 6.6+';
      } else if (e.errnoCode === E.EOPNOTSUPP || e.errnoCode === 524 || e.errnoCode === E.ENOSYS) {
        throw new NotSupportedError('uprobe_multi links', '6.6', e.message);
      }
    }
    throw e;
  }
}
