// kprobes and kretprobes: a perf event of the kprobe PMU (4.17+; the symbol is passed by address in
// config1) or, when the PMU is missing or `maxActive` is asked for, a kprobe_events entry in tracefs
// attached as a tracepoint and removed again on close. kprobe.multi (BPF_TRACE_KPROBE_MULTI, 5.18+)
// attaches one program to many functions with a single bpf_link. ksyscall resolves the arch's syscall
// entry function.

import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import {
  BPF_ATTACH_TYPE, BpfError, E, FD, PERF_EVENT_IOC, PERF_TYPE, SyscallError, ensureTracefs, ioctl, linkCreate, perfEventOpen,
  type PerfEventAttr,
} from '../syscall/index.js';
import { nativeAlloc, nativeFree } from '../syscall/native.js';
import { NotSupportedError, TsbpfError } from '../errors.js';
import type { Program } from '../programs/program.js';
import { Link, tracepointId } from './link.js';

const PMU_DIR = '/sys/bus/event_source/devices/kprobe';
/** BPF_F_KPROBE_MULTI_RETURN (include/uapi/linux/bpf.h). */
export const BPF_F_KPROBE_MULTI_RETURN = 1;

/** The kprobe PMU's perf type, or undefined when the kernel has none. */
export function kprobePmuType(): number | undefined {
  try {
    return parseInt(readFileSync(`${PMU_DIR}/type`, 'utf8'), 10);
  } catch {
    return undefined;
  }
}

/** The config bit that makes a kprobe PMU event a return probe (format/retprobe: "config:0"). */
function retprobeBit(): number {
  try {
    const m = /config:(\d+)/.exec(readFileSync(`${PMU_DIR}/format/retprobe`, 'utf8'));
    if (m) return Number(m[1]);
  } catch {
    /* the documented default */
  }
  return 0;
}

/** tracefs's kprobe_events file, when the kernel has kprobe events. */
function kprobeEventsFile(): string | undefined {
  let root: string;
  try {
    root = ensureTracefs();
  } catch {
    return undefined;
  }
  const p = `${root}/kprobe_events`;
  return existsSync(p) ? p : undefined;
}

/** Why kprobes cannot be attached on this kernel, or undefined when they can. */
export function kprobeSupport(): string | undefined {
  if (kprobePmuType() !== undefined || kprobeEventsFile()) return undefined;
  return `this kernel has no kprobes (no ${PMU_DIR} and no kprobe_events in tracefs: CONFIG_KPROBES/CONFIG_KPROBE_EVENTS off)`;
}

export interface KprobeOptions {
  /** Kernel function to probe (`do_unlinkat`; `SYM+OFF` is accepted too). */
  symbol: string;
  /** Byte offset into the function (kprobes only). */
  offset?: number;
  /** Probe the function's return instead of its entry. */
  retprobe?: boolean;
  /** bpf_get_attach_cookie() value (5.15+). */
  cookie?: bigint;
  /** kretprobe instances to allocate (tracefs's `rN:`): forces the tracefs interface. */
  maxActive?: number;
}

function checkSymbol(symbol: string): { symbol: string; offset: number } {
  const m = /^([A-Za-z_.][\w.$]*)(?:\+(0x[0-9a-fA-F]+|\d+))?$/.exec(symbol);
  if (!m) throw new TsbpfError(`invalid kernel symbol "${symbol}"`);
  return { symbol: m[1], offset: m[2] ? Number(m[2]) : 0 };
}

/** A kprobe link made through tracefs: closing it also removes its kprobe event. */
class TracefsKprobeLink extends Link {
  readonly #event: string;
  constructor(kind: string, target: string, program: string, handle: { fd?: FD; perf: FD }, event: string) {
    super(kind, target, program, handle);
    this.#event = event;
    liveTracefsLinks.add(this);
    hookExit();
  }

