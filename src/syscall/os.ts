// perf_event_open, ioctl, mmap, epoll, eventfd, mount: the non-bpf() system
// calls tsbpf needs, each returning owned FDs or throwing SyscallError.

import { readFileSync, existsSync } from 'node:fs';
import { arena, NR, rawSyscall, rawSyscall3, viewAt } from './native.js';
import { layoutSize, writeFields, readU64, type FieldName } from './layout.js';
import { SyscallError, E } from './errors.js';
import { FD } from './fd.js';

const PERF_FLAG_FD_CLOEXEC = 8n;

export type PerfEventAttr = Partial<Record<FieldName<'perf_event_attr'>, number | bigint | boolean>>;

/** perf_event_open(2) with close-on-exec. `pid` -1 = any, `cpu` -1 = any. */
export function perfEventOpen(attr: PerfEventAttr, pid: number, cpu: number, groupFd = -1, flags = 0n, context?: string): FD {
  const size = layoutSize('perf_event_attr');
  arena.reserve(size + 64);
  arena.reset();
  const a = arena.alloc(size);
  writeFields(arena.view, a.off, 'perf_event_attr', { size, ...attr });
  const r = rawSyscall(NR.perf_event_open, a.addr, BigInt(pid), BigInt(cpu), BigInt(groupFd), flags | PERF_FLAG_FD_CLOEXEC);
  if (r < 0) throw new SyscallError('perf_event_open', undefined, -r, context);
  return new FD(r);
}

export const PERF_EVENT_IOC = {
  ENABLE: 0x2400n,
  DISABLE: 0x2401n,
  SET_BPF: 0x40042408n,
  PAUSE_OUTPUT: 0x40042409n,
} as const;

/** ioctl(2) with an integer argument. */
export function ioctl(fd: number, request: bigint, arg: bigint | number, context?: string): number {
  const r = rawSyscall3(NR.ioctl, BigInt(fd), request, BigInt(arg));
  if (r < 0) throw new SyscallError('ioctl', `0x${request.toString(16)}`, -r, context);
  return r;
}

export const PROT_READ = 1;
export const PROT_WRITE = 2;
export const MAP_SHARED = 1;

export const MAP_PRIVATE = 0x02;
export const MAP_FIXED = 0x10;
export const MAP_ANONYMOUS = 0x20;

/**
 * Placeholders left by Mapping.unmap(), keyed by the view's ArrayBuffer; the held value is the range
 * ("addr:length"), never the buffer itself (a held value that refers to the target keeps it alive forever).
 */
let placeholders = 0;
const placeholderRegistry = new FinalizationRegistry<string>((range) => {
  const [addr, length] = range.split(':');
  rawSyscall(NR.munmap, BigInt(addr), BigInt(length));
  placeholders--;
});

/** Placeholder ranges left by unmap() whose views the GC has not collected yet (diagnostics, tests). */
export function pendingPlaceholders(): number {
  return placeholders;
}

/**
 * A mapping of an fd. `view` is a zero-copy Buffer over it. Owners still drop their own references to
 * `view` and refuse access once closed, but a view a user kept is safe after `unmap()`: see there.
 */
