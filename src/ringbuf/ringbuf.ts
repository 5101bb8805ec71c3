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
// producer side (read-only) kills the process (SIGSEGV), so nothing here writes outside the consumer position.
// close() drops every internal view before unmapping, deferring the unmap until a read in progress has
// returned; a view a user kept then reads zeros (Mapping.unmap() leaves placeholder memory, never a hole).

import { BpfMap, MapType, mapTypeName } from '../maps/map.js';
import { mmap, pageSize, PROT_READ, PROT_WRITE, type Mapping } from '../syscall/os.js';
import type { FD } from '../syscall/fd.js';
import { dupFdNumber } from '../syscall/socket.js';
import { TsbpfError } from '../errors.js';
import { resolveCodec, decodeRecord, type DecodeAs } from './decode.js';
import type { Codec } from '../btf/codec.js';
import { RecordBatch } from './record-batch.js';
import { ReaderCore, type ReaderRings, type Visit } from './reader-core.js';

const BUSY = 0x80000000;
const DISCARD = 0x40000000;
const LEN_MASK = 0x3fffffff;
const HDR = 8;
/**
 * Whether a plain typed-array load of a record header is an acquire load. On x86-64 (TSO) the hardware
 * never reorders a load with a later load, so reading the header and then the data in program order is
 * enough, and V8 does not move a load above the branch on that header which guards the data reads. On
 * weaker architectures (arm64) the header is read with Atomics.load, which costs a call per record on Node 20.
 */
