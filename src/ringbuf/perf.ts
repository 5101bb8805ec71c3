// Perf event array (BPF_MAP_TYPE_PERF_EVENT_ARRAY) reader.
//
// For every online CPU (of the possible ones, below the map's max_entries) we open a software
// PERF_COUNT_SW_BPF_OUTPUT event with sample_type PERF_SAMPLE_RAW, mmap 1 + 2^n pages read-write and store the
// event's fd in the map at key `cpu`, where bpf_perf_event_output(..., BPF_F_CURRENT_CPU, ...) finds it.
//
// Layout of one mapping: page 0 is struct perf_event_mmap_page (data_head written by the kernel, data_tail
// written by us, data_offset/data_size), then the data area of `size` bytes (a power of two), mapped once:
// a record that wraps around the end of the area is copied into a scratch buffer. Records are 8-byte aligned
// and start with struct perf_event_header { u32 type; u16 misc; u16 size }, so a header never wraps.
//   PERF_RECORD_SAMPLE: header, u32 raw size, raw bytes (the raw size includes up to 7 bytes of padding
//                       the kernel adds so that u32 + data is a multiple of 8).
//   PERF_RECORD_LOST:   header, u64 id, u64 lost (samples dropped because the ring was full).
//
// Overwritable rings (`overwritable: true`): the event has write_backward set and is mapped read-only, which
// makes the kernel ring an overwrite ring: it never waits for the reader (there is no data_tail), it writes
// each record just below the previous one (data_head counts down from 0 as an unsigned 64-bit number), and
// once full it overwrites the oldest records. A flight recorder: the newest records are always there. A read
// pauses the ring's output (PERF_EVENT_IOC_PAUSE_OUTPUT), walks the records from data_head upwards (newest to
// oldest) to where the previous read started or the ring ends, and hands them out oldest first.
//
// The map's user fds hold the stored perf fds: when the last one is closed the kernel clears the entries.
// The reader keeps its own dup of the map fd until close().
//
// Memory: as in ringbuf.ts, views over the mappings never leave this module except the record views handed
// to read() callbacks (valid during the callback only); close() drops them before unmapping, and defers the
// unmap while a read is in progress.

import { BpfMap, MapType, mapTypeName } from '../maps/map.js';
import {
  mmap, pageSize, perfEventOpen, ioctl, onlineCpus, possibleCpus, PROT_READ, PROT_WRITE, PERF_EVENT_IOC, type Mapping,
} from '../syscall/os.js';
import { PERF_TYPE, PERF_COUNT_SW, PERF_SAMPLE, PERF_RECORD, LAYOUTS } from '../syscall/kernel-defs.generated.js';
import type { FD } from '../syscall/fd.js';
import { dupFdNumber } from '../syscall/socket.js';
import { TsbpfError } from '../errors.js';
import { resolveCodec, decodeRecord, type DecodeAs } from './decode.js';
import type { Codec } from '../btf/codec.js';
import { RecordBatch } from './record-batch.js';
import { ReaderCore, type ReaderRings, type Visit } from './reader-core.js';

const PAGE_FIELDS = LAYOUTS.perf_event_mmap_page.fields;
const HEAD_OFF = PAGE_FIELDS.data_head[0];
const TAIL_OFF = PAGE_FIELDS.data_tail[0];
const DATA_OFFSET_OFF = PAGE_FIELDS.data_offset[0];
const DATA_SIZE_OFF = PAGE_FIELDS.data_size[0];

/** A sample callback. `record` is a view valid only until the callback returns (unless `copy`). */
export type PerfRecordCallback = (record: Buffer, cpu: number) => void;

/** A sample as a range of a Buffer that other samples share; valid only until the callback returns. */
export type PerfInPlaceCallback = (data: Buffer, offset: number, length: number, cpu: number) => void;

