// Batch operations on a BpfMap: read, read-and-delete, update and delete many
// elements per bpf() call (BPF_MAP_*_BATCH), which matters when every call
// through ffi-rs costs ~10 µs.
//
// Results are contiguous: keys in one Buffer (keySize bytes each), values in
// another (valueStride bytes each: value_size, or round_up(value_size, 8) ×
// possible CPUs for per-CPU maps, the kernel's batch layout). Views of one
// element are made on demand, so reading 100 000 elements allocates two
// Buffers, not 200 000.
//
// Map types whose kernel implementation lacks a batch operation (and kernels
// without batch commands) are served by per-key calls instead. The refusal is
// remembered per map type and operation, so it costs one failed call per
// process.

import { mapDelete, mapLookup, mapNextKey, mapUpdate, possibleCpus, E } from '../syscall/index.js';
import { BatchError, batchTokenSize, isBatchRefusal, mapDeleteBatch, mapLookupBatch, mapUpdateBatch } from '../syscall/batch.js';
import { checkElementFlags, isPerCpu, mapTypeName, type BpfMap } from './map.js';
import { describeArgument } from '../errors.js';

export type BatchOp = 'lookup' | 'lookupAndDelete' | 'update' | 'delete' | 'updateWithFlags';

/** Batch updates with BPF_NOEXIST/BPF_EXIST. */
const UPDATE_FLAGS = 'updateWithFlags';

const refusals = new Map<number, Set<BatchOp>>();

/** Batch operations this process has seen the kernel refuse for `mapType` (served per key since). */
export function refusedBatchOps(mapType: number): BatchOp[] {
  return [...(refusals.get(mapType) ?? [])];
}

function refused(map: BpfMap, op: BatchOp): boolean {
  return refusals.get(map.type)?.has(op) ?? false;
}

function remember(map: BpfMap, op: BatchOp): void {
  let s = refusals.get(map.type);
  if (!s) refusals.set(map.type, (s = new Set()));
  s.add(op);
}

/** Upper bound on the keys+values bytes of one update/delete call (bounds the native arena). */
const MAX_CALL_BYTES = 8 << 20;
const DEFAULT_BATCH_SIZE = 4096;
/** Largest batchSize accepted: the kernel's count is a u32, and each chunk allocates batchSize × (key + value) bytes. */
const MAX_BATCH_SIZE = 1 << 24;

/** Bytes of one element's value in batch buffers: value_size, or round_up(value_size, 8) × possible CPUs. */
export function batchValueStride(map: BpfMap): number {
  return isPerCpu(map.type) ? map.perCpuStride * possibleCpus().length : map.valueSize;
}

function ctx(map: BpfMap): string {
  return `map "${map.name}" (${mapTypeName(map.type)})`;
}

function checkKeyed(map: BpfMap, what: string): void {
  if (map.keySize <= 0) throw new TypeError(`${ctx(map)}: ${what} needs a map with keys (key size is 0)`);
}

/**
 * `count` elements in two contiguous buffers. `key(i)`, `value(i)` and
 * `valuesPerCpu(i)` return views (no copy): they stay valid as long as the
 * buffers do, and share their memory.
 */
export class BatchEntries {
  readonly keys: Buffer;
  readonly values: Buffer;
  readonly count: number;
  readonly keySize: number;
  /** Bytes per value in `values` (all CPUs for per-CPU maps). */
  readonly valueStride: number;
  /** The map's value size (one CPU's slot for per-CPU maps). */
  readonly valueSize: number;
  readonly perCpu: boolean;

  constructor(keys: Buffer, values: Buffer, count: number, keySize: number, valueStride: number, valueSize: number, perCpu: boolean) {
    this.keys = keys;
    this.values = values;
    this.count = count;
    this.keySize = keySize;
    this.valueStride = valueStride;
    this.valueSize = valueSize;
    this.perCpu = perCpu;
  }

  key(i: number): Buffer {
    this.#check(i);
    return this.keys.subarray(i * this.keySize, (i + 1) * this.keySize);
  }

  /** The value bytes of element `i` (for per-CPU maps: every CPU's slot, padded to 8 bytes each). */
  value(i: number): Buffer {
    this.#check(i);
    return this.values.subarray(i * this.valueStride, (i + 1) * this.valueStride);
  }

  /** One view per possible CPU (a single view for other maps). */
  valuesPerCpu(i: number): Buffer[] {
    const v = this.value(i);
    if (!this.perCpu) return [v];
    const stride = (this.valueSize + 7) & ~7;
    const out: Buffer[] = [];
    for (let off = 0; off < v.length; off += stride) out.push(v.subarray(off, off + this.valueSize));
    return out;
  }

