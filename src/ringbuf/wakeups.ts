// The wakeup bookkeeping both readers share: readiness reported by the waiter thread either resolves the
// pending waits or, when nobody waits, is remembered for the next wait (answered by the next drain).

import type { Waiter } from './waiter.js';

export class Wakeups {
  #signalled = false;
  readonly #waits = new Set<(err?: unknown) => void>();

  /** A ring became readable. */
  ready(): void {
    if (this.#waits.size === 0) {
      this.#signalled = true;
      return;
    }
    for (const w of [...this.#waits]) w();
  }

  /** A drain is starting: a wakeup that arrived before it is answered by it. */
  consume(): void {
    this.#signalled = false;
  }

  /** Resolve every pending wait (close() ends waits and iterators). */
  wakeAll(): void {
    for (const w of [...this.#waits]) w();
  }

  /**
   * Resolves on the next wakeup (at once if one is pending or `settled`), rejects when `signal` aborts.
   * The waiter keeps the process alive while the wait is pending.
   */
  wait(waiter: Waiter, settled: boolean, signal?: AbortSignal): Promise<void> {
    if (settled) return Promise.resolve();
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.#signalled) {
      this.#signalled = false;
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      const done = (err?: unknown): void => {
        this.#waits.delete(done);
        signal?.removeEventListener('abort', onAbort);
        waiter.waitEnd();
        if (err !== undefined) reject(err);
        else resolve();
      };
      const onAbort = (): void => done(signal!.reason);
      this.#waits.add(done);
      waiter.waitStart();
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}
