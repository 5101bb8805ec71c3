// The only module that talks to ffi-rs. Everything else in tsbpf reaches the
// kernel through the functions exported here.
//
// Cost model (see shared notes): every ffi-rs call costs ~6-15 µs, so we
// make as few as possible. Pointers inside kernel structs point into one
// native scratch arena whose base address is looked up once; JS computes
// addresses as base + offset and copies data in and out of the arena. Native
// memory is not owned by the V8 GC, so the kernel never writes into memory
// the GC has freed (hazard 1 in the notes), and no pooled Buffer slice is
// ever handed to the kernel (hazard 6).

import { createRequire } from 'node:module';
import { isMainThread } from 'node:worker_threads';
import { TsbpfError } from '../errors.js';
import type * as FfiRs from 'ffi-rs';

const require = createRequire(import.meta.url);
// ffi-rs is CommonJS with a native addon; loading it lazily keeps `import`ing
// tsbpf (e.g. for spec parsing) cheap and working on machines without it.
let ffi: typeof FfiRs | undefined;

const LIB = 'libc';
let T: typeof FfiRs.DataType;

function init(): typeof FfiRs {
  if (ffi) return ffi;
  const mod = require('ffi-rs') as typeof FfiRs;
  mod.open({ library: LIB, path: 'libc.so.6' });
  T = mod.DataType;
  ffi = mod;
  if (!isMainThread) pinAddon(mod);
  return mod;
}

/**
 * When a worker thread is the first to load ffi-rs, Node unloads the addon when that worker exits while
 * ffi-rs still has state pointing into it, and the process dies of SIGSEGV. Opening the addon's shared
 * object once more with RTLD_NODELETE keeps its code mapped for the life of the process.
 */
function pinAddon(mod: typeof FfiRs): void {
  const addon = Object.keys(require.cache).find((k) => k.endsWith('.node') && /ffi-rs/.test(k));
  if (!addon) return;
  const RTLD_NOW = 2;
  const RTLD_NODELETE = 0x1000;
  mod.load({
    library: LIB,
    funcName: 'dlopen',
    retType: mod.DataType.BigInt,
    paramsType: [mod.DataType.String, mod.DataType.I32],
    paramsValue: [addon, RTLD_NOW | RTLD_NODELETE],
  });
}

// x86_64 and arm64 syscall numbers of what we call through libc's syscall().
const NR_X64 = {
  read: 0, close: 3, ioctl: 16, mmap: 9, munmap: 11, getpid: 39, fcntl: 72, mount: 165,
  epoll_wait: 232, epoll_ctl: 233, epoll_create1: 291, eventfd2: 290, perf_event_open: 298,
  bpf: 321, gettid: 186, write: 1, openat: 257, umount2: 166,
  socket: 41, connect: 42, sendto: 44, recvfrom: 45, sendmsg: 46, recvmsg: 47, bind: 49, getsockname: 51,
  socketpair: 53, setsockopt: 54, getsockopt: 55, setns: 308, unshare: 272, sched_setaffinity: 203,
  getcpu: 309, pidfd_open: 434, memfd_create: 319,
} as const;
const NR_ARM64 = {
  read: 63, close: 57, ioctl: 29, mmap: 222, munmap: 215, getpid: 172, fcntl: 25, mount: 40,
  epoll_wait: -1, epoll_ctl: 21, epoll_create1: 20, eventfd2: 19, perf_event_open: 241,
  bpf: 280, gettid: 178, write: 64, openat: 56, umount2: 39,
  socket: 198, connect: 203, sendto: 206, recvfrom: 207, sendmsg: 211, recvmsg: 212, bind: 200, getsockname: 204,
  socketpair: 199, setsockopt: 208, getsockopt: 209, setns: 268, unshare: 97, sched_setaffinity: 122,
  getcpu: 168, pidfd_open: 434, memfd_create: 279,
} as const;
export const NR: Record<keyof typeof NR_X64, number> = process.arch === 'arm64' ? NR_ARM64 : NR_X64;

let errnoView: Buffer | undefined;

/** errno of the calling thread. Only meaningful right after a call that returned -1. */
function lastErrno(): number {
  if (!errnoView) {
    const f = init();
    // One-time setup: an External return leaks ~200 bytes, acceptable once per thread.
    const ext = f.load({ library: LIB, funcName: '__errno_location', retType: T.External, paramsType: [], paramsValue: [] });
    errnoView = f.createExternalBuffer(ext, 4);
  }
  return errnoView.readInt32LE(0);
}

let syscalls = 0;

/**
 * How many system calls this thread has made through `rawSyscall`/`rawSyscall3`
 * since it loaded tsbpf. Tests read it before and after a call to prove that bad
 * input was refused before anything reached the kernel.
 */
export function syscallCount(): number {
  return syscalls;
}

let sysParams6: FfiRs.DataType[] | undefined;

/**
 * Raw syscall with up to 6 integer/pointer arguments. Returns the result, or
 * `-errno` on failure (errno read only when the call returned -1).
 */
