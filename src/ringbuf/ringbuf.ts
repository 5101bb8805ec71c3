// BPF ring buffer (BPF_MAP_TYPE_RINGBUF) reader.
//
// Layout of a ring of `size` bytes (a power of two, a multiple of the page size), as the kernel maps it:
//   offset 0, one page, read-write:   consumer page; u64 consumer_pos at byte 0 (we write it)
//   offset PAGE, read-only:           producer page; u64 producer_pos at byte 0 (the kernel writes it),
//                                     then the data area mapped twice in a row (2 × size), so a record
//                                     that wraps around the end of the ring reads as one contiguous range.
// A record at position p (p mod size in the data area) is an 8-byte header, u32 length with BUSY (bit 31,
// reserved but not committed yet) and DISCARD (bit 30) and a u32 page offset for the kernel, followed by
// `length` bytes of data rounded up to 8.
//
// Memory: the mappings are read through typed arrays and Buffers that never leave this module, except the
// record views handed to `read()` callbacks (valid only during the callback; see read()). Writing the
// producer side (read-only) or touching a view after munmap kills the process (SIGSEGV), so: nothing here
// writes outside the consumer position, and close() drops every internal view before unmapping, deferring
// the unmap until a read in progress has returned.

import { BpfMap, MapType, mapTypeName } from '../maps/map.js';
import { mmap, pageSize, PROT_READ, PROT_WRITE, type Mapping } from '../syscall/os.js';
import { FD } from '../syscall/fd.js';
import { NR, rawSyscall3 } from '../syscall/native.js';
import { SyscallError } from '../syscall/errors.js';
import { ClosedError, TsbpfError } from '../errors.js';
import { acquireWaiter, type Waiter } from './waiter.js';
import { Wakeups } from './wakeups.js';
import { resolveCodec, decodeRecord, type DecodeAs } from './decode.js';
import type { Codec } from '../btf/codec.js';

const BUSY = 0x80000000;
const DISCARD = 0x40000000;
const LEN_MASK = 0x3fffffff;
const HDR = 8;
const F_DUPFD_CLOEXEC = 1030n;

/** A record callback. `record` is a view into the ring, valid only until the callback returns (unless `copy`). */
export type RecordCallback = (record: Buffer, ring: number) => void;

/** A record as a range of a Buffer shared by every record of the ring; valid only until the callback returns. */
export type InPlaceCallback = (data: Buffer, offset: number, length: number, ring: number) => void;

export interface RingBufReaderOptions {
  /** Aborting closes the reader; pending and later iterations reject with `signal.reason`. */
  signal?: AbortSignal;
  /**
   * Decode records for iteration and listen() into JS values: a BTF type name in the map's object BTF
   * (`'event'`, `'struct event'`) or a Codec. Same as setting `reader.decode`.
   */
  decode?: DecodeAs;
}

export interface ListenOptions {
  /** Aborting stops listening (the promise rejects with `signal.reason`; the reader stays open). */
  signal?: AbortSignal;
  /** Without decode: hand the callback copies it may keep instead of views. */
  copy?: boolean;
}

export interface ReadOptions {
  /** Hand the callback a copy it may keep, instead of a view into the ring. */
  copy?: boolean;
  /** Stop after this many records (the rest stays in the ring for the next read). Default: everything. */
  max?: number;
}

export interface IterateOptions {
  /** Aborting ends this iteration with `signal.reason` (the reader stays open). */
  signal?: AbortSignal;
  /** Records read (and copied) per pull when the iterator's queue is empty. Default 256. */
  batch?: number;
}

interface Ring {
  readonly index: number;
  readonly name: string;
  readonly size: number;
  readonly fd: FD;
  readonly consumer: Mapping;
  readonly producer: Mapping;
  /** consumer_pos (RW page). */
  consPos: BigInt64Array | undefined;
  /** producer_pos (RO page). */
  prodPos: BigInt64Array | undefined;
  /** Record headers: the data area (2 × size) as u32 words. */
  hdr: Uint32Array | undefined;
  /** The data area (2 × size) as bytes. */
  data: Buffer | undefined;
  waitId: number;
}