  override close(): void {
    if (this.closed) return;
    liveTracefsLinks.delete(this);
    try {
      super.close();
    } finally {
      removeEvent(this.#event);
    }
  }
}

const liveTracefsLinks = new Set<TracefsKprobeLink>();
let exitHooked = false;
let seq = 0;
function hookExit(): void {
  if (exitHooked) return;
  exitHooked = true;
  // kprobe_events entries outlive the process: at exit, close the links still open (a pinned one stays
  // attached through its pin, and its event then stays busy) and remove their events.
  process.once('exit', () => {
    for (const l of [...liveTracefsLinks]) {
      try {
        l.close();
      } catch {
        /* exiting anyway */
      }
    }
  });
}

function removeEvent(event: string): void {
  const f = kprobeEventsFile();
  if (!f) return;
  // The perf event may still be releasing (EBUSY) for a moment after its last fd is closed.
  for (let i = 0; i < 20; i++) {
    try {
      appendFileSync(f, `-:${event}\n`);
      return;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EBUSY') return; // already gone
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5);
    }
  }
}

function attachPerf(prog: Program, perf: FD, kind: string, target: string, cookie: bigint | undefined): { fd?: FD; perf: FD } {
  try {
    const fd = linkCreate({ progFd: prog.fd, targetFd: perf.value, attachType: BPF_ATTACH_TYPE.PERF_EVENT, bpfCookie: cookie }, `attach "${prog.name}" to ${kind} ${target}`);
    return { fd, perf };
  } catch (e) {
    if (!(e instanceof BpfError) || (e.errnoCode !== E.EINVAL && e.errnoCode !== E.E2BIG && e.errnoCode !== E.EOPNOTSUPP)) throw e;
    if (cookie) throw new NotSupportedError('BPF cookies on kprobes', '5.15');
    ioctl(perf.value, PERF_EVENT_IOC.SET_BPF, prog.fd, `attach "${prog.name}" to ${kind} ${target}`);
    ioctl(perf.value, PERF_EVENT_IOC.ENABLE, 0, `enable ${kind} ${target}`);
    return { perf };
  }
}

function noSuchFunction(symbol: string, e: unknown): TsbpfError {
  return new TsbpfError(`cannot probe kernel function "${symbol}": not found or not probeable (see /proc/kallsyms; inlined and notrace functions cannot be probed)`, { cause: e });
}

/** Attach a kprobe/kretprobe program to a kernel function. */
export function attachKprobe(prog: Program, o: KprobeOptions): Link {
  const parsed = checkSymbol(o.symbol);
  const symbol = parsed.symbol;
  const offset = o.offset ?? parsed.offset;
  if (!Number.isInteger(offset) || offset < 0) throw new TypeError(`attachKprobe: offset must be a non-negative integer, got ${offset}`);
  if (o.retprobe && offset) throw new TypeError('attachKprobe: a kretprobe takes no offset');
  if (o.maxActive !== undefined && (!o.retprobe || !Number.isInteger(o.maxActive) || o.maxActive <= 0)) {
    throw new TypeError('attachKprobe: maxActive is a positive integer, for kretprobes only');
  }
  const kind = o.retprobe ? 'kretprobe' : 'kprobe';
  const target = offset ? `${symbol}+${offset}` : symbol;
  const pmu = kprobePmuType();
  if (pmu !== undefined && o.maxActive === undefined) {
    const str = Buffer.from(symbol + '\0', 'utf8');
    const mem = nativeAlloc(str.length);
    let perf: FD;
    try {
      mem.view.set(str);
      const attr: PerfEventAttr = {
        type: pmu,
        config: o.retprobe ? 1n << BigInt(retprobeBit()) : 0n,
        config1: mem.addr,
        config2: BigInt(offset),
        sample_period: 1n,
        wakeup_events: 1,
      };
      perf = perfEventOpen(attr, -1, 0, -1, 0n, `${kind} ${target}`);
    } catch (e) {
      if (e instanceof SyscallError && e.errnoCode === E.EADDRNOTAVAIL) {
        throw new TsbpfError(`cannot probe kernel function "${symbol}": several kernel functions have that name`, { cause: e });
      }
      if (e instanceof SyscallError && (e.errnoCode === E.ENOENT || e.errnoCode === E.EINVAL)) throw noSuchFunction(symbol, e);
      throw e;
    } finally {
      nativeFree(mem.addr);
    }
    try {
      return new Link(kind, target, prog.name, attachPerf(prog, perf, kind, target, o.cookie));
    } catch (e) {
      perf.close();
      throw e;
    }
  }
  const file = kprobeEventsFile();
  if (!file) throw new NotSupportedError(`${kind}s`, undefined, kprobeSupport() ?? 'maxActive needs kprobe_events in tracefs, which this kernel lacks');
  const name = `tsbpf_${process.pid}_${seq++}`;
  const event = `kprobes/${name}`;
  const def = `${o.retprobe ? `r${o.maxActive ?? ''}` : 'p'}:${event} ${target}\n`;
  try {
    appendFileSync(file, def);
  } catch (e) {
    throw noSuchFunction(symbol, e);
  }
  let perf: FD | undefined;
  try {
    const id = tracepointId('kprobes', name);
    perf = perfEventOpen({ type: PERF_TYPE.TRACEPOINT, config: BigInt(id), sample_period: 1n, wakeup_events: 1 }, -1, 0, -1, 0n, `${kind} ${target}`);
    return new TracefsKprobeLink(kind, target, prog.name, attachPerf(prog, perf, kind, target, o.cookie), event);
  } catch (e) {
    perf?.close();
    removeEvent(event);
    throw e;
  }
}

