// User ring buffer (BPF_MAP_TYPE_USER_RINGBUF) writer: user space produces, a BPF program consumes with
// bpf_user_ringbuf_drain(). The mirror image of ringbuf.ts.
//
// Layout of a ring of `size` bytes (a power of two, a multiple of the page size), as the kernel maps it for
// this map type (kernel/bpf/ringbuf.c, ringbuf_map_mmap_user):
//   offset 0, one page, read-only:    consumer page; u64 consumer_pos at byte 0 (the kernel writes it; a
//                                     writable mapping of page 0 is refused with EPERM)
//   offset PAGE, read-write:          producer page; u64 producer_pos at byte 0 (we write it), then the
//                                     data area mapped twice in a row (2 × size), so a record that wraps
//                                     around the end of the ring is one contiguous range for us too.
// A record at position p (p mod size in the data area) is an 8-byte header, u32 length with BUSY (bit 31:
// reserved, not submitted yet) and DISCARD (bit 30), and a u32 the kernel ignores for this map type (we
// write 0), followed by `length` bytes of data, the whole rounded up to 8.
//
// What the kernel does with it (__bpf_user_ringbuf_peek, called by bpf_user_ringbuf_drain for each record):
// acquire-load producer_pos (must be a multiple of 8, else the drain fails with EINVAL), acquire-load the
// header at consumer_pos; DISCARD: skip it (consumer_pos advances, not counted); BUSY: stop, as if the ring
// were empty (the drain returns the records it consumed so far; -EBUSY is only for two concurrent drains);
// a length that runs past producer_pos fails the drain with EINVAL, one longer than the ring or than a
// dynptr can hold (2^24 - 1) with E2BIG. After the callback it release-stores consumer_pos past the record.
// At the end of a drain that visited any record (or with BPF_RB_FORCE_WAKEUP, never with
// BPF_RB_NO_WAKEUP) it wakes the map's wait queue; poll reports EPOLLOUT while the ring is not full.
//
// Memory: the mappings are read and written through typed arrays and Buffers that never leave this module,
// except each record's `data` view (valid until the record is submitted or discarded, or the writer closed).
// close() discards pending records and drops every internal view before unmapping, and `record.data` refuses
// to hand the view out after that; a view kept from before reads zeros then (see Mapping.unmap()).

import { BpfMap, MapType, mapTypeName } from '../maps/map.js';
import { mmap, pageSize, PROT_READ, PROT_WRITE, type Mapping } from '../syscall/os.js';
import { FD } from '../syscall/fd.js';
import { NR, rawSyscall3 } from '../syscall/native.js';
import { SyscallError } from '../syscall/errors.js';
import { ClosedError, TsbpfError } from '../errors.js';
import { acquireWaiter, type Waiter } from './waiter.js';
import { Wakeups } from './wakeups.js';

const BUSY = 0x80000000;
const DISCARD = 0x40000000;
const HDR = 8;
/** The kernel hands each record to the program as a dynptr, whose size field has 24 bits. */
const DYNPTR_MAX_SIZE = 0xffffff;
const EPOLLOUT = 4;
const F_DUPFD_CLOEXEC = 1030n;
/** Module-private: the writer tells a pending record it closed. */
const writerClosed = Symbol('writerClosed');

export interface UserRingBufReserveOptions {
  /** Aborting rejects the pending reservation with `signal.reason` (the writer stays open). */
  signal?: AbortSignal;
  /** Give up after this many milliseconds: rejects with a DOMException named 'TimeoutError'. */
  timeoutMs?: number;
}

/** What a record needs from its writer. */
interface RecordOwner {
  commit(rec: UserRingBufRecord, off: number, size: number, discard: boolean): void;
  readonly label: string;
}

/**
 * Space reserved in a user ring buffer: fill `data`, then `submit()` (or `discard()`) exactly once.
 * Created by `UserRingBufWriter.reserve()`.
 *
 * Records may be submitted or discarded in any order, but the program consumes them in ring order: a record
 * still pending hides every record reserved after it from bpf_user_ringbuf_drain() until it is submitted or
 * discarded. Do not keep records pending for long.
 */
export class UserRingBufRecord {
  /** Number of data bytes (as asked for; the ring stores it rounded up to 8, plus an 8-byte header). */
  readonly size: number;
  #owner: RecordOwner;
  #off: number;
  #view: Buffer | undefined;
  #state: 'pending' | 'submitted' | 'discarded' | 'closed' = 'pending';

  /** @internal */
  constructor(owner: RecordOwner, off: number, size: number, view: Buffer) {
    this.#owner = owner;
    this.#off = off;
    this.size = size;
    this.#view = view;
  }