  *[Symbol.iterator](): Generator<[Buffer, Buffer | Buffer[]]> {
    for (let i = 0; i < this.count; i++) yield [this.key(i), this.perCpu ? this.valuesPerCpu(i) : this.value(i)];
  }

  #check(i: number): void {
    if (!Number.isInteger(i) || i < 0 || i >= this.count) throw new RangeError(`element ${i} is out of range (count ${this.count})`);
  }
}

export interface LookupBatchOptions {
  /** Elements per bpf() call (default 4096; grown when a hash bucket does not fit). */
  batchSize?: number;
  /** Delete what was read (BPF_MAP_LOOKUP_AND_DELETE_BATCH). */
  andDelete?: boolean;
}

function checkBatchSize(n: number | undefined): number {
  if (n === undefined) return DEFAULT_BATCH_SIZE;
  if (typeof n !== 'number' || !Number.isInteger(n) || n <= 0 || n > MAX_BATCH_SIZE) {
    throw new TypeError(`batchSize must be an integer in [1, ${MAX_BATCH_SIZE}], got ${typeof n === 'number' ? n : typeof n}: it is the number of elements read per bpf() call`);
  }
  return n;
}

/**
 * Read the map in chunks of up to `batchSize` elements; each chunk has its own
 * buffers (views of earlier chunks stay valid). Per-key calls when the kernel
 * refuses batches for this map type.
 */
export function* lookupBatches(map: BpfMap, opts: LookupBatchOptions = {}): Generator<BatchEntries> {
  let size = checkBatchSize(opts.batchSize);
  checkKeyed(map, 'a batch lookup');
  const op: BatchOp = opts.andDelete ? 'lookupAndDelete' : 'lookup';
  const ks = map.keySize;
  const vs = batchValueStride(map);
  const fd = map.fd;
  if (refused(map, op)) {
    yield* perKeyLookup(map, size, !!opts.andDelete);
    return;
  }
  const token = Buffer.alloc(batchTokenSize(ks));
  let started = false;
  for (;;) {
    const keys = Buffer.alloc(size * ks);
    const values = Buffer.alloc(size * vs);
    let r;
    try {
      r = mapLookupBatch(fd, started ? token : null, token, keys, values, size, 0, 0, !!opts.andDelete, ctx(map));
    } catch (e) {
      if (e instanceof BatchError && e.errnoCode === E.ENOSPC && e.processed === 0) {
        size *= 2; // one hash bucket holds more than `size` elements
        continue;
      }
      if (!started && isBatchRefusal(e)) {
        remember(map, op);
        yield* perKeyLookup(map, size, !!opts.andDelete);
        return;
      }
      throw e;
    }
    started = true;
    if (r.count > 0) yield new BatchEntries(keys, values, r.count, ks, vs, map.valueSize, map.perCpu);
    if (r.done) return;
  }
}

/** Iterate `[key, value]` pairs by batches (values: one view per CPU for per-CPU maps). Keys and values are views. */
export function* lookupBatch(map: BpfMap, opts: LookupBatchOptions = {}): Generator<[Buffer, Buffer | Buffer[]]> {
  for (const c of lookupBatches(map, opts)) {
    // Flat loop over the chunk's buffers: two views per element, nothing else.
    const { keys, values, count, keySize: ks, valueStride: vs } = c;
    if (c.perCpu) {
      for (let i = 0; i < count; i++) yield [keys.subarray(i * ks, i * ks + ks), c.valuesPerCpu(i)];
    } else {
      for (let i = 0, ko = 0, vo = 0; i < count; i++, ko += ks, vo += vs) yield [keys.subarray(ko, ko + ks), values.subarray(vo, vo + vs)];
    }
  }
}

/** Per-key equivalent of lookupBatches (map types without batch lookups). */
function* perKeyLookup(map: BpfMap, size: number, andDelete: boolean): Generator<BatchEntries> {
  const ks = map.keySize;
  const vs = batchValueStride(map);
  const fd = map.fd;
  const c = ctx(map);
  let prev: Buffer | null = null;
  let seen = 0;
  const limit = Math.max(map.maxEntries, 1) * 2 + 16;
  for (;;) {
    const keys = Buffer.alloc(size * ks);
    const values = Buffer.alloc(size * vs);
    let n = 0;
    let done = false;
    while (n < size) {
      const key = keys.subarray(n * ks, (n + 1) * ks);
      // After a deletion the previous key is gone: start again from the first key.
      if (!mapNextKey(fd, andDelete ? null : prev, key, ks, c) || ++seen > limit) {
        done = true;
        break;
      }
      prev = key;
      if (mapLookup(fd, key, values, n * vs, vs, 0, c, andDelete)) n++;
    }
    if (n > 0) yield new BatchEntries(keys, values, n, ks, vs, map.valueSize, map.perCpu);
    if (done) return;
  }
}