/** Syscall entry function prefixes by Node's process.arch. */
const SYSCALL_PREFIX: Record<string, string> = {
  x64: '__x64_sys_',
  ia32: '__ia32_sys_',
  arm64: '__arm64_sys_',
  arm: 'sys_',
  s390x: '__s390x_sys_',
  s390: '__s390_sys_',
  riscv64: '__riscv_sys_',
  ppc64: 'sys_',
  loong64: 'sys_',
  mips64el: 'sys_',
};

function kallsymsHas(name: string): boolean | undefined {
  try {
    const text = readFileSync('/proc/kallsyms', 'utf8');
    return new RegExp(`^[0-9a-f]+ [tTwW] ${name.replace(/[.$]/g, '\\$&')}(\\s|$)`, 'm').test(text);
  } catch {
    return undefined;
  }
}

/**
 * The kernel function of syscall `name` on this arch: `__x64_sys_<name>` (or the arch's equivalent)
 * when the kernel has syscall wrappers (4.17+), else `sys_<name>`.
 */
export function ksyscallName(name: string): string {
  if (!/^\w+$/.test(name)) throw new TsbpfError(`invalid syscall name "${name}"`);
  const prefix = SYSCALL_PREFIX[process.arch] ?? 'sys_';
  const wrapped = `${prefix}${name}`;
  if (prefix === 'sys_') return wrapped;
  const has = kallsymsHas(wrapped);
  if (has === false && kallsymsHas(`sys_${name}`)) return `sys_${name}`;
  return wrapped;
}

/** Attach a ksyscall/kretsyscall program to the entry function of syscall `name`. */
export function attachKsyscall(prog: Program, name: string, o: Omit<KprobeOptions, 'symbol' | 'offset'> = {}): Link {
  return attachKprobe(prog, { ...o, symbol: ksyscallName(name) });
}

export interface KprobeMultiOptions {
  /** Function names, or a glob (`*` and `?`) matched against available_filter_functions. */
  symbols?: string[] | string;
  /** Or kernel addresses. */
  addresses?: bigint[];
  retprobe?: boolean;
  /** One bpf_get_attach_cookie() value per symbol/address, in the same order. */
  cookies?: bigint[];
}

function globRegExp(glob: string): RegExp {
  return new RegExp('^' + glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.') + '$');
}

/** Functions ftrace can trace matching `glob` (from available_filter_functions), without duplicates. */
export function matchTraceableFunctions(glob: string): string[] {
  const file = `${ensureTracefs()}/available_filter_functions`;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new TsbpfError(`cannot resolve the kprobe.multi pattern "${glob}": ${file} is not readable (${(e as Error).message})`, { cause: e });
  }
  const re = globRegExp(glob);
  const out = new Set<string>();
  for (const line of text.split('\n')) {
    const name = line.split(/\s/, 1)[0];
    // Skip names the kernel cannot resolve back (ftrace placeholders and compiler-suffixed copies).
    if (!name || name.startsWith('__ftrace_invalid_address__') || name.includes('.')) continue;
    if (re.test(name)) out.add(name);
  }
  if (out.size === 0) {
    // Some kernels leave functions the fprobe path can still attach to out of available_filter_functions
    // (Debian 6.12 lacks the __x64_sys_* wrappers there): fall back to the kernel's text symbols.
    try {
      for (const line of readFileSync('/proc/kallsyms', 'utf8').split('\n')) {
        const [, type, name] = line.split(' ', 3);
        if ((type === 't' || type === 'T') && name && !name.includes('.') && !name.includes('[') && re.test(name)) out.add(name);
      }
    } catch {
      /* no kallsyms: nothing matches */
    }
  }
  return [...out];
}