export interface PerfReaderOptions {
  /** Data pages per CPU, a power of two. Default 8. */
  pagesPerCpu?: number;
  /** Wake up after this many samples (default 1). Ignored when `watermark` is given. */
  wakeupEvents?: number;
  /** Wake up when at least this many bytes are in a ring (instead of `wakeupEvents`). */
  watermark?: number;
  /**
   * Overwrite mode: the kernel never drops a sample for lack of space but overwrites the oldest ones; each
   * read returns what is still in the ring and was not read before, oldest first. Overwritten samples are
   * not counted (`lost` only counts samples dropped while output was paused).
   */
  overwritable?: boolean;
  /** Aborting closes the reader; pending and later iterations reject with `signal.reason`. */
  signal?: AbortSignal;
  /**
   * Decode samples for iteration and listen() into JS values: a BTF type name in the map's object BTF
   * (`'event'`) or a Codec. Same as setting `reader.decode`.
   */
  decode?: DecodeAs;
}

export interface PerfListenOptions {
  /** Aborting stops listening (the promise rejects with `signal.reason`; the reader stays open). */
  signal?: AbortSignal;
  /** Without decode: hand the callback copies it may keep instead of views. */
  copy?: boolean;
}

export interface PerfReadOptions {
  /** Hand the callback a copy it may keep, instead of a view into the ring. */
  copy?: boolean;
  /** Stop after this many samples (the rest stays in the rings). Default: everything. */
  max?: number;
}

export interface PerfIterateOptions {
  /** Aborting ends this iteration with `signal.reason` (the reader stays open). */
  signal?: AbortSignal;
  /** Samples read (and copied) per pull when the iterator's queue is empty. Default 256. */
  batch?: number;
}

export interface PerfSample<T = Buffer> {
  cpu: number;
  /** A copy of the raw sample (including the kernel's padding, up to 7 bytes), or its decoded value. */
  data: T;
}

interface CpuRing {
  readonly cpu: number;
  readonly fd: FD;
  readonly mapping: Mapping;
  readonly size: number;
  /** data_head and data_tail as one BigInt64Array: [0] head (kernel writes), [1] tail (we write; not in overwrite mode). */
  pos: BigInt64Array | undefined;
  /** Overwrite mode: data_head (a negative position, as signed) where the previous read started; 0 at first. */
  readFrom: number;
  /** The data area. */
  data: Buffer | undefined;
  /** The data area as u32 words (headers are 8-aligned: typed-array reads beat Buffer#readUInt* per record). */
  words: Uint32Array | undefined;
  lost: number;
}

/**
 * Reads samples that BPF programs emit with bpf_perf_event_output() into a PERF_EVENT_ARRAY map.
 *
 * ```ts
 * using reader = new PerfReader(coll.maps.events);
 * reader.read((rec, cpu) => handle(rec, cpu));         // drain now, synchronously
 * for await (const { cpu, data } of reader) handle(data, cpu);
 * ```
 *
 * Samples of one CPU arrive in order; there is no order across CPUs. `lost` counts the samples the kernel
 * dropped because a ring was full (reported by the kernel once space is free again).
 */