  /**
   * The record's bytes: a view into the ring, exactly `size` bytes, contents undefined until written.
   * Valid until submit()/discard() or the writer's close(); reading this property after that throws, but a
   * reference kept from before must not be used (after close it is placeholder memory, reading zeros and
   * writing nowhere; after submit the program may already have consumed it and the space been reused).
   */
  get data(): Buffer {
    if (!this.#view) throw this.#stateError('data');
    return this.#view;
  }

  /** Still reserved (neither submitted nor discarded, writer open). */
  get pending(): boolean {
    return this.#state === 'pending';
  }

  /** Hand the record to the program. Throws if already submitted/discarded or the writer is closed. */
  submit(): void {
    this.#commit(false);
  }

  /** Give the space back unread: the program never sees this record. */
  discard(): void {
    this.#commit(true);
  }

  #commit(discard: boolean): void {
    if (this.#state !== 'pending') throw this.#stateError(discard ? 'discard()' : 'submit()');
    this.#owner.commit(this, this.#off, this.size, discard);
    this.#state = discard ? 'discarded' : 'submitted';
    this.#view = undefined;
  }

  /** The writer closed (it discarded the record if it was pending). */
  [writerClosed](): void {
    if (this.#state === 'pending') this.#state = 'closed';
    this.#view = undefined;
  }

  #stateError(what: string): Error {
    if (this.#state === 'closed') return new ClosedError(`${this.#owner.label}: record ${what} after the writer was closed`);
    return new TsbpfError(`${this.#owner.label}: record ${what} after it was already ${this.#state}`);
  }
}

function dupFd(fd: number, what: string): FD {
  const d = rawSyscall3(NR.fcntl, BigInt(fd), F_DUPFD_CLOEXEC, 1n);
  if (d < 0) throw new SyscallError('fcntl', 'F_DUPFD_CLOEXEC', -d, what);
  return new FD(d);
}

/**
 * Writes records into a BPF user ring buffer, for a BPF program to drain with bpf_user_ringbuf_drain().
 *
 * ```ts
 * using w = new UserRingBufWriter(coll.maps.requests);
 * w.write(Buffer.from('hello'));                 // false when the ring is full
 * const rec = w.reserve(16);                     // or fill in place; undefined when full
 * if (rec) { rec.data.writeUInt32LE(7, 0); rec.submit(); }
 * const r = await w.reserveAsync(16, { timeoutMs: 1000 });  // waits for the program to drain
 * ```
 *
 * One producer at a time: the kernel does not arbitrate between user-space producers. Writers in the same
 * thread may share a ring (each call runs to completion), writers in several threads or processes may not.
 * Waiting for space happens in the shared waiter thread (never the libuv threadpool) and relies on the
 * program's drain waking the map (not with BPF_RB_NO_WAKEUP).
 */
export class UserRingBufWriter {
  /** Ring size in bytes (the map's max_entries). */
  readonly size: number;
  /** Largest `size` reserve() accepts: the ring minus one header, and at most 2^24 - 1 (a dynptr). */
  readonly maxRecordSize: number;
  readonly name: string;
  readonly #label: string;
  readonly #fd: FD;
  readonly #consumer: Mapping;
  readonly #producer: Mapping;
  /** consumer_pos (read-only page). */
  #consPos: BigInt64Array | undefined;
  /** producer_pos (read-write page). */
  #prodPos: BigInt64Array | undefined;
  /** Record headers: the data area (2 × size) as u32 words. */
  #hdr: Uint32Array | undefined;
  /** The data area (2 × size) as bytes. */
  #data: Buffer | undefined;
  /** Pending records and their ring offsets. */
  readonly #pending = new Map<UserRingBufRecord, number>();
  readonly #owner: RecordOwner;
  #waiter: Waiter | undefined;
  #waitId = 0;
  readonly #wakeups = new Wakeups();
  #failure: Error | undefined;
  #closed = false;

  constructor(map: BpfMap) {
    if (!(map instanceof BpfMap)) throw new TypeError('UserRingBufWriter: argument is not a BpfMap');
    if (map.type !== MapType.USER_RINGBUF) {
      throw new TypeError(`UserRingBufWriter: map "${map.name}" is ${mapTypeName(map.type)}, not USER_RINGBUF`);
    }
    const page = pageSize();
    const size = map.maxEntries;
    this.name = map.name;
    this.#label = `user ring buffer "${map.name}"`;
    if (size <= 0 || size & (size - 1) || size % page) throw new TsbpfError(`UserRingBufWriter: map "${map.name}" has a bad ring size ${size}`);
    this.size = size;
    this.maxRecordSize = Math.min(size - HDR, DYNPTR_MAX_SIZE);
    // Our own fd: the user may close the map while writing; the mappings hold the map alive anyway.
    const fd = dupFd(map.fd, this.#label);
    let consumer: Mapping | undefined;
    try {
      consumer = mmap(fd.value, page, PROT_READ, 0, `${this.#label}: consumer page`);
      this.#producer = mmap(fd.value, page + 2 * size, PROT_READ | PROT_WRITE, page, `${this.#label}: producer page and data`);
    } catch (e) {
      consumer?.unmap();
      fd.close();
      throw e;
    }
    this.#fd = fd;
    this.#consumer = consumer;
    const cv = consumer.view;
    const pv = this.#producer.view;
    this.#consPos = new BigInt64Array(cv.buffer, cv.byteOffset, 1);
    this.#prodPos = new BigInt64Array(pv.buffer, pv.byteOffset, 1);
    this.#hdr = new Uint32Array(pv.buffer, pv.byteOffset + page, (2 * size) / 4);
    this.#data = pv.subarray(page, page + 2 * size);
    this.#owner = {
      label: this.#label,
      commit: (rec, off, len, discard) => this.#commit(rec, off, len, discard),
    };
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Records reserved and not yet submitted or discarded. */
  get pendingRecords(): number {
    return this.#pending.size;
  }

  /**
   * Bytes free in the ring now. A record of n bytes takes round_up(n + 8, 8) of them. Grows when the program
   * drains.
   */
  get free(): number {
    this.#check();
    const { cons, prod } = this.#positions();
    return this.size - (prod - cons);
  }

  /**
   * Reserve `size` bytes; undefined when the ring has no room now. Never waits. Fill `record.data`, then
   * `record.submit()` or `record.discard()`. See UserRingBufRecord for the order the program sees.
   */
  reserve(size: number): UserRingBufRecord | undefined {
    this.#check();
    this.#checkSize(size, 'reserve');
    const hdr = this.#hdr!;
    const { cons, prod } = this.#positions();
    const total = (size + HDR + 7) & ~7;
    if (total > this.size - (prod - cons)) return undefined;
    const off = prod % this.size;
    const w = off >>> 2;
    // The second header word: unused by the kernel for this map type; zero, as other producers write it.
    hdr[w + 1] = 0;
    // The length with BUSY: the kernel stops at this record until we clear BUSY. Plain ordering is enough
    // here, the producer_pos store below publishes it.
    Atomics.store(hdr, w, (size | BUSY) >>> 0);
    // RELEASE (seq-cst store): pairs with the kernel's acquire load of producer_pos in
    // __bpf_user_ringbuf_peek. The header above (BUSY) is visible before the new producer position is:
    // otherwise the kernel could read a stale header left from an earlier lap as a committed record.
    Atomics.store(this.#prodPos!, 0, BigInt(prod + total));
    const rec = new UserRingBufRecord(this.#owner, off, size, this.#data!.subarray(off + HDR, off + HDR + size));
    this.#pending.set(rec, off);
    return rec;
  }

  /** Reserve, copy `bytes`, submit. False (nothing written) when the ring has no room now. */
  write(bytes: Uint8Array): boolean {
    if (!(bytes instanceof Uint8Array)) throw new TypeError(`UserRingBufWriter.write (${this.#label}): bytes must be a Buffer/Uint8Array`);
    const rec = this.reserve(bytes.length);
    if (!rec) return false;
    rec.data.set(bytes);
    rec.submit();
    return true;
  }

  /**
   * Reserve `size` bytes, waiting (without blocking Node or holding a threadpool thread) until the program
   * has drained enough. Rejects with ClosedError when the writer closes meanwhile, with `signal.reason` when
   * `signal` aborts, with a 'TimeoutError' DOMException after `timeoutMs`. Waiters are not queued: a
   * reserve() in between, or a smaller concurrent reserveAsync(), may take the space first.
   */
  async reserveAsync(size: number, options: UserRingBufReserveOptions = {}): Promise<UserRingBufRecord> {
    this.#check();
    this.#checkSize(size, 'reserveAsync');
    const { signal, timeoutMs } = options;
    if (timeoutMs !== undefined && !(typeof timeoutMs === 'number' && timeoutMs >= 0 && Number.isFinite(timeoutMs))) {
      throw new TypeError(`UserRingBufWriter.reserveAsync (${this.#label}): timeoutMs must be a finite number >= 0, got ${timeoutMs}`);
    }
    signal?.throwIfAborted();
    const first = this.reserve(size);
    if (first) return first;
    if (this.#failure) throw this.#failure;
    // Register before the next look at the free space: a drain after that look wakes us (edge-triggered
    // EPOLLOUT: the kernel wakes the map's wait queue after each drain), one before it is seen by the look.
    this.#register();
    let timer: NodeJS.Timeout | undefined;
    let stop = signal;
    let onAbort: (() => void) | undefined;
    if (timeoutMs !== undefined) {
      // One signal for both: the caller's and the deadline.
      const ac = new AbortController();
      stop = ac.signal;
      timer = setTimeout(() => ac.abort(new DOMException(`${this.#label}: no room for ${size} bytes after ${timeoutMs} ms`, 'TimeoutError')), timeoutMs);
      if (signal) {
        onAbort = () => ac.abort(signal.reason);
        signal.addEventListener('abort', onAbort, { once: true });
      }
    }
    try {
      for (;;) {
        // A wakeup that came before this look is answered by it.
        this.#wakeups.consume();
        const rec = this.reserve(size); // throws ClosedError once closed
        if (rec) return rec;
        if (this.#failure) throw this.#failure;
        await this.#wakeups.wait(this.#waiter!, this.#closed || !!this.#failure, stop);
      }
    } finally {
      if (timer) clearTimeout(timer);
      if (onAbort) signal!.removeEventListener('abort', onAbort);
    }
  }

  /** Idempotent. Discards pending records, rejects pending reserveAsync() calls, unregisters, unmaps, closes the fd. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    // Pending records would block the ring for every later record: discard them (RELEASE, as in #commit;
    // nothing was written that the kernel will read, but it is the same publication of a header).
    for (const [rec, off] of this.#pending) {
      Atomics.store(this.#hdr!, off >>> 2, (rec.size | DISCARD) >>> 0);
      rec[writerClosed]();
    }
    this.#pending.clear();
    if (this.#waitId) this.#waiter?.remove(this.#waitId, this.#fd.value);
    this.#waitId = 0;
    this.#wakeups.wakeAll();
    // Drop every view over the mappings first: nothing in this writer may touch them after munmap.
    this.#consPos = undefined;
    this.#prodPos = undefined;
    this.#hdr = undefined;
    this.#data = undefined;
    this.#producer.unmap();
    this.#consumer.unmap();
    this.#fd.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
  }

  #check(): void {
    if (this.#closed) throw new ClosedError(`${this.#label}: the writer is closed`);
  }

  #checkSize(size: number, what: string): void {
    if (!(typeof size === 'number' && Number.isInteger(size) && size > 0 && size <= this.maxRecordSize)) {
      throw new TypeError(
        `UserRingBufWriter.${what} (${this.#label}): record size must be an integer in [1, ${this.maxRecordSize}], got ${String(size)}`,
      );
    }
  }

  #positions(): { cons: number; prod: number } {
    // ACQUIRE: pairs with the kernel's release store of consumer_pos after the program's callback returned
    // (__bpf_user_ringbuf_sample_release) or after skipping a discarded record: the kernel is done reading
    // the space below it before we can reuse it.
    // Positions grow forever as u64; as doubles they stay exact up to 2^53 bytes (8 PiB) of traffic.
    const cons = Number(Atomics.load(this.#consPos!, 0));
    // Only we write producer_pos; the atomic load is for a single untorn 64-bit read, not for ordering.
    const prod = Number(Atomics.load(this.#prodPos!, 0));
    const used = prod - cons;
    if (used < 0 || used > this.size || prod % 8) {
      throw new TsbpfError(`${this.#label}: inconsistent positions (producer ${prod}, consumer ${cons}); another producer writes this ring?`);
    }
    return { cons, prod };
  }

  #commit(rec: UserRingBufRecord, off: number, size: number, discard: boolean): void {
    if (this.#closed || !this.#pending.delete(rec)) throw new ClosedError(`${this.#label}: the writer is closed`);
    // RELEASE (seq-cst store): pairs with the kernel's acquire load of this header in
    // __bpf_user_ringbuf_peek. Every write to the record's data happens before the kernel sees BUSY clear.
    Atomics.store(this.#hdr!, off >>> 2, discard ? (size | DISCARD) >>> 0 : size);
  }

  #register(): void {
    if (this.#waitId) return;
    const waiter = acquireWaiter();
    this.#waitId = waiter.add(
      this.#fd.value,
      {
        ready: () => this.#wakeups.ready(),
        failed: (err) => {
          this.#failure = err;
          this.#wakeups.ready();
        },
      },
      EPOLLOUT,
    );
    this.#waiter = waiter;
  }
}