/** Attach a kprobe.multi program to many functions at once (one bpf_link, 5.18+). */
export function attachKprobeMulti(prog: Program, o: KprobeMultiOptions): Link {
  const syms = o.symbols === undefined ? undefined : typeof o.symbols === 'string' ? matchTraceableFunctions(o.symbols) : o.symbols;
  if ((syms === undefined) === (o.addresses === undefined)) throw new TypeError('attachKprobeMulti: give symbols (or a pattern) or addresses');
  const cnt = syms?.length ?? o.addresses!.length;
  if (cnt === 0) throw new TsbpfError(`kprobe.multi "${prog.name}": no function matches ${JSON.stringify(o.symbols)}`);
  if (o.cookies && o.cookies.length !== cnt) throw new TypeError(`attachKprobeMulti: ${o.cookies.length} cookies for ${cnt} functions`);
  for (const s of syms ?? []) checkSymbol(s);
  const kind = o.retprobe ? 'kretprobe.multi' : 'kprobe.multi';
  const target = typeof o.symbols === 'string' ? o.symbols : syms ? (syms.length > 3 ? `${syms.slice(0, 3).join(',')},…(${syms.length})` : syms.join(',')) : `${cnt} addresses`;
  const u64s = (xs: bigint[]): Buffer => {
    const b = Buffer.alloc(xs.length * 8);
    xs.forEach((x, i) => b.writeBigUInt64LE(x, i * 8));
    return b;
  };
  // syms is an array of string pointers: build it in native memory of our own (the strings must stay
  // put while the kernel copies them in during the call).
  let mem: { addr: bigint; view: Buffer } | undefined;
  let symsAddr = 0n;
  if (syms) {
    const strs = syms.map((s) => Buffer.from(s + '\0', 'utf8'));
    const table = cnt * 8;
    mem = nativeAlloc(table + strs.reduce((n, s) => n + s.length, 0));
    let off = table;
    strs.forEach((s, i) => {
      mem!.view.set(s, off);
      mem!.view.writeBigUInt64LE(mem!.addr + BigInt(off), i * 8);
      off += s.length;
    });
    symsAddr = mem.addr;
  }
  try {
    const fd = linkCreate(
      {
        progFd: prog.fd,
        attachType: BPF_ATTACH_TYPE.TRACE_KPROBE_MULTI,
        fields: {
          'kprobe_multi.flags': o.retprobe ? BPF_F_KPROBE_MULTI_RETURN : 0,
          'kprobe_multi.cnt': cnt,
          ...(symsAddr ? { 'kprobe_multi.syms': symsAddr } : {}),
        },
        pointers: {
          ...(o.addresses ? { 'kprobe_multi.addrs': u64s(o.addresses) } : {}),
          ...(o.cookies ? { 'kprobe_multi.cookies': u64s(o.cookies) } : {}),
        },
      },
      `attach "${prog.name}" (${kind}) to ${target}`,
    );
    return new Link(kind, target, prog.name, { fd });
  } catch (e) {
    if (e instanceof BpfError && (e.errnoCode === E.EOPNOTSUPP || e.errnoCode === 524 /* ENOTSUPP */)) {
      throw new NotSupportedError('kprobe.multi links', '5.18', `the kernel refused BPF_TRACE_KPROBE_MULTI (${e.errno}): built without CONFIG_FPROBE?`);
    }
    throw e;
  } finally {
    if (mem) nativeFree(mem.addr);
  }
}