export class PerfReader<T = Buffer> {
  readonly #rings: CpuRing[] = [];
  #codec: Codec | undefined;
  #decodeAs: DecodeAs | undefined;
  /** nextBatch(): the ring whose samples the caller holds, and the data_tail to store once released. */
  #held: CpuRing | undefined;
  #heldTail = 0;
  #nextRing = 0;
  /** nextBatch(): where a sample that wraps the end of its ring is copied (alone in its batch). */
  #batchScratch = Buffer.alloc(0);
  readonly #map: BpfMap;
  #mapFd: FD | undefined;
  #scratch = Buffer.alloc(0);
  #lost = 0;
  readonly #overwritable: boolean;
  #paused = false;
  /** Overwrite mode: positions and sizes of the records found by the current walk (reused, never shrunk). */
  #walk: number[] = [];
  /** Life, waits and the read/iterate/listen front-ends; this class supplies the per-CPU rings. */
  readonly #core: ReaderCore = new ReaderCore('PerfReader', {
    ringCount: () => this.#rings.length,
    drainRing: (i, max, visit) => this.#drainRing(this.#rings[i], max, visit),
    holding: () => this.#held !== undefined,
    releaseHeld: () => this.#releaseHeld(),
    dropHeld: () => {
      this.#held = undefined;
    },
    take: (data, start, len, _cpu, copy) => this.#take(data, start, len, copy),
    release: () => this.#release(),
    closedMessage: () => `perf reader of map "${this.#map.name}" is closed: make a new PerfReader to read again`,
  } satisfies ReaderRings);

  constructor(map: BpfMap, options: PerfReaderOptions = {}) {
    if (!(map instanceof BpfMap)) throw new TypeError('PerfReader: argument is not a BpfMap');
    if (map.type !== MapType.PERF_EVENT_ARRAY) {
      throw new TypeError(`PerfReader: map "${map.name}" is ${mapTypeName(map.type)}, not PERF_EVENT_ARRAY`);
    }
    const pages = options.pagesPerCpu ?? 8;
    if (!(Number.isInteger(pages) && pages > 0 && (pages & (pages - 1)) === 0)) {
      throw new TypeError(`PerfReader: pagesPerCpu must be a power of two, got ${pages}`);
    }
    const wakeupEvents = options.wakeupEvents ?? 1;
    if (!(Number.isInteger(wakeupEvents) && wakeupEvents > 0)) throw new TypeError('PerfReader: wakeupEvents must be a positive integer');
    const page = pageSize();
    const wm = options.watermark;
    if (wm !== undefined && !(Number.isInteger(wm) && wm > 0 && wm <= pages * page)) {
      throw new TypeError(`PerfReader: watermark must be between 1 and ${pages * page} bytes`);
    }
    this.#map = map;
    this.#overwritable = options.overwritable === true;
    const overwrite = this.#overwritable;
    try {
      this.#mapFd = dupFdNumber(map.fd, `perf event array "${map.name}"`);
      const online = new Set(onlineCpus());
      const value = Buffer.alloc(4);
      for (const cpu of possibleCpus()) {
        // perf_event_open on an offline CPU fails (ENODEV); a key beyond max_entries cannot be stored.
        if (!online.has(cpu) || cpu >= map.maxEntries) continue;
        const what = `perf event array "${map.name}" cpu ${cpu}`;
        const fd = perfEventOpen({
          type: PERF_TYPE.SOFTWARE,
          config: PERF_COUNT_SW.BPF_OUTPUT,
          sample_type: PERF_SAMPLE.RAW,
          sample_period: 1,
          disabled: true,
          ...(overwrite ? { write_backward: true } : {}),
          ...(wm !== undefined ? { watermark: true, wakeup_watermark: wm } : { wakeup_events: wakeupEvents }),
        }, -1, cpu, -1, 0n, what);
        let mapping: Mapping;
        try {
          // Read-only makes the kernel ring an overwrite ring (no data_tail): what overwritable asks for.
          mapping = mmap(fd.value, (1 + pages) * page, overwrite ? PROT_READ : PROT_READ | PROT_WRITE, 0, what);
        } catch (e) {
          fd.close();
          throw e;
        }
        const v = mapping.view;
        const dataOff = Number(v.readBigUInt64LE(DATA_OFFSET_OFF)) || page;
        const size = Number(v.readBigUInt64LE(DATA_SIZE_OFF)) || pages * page;
        const ring: CpuRing = {
          cpu,
          fd,
          mapping,
          size,
          pos: new BigInt64Array(v.buffer, v.byteOffset + HEAD_OFF, 2),
          data: v.subarray(dataOff, dataOff + size),
          words: new Uint32Array(v.buffer, v.byteOffset + dataOff, size / 4),
          readFrom: 0,
          lost: 0,
        };
        this.#rings.push(ring);
        value.writeUInt32LE(fd.value, 0);
        map.update(cpu, value);
        ioctl(fd.value, PERF_EVENT_IOC.ENABLE, 0, what);
      }
      if (this.#rings.length === 0) throw new TsbpfError(`PerfReader: no online CPU below max_entries of "${map.name}"`);
      if (HEAD_OFF + 8 !== TAIL_OFF) throw new TsbpfError('PerfReader: unexpected perf_event_mmap_page layout');
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
   * How iteration and listen() hand out samples: undefined (Buffers), or a BTF type name / Codec to decode
   * each sample into a JS value (`reader.decode = 'event'` gives objects for `struct event`). A sample
   * shorter than the type makes iteration throw a TsbpfError (after the samples before it).
   */
  get decode(): DecodeAs | undefined {
    return this.#decodeAs;
  }

  set decode(as: DecodeAs | undefined) {
    this.#codec = as === undefined ? undefined : resolveCodec(this.#map, as, `perf event array "${this.#map.name}"`);
    this.#decodeAs = as;
  }

  /** Whether the rings are overwrite rings (see the `overwritable` option). */
  get overwritable(): boolean {
    return this.#overwritable;
  }

  /** Whether output is paused (pause()). */
  get paused(): boolean {
    return this.#paused;
  }

  /**
   * Stop the kernel writing into the rings (PERF_EVENT_IOC_PAUSE_OUTPUT): bpf_perf_event_output() fails
   * while paused and the kernel counts those samples as lost (reported, with `lost`, after resume()).
   * What is in the rings stays readable. Idempotent.
   */
  pause(): void {
    this.#core.check();
    if (this.#paused) return;
    for (const r of this.#rings) ioctl(r.fd.value, PERF_EVENT_IOC.PAUSE_OUTPUT, 1, `perf event array "${this.#map.name}" cpu ${r.cpu}: pause`);
    this.#paused = true;
  }

  /** Let the kernel write into the rings again. Idempotent. */
  resume(): void {
    this.#core.check();
    if (!this.#paused) return;
    for (const r of this.#rings) ioctl(r.fd.value, PERF_EVENT_IOC.PAUSE_OUTPUT, 0, `perf event array "${this.#map.name}" cpu ${r.cpu}: resume`);
    this.#paused = false;
  }

  /** CPUs read, in order. */
  get cpus(): number[] {
    return this.#rings.map((r) => r.cpu);
  }

  /** Samples the kernel reported lost (ring full), all CPUs. */
  get lost(): number {
    return this.#lost;
  }

  /** Samples reported lost, per CPU. */
  get lostPerCpu(): Record<number, number> {
    const out: Record<number, number> = {};
    for (const r of this.#rings) out[r.cpu] = r.lost;
    return out;
  }

  /**
   * Deliver every sample available now (or up to `max`), synchronously; returns how many. Never waits.
   * Without `copy`, `record` is valid only during the callback (copy what you keep). A callback that
   * throws stops the read; samples up to and including it are consumed.
   */
  read(callback: PerfRecordCallback, options: PerfReadOptions = {}): number {
    return this.#core.read(callback, options);
  }

  /**
   * The zero-allocation form of read(): `callback(data, offset, length, cpu)` gets the sample as a range of
   * `data`, which is the CPU's data area (or, for a sample that wraps, one scratch Buffer reused for every
   * wrapped sample), so nothing is allocated per sample. Valid only during the callback; never keep `data`.
   */
  readInPlace(callback: PerfInPlaceCallback, options: { max?: number } = {}): number {
    return this.#core.readInPlace(callback, options);
  }

  /**
   * The fastest path: fill `batch` with up to `batch.capacity` samples of one CPU and return how many (0:
   * nothing now). The samples stay in the ring, valid, until the next nextBatch()/read*() call on this
   * reader (which hands their space back to the kernel, one data_tail store per batch) or close(). A sample
   * that wraps around the end of its ring comes alone in its batch, copied into a scratch Buffer. Not for
   * overwritable rings (use read()).
   */
  nextBatch(batch: RecordBatch): number {
    if (!(batch instanceof RecordBatch)) throw new TypeError('PerfReader.nextBatch: pass a RecordBatch');
    this.#core.check();
    if (this.#overwritable) throw new TsbpfError('PerfReader.nextBatch: not for overwritable rings; use read() or readInPlace()');
    this.#core.beginBatch();
    batch.clear();
    const rings = this.#rings;
    for (let k = 0; k < rings.length; k++) {
      const i = (this.#nextRing + k) % rings.length;
      const got = this.#fillBatch(rings[i], batch);
      if (got > 0) {
        this.#nextRing = (i + 1) % rings.length;
        return got;
      }
    }
    return 0;
  }

  #releaseHeld(): void {
    const r = this.#held;
    if (!r) return;
    this.#held = undefined;
    // RELEASE (seq-cst store): the caller's reads of the batch happen before the kernel reuses the space.
    if (r.pos) Atomics.store(r.pos, 1, BigInt(this.#heldTail));
  }

  #fillBatch(r: CpuRing, batch: RecordBatch): number {
    const pos = r.pos!;
    const data = r.data!;
    const words = r.words!;
    const size = r.size;
    const mask = size - 1;
    const offsets = batch.offsets;
    const lengths = batch.lengths;
    const cap = batch.capacity;
    let tail = Number(Atomics.load(pos, 1));
    // ACQUIRE: pairs with the kernel's release of data_head (see #drainRing); plain reads below it.
    const head = Number(Atomics.load(pos, 0));
    const start = tail;
    let off = tail % size;
    let n = 0;
    let out: Buffer = data;
    while (tail < head && n < cap) {
      const w = off >>> 2;
      const type = words[w];
      const len = words[w + 1] >>> 16;
      if (len < 8 || len > head - tail) {
        tail = head;
        this.#held = r;
        this.#heldTail = tail;
        throw new TsbpfError(`PerfReader: corrupt record on cpu ${r.cpu}: size ${len}`);
      }
      if (off + len > size) {
        // Wraps: alone in its batch, copied. Stop before it if the batch has samples already.
        if (n > 0) break;
        if (this.#batchScratch.length < len) this.#batchScratch = Buffer.alloc(Math.max(len, 256));
        const first = size - off;
        data.copy(this.#batchScratch, 0, off, size);
        data.copy(this.#batchScratch, first, 0, len - first);
        tail += len;
        off = (off + len) & mask;
        const buf = this.#batchScratch;
        if (type === PERF_RECORD.SAMPLE && len >= 12) {
          offsets[0] = 12;
          lengths[0] = Math.min(buf.readUInt32LE(8), len - 12);
          n = 1;
          out = buf;
          break;
        }
        if (type === PERF_RECORD.LOST && len >= 24) this.#countLost(r, Number(buf.readBigUInt64LE(16)));
        continue;
      }
      if (type === PERF_RECORD.SAMPLE && len >= 12) {
        const raw = words[w + 2];
        offsets[n] = off + 12;
        lengths[n] = raw < len - 12 ? raw : len - 12;
        n++;
      } else if (type === PERF_RECORD.LOST && len >= 24) {
        this.#countLost(r, Number(data.readBigUInt64LE(off + 16)));
      }
      tail += len;
      off = (off + len) & mask;
    }
    if (tail !== start) {
      this.#held = r;
      this.#heldTail = tail;
    }
    if (n > 0) {
      batch.count = n;
      batch.ring = r.cpu;
      batch.data = out;
    } else {
      this.#releaseHeld();
    }
    return n;
  }

  #countLost(r: CpuRing, lost: number): void {
    r.lost += lost;
    this.#lost += lost;
  }

  /** Wait until samples may be available, without blocking Node. Resolves on close(); rejects on abort. */
  wait(options: { signal?: AbortSignal } = {}): Promise<void> {
    return this.#core.wait(options.signal);
  }

  /**
   * Samples as copies (or decoded values, see `decode`), read in batches as the consumer pulls: a slow
   * consumer leaves samples in the rings (the kernel then reports them lost) instead of buffering here.
   */
  samples(options: PerfIterateOptions = {}): AsyncGenerator<PerfSample<T>, void, undefined> {
    return this.#core.iterate('samples', options, (value, cpu) => ({ cpu, data: value as T }));
  }

  [Symbol.asyncIterator](): AsyncGenerator<PerfSample<T>, void, undefined> {
    return this.samples();
  }

  /**
   * The callback form: call `callback(sample, cpu)` for every sample until the reader closes (resolves)
   * or `signal` aborts (rejects with its reason). Samples are decoded values when `decode` is set, else
   * views valid during the synchronous part of the callback (or copies with `copy`). A callback that
   * returns a promise pauses reading until it settles (back-pressure); one that throws or rejects ends
   * listening with that error.
   */
  listen(callback: (sample: T, cpu: number) => void | Promise<void>, options: PerfListenOptions = {}): Promise<void> {
    return this.#core.listen(callback, options);
  }

  /** The sample at `start` of `buf` as handed out by iteration/listen(): decoded, a copy, or a view. */
  #take(buf: Buffer, start: number, len: number, copy: boolean): T {
    if (this.#codec) return decodeRecord(this.#codec, buf, start, len, `perf event array "${this.#map.name}"`) as T;
    if (!copy) return buf.subarray(start, start + len) as T;
    const out = Buffer.allocUnsafe(len);
    buf.copy(out, 0, start, start + len);
    return out as T;
  }

  /**
   * Idempotent. Wakes pending waits, unregisters from the waiter, deletes the map entries (if the map is
   * still open), unmaps, closes the perf fds and the reader's map fd.
   */
  close(): void {
    this.#core.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
  }

  /** Visit up to `max` samples of one CPU's ring (called by the core's drain, ring by ring). */
  #drainRing(r: CpuRing, max: number, visit: Visit): number {
    if (this.#overwritable) return this.#drainBackward(r, max, visit);
    const pos = r.pos!;
    const data = r.data!;
    const words = r.words!;
    const cpu = r.cpu;
    const size = r.size;
    // size is a power of two (pages × 2^n): `& mask` wraps an offset within the ring.
    const mask = size - 1;
    const core = this.#core;
    let n = 0;
    // Only we write data_tail; the atomic load is for an untorn 64-bit read, not for ordering. Positions
    // grow forever as u64; as doubles they stay exact up to 2^53 bytes of traffic.
    let tail = Number(Atomics.load(pos, 1));
    for (;;) {
      // ACQUIRE: pairs with the kernel's release of data_head (smp_store_release in perf_output_put_handle,
      // after the record bytes are written): every record below head is complete when we read it.
      const head = Number(Atomics.load(pos, 0));
      const start = tail;
      // One double modulo per batch; then 32-bit masking per record. Plain typed-array reads are enough:
      // the acquire load of head above orders every read of the records below it.
      let off = tail % size;
      try {
        while (tail < head && n < max && !core.closed && !core.stop) {
          // The header is 8 bytes at an 8-aligned offset: it never wraps. u32 type, u16 misc, u16 size.
          const w = off >>> 2;
          const type = words[w];
          const len = words[w + 1] >>> 16;
          if (len < 8 || len > head - tail) {
            // Corrupt: skip everything we were given rather than loop on garbage.
            tail = head;
            throw new TsbpfError(`PerfReader: corrupt record on cpu ${r.cpu}: size ${len}`);
          }
          const at = off;
          // Advance before visiting, so a callback that throws leaves its record consumed.
          tail += len;
          off = (off + len) & mask;
          if (at + len <= size) {
            if (type === PERF_RECORD.SAMPLE) {
              if (len < 12) continue;
              const raw = words[w + 2];
              n++;
              visit(data, at + 12, raw < len - 12 ? raw : len - 12, cpu);
              continue;
            }
            if (type !== PERF_RECORD.LOST) continue;
          }
          // Wraps around the end of the data area (or a LOST record): copy it into the scratch buffer.
          if (this.#scratch.length < len) this.#scratch = Buffer.alloc(Math.max(len, 2 * this.#scratch.length, 256));
          const buf = this.#scratch;
          const first = Math.min(len, size - at);
          data.copy(buf, 0, at, at + first);
          if (first < len) data.copy(buf, first, 0, len - first);
          const base = 0;
          if (type === PERF_RECORD.SAMPLE) {
            if (len < 12) continue;
            const raw = Math.min(buf.readUInt32LE(base + 8), len - 12);
            n++;
            visit(buf, base + 12, raw, cpu);
          } else if (type === PERF_RECORD.LOST && len >= 24) {
            const lost = Number(buf.readBigUInt64LE(base + 16)); // u64 id, u64 lost
            r.lost += lost;
            this.#lost += lost;
          }
        }
      } finally {
        if (tail !== start) {
          // RELEASE (seq-cst store): our reads of the consumed records happen before the kernel, which reads
          // data_tail (with a full barrier) before overwriting space, can reuse it. Once per batch.
          Atomics.store(pos, 1, BigInt(tail));
        }
      }
      if (n >= max || core.closed || core.stop || tail === start) return n;
      // Samples written after our head load: take them too (their wakeup may have come before our drain).
    }
  }

  /**
   * One read of an overwrite ring. Positions are signed numbers: data_head starts at 0 and goes down by each
   * record's size, so the newest record starts at `head` and older ones follow at higher positions, up to
   * `readFrom` (where the previous read started: those records were delivered) or `head + size` (anything
   * beyond was overwritten), whichever is lower.
   */
  #drainBackward(r: CpuRing, max: number, visit: Visit): number {
    const what = `perf event array "${this.#map.name}" cpu ${r.cpu}`;
    // Pause the ring while walking it, or the kernel could overwrite the records being read. The ioctl is a
    // syscall: the kernel's own barriers order it before our loads below.
    const pauseHere = !this.#paused;
    if (pauseHere) ioctl(r.fd.value, PERF_EVENT_IOC.PAUSE_OUTPUT, 1, `${what}: pause`);
    let n = 0;
    try {
      const data = r.data!;
      const size = r.size;
      // ACQUIRE: pairs with the kernel's release store of data_head after writing a record; with output
      // paused nothing moves during the walk anyway. The signed view turns 2^64 - k into -k.
      const head = Number(Atomics.load(r.pos!, 0));
      const end = Math.min(r.readFrom, head + size);
      const walk = this.#walk;
      let count = 0;
      for (let p = head; p + 8 <= end; ) {
        const off = ((p % size) + size) % size;
        const len = data.readUInt16LE(off + 6);
        // 0: never written (the ring has not wrapped yet); a record cut by `end` was partly overwritten.
        if (len < 8 || p + len > end) break;
        walk[2 * count] = p;
        walk[2 * count + 1] = len;
        count++;
        p += len;
      }
      // Oldest first: from the end of the walk back to `head`. With `max`, the oldest `max` are delivered and
      // the next read starts at the newest of them.
      let i = count - 1;
      for (; i >= 0 && n < max && !this.#core.closed && !this.#core.stop; i--) {
        const p = walk[2 * i];
        const len = walk[2 * i + 1];
        r.readFrom = p;
        const off = ((p % size) + size) % size;
        let buf = data;
        let base = off;
        if (off + len > size) {
          if (this.#scratch.length < len) this.#scratch = Buffer.alloc(Math.max(len, 2 * this.#scratch.length, 256));
          data.copy(this.#scratch, 0, off, size);
          data.copy(this.#scratch, size - off, 0, len - (size - off));
          buf = this.#scratch;
          base = 0;
        }
        const type = buf.readUInt32LE(base);
        if (type === PERF_RECORD.SAMPLE) {
          if (len < 12) continue;
          n++;
          visit(buf, base + 12, Math.min(buf.readUInt32LE(base + 8), len - 12), r.cpu);
        } else if (type === PERF_RECORD.LOST && len >= 24) {
          const lost = Number(buf.readBigUInt64LE(base + 16));
          r.lost += lost;
          this.#lost += lost;
        }
      }
      if (i < 0) r.readFrom = head;
    } finally {
      if (pauseHere && !this.#core.released) {
        try {
          ioctl(r.fd.value, PERF_EVENT_IOC.PAUSE_OUTPUT, 0, `${what}: resume`);
        } catch {
          /* the reader is being closed */
        }
      }
    }
    return n;
  }

  /** Delete the entries, unmap and close (once, by the core, never during a drain). */
  #release(): void {
    // Entries first, so programs stop writing into events we are about to close.
    if (!this.#map.closed) {
      for (const r of this.#rings) {
        try {
          this.#map.delete(r.cpu);
        } catch {
          /* already gone */
        }
      }
    }
    for (const r of this.#rings) {
      // Drop every view over the mapping before munmap: nothing here may touch it afterwards.
      r.pos = undefined;
      r.data = undefined;
      r.words = undefined;
      try {
        ioctl(r.fd.value, PERF_EVENT_IOC.DISABLE, 0);
      } catch {
        /* closing anyway */
      }
      r.mapping.unmap();
      r.fd.close();
    }
    this.#mapFd?.close();
    this.#mapFd = undefined;
  }
}