const PLAIN_LOAD_ACQUIRES = process.arch === 'x64' || process.arch === 'ia32';

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
  /** nextBatch(): the ring whose records the caller holds, and the consumer position to store once released. */
  #held: Ring | undefined;
  #heldCons = 0;
  /** nextBatch(): the ring to look at first next time (round robin, so one busy ring does not starve others). */
  #nextRing = 0;
  /** Life, waits and the read/iterate/listen front-ends; this class supplies the rings. */
  readonly #core: ReaderCore = new ReaderCore('RingBufReader', {
    ringCount: () => this.#rings.length,
    drainRing: (i, max, visit) => this.#drainRing(this.#rings[i], max, visit),
    holding: () => this.#held !== undefined,
    releaseHeld: () => this.#releaseHeld(),
    dropHeld: () => {
      this.#held = undefined;
    },
    take: (data, start, len, ring, copy) => this.#take(data, start, len, ring, copy),
    release: () => this.#release(),
    closedMessage: () => `ring buffer reader of ${this.#maps.map((m) => `map "${m.name}"`).join(', ')} is closed: make a new RingBufReader to read again`,
  } satisfies ReaderRings);

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
        const fd = dupFdNumber(map.fd, `ring buffer "${map.name}"`);
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
          });
        } catch (e) {
          consumer?.unmap();
          fd.close();
          throw e;
        }
      });
      this.#core.watchFds(this.#rings.map((r) => r.fd.value));
    } catch (e) {
      this.#core.abandon();
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
    if (options.signal) this.#core.closeOnAbort(options.signal);
  }

  get closed(): boolean {
    return this.#core.closed;
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
   * space is handed back to the kernel right after (the kernel may write a new record there), and after
   * close() a kept view reads zeros. Copy what you keep (`Buffer.from(record)`), or pass
   * `copy: true`. A callback that throws stops the read; records up to and including it are consumed.
   * Calling close() from a callback is allowed (the read stops); calling read() from one is not.
   */
  read(callback: RecordCallback, options: ReadOptions = {}): number {
    return this.#core.read(callback, options);
  }

  /**
   * The zero-allocation form of read(): `callback(data, offset, length, ring)` gets the record as a range of
   * `data`, the same Buffer (the ring's whole data area) for every record of a ring, so nothing is allocated
   * per record. The range is valid only during the callback, as with read(); never keep `data` itself.
   */
  readInPlace(callback: InPlaceCallback, options: { max?: number } = {}): number {
    return this.#core.readInPlace(callback, options);
  }

  /**
   * The fastest path: fill `batch` with up to `batch.capacity` committed records of one ring and return how
   * many (0: nothing now; wait() then call again). The records stay in the ring, valid, until the next
   * nextBatch() or read*() call on this reader, which hands their space back to the kernel (one consumer
   * position store per batch), or close(). No allocation and no call per record:
   *
   * ```ts
   * const batch = new RecordBatch(4096);
   * while (reader.nextBatch(batch) > 0) {
   *   const { data, offsets, lengths } = batch;
   *   for (let i = 0; i < batch.count; i++) handle(data, offsets[i], lengths[i]);
   * }
   * ```
   */
  nextBatch(batch: RecordBatch): number {
    if (!(batch instanceof RecordBatch)) throw new TypeError('RingBufReader.nextBatch: pass a RecordBatch');
    this.#core.beginBatch();
    batch.clear();
    const rings = this.#rings;
    for (let k = 0; k < rings.length; k++) {
      const r = rings[(this.#nextRing + k) % rings.length];
      const got = this.#fillBatch(r, batch);
      if (got > 0) {
        this.#nextRing = (r.index + 1) % rings.length;
        return got;
      }
    }
    return 0;
  }

  /** Store the consumer position of the records handed out by the last nextBatch(). */
  #releaseHeld(): void {
    const r = this.#held;
    if (!r) return;
    this.#held = undefined;
    // RELEASE (seq-cst store): the caller's reads of the batch happen before the kernel, which acquire-loads
    // consumer_pos when reserving, can reuse the space.
    if (r.consPos) Atomics.store(r.consPos, 0, BigInt(this.#heldCons));
  }

  #fillBatch(r: Ring, batch: RecordBatch): number {
    const consPos = r.consPos!;
    const hdr = r.hdr!;
    const mask = r.size - 1;
    const offsets = batch.offsets;
    const lengths = batch.lengths;
    const cap = batch.capacity;
    // Only we write consumer_pos: an untorn read, not for ordering.
    let cons = Number(Atomics.load(consPos, 0));
    // ACQUIRE: pairs with the kernel's release store of producer_pos (see #drainRing).
    const prod = Number(Atomics.load(r.prodPos!, 0));
    const start = cons;
    let off = cons % r.size;
    let n = 0;
    while (cons < prod && n < cap) {
      // ACQUIRE on the header as in #drainRing (plain load where that is an acquire).
      const len = PLAIN_LOAD_ACQUIRES ? hdr[off >>> 2] : Atomics.load(hdr, off >>> 2);
      if (len & BUSY) break;
      const dlen = len & LEN_MASK;
      const step = HDR + ((dlen + 7) & ~7);
      if ((len & DISCARD) === 0) {
        offsets[n] = off + HDR;
        lengths[n] = dlen;
        n++;
      }
      cons += step;
      off = (off + step) & mask;
    }
    if (cons !== start) {
      this.#held = r;
      this.#heldCons = cons;
    }
    if (n > 0) {
      batch.count = n;
      batch.ring = r.index;
      batch.data = r.data!;
    } else if (cons !== start) {
      // Only discarded records: give their space back now.
      this.#releaseHeld();
    }
    return n;
  }

  /**
   * Wait until new records may be available (resolves at once if a wakeup came in since the last read),
   * without blocking Node or holding a threadpool thread. Resolves on close(); rejects when `signal`
   * aborts. Wakeups can be spurious: read() may then find nothing.
   */
  wait(options: { signal?: AbortSignal } = {}): Promise<void> {
    return this.#core.wait(options.signal);
  }

  /**
   * Records as copies (or decoded values, see `decode`), reading the next batch only when the consumer
   * pulls: a slow consumer leaves records in the ring (where the producer sees the ring fill up) instead
   * of buffering them here.
   */
  records(options: IterateOptions = {}): AsyncGenerator<T, void, undefined> {
    return this.#core.iterate('records', options, (value) => value as T);
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
  listen(callback: (record: T, ring: number) => void | Promise<void>, options: ListenOptions = {}): Promise<void> {
    return this.#core.listen(callback, options);
  }

  /** The record at `start` as handed out by iteration/listen(): decoded, a copy, or a view. */
  #take(data: Buffer, start: number, len: number, ring: number, copy: boolean): T {
    const codec = this.#codecs[ring];
    if (codec) return decodeRecord(codec, data, start, len, `ring buffer "${this.#rings[ring].name}"`) as T;
    if (!copy) return data.subarray(start, start + len) as T;
    const out = Buffer.allocUnsafe(len);
    data.copy(out, 0, start, start + len);
    return out as T;
  }

  /** Idempotent. Wakes pending waits (iterators end), unregisters from the waiter, unmaps, closes fds. */
  close(): void {
    this.#core.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
  }

  /**
   * Visit up to `max` committed records of ring `r` (called by the core's drain, ring by ring). The
   * consumer position is stored once per batch (a batch = the records below one producer_pos load).
   */
  #drainRing(r: Ring, max: number, visit: Visit): number {
    const consPos = r.consPos!;
    const prodPos = r.prodPos!;
    const hdr = r.hdr!;
    const data = r.data!;
    const index = r.index;
    const size = r.size;
    // size is a power of two ≤ 2^31 (max_entries is a u32): `& mask` wraps an offset within the ring.
    const mask = size - 1;
    const core = this.#core;
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
      // One double modulo per batch (a call once positions pass 2^31); then 32-bit masking per record.
      let off = cons % size;
      try {
        while (cons < prod && n < max && !core.closed && !core.stop) {
          // ACQUIRE: pairs with the kernel's commit, an atomic exchange (full barrier) that clears BUSY
          // after the producer wrote the data: once we see BUSY clear, the data reads below are ordered
          // after it and see the committed bytes. A plain load where it is an acquire (x86-64, see
          // PLAIN_LOAD_ACQUIRES), Atomics.load elsewhere.
          const len = PLAIN_LOAD_ACQUIRES ? hdr[off >>> 2] : Atomics.load(hdr, off >>> 2);
          if (len & BUSY) {
            // Reserved, not committed yet: stop here. Records behind it may be committed, but order is
            // kept and the kernel wakes us (edge) when this one commits, since we stop exactly at it.
            busy = true;
            break;
          }
          const dlen = len & LEN_MASK;
          const step = HDR + ((dlen + 7) & ~7);
          const at = off + HDR;
          // Advance before visiting, so a callback that throws leaves its record consumed.
          cons += step;
          off = (off + step) & mask;
          if ((len & DISCARD) === 0) {
            n++;
            visit(data, at, dlen, index);
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
      if (busy || n >= max || core.closed || core.stop || cons === start) return n;
      // A record committed after our producer_pos load but before the store above saw the old consumer
      // position and did not wake us (the kernel wakes only when committing at consumer_pos): look again.
    }
  }

  /** Unmap and close (once, by the core, never during a drain). */
  #release(): void {
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