export interface ReadAllOptions {
  /** Delete what was read (BPF_MAP_LOOKUP_AND_DELETE_BATCH). */
  andDelete?: boolean;
}

/**
 * Every element of the map, in one keys Buffer and one values Buffer (sized
 * for max_entries: usually one bpf() call). Use `key(i)`/`value(i)` for views.
 */
export function readAll(map: BpfMap, opts: ReadAllOptions = {}): BatchEntries {
  checkKeyed(map, 'readAll');
  const op: BatchOp = opts.andDelete ? 'lookupAndDelete' : 'lookup';
  const ks = map.keySize;
  const vs = batchValueStride(map);
  const make = (keys: Buffer, values: Buffer, n: number): BatchEntries =>
    new BatchEntries(keys.subarray(0, n * ks), values.subarray(0, n * vs), n, ks, vs, map.valueSize, map.perCpu);
  if (refused(map, op)) return collect(map, perKeyLookup(map, DEFAULT_BATCH_SIZE, !!opts.andDelete), make);
  const fd = map.fd;
  // One more than max_entries: an array then ends with ENOENT in the same call.
  let cap = Math.max(map.maxEntries, 1) + 1;
  let keys: Buffer = Buffer.alloc(cap * ks);
  let values: Buffer = Buffer.alloc(cap * vs);
  const token = Buffer.alloc(batchTokenSize(ks));
  let n = 0;
  let started = false;
  for (;;) {
    if (n === cap) {
      cap *= 2;
      keys = grow(keys, cap * ks);
      values = grow(values, cap * vs);
    }
    const room = cap - n;
    let r;
    try {
      r = mapLookupBatch(fd, started ? token : null, token, keys.subarray(n * ks, cap * ks), values.subarray(n * vs, cap * vs), room, 0, 0,
        !!opts.andDelete, ctx(map));
    } catch (e) {
      if (e instanceof BatchError && e.errnoCode === E.ENOSPC && e.processed === 0) {
        cap = Math.max(cap * 2, n + 1);
        keys = grow(keys, cap * ks);
        values = grow(values, cap * vs);
        continue;
      }
      if (!started && isBatchRefusal(e)) {
        remember(map, op);
        return collect(map, perKeyLookup(map, DEFAULT_BATCH_SIZE, !!opts.andDelete), make);
      }
      throw e;
    }
    started = true;
    n += r.count;
    if (r.done) return make(keys, values, n);
  }
}

function grow(b: Buffer, size: number): Buffer {
  const out = Buffer.alloc(size);
  b.copy(out, 0, 0, Math.min(b.length, size));
  return out;
}

function collect(map: BpfMap, chunks: Iterable<BatchEntries>, make: (k: Buffer, v: Buffer, n: number) => BatchEntries): BatchEntries {
  const list = [...chunks];
  const n = list.reduce((a, c) => a + c.count, 0);
  return make(Buffer.concat(list.map((c) => c.keys.subarray(0, c.count * c.keySize))),
    Buffer.concat(list.map((c) => c.values.subarray(0, c.count * c.valueStride))), n);
}

const NO_VALUES = Symbol('no values');

/** Element count of `keys` (and `values`, checked against it unless `values` is NO_VALUES): all before any syscall. */
function checkRecords(map: BpfMap, keys: Uint8Array, values: Uint8Array | typeof NO_VALUES, what: string): number {
  checkKeyed(map, what);
  if (!(keys instanceof Uint8Array)) {
    throw new TypeError(`${ctx(map)}: ${what}: keys must be a Buffer/Uint8Array of ${map.keySize}-byte keys back to back, got ${describeArgument(keys)}`);
  }
  if (keys.length === 0 || keys.length % map.keySize !== 0) {
    throw new TypeError(`${ctx(map)}: ${what}: keys are ${keys.length} bytes, not a positive multiple of the key size ${map.keySize}`);
  }
  const count = keys.length / map.keySize;
  if (values !== NO_VALUES) {
    if (!(values instanceof Uint8Array)) {
      throw new TypeError(`${ctx(map)}: ${what}: values must be a Buffer/Uint8Array of ${batchValueStride(map)}-byte values back to back, got ${describeArgument(values)}`);
    }
    const vs = batchValueStride(map);
    if (values.length !== count * vs) {
      const rule = map.perCpu
        ? ` (per-CPU: ${map.perCpuStride} bytes (value size ${map.valueSize} rounded up to 8) × ${possibleCpus().length} possible CPUs per element)`
        : '';
      throw new TypeError(`${ctx(map)}: ${what}: values are ${values.length} bytes, ${count} element(s) need ${count * vs}${rule}`);
    }
  }
  return count;
}