function dupFd(fd: number, what: string): FD {
  const d = rawSyscall3(NR.fcntl, BigInt(fd), F_DUPFD_CLOEXEC, 1n);
  if (d < 0) throw new SyscallError('fcntl', 'F_DUPFD_CLOEXEC', -d, what);
  return new FD(d);
}

/**
 * Reads records from one or more BPF ring buffers, with one wait for all of them.
 *
 * ```ts
 * using reader = new RingBufReader(coll.maps.events);
 * reader.read((rec) => handle(rec));            // drain what is there now, synchronously
 * for await (const rec of reader) handle(rec);  // copies; waits without blocking Node
 * ```
 *
 * Records of one ring arrive in ring order; across rings, each read drains the rings in the order given.
 * Close the reader (or `using` it): an unclosed reader keeps its mappings and the waiter registration.
 * A ring has one consumer position: two readers over the same ring would steal each other's records.
 */
export class RingBufReader<T = Buffer> {
  readonly #rings: Ring[] = [];
  /** The maps as given (for their BTF); the reader reads through its own dup of each fd. */
  #maps: BpfMap[] = [];
  /** Per ring: the codec of `decode`, if set. */
  #codecs: (Codec | undefined)[] = [];
  #decodeAs: DecodeAs | undefined;
  /** Set by a visit to end the current drain after the record it is visiting. */
  #stop = false;
  #waiter: Waiter | undefined;
  #closed = false;
  #reading = 0;
  #released = false;
  /** A wakeup arrived while nobody was waiting. */
  readonly #wakeups = new Wakeups();
  #abortReason: unknown;
  #failure: Error | undefined;
  #signal: AbortSignal | undefined;
  #onAbort: (() => void) | undefined;