export function rawSyscall(nr: number, a = 0n, b = 0n, c = 0n, d = 0n, e = 0n, f = 0n): number {
  const m = init();
  sysParams6 ??= [T.I64, T.BigInt, T.BigInt, T.BigInt, T.BigInt, T.BigInt, T.BigInt];
  syscalls++;
  const r = m.load({
    library: LIB,
    funcName: 'syscall',
    retType: T.I64,
    paramsType: sysParams6,
    paramsValue: [nr, a, b, c, d, e, f],
  }) as number;
  if (r === -1) return -lastErrno();
  return r;
}

let sysParams3: FfiRs.DataType[] | undefined;

/** Faster path for the common 3-argument form (bpf(cmd, attr, size), ioctl, fcntl). */
export function rawSyscall3(nr: number, a: bigint, b: bigint, c: bigint): number {
  const m = init();
  sysParams3 ??= [T.I64, T.BigInt, T.BigInt, T.BigInt];
  syscalls++;
  const r = m.load({
    library: LIB,
    funcName: 'syscall',
    retType: T.I64,
    paramsType: sysParams3,
    paramsValue: [nr, a, b, c],
  }) as number;
  if (r === -1) return -lastErrno();
  return r;
}

/** Address of native memory → a zero-copy Buffer view of `length` bytes. */
export function viewAt(addr: bigint, length: number): Buffer {
  const m = init();
  if (length === 0) return Buffer.alloc(0);
  // memset(p, 0, 0) returns p: the cheapest way to turn an address into an External.
  const ext = m.load({
    library: LIB,
    funcName: 'memset',
    retType: T.External,
    paramsType: [T.BigInt, T.I32, T.I64],
    paramsValue: [addr, 0, 0],
  });
  return m.createExternalBuffer(ext, length);
}

/** calloc'd native memory: `[address, view]`. Caller frees with `nativeFree`. */
export function nativeAlloc(size: number): { addr: bigint; view: Buffer } {
  const m = init();
  const addr = m.load({
    library: LIB,
    funcName: 'calloc',
    retType: T.BigInt,
    paramsType: [T.I64, T.I64],
    paramsValue: [1, size],
  }) as unknown as bigint;
  if (addr === 0n) throw new TsbpfError(`out of native memory allocating ${size} bytes`);
  return { addr, view: viewAt(addr, size) };
}

export function nativeFree(addr: bigint): void {
  const m = init();
  m.load({ library: LIB, funcName: 'free', retType: T.Void, paramsType: [T.BigInt], paramsValue: [addr] });
}

/** Largest argument block an Arena allocates: more is a caller's mistake (see reserve()). */
const MAX_ARENA = 1 << 30;

/**
 * A bump allocator over one native block. Each syscall wrapper calls
 * `reset()`, carves the attr and the memory its pointers refer to, makes the
 * call and copies results out before the next reset. Single-threaded by
 * construction: each worker thread loads its own copy of this module.
 */
export class Arena {
  #addr = 0n;
  #view: Buffer = Buffer.alloc(0);
  #used = 0;

  get view(): Buffer {
    return this.#view;
  }

  reset(): void {
    this.#used = 0;
  }

  /**
   * Give back a block grown for one large call (a multi-MiB verifier log or
   * program): regions are zero-filled when carved, so a big block would keep
   * its pages resident for the life of the process.
   */
  trim(keep = 1 << 20): void {
    if (this.#view.length <= keep || this.#addr === 0n) return;
    nativeFree(this.#addr);
    this.#addr = 0n;
    this.#view = Buffer.alloc(0);
    this.#used = 0;
  }

  /** Make sure `total` bytes fit; must be called before any alloc() of this round (growing moves the block). */
  reserve(total: number): void {
    if (total <= this.#view.length) return;
    // Callers size their arguments from user input (batch counts, test-run buffers): over 1 GiB is a
    // mistake, refused before calloc (and before Node's 4 GiB Buffer limit would throw a plain Error).
    if (!(total <= MAX_ARENA)) throw new TsbpfError(`a system call would need ${total} bytes of argument memory; refusing more than ${MAX_ARENA}`);
    let size = Math.max(4096, this.#view.length);
    while (size < total) size *= 2;
    const block = nativeAlloc(size);
    if (this.#addr !== 0n) nativeFree(this.#addr);
    this.#addr = block.addr;
    this.#view = block.view;
    this.#used = 0;
  }

  /** Zeroed region of `size` bytes, 8-byte aligned. */
  alloc(size: number): { off: number; addr: bigint } {
    const off = (this.#used + 7) & ~7;
    const end = off + size;
    if (end > this.#view.length) {
      throw new Error(`tsbpf internal error: arena overflow (${end} > ${this.#view.length}); reserve() first`);
    }
    this.#view.fill(0, off, end);
    this.#used = end;
    return { off, addr: this.#addr + BigInt(off) };
  }

  /** Copy `data` into the arena, return its address. */
  copyIn(data: Uint8Array): bigint {
    const r = this.alloc(data.length);
    this.#view.set(data, r.off);
    return r.addr;
  }

  /** Copy a NUL-terminated string into the arena, return its address. */
  cString(s: string): bigint {
    const bytes = Buffer.from(s + '\0', 'utf8');
    return this.copyIn(bytes);
  }
}

/** The process-wide (per-thread) arena used by syscall wrappers. */
export const arena = new Arena();