/**
 * Insert or replace `keys.length / keySize` elements. `values` holds one value
 * per key, `batchValueStride(map)` bytes each. `flags`: UpdateFlags (ANY,
 * NOEXIST, EXIST, LOCK). Returns the number updated; a failure throws
 * BatchError whose `processed` counts the elements updated before it.
 */
export function updateBatch(map: BpfMap, keys: Uint8Array, values: Uint8Array, flags = 0): number {
  const count = checkRecords(map, keys, values, 'updateBatch');
  checkElementFlags(flags, `${ctx(map)}: updateBatch`);
  const ks = map.keySize;
  const vs = batchValueStride(map);
  const fd = map.fd;
  const c = ctx(map);
  const per = Math.max(1, Math.floor(MAX_CALL_BYTES / (ks + vs)));
  let done = 0;
  while (done < count) {
    // Kernels up to at least 6.18 refuse BPF_NOEXIST/BPF_EXIST in batch updates (EINVAL before any element):
    // such updates go per key, which applies the flags exactly.
    if (refused(map, 'update') || ((flags & 3) !== 0 && refusals.get(map.type)?.has(UPDATE_FLAGS))) {
      for (; done < count; done++) {
        try {
          mapUpdate(fd, keys.subarray(done * ks, (done + 1) * ks), values.subarray(done * vs, (done + 1) * vs), flags, c);
        } catch (e) {
          throw rebase(e, done, 'MAP_UPDATE_BATCH', c);
        }
      }
      break;
    }
    const n = Math.min(per, count - done);
    try {
      done += mapUpdateBatch(fd, keys.subarray(done * ks, (done + n) * ks), values.subarray(done * vs, (done + n) * vs), n, flags, 0, c);
    } catch (e) {
      if (isBatchRefusal(e)) {
        remember(map, 'update');
        continue;
      }
      if ((flags & 3) !== 0 && e instanceof BatchError && e.errnoCode === E.EINVAL && e.processed === 0) {
        remember(map, UPDATE_FLAGS);
        continue;
      }
      throw rebase(e, done, 'MAP_UPDATE_BATCH', c);
    }
  }
  return done;
}

/**
 * Delete `keys.length / keySize` keys. Returns the number deleted; a missing
 * key stops it with BatchError (ENOENT) whose `processed` counts the keys
 * deleted before it.
 */
export function deleteBatch(map: BpfMap, keys: Uint8Array): number {
  const count = checkRecords(map, keys, NO_VALUES, 'deleteBatch');
  const ks = map.keySize;
  const fd = map.fd;
  const c = ctx(map);
  const per = Math.max(1, Math.floor(MAX_CALL_BYTES / ks));
  let done = 0;
  while (done < count) {
    if (refused(map, 'delete')) {
      for (; done < count; done++) {
        let ok: boolean;
        try {
          ok = mapDelete(fd, keys.subarray(done * ks, (done + 1) * ks), c);
        } catch (e) {
          throw rebase(e, done, 'MAP_DELETE_BATCH', c);
        }
        if (!ok) throw new BatchError('MAP_DELETE_BATCH', E.ENOENT, done, false, c);
      }
      break;
    }
    const n = Math.min(per, count - done);
    try {
      done += mapDeleteBatch(fd, keys.subarray(done * ks, (done + n) * ks), n, 0, 0, c);
    } catch (e) {
      if (isBatchRefusal(e)) {
        remember(map, 'delete');
        continue;
      }
      throw rebase(e, done, 'MAP_DELETE_BATCH', c);
    }
  }
  return done;
}

/** An error from a chunk (or one per-key call) starting at element `base`, as a BatchError over the whole call. */
function rebase(e: unknown, base: number, cmd: string, context: string): unknown {
  if (e instanceof BatchError) return base === 0 ? e : new BatchError(e.cmd ?? cmd, e.errnoCode, base + e.processed, e.refused, context);
  if (e instanceof Error && 'errnoCode' in e && typeof (e as { errnoCode: unknown }).errnoCode === 'number') {
    const err = new BatchError(cmd, (e as { errnoCode: number }).errnoCode, base, false, context);
    (err as { cause?: unknown }).cause = e;
    return err;
  }
  return e;
}