  constructor(maps: BpfMap | readonly BpfMap[], options: RingBufReaderOptions = {}) {
    const list = Array.isArray(maps) ? maps : [maps as BpfMap];
    if (list.length === 0) throw new TypeError('RingBufReader: no ring buffer map given');
    this.#maps = [...list];
    const page = pageSize();
    try {
      list.forEach((map, index) => {
        if (!(map instanceof BpfMap)) throw new TypeError(`RingBufReader: argument ${index} is not a BpfMap`);
        if (map.type !== MapType.RINGBUF) {
          throw new TypeError(`RingBufReader: map "${map.name}" is ${mapTypeName(map.type)}, not RINGBUF`);
        }
        const size = map.maxEntries;
        if (size <= 0 || size & (size - 1) || size % page) throw new TsbpfError(`RingBufReader: map "${map.name}" has a bad ring size ${size}`);
        // Our own fd: the user may close the map while reading; the mappings hold the map alive anyway.
        const fd = dupFd(map.fd, `ring buffer "${map.name}"`);
        let consumer: Mapping | undefined;
        try {
          consumer = mmap(fd.value, page, PROT_READ | PROT_WRITE, 0, `ring buffer "${map.name}": consumer page`);
          const producer = mmap(fd.value, page + 2 * size, PROT_READ, page, `ring buffer "${map.name}": producer page and data`);
          const cv = consumer.view;
          const pv = producer.view;
          this.#rings.push({
            index,
            name: map.name,
            size,
            fd,
            consumer,
            producer,
            consPos: new BigInt64Array(cv.buffer, cv.byteOffset, 1),
            prodPos: new BigInt64Array(pv.buffer, pv.byteOffset, 1),
            hdr: new Uint32Array(pv.buffer, pv.byteOffset + page, (2 * size) / 4),
            data: pv.subarray(page, page + 2 * size),
            waitId: 0,
          });
        } catch (e) {
          consumer?.unmap();
          fd.close();
          throw e;
        }
      });
      const waiter = acquireWaiter();
      this.#waiter = waiter;
      for (const r of this.#rings) {
        r.waitId = waiter.add(r.fd.value, {
          ready: () => this.#wakeups.ready(),
          failed: (err) => {
            this.#failure = err;
            this.#wakeups.ready();
          },
        });
      }
    } catch (e) {
      this.#closed = true;
      this.#release();
      throw e;
    }
    if (options.decode !== undefined) {
      try {
        this.decode = options.decode;
      } catch (e) {
        this.close();
        throw e;
      }
    }
    if (options.signal) {
      const signal = options.signal;
      this.#signal = signal;
      this.#onAbort = () => {
        this.#abortReason = signal.reason;
        this.close();
      };
      if (signal.aborted) this.#onAbort();
      else signal.addEventListener('abort', this.#onAbort, { once: true });
    }
  }

  get closed(): boolean {
    return this.#closed;
  }

  /**
   * How iteration and listen() hand out records: undefined (Buffers), or a BTF type name / Codec to decode
   * each record into a JS value (`reader.decode = 'event'` gives objects for `struct event`). The name is
   * looked up in each ring map's object BTF; throws if a ring's BTF lacks it. A record shorter than the
   * type makes iteration throw a TsbpfError (after the records before it).
   */
  get decode(): DecodeAs | undefined {
    return this.#decodeAs;
  }

  set decode(as: DecodeAs | undefined) {
    if (as === undefined) {
      this.#codecs = [];
    } else {
      this.#codecs = this.#rings.map((r) => resolveCodec(this.#maps[r.index], as, `ring buffer "${r.name}"`));
    }
    this.#decodeAs = as;
  }

  /** Number of ring buffers read. */
  get rings(): number {
    return this.#rings.length;
  }

  /**
   * Deliver every committed record available now (or up to `max`), synchronously, and return how many.
   * Never waits. Without `copy`, `record` is a view into the ring valid only during the callback: the
   * space is handed back to the kernel right after, and after close() the memory is unmapped (touching
   * a kept view then would crash the process). Copy what you keep (`Buffer.from(record)`), or pass
   * `copy: true`. A callback that throws stops the read; records up to and including it are consumed.
   * Calling close() from a callback is allowed (the read stops); calling read() from one is not.
   */
  read(callback: RecordCallback, options: ReadOptions = {}): number {
    if (typeof callback !== 'function') throw new TypeError('RingBufReader.read: callback must be a function');
    this.#check();
    const copy = options.copy === true;
    const max = options.max ?? Infinity;
    return this.#drain(max, (r, start, len) => {
      const data = r.data!;
      if (copy) {
        const out = Buffer.allocUnsafe(len);
        data.copy(out, 0, start, start + len);
        callback(out, r.index);
      } else {
        callback(data.subarray(start, start + len), r.index);
      }
    });
  }

  /**
   * The zero-allocation form of read(): `callback(data, offset, length, ring)` gets the record as a range of
   * `data`, the same Buffer (the ring's whole data area) for every record of a ring, so nothing is allocated
   * per record. The range is valid only during the callback, as with read(); never keep `data` itself.
   */
  readInPlace(callback: InPlaceCallback, options: { max?: number } = {}): number {
    if (typeof callback !== 'function') throw new TypeError('RingBufReader.readInPlace: callback must be a function');
    this.#check();
    return this.#drain(options.max ?? Infinity, (r, start, len) => callback(r.data!, start, len, r.index));
  }

  /**
   * Wait until new records may be available (resolves at once if a wakeup came in since the last read),
   * without blocking Node or holding a threadpool thread. Resolves on close(); rejects when `signal`
   * aborts. Wakeups can be spurious: read() may then find nothing.
   */
  wait(options: { signal?: AbortSignal } = {}): Promise<void> {
    try {
      this.#check();
    } catch (e) {
      return Promise.reject(e);
    }
    return this.#wakeups.wait(this.#waiter!, this.#closed || !!this.#failure, options.signal);
  }

  /**
   * Records as copies (or decoded values, see `decode`), reading the next batch only when the consumer
   * pulls: a slow consumer leaves records in the ring (where the producer sees the ring fill up) instead
   * of buffering them here.
   */
  async *records(options: IterateOptions = {}): AsyncGenerator<T, void, undefined> {
    const { signal } = options;
    const batch = options.batch ?? 256;
    if (!(Number.isInteger(batch) && batch > 0)) throw new TypeError('RingBufReader.records: batch must be a positive integer');
    const queue: T[] = [];
    for (;;) {
      signal?.throwIfAborted();
      if (this.#abortReason !== undefined) throw this.#abortReason;
      if (this.#failure) throw this.#failure;
      if (this.#closed) return;
      queue.length = 0;
      let bad: unknown;
      this.#drain(batch, (r, start, len) => {
        try {
          queue.push(this.#take(r, start, len, true));
        } catch (e) {
          bad = e;
          this.#stop = true;
        }
      });
      // Back-pressure: nothing more is read until the consumer has taken all of these.
      for (let i = 0; i < queue.length; i++) yield queue[i];
      if (bad !== undefined) throw bad;
      if (queue.length > 0) continue;
      await this.#wakeups.wait(this.#waiter!, this.#closed || !!this.#failure, signal);
    }
  }

  [Symbol.asyncIterator](): AsyncGenerator<T, void, undefined> {
    return this.records();
  }

  /**
   * The callback form: call `callback(record, ring)` for every record until the reader closes (resolves)
   * or `signal` aborts (rejects with its reason). Records are decoded values when `decode` is set, else
   * views valid during the synchronous part of the callback (or copies with `copy`). A callback that
   * returns a promise pauses reading until it settles (back-pressure); one that throws or rejects ends
   * listening with that error. Only one read, iteration or listen() at a time.
   */
  async listen(callback: (record: T, ring: number) => void | Promise<void>, options: ListenOptions = {}): Promise<void> {
    if (typeof callback !== 'function') throw new TypeError('RingBufReader.listen: callback must be a function');
    const { signal } = options;
    const copy = options.copy === true;
    for (;;) {
      signal?.throwIfAborted();
      if (this.#abortReason !== undefined) throw this.#abortReason;
      if (this.#failure) throw this.#failure;
      if (this.#closed) return;
      let pending: Promise<void> | undefined;
      let failed = false;
      let error: unknown;
      const n = this.#drain(Infinity, (r, start, len) => {
        try {
          const ret = callback(this.#take(r, start, len, copy), r.index);
          if (ret && typeof (ret as Promise<void>).then === 'function') {
            pending = ret as Promise<void>;
            this.#stop = true;
          }
        } catch (e) {
          failed = true;
          error = e;
          this.#stop = true;
        }
      });
      if (failed) throw error;
      if (pending) {
        await pending;
        continue;
      }
      if (n > 0) continue;
      await this.#wakeups.wait(this.#waiter!, this.#closed || !!this.#failure, signal);
    }
  }

  /** The record at `start` as handed out by iteration/listen(): decoded, a copy, or a view. */
  #take(r: Ring, start: number, len: number, copy: boolean): T {
    const codec = this.#codecs[r.index];
    if (codec) return decodeRecord(codec, r.data!, start, len, `ring buffer "${r.name}"`) as T;
    if (!copy) return r.data!.subarray(start, start + len) as T;
    const out = Buffer.allocUnsafe(len);
    r.data!.copy(out, 0, start, start + len);
    return out as T;
  }

  /** Idempotent. Wakes pending waits (iterators end), unregisters from the waiter, unmaps, closes fds. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#signal && this.#onAbort) this.#signal.removeEventListener('abort', this.#onAbort);
    for (const r of this.#rings) if (r.waitId) this.#waiter?.remove(r.waitId, r.fd.value);
    this.#wakeups.wakeAll();
    if (this.#reading === 0) this.#release();
    // else: the read in progress releases when it returns (its loop stops at the next record).
  }

  [Symbol.dispose](): void {
    this.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
  }

  #check(): void {
    if (this.#closed) {
      if (this.#abortReason !== undefined) throw this.#abortReason;
      throw new ClosedError('ring buffer reader is closed');
    }
  }

  /**
   * Visit up to `max` committed records across the rings; returns how many were visited. Per ring, the
   * consumer position is stored once per batch (a batch = the records below one producer_pos load).
   */
  #drain(max: number, visit: (r: Ring, start: number, len: number) => void): number {
    if (this.#reading) throw new TsbpfError('RingBufReader: read() called from a record callback');
    // A wakeup that arrived before this drain is answered by it.
    this.#wakeups.consume();
    this.#stop = false;
    this.#reading++;
    let n = 0;
    try {
      for (const r of this.#rings) {
        if (n >= max || this.#closed) break;
        n += this.#drainRing(r, max - n, visit);
      }
    } finally {
      this.#reading--;
      if (this.#closed) this.#release();
    }
    return n;
  }

  #drainRing(r: Ring, max: number, visit: (r: Ring, start: number, len: number) => void): number {
    const consPos = r.consPos!;
    const prodPos = r.prodPos!;
    const hdr = r.hdr!;
    const size = r.size;
    let n = 0;
    // Only we write consumer_pos; the atomic load is for a single untorn 64-bit read, not for ordering.
    // Positions grow forever as u64; as doubles they stay exact up to 2^53 bytes (8 PiB) of traffic.
    let cons = Number(Atomics.load(consPos, 0));
    for (;;) {
      // ACQUIRE: pairs with the kernel's release store of producer_pos when it reserves. Every record
      // below this position has its header written (BUSY until committed) before we can see it.
      const prod = Number(Atomics.load(prodPos, 0));
      const start = cons;
      let busy = false;
      try {
        while (cons < prod && n < max && !this.#closed && !this.#stop) {
          const off = cons % size;
          // ACQUIRE: pairs with the kernel's commit, an atomic exchange (full barrier) that clears BUSY
          // after the producer wrote the data: once we see BUSY clear, the data reads below are ordered
          // after it and see the committed bytes.
          const len = Atomics.load(hdr, off >>> 2);
          if (len & BUSY) {
            // Reserved, not committed yet: stop here. Records behind it may be committed, but order is
            // kept and the kernel wakes us (edge) when this one commits, since we stop exactly at it.
            busy = true;
            break;
          }
          const dlen = len & LEN_MASK;
          // Advance before visiting, so a callback that throws leaves its record consumed.
          cons += HDR + ((dlen + 7) & ~7);
          if ((len & DISCARD) === 0) {
            n++;
            visit(r, off + HDR, dlen);
          }
        }
      } finally {
        if (cons !== start) {
          // RELEASE (seq-cst store): our reads of the freed records happen before the kernel, which
          // acquire-loads consumer_pos when reserving, can hand the space to a new record. One store per
          // batch. Being seq-cst it is also ordered before the producer_pos reload below (store→load).
          Atomics.store(consPos, 0, BigInt(cons));
        }
      }
      if (busy || n >= max || this.#closed || this.#stop || cons === start) return n;
      // A record committed after our producer_pos load but before the store above saw the old consumer
      // position and did not wake us (the kernel wakes only when committing at consumer_pos): look again.
    }
  }

  #release(): void {
    if (this.#released) return;
    this.#released = true;
    for (const r of this.#rings) {
      // Drop every view over the mappings first: nothing in this reader may touch them after munmap.
      r.consPos = undefined;
      r.prodPos = undefined;
      r.hdr = undefined;
      r.data = undefined;
      r.producer.unmap();
      r.consumer.unmap();
      r.fd.close();
    }
  }
}
