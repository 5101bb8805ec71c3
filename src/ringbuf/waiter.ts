// One waiter thread per process serves every ring reader.
//
// Readiness of a ring fd comes from epoll. A blocking epoll_wait on the main thread would freeze Node, and
// one `runInNewThread` wait per reader would hold a libuv threadpool thread each (four of them starve fs
// and dns; hazard 7 in the ffi-rs notes). So one worker thread blocks in epoll_wait on a single epoll
// instance holding every open reader's ring fds plus an eventfd, and posts the ids of ready fds.
//
// - The main thread owns the epoll fd and the eventfd and does every epoll_ctl itself (safe while the
//   worker waits on the same epoll instance).
// - Ring fds are registered edge-triggered (EPOLLET): the kernel wakes a ring's wait queue when a record
//   is committed at the consumer position, i.e. only once the reader has caught up, so a message means
//   "new data since you drained", and a reader that has not drained gets no stream of messages.
// - The worker is ref'd only while some reader awaits data: an open but idle reader does not keep the
//   process alive. When the last registration goes, the thread is told to stop (eventfd) and the fds are
//   closed once it has exited; the next reader starts a fresh thread.

import { Worker } from 'node:worker_threads';
import { createRequire } from 'node:module';
import { epollCreate, epollCtl, eventfd, EPOLLIN } from '../syscall/os.js';
import { layoutSize, offsetOfEnd } from '../syscall/layout.js';
import { arena, NR, rawSyscall3 } from '../syscall/native.js';
import type { FD } from '../syscall/fd.js';
import { WAITER_WORKER_SOURCE, type WaiterWorkerData } from './waiter-worker.js';

const EPOLL_CTL_ADD = 1;
const EPOLL_CTL_DEL = 2;
const EPOLLET = 0x80000000;
const NR_EPOLL_PWAIT = 22; // arm64 has no epoll_wait
/** Upper bound of one wait in the worker: lets the thread reach JavaScript (and be terminated) now and then. */
const WAIT_TIMEOUT_MS = 1000;

export interface WaitTarget {
  /** New data may be there (edge: since the last drain). */
  ready(): void;
  /** The waiter thread failed: no further wakeups will come. */
  failed(err: Error): void;
}

let current: Waiter | undefined;
const live = new Set<Waiter>();
let exitHooked = false;

export class Waiter {
  #ep: FD;
  #efd: FD;
  #worker: Worker;
  #targets = new Map<number, WaitTarget>();
  #nextId = 1;
  #waiting = 0;
  #stopping = false;
  #exited: Promise<void>;
  #error: Error | undefined;

  constructor() {
    this.#ep = epollCreate();
    try {
      this.#efd = eventfd(0);
      // user value 0 = the eventfd (stop); level-triggered: once written it stays readable.
      epollCtl(this.#ep.value, EPOLL_CTL_ADD, this.#efd.value, EPOLLIN, 0n);
    } catch (e) {
      this.#ep.close();
      throw e;
    }
    const data: WaiterWorkerData = {
      ffiPath: createRequire(import.meta.url).resolve('ffi-rs'),
      epfd: this.#ep.value,
      waitNr: NR.epoll_wait,
      pwaitNr: NR_EPOLL_PWAIT,
      eventSize: layoutSize('epoll_event'),
      dataOffset: offsetOfEnd('epoll_event', 'data') - 8,
      maxEvents: 64,
      timeoutMs: WAIT_TIMEOUT_MS,
    };
    // No execArgv: the eval'd body needs no loader (and must not inherit e.g. a TypeScript --import hook).
    this.#worker = new Worker(WAITER_WORKER_SOURCE, { eval: true, workerData: data, execArgv: [], stdout: false, stderr: false });
    this.#worker.on('message', (m: number[] | { error: string }) => {
      if (Array.isArray(m)) {
        for (const id of m) this.#targets.get(id)?.ready();
      } else {
        this.#fail(new Error(`tsbpf ring waiter: ${m.error}`));
      }
    });
    this.#worker.on('error', (e: Error) => this.#fail(e));
    this.#exited = new Promise((resolve) => {
      this.#worker.once('exit', () => {
        // The thread is gone: nothing waits on these fds any more.
        this.#ep.close();
        this.#efd.close();
        live.delete(this);
        if (current === this) current = undefined;
        if (!this.#stopping) this.#fail(new Error('tsbpf ring waiter: the waiter thread exited'));
        resolve();
      });
    });
    // After the listeners: adding a 'message' listener refs the worker's port again.
    this.#worker.unref();
    live.add(this);
    if (!exitHooked) {
      exitHooked = true;
      // Node joins worker threads at exit: wake ours out of epoll_wait so exit is not delayed.
      process.once('exit', () => {
        for (const w of live) w.#wake();
      });
    }
  }

  get stopping(): boolean {
    return this.#stopping || this.#error !== undefined;
  }

  /**
   * Watch `fd` (edge-triggered) for `events` (EPOLLIN by default: ring readers; a user ring buffer writer
   * passes EPOLLOUT, space to write). Returns the registration id for remove().
   */
  add(fd: number, target: WaitTarget, events: number = EPOLLIN): number {
    if (this.stopping) throw new Error('tsbpf internal error: registering with a stopped ring waiter');
    const id = this.#nextId++;
    epollCtl(this.#ep.value, EPOLL_CTL_ADD, fd, events | EPOLLET, BigInt(id));
    this.#targets.set(id, target);
    return id;
  }

  /** Stop watching `fd`; the thread stops with the last registration. Call before closing `fd`. */
  remove(id: number, fd: number): void {
    if (!this.#targets.delete(id)) return;
    if (!this.#ep.closed) {
      try {
        epollCtl(this.#ep.value, EPOLL_CTL_DEL, fd, 0, 0n);
      } catch {
        /* already gone (ENOENT/EBADF): nothing left to undo */
      }
    }
    if (this.#targets.size === 0) this.#stop();
  }

  /** Someone awaits a wakeup: keep the process alive meanwhile. Pair with waitEnd(). */
  waitStart(): void {
    if (this.#waiting++ === 0 && !this.#stopping) this.#worker.ref();
  }

  waitEnd(): void {
    if (--this.#waiting === 0) this.#worker.unref();
  }

  /** Resolves when the thread has exited; keeps the process alive until then (use after the thread was told to stop). */
  awaitExit(): Promise<void> {
    this.#worker.ref();
    return this.#exited;
  }

  #stop(): void {
    if (this.#stopping) return;
    this.#stopping = true;
    if (current === this) current = undefined;
    this.#worker.unref();
    this.#wake();
  }

  #wake(): void {
    if (this.#efd.closed) return;
    arena.reserve(64);
    arena.reset();
    const one = arena.alloc(8);
    arena.view.writeBigUInt64LE(1n, one.off);
    rawSyscall3(NR.write, BigInt(this.#efd.value), one.addr, 8n);
  }

  #fail(e: Error): void {
    if (this.#error) return;
    this.#error = e;
    if (current === this) current = undefined;
    for (const t of [...this.#targets.values()]) t.failed(e);
  }
}

/** The process's waiter (started on first use). */
export function acquireWaiter(): Waiter {
  if (!current || current.stopping) current = new Waiter();
  return current;
}

/** Number of waiter threads alive (running or stopping). */
export function waiterThreads(): number {
  return live.size;
}

/** Resolves once every waiter thread has exited (after the last reader closed). */
export async function waitersIdle(): Promise<void> {
  while (live.size) await Promise.all([...live].map((w) => w.awaitExit()));
}
