// What RingBufReader and PerfReader share: the reader's life (open, aborted, failed, closed, released), the
// waiter registration, and the front-ends built on one "drain": read(), readInPlace(), wait(), iteration
// and listen(). Each reader owns one ReaderCore privately and supplies the ring-specific parts (draining
// one ring, the records held by nextBatch(), taking a record as a value, unmapping) as ReaderRings.
//
// The drain loops of the readers test `core.closed` and `core.stop` per record: a close() or a callback
// that asks to stop ends the drain right after the record being visited.

import { TsbpfError, ClosedError } from '../errors.js';
import { acquireWaiter, type Waiter } from './waiter.js';
import { Wakeups } from './wakeups.js';

/** What a drain hands each record to: a Buffer, the record's range in it, the ring (or CPU) it came from. */
export type Visit = (data: Buffer, start: number, len: number, ring: number) => void;

/** The ring-specific half of a reader. */
export interface ReaderRings {
  /** Number of rings; drains go through them in order. */
  ringCount(): number;
  /** Visit up to `max` records of ring `i` (stopping early on core.closed / core.stop); returns how many. */
  drainRing(i: number, max: number, visit: Visit): number;
  /** Whether nextBatch() handed out records whose space is not handed back yet. */
  holding(): boolean;
  /** Hand the space of the records held by nextBatch() back to the kernel. */
  releaseHeld(): void;
  /** Forget the held records without touching the rings (at close). */
  dropHeld(): void;
  /** The record as iteration/listen() hand it out: decoded, a copy, or a view. */
  take(data: Buffer, start: number, len: number, ring: number, copy: boolean): unknown;
  /** Unmap and close everything: called once, never while a drain runs. */
  release(): void;
  /** The ClosedError message. */
  closedMessage(): string;
}

export class ReaderCore {
  closed = false;
  /** Set by a visit to end the current drain after the record it is visiting. */
  stop = false;
  /** Drains in progress (0 or 1: a callback may not start another). */
  reading = 0;
  released = false;
  /** Wakeups that arrived while nobody was waiting, and the pending waits. */
  readonly wakeups = new Wakeups();
  #waiter: Waiter | undefined;
  #waitIds: [id: number, fd: number][] = [];
  #abortReason: unknown;
  #failure: Error | undefined;
  #signal: AbortSignal | undefined;
  #onAbort: (() => void) | undefined;
  readonly #rings: ReaderRings;
  /** 'RingBufReader' or 'PerfReader', for messages. */
  readonly #kind: string;

  constructor(kind: string, rings: ReaderRings) {
    this.#kind = kind;
    this.#rings = rings;
  }

  /** Register the rings' fds with the process's waiter thread (readiness wakes wait()/iteration/listen()). */
  watchFds(fds: readonly number[]): void {
    const waiter = acquireWaiter();
    this.#waiter = waiter;
    for (const fd of fds) {
      const id = waiter.add(fd, {
        ready: () => this.wakeups.ready(),
        failed: (err) => {
          this.#failure = err;
          this.wakeups.ready();
        },
      });
      this.#waitIds.push([id, fd]);
    }
  }

  /** Close the reader when `signal` aborts (at once if it has); later calls throw its reason. */
  closeOnAbort(signal: AbortSignal): void {
    this.#signal = signal;
    this.#onAbort = () => {
      this.#abortReason = signal.reason;
      this.close();
    };
    if (signal.aborted) this.#onAbort();
    else signal.addEventListener('abort', this.#onAbort, { once: true });
  }

  /** A constructor failed part way: undo the registration and release what was made. */
  abandon(): void {
    this.closed = true;
    this.#unwatch();
    this.#releaseOnce();
  }

