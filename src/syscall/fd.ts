// File descriptor ownership. Every fd tsbpf opens is wrapped in an FD: it is
// never 0 (parts of the BPF UAPI read fd 0 as "none"), always close-on-exec
// (bpf(), perf_event_open with PERF_FLAG_FD_CLOEXEC, epoll_create1 and eventfd
// with their CLOEXEC flags all set it), closed exactly once by close(), and
// closed by a FinalizationRegistry if its owner is garbage-collected unclosed.

import { ClosedError } from '../errors.js';
import { NR, rawSyscall3 } from './native.js';
import { SyscallError } from './errors.js';

const F_DUPFD_CLOEXEC = 1030n;

let openCount = 0;

function rawClose(n: number): void {
  rawSyscall3(NR.close, BigInt(n), 0n, 0n);
}

const registry = new FinalizationRegistry<number>((n) => {
  openCount--;
  rawClose(n);
});

export class FD {
  #n: number;
  readonly #token = {};

  /** Take ownership of a freshly returned fd number. */
  constructor(n: number) {
    if (!Number.isInteger(n) || n < 0) throw new TypeError(`invalid fd ${n}`);
    if (n === 0) {
      // Move fd 0 out of the way: dup it to >= 1 with close-on-exec, close 0.
      const d = rawSyscall3(NR.fcntl, 0n, F_DUPFD_CLOEXEC, 1n);
      rawClose(0);
      if (d < 0) throw new SyscallError('fcntl', 'F_DUPFD_CLOEXEC', -d, 'moving fd 0');
      n = d;
    }
    this.#n = n;
    openCount++;
    registry.register(this, n, this.#token);
  }

  /** The fd number; throws ClosedError after close(). */
  get value(): number {
    if (this.#n < 0) throw new ClosedError('file descriptor is closed');
    return this.#n;
  }

  get closed(): boolean {
    return this.#n < 0;
  }

  /** Close once; later calls do nothing. */
  close(): void {
    if (this.#n < 0) return;
    registry.unregister(this.#token);
    rawClose(this.#n);
    this.#n = -1;
    openCount--;
  }

  /** A new FD for the same open file (close-on-exec). */
  dup(): FD {
    const d = rawSyscall3(NR.fcntl, BigInt(this.value), F_DUPFD_CLOEXEC, 1n);
    if (d < 0) throw new SyscallError('fcntl', 'F_DUPFD_CLOEXEC', -d);
    return new FD(d);
  }

  [Symbol.dispose](): void {
    this.close();
  }

  toString(): string {
    return this.#n < 0 ? 'fd(closed)' : `fd(${this.#n})`;
  }
}

/** Number of FDs tsbpf currently owns (for leak tests and diagnostics). */
export function ownedFdCount(): number {
  return openCount;
}