export class Mapping {
  readonly addr: bigint;
  readonly length: number;
  #view: Buffer | undefined;
  constructor(addr: bigint, length: number) {
    this.addr = addr;
    this.length = length;
    this.#view = viewAt(addr, length);
  }
  get view(): Buffer {
    if (!this.#view) throw new SyscallError('munmap', undefined, E.EFAULT, 'mapping used after unmap');
    return this.#view;
  }
  get mapped(): boolean {
    return this.#view !== undefined;
  }
  /**
   * Release the kernel object's pages without ever leaving the range unmapped while JS may still see it.
   *
   * `view` is an external ArrayBuffer over this range, and any Buffer, subarray or typed array made from
   * it (a record view a user kept, say) refers to the same memory. Node 20 cannot detach an external
   * ArrayBuffer, so after a plain munmap touching such a view would SIGSEGV the process, or worse, read
   * whatever the address is reused for later. Instead, one mmap(MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS)
   * atomically replaces the whole range with fresh zero pages: the kernel drops the old pages and the
   * reference to the map/perf event (so the object is freed exactly as by munmap), and a stale view
   * reads zeros and writes into private memory nobody else sees. Unused, the placeholder costs a VMA and
   * no memory. The view's ArrayBuffer is then registered in a FinalizationRegistry that munmaps the
   * placeholder once no JS object refers to the buffer anymore; this Mapping drops its own reference here.
   * Every public API over a mapping throws ClosedError after close, so only views kept by the user see
   * the zeros. Idempotent.
   */
  unmap(): void {
    const view = this.#view;
    if (!view) return;
    this.#view = undefined;
    const len = BigInt(this.length);
    const r = rawSyscall(
      NR.mmap, this.addr, len, BigInt(PROT_READ | PROT_WRITE), BigInt(MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS), -1n, 0n,
    );
    if (r < 0 && r > -4096) {
      // No placeholder (out of memory or map count): there is nothing safe left to do but munmap. The
      // views of this module's users are all dropped by now; a view a user kept would fault.
      rawSyscall(NR.munmap, this.addr, len);
      return;
    }
    placeholders++;
    placeholderRegistry.register(view.buffer, `${this.addr}:${this.length}`);
  }
}

export function mmap(fd: number, length: number, prot: number, offset = 0, context?: string): Mapping {
  const r = mmapRaw(fd, length, prot, offset);
  if (typeof r === 'number') throw new SyscallError('mmap', undefined, r, context);
  return new Mapping(r, length);
}

function mmapRaw(fd: number, length: number, prot: number, offset: number): bigint | number {
  // The address comes back as a number: user-space addresses are below 2^47, exact in a double.
  const r = rawSyscall(NR.mmap, 0n, BigInt(length), BigInt(prot), BigInt(MAP_SHARED), BigInt(fd), BigInt(offset));
  if (r < 0 && r > -4096) return -r;
  return BigInt(r);
}

export const EPOLLIN = 1;

export function epollCreate(): FD {
  const r = rawSyscall3(NR.epoll_create1, 0o2000000n /* EPOLL_CLOEXEC */, 0n, 0n);
  if (r < 0) throw new SyscallError('epoll_create1', undefined, -r);
  return new FD(r);
}

/** epoll_ctl ADD(1)/DEL(2)/MOD(3) with a 64-bit user value. */
export function epollCtl(epfd: number, op: number, fd: number, events: number, data: bigint): void {
  const size = layoutSize('epoll_event');
  arena.reserve(size + 16);
  arena.reset();
  const ev = arena.alloc(size);
  writeFields(arena.view, ev.off, 'epoll_event', { events, data });
  const r = rawSyscall(NR.epoll_ctl, BigInt(epfd), BigInt(op), BigInt(fd), ev.addr);
  if (r < 0) throw new SyscallError('epoll_ctl', undefined, -r);
}

/**
 * epoll_wait (epoll_pwait on arm64) without blocking: `timeoutMs` 0 polls. Returns the 64-bit user
 * values of ready fds. A blocking wait belongs in a worker thread, never on the main thread.
 */
export function epollWait(epfd: number, maxEvents: number, timeoutMs = 0): bigint[] {
  const size = layoutSize('epoll_event');
  arena.reserve(size * maxEvents + 64);
  arena.reset();
  const evs = arena.alloc(size * maxEvents);
  const r = NR.epoll_wait >= 0
    ? rawSyscall(NR.epoll_wait, BigInt(epfd), evs.addr, BigInt(maxEvents), BigInt(timeoutMs))
    : rawSyscall(22 /* epoll_pwait on arm64 */, BigInt(epfd), evs.addr, BigInt(maxEvents), BigInt(timeoutMs), 0n, 8n);
  if (r < 0) throw new SyscallError('epoll_wait', undefined, -r);
  const out: bigint[] = [];
  // struct epoll_event is packed on x86_64 (12 bytes) and not on arm64: the layout knows.
  for (let i = 0; i < r; i++) out.push(readU64(arena.view, evs.off + i * size, 'epoll_event', 'data'));
  return out;
}

export function eventfd(initval = 0): FD {
  const r = rawSyscall3(NR.eventfd2, BigInt(initval), 0o2000000n /* EFD_CLOEXEC */, 0n);
  if (r < 0) throw new SyscallError('eventfd2', undefined, -r);
  return new FD(r);
}

/** mount(2) with no data. */
export function mount(source: string, target: string, fstype: string, flags = 0): void {
  arena.reserve(source.length * 4 + target.length * 4 + fstype.length * 4 + 64);
  arena.reset();
  const s = arena.cString(source);
  const t = arena.cString(target);
  const f = arena.cString(fstype);
  const r = rawSyscall(NR.mount, s, t, f, BigInt(flags), 0n);
  if (r < 0 && r !== -E.EBUSY) throw new SyscallError('mount', fstype, -r, `mounting ${fstype} on ${target}`);
}

function isMounted(target: string, fstype: string): boolean {
  try {
    const mounts = readFileSync('/proc/self/mounts', 'utf8');
    return mounts.split('\n').some((l) => {
      const p = l.split(' ');
      return p[1] === target && p[2] === fstype;
    });
  } catch {
    return false;
  }
}

/** Make sure tracefs is available; returns its path. Mounts it on /sys/kernel/tracing when missing. */
export function ensureTracefs(): string {
  for (const p of ['/sys/kernel/tracing', '/sys/kernel/debug/tracing']) {
    if (existsSync(p + '/events')) return p;
  }
  if (!isMounted('/sys/kernel/tracing', 'tracefs')) mount('nodev', '/sys/kernel/tracing', 'tracefs');
  return '/sys/kernel/tracing';
}

/** Make sure a bpffs is mounted at `path` (default /sys/fs/bpf). */
export function ensureBpffs(path = '/sys/fs/bpf'): string {
  if (!isMounted(path, 'bpf')) mount('bpf', path, 'bpf');
  return path;
}

let page: number | undefined;

/** The kernel's page size (from /proc/self/smaps; 4096 when it can't be read). */
export function pageSize(): number {
  if (page === undefined) {
    page = 4096;
    try {
      const m = /KernelPageSize:\s+(\d+) kB/.exec(readFileSync('/proc/self/smaps', 'utf8'));
      if (m) page = Number(m[1]) * 1024;
    } catch {
      /* keep the default */
    }
  }
  return page;
}

let possible: number[] | undefined;

/** CPU ids from a kernel cpu list like "0-3,5". */
export function parseCpuList(s: string): number[] {
  const out: number[] = [];
  for (const part of s.trim().split(',')) {
    if (!part) continue;
    const [a, b] = part.split('-').map((x) => parseInt(x, 10));
    if (!Number.isInteger(a)) continue;
    for (let i = a; i <= (Number.isInteger(b) ? b : a); i++) out.push(i);
  }
  return out;
}

/** Possible CPUs (/sys/devices/system/cpu/possible): the per-CPU map value count is max id + 1. */
export function possibleCpus(): number[] {
  possible ??= parseCpuList(readFileSync('/sys/devices/system/cpu/possible', 'utf8'));
  return possible;
}

export function onlineCpus(): number[] {
  return parseCpuList(readFileSync('/sys/devices/system/cpu/online', 'utf8'));
}