  check(): void {
    if (this.closed) {
      if (this.#abortReason !== undefined) throw this.#abortReason;
      throw new ClosedError(this.#rings.closedMessage());
    }
  }

  /**
   * Visit up to `max` records across the rings; returns how many were visited. A wakeup that arrived
   * before the drain is answered by it; records held by nextBatch() are handed back first.
   */
  drain(max: number, visit: Visit): number {
    if (this.reading) throw new TsbpfError(`${this.#kind}: read() called from a record callback`);
    this.wakeups.consume();
    this.#rings.releaseHeld();
    this.stop = false;
    this.reading++;
    let n = 0;
    try {
      const count = this.#rings.ringCount();
      for (let i = 0; i < count; i++) {
        if (n >= max || this.closed) break;
        n += this.#rings.drainRing(i, max - n, visit);
      }
    } finally {
      this.reading--;
      // A close() from a callback left the release to us.
      if (this.closed) this.#releaseOnce();
    }
    return n;
  }

  /** Start of nextBatch(): the checks and the hand-back of the previous batch. */
  beginBatch(): void {
    this.check();
    if (this.reading) throw new TsbpfError(`${this.#kind}: nextBatch() called from a record callback`);
    this.wakeups.consume();
    this.#rings.releaseHeld();
  }

  read(callback: (record: Buffer, ring: number) => void, options: { copy?: boolean; max?: number }): number {
    if (typeof callback !== 'function') throw new TypeError(`${this.#kind}.read: callback must be a function`);
    this.check();
    const max = checkMax(options.max, `${this.#kind}.read`);
    if (options.copy === true) {
      return this.drain(max, (data, start, len, ring) => {
        const out = Buffer.allocUnsafe(len);
        data.copy(out, 0, start, start + len);
        callback(out, ring);
      });
    }
    return this.drain(max, (data, start, len, ring) => callback(data.subarray(start, start + len), ring));
  }

  readInPlace(callback: Visit, options: { max?: number }): number {
    if (typeof callback !== 'function') throw new TypeError(`${this.#kind}.readInPlace: callback must be a function`);
    this.check();
    // The user's callback is the visit itself: no wrapper call per record.
    return this.drain(checkMax(options.max, `${this.#kind}.readInPlace`), callback);
  }

  wait(signal?: AbortSignal): Promise<void> {
    try {
      this.check();
    } catch (e) {
      return Promise.reject(e);
    }
    // Records held by nextBatch() keep the consumer position behind, so the kernel would not wake us for
    // new ones: hand them back and report a (possibly spurious) wakeup right away.
    if (this.#rings.holding()) {
      this.#rings.releaseHeld();
      return Promise.resolve();
    }
    return this.#nextWakeup(signal);
  }

  #nextWakeup(signal?: AbortSignal): Promise<void> {
    return this.wakeups.wait(this.#waiter!, this.closed || !!this.#failure, signal);
  }

  /** Iteration is over (return) or failed (throw)? Undefined: go on. */
  #ended(signal?: AbortSignal): boolean {
    signal?.throwIfAborted();
    if (this.#abortReason !== undefined) throw this.#abortReason;
    if (this.#failure) throw this.#failure;
    return this.closed;
  }

  /**
   * Copies (or decoded values) made by `make` from each record, read `batch` at a time as the consumer
   * pulls: a slow consumer leaves records in the rings instead of having them buffered here.
   */
  async *iterate<Item>(
    where: string, options: { signal?: AbortSignal; batch?: number }, make: (value: unknown, ring: number) => Item,
  ): AsyncGenerator<Item, void, undefined> {
    const { signal } = options;
    const batch = options.batch ?? 256;
    if (!(Number.isInteger(batch) && batch > 0)) throw new TypeError(`${this.#kind}.${where}: batch must be a positive integer`);
    const queue: Item[] = [];
    for (;;) {
      if (this.#ended(signal)) return;
      queue.length = 0;
      let bad: unknown;
      this.drain(batch, (data, start, len, ring) => {
        try {
          queue.push(make(this.#rings.take(data, start, len, ring, true), ring));
        } catch (e) {
          bad = e;
          this.stop = true;
        }
      });
      // Back-pressure: nothing more is read until the consumer has taken all of these.
      for (let i = 0; i < queue.length; i++) yield queue[i];
      if (bad !== undefined) throw bad;
      if (queue.length > 0) continue;
      await this.#nextWakeup(signal);
    }
  }

  async listen(
    callback: (value: never, ring: number) => void | Promise<void>, options: { signal?: AbortSignal; copy?: boolean },
  ): Promise<void> {
    if (typeof callback !== 'function') throw new TypeError(`${this.#kind}.listen: callback must be a function`);
    const { signal } = options;
    const copy = options.copy === true;
    for (;;) {
      if (this.#ended(signal)) return;
      let pending: Promise<void> | undefined;
      let failed = false;
      let error: unknown;
      const n = this.drain(Infinity, (data, start, len, ring) => {
        try {
          const ret = callback(this.#rings.take(data, start, len, ring, copy) as never, ring);
          if (ret && typeof (ret as Promise<void>).then === 'function') {
            // Back-pressure: stop draining until the callback's promise settles.
            pending = ret as Promise<void>;
            this.stop = true;
          }
        } catch (e) {
          failed = true;
          error = e;
          this.stop = true;
        }
      });
      if (failed) throw error;
      if (pending) {
        await pending;
        continue;
      }
      if (n > 0) continue;
      await this.#nextWakeup(signal);
    }
  }

  /** Idempotent. Wakes pending waits (iterators end), unregisters from the waiter, releases the rings. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.#signal && this.#onAbort) this.#signal.removeEventListener('abort', this.#onAbort);
    this.#unwatch();
    this.#rings.dropHeld();
    this.wakeups.wakeAll();
    if (this.reading === 0) this.#releaseOnce();
    // else: the drain in progress releases when it returns (its loop stops at the next record).
  }

  #unwatch(): void {
    for (const [id, fd] of this.#waitIds) this.#waiter?.remove(id, fd);
    this.#waitIds = [];
  }

  #releaseOnce(): void {
    if (this.released) return;
    this.released = true;
    this.#rings.release();
  }
}

/** `max` of read()/readInPlace(): a non-negative integer or Infinity (the default). */
export function checkMax(max: unknown, where: string): number {
  if (max === undefined) return Infinity;
  if (typeof max !== 'number' || !(max === Infinity || (Number.isInteger(max) && max >= 0))) {
    throw new TypeError(`${where}: max must be a non-negative integer or Infinity, got ${typeof max === 'number' ? max : typeof max}`);
  }
  return max;
}
