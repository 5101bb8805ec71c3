// BPF_MAP_{LOOKUP,LOOKUP_AND_DELETE,UPDATE,DELETE}_BATCH: many elements per
// bpf() call. Like every wrapper in this layer, the attr and all the memory it
// points to (batch tokens, keys, values) live in the native arena: keys and
// values are copied in before the call and out after it, so the kernel never
// sees a GC-owned Buffer.
//
// Kernel semantics worth knowing (kernel/bpf/syscall.c, kernel/bpf/hashtab.c):
// - The batch token ("in_batch"/"out_batch") is opaque. Hash maps (HASH,
//   PERCPU_HASH, LRU_HASH, LRU_PERCPU_HASH and HASH_OF_MAPS) use a u32 bucket
//   index (4 bytes whatever the key size); the generic implementation (arrays)
//   uses the last key returned (key_size bytes). `batchTokenSize()` covers both.
// - Lookup ends with ENOENT, possibly with count > 0: those elements are valid.
// - Hash lookup fails with ENOSPC when one bucket holds more elements than
//   `count`, before anything is copied: retry with a larger count.
// - Update/delete write back in `count` how many elements were processed, also
//   on failure (they stop at the first failing element).
// - A map type without the operation fails with ENOTSUPP (524, kernel-internal),
//   a kernel without batch commands with EINVAL.
// - Per-CPU values are round_up(value_size, 8) bytes per possible CPU.

import { arena } from './native.js';
import { BpfCall, type BpfCmd } from './bpf.js';
import { BpfError, E } from './errors.js';

const BATCH = 'bpf_attr.batch' as const;

/** ENOTSUPP: kernel-internal "not supported", what bpf() returns for a map type without a batch operation. */
export const ENOTSUPP = 524;

/** Arena blocks above this size are given back after a batch call (smaller ones are kept for the next call). */
const ARENA_KEEP = 16 << 20;

/** Bytes of a batch token for a map with `keySize`-byte keys: enough for hash maps (u32) and arrays (a key). */
export function batchTokenSize(keySize: number): number {
  return Math.max(keySize, 4);
}

/** A batch call failed; `processed` elements were handled before the failing one. */
export class BatchError extends BpfError {
  readonly processed: number;
  /**
   * The kernel refused the operation as a whole before looking at any element:
   * the map type has no such batch operation (ENOTSUPP/EOPNOTSUPP), or the
   * kernel has no batch commands (EINVAL with no flags set). A per-key
   * fallback is the remedy.
   */
  readonly refused: boolean;
  constructor(cmd: string, errnoCode: number, processed: number, refused: boolean, context?: string) {
    super(cmd, errnoCode, `${context ? context + ': ' : ''}${refused ? 'batch operation refused' : `after ${processed} element(s)`}`);
    this.processed = processed;
    this.refused = refused;
  }
}

/**
 * After a failed call: did the kernel stop before touching any element? Every
 * batch implementation writes `count` (less than the input count) once it has
 * started; early failures (unsupported map type or command, bad flags) leave
 * the input count in place.
 */
function failure(cmd: BpfCmd, errno: number, countOut: number, countIn: number, elemFlags: number, flags: number, context?: string): BatchError {
  const early = countOut >= countIn || errno === ENOTSUPP || errno === E.EOPNOTSUPP;
  const refused = early && (errno === ENOTSUPP || errno === E.EOPNOTSUPP || (errno === E.EINVAL && elemFlags === 0 && flags === 0));
  return new BatchError(cmd, errno, early || errno === E.EFAULT ? 0 : countOut, refused, context);
}

export interface LookupBatchResult {
  /** Elements written to the start of `keys`/`values`. */
  count: number;
  /** True when the map has no more elements after these (the kernel said ENOENT). */
  done: boolean;
  /** The out_batch token (the `outBatchToken` buffer passed in): pass it as `inBatch` to continue. */
  nextToken: Buffer;
}

function recordSize(bytes: number, count: number, what: string): number {
  if (!Number.isInteger(count) || count <= 0 || count > 0xffffffff) {
    throw new TypeError(`batch: count must be a positive u32, got ${count}`);
  }
  const size = bytes / count;
  if (!Number.isInteger(size) || size <= 0) {
    throw new TypeError(`batch: ${what} buffer is ${bytes} bytes, not a whole number of bytes for each of ${count} elements`);
  }
  return size;
}

function release(): void {
  arena.trim(ARENA_KEEP);
}

/**
 * BPF_MAP_LOOKUP_BATCH (or LOOKUP_AND_DELETE_BATCH with `andDelete`).
 * `keys` and `values` hold exactly `count` records each (their sizes give the
 * key and value sizes: per-CPU values are round_up(value_size, 8) × possible
 * CPUs). `inBatch` is null to start from the beginning, else a previous
 * `nextToken`. `outBatchToken` receives the next token (batchTokenSize bytes).
 * Throws BatchError (with `processed` = elements returned) on errors other
 * than ENOENT.
 */
export function mapLookupBatch(
  fd: number,
  inBatch: Buffer | null,
  outBatchToken: Buffer,
  keys: Buffer,
  values: Buffer,
  count: number,
  elemFlags = 0,
  flags = 0,
  andDelete = false,
  context?: string,
): LookupBatchResult {
  const keySize = recordSize(keys.length, count, 'keys');
  const valueSize = recordSize(values.length, count, 'values');
  const tokenSize = outBatchToken.length;
  if (tokenSize < batchTokenSize(keySize) || (inBatch && inBatch.length < tokenSize)) {
    throw new TypeError(`batch: the batch tokens must be at least ${batchTokenSize(keySize)} bytes`);
  }
  const cmd: BpfCmd = andDelete ? 'MAP_LOOKUP_AND_DELETE_BATCH' : 'MAP_LOOKUP_BATCH';
  const c = new BpfCall(BATCH, 2 * tokenSize + keys.length + values.length + 32);
  const inTok = inBatch ? c.in(inBatch.subarray(0, tokenSize)) : 0n;
  const outTok = c.out(tokenSize);
  const k = c.out(keys.length);
  const v = c.out(values.length);
  c.set({ in_batch: inTok, out_batch: outTok.addr, keys: k.addr, values: v.addr, count, map_fd: fd, elem_flags: elemFlags, flags });
  const r = c.tryRun(cmd);
  const countOut = c.get('count');
  const err = r < 0 && r !== -E.ENOENT ? failure(cmd, -r, countOut, count, elemFlags, flags, context) : undefined;
  const n = err ? err.processed : Math.min(countOut, count);
  if (n > 0) {
    c.read(k, n * keySize, keys, 0);
    c.read(v, n * valueSize, values, 0);
  }
  c.read(outTok, tokenSize, outBatchToken, 0);
  release();
  if (err) throw err;
  return { count: n, done: r === -E.ENOENT, nextToken: outBatchToken };
}

function writeBatch(
  cmd: 'MAP_UPDATE_BATCH' | 'MAP_DELETE_BATCH',
  fd: number,
  keys: Uint8Array,
  values: Uint8Array | null,
  count: number,
  elemFlags: number,
  flags: number,
  context?: string,
): number {
  recordSize(keys.length, count, 'keys');
  if (values) recordSize(values.length, count, 'values');
  const c = new BpfCall(BATCH, keys.length + (values?.length ?? 0) + 32);
  const k = c.in(keys);
  const v = values ? c.in(values) : 0n;
  c.set({ keys: k, values: v, count, map_fd: fd, elem_flags: elemFlags, flags });
  const r = c.tryRun(cmd);
  const countOut = c.get('count');
  release();
  if (r < 0) throw failure(cmd, -r, countOut, count, elemFlags, flags, context);
  return Math.min(countOut, count);
}

/**
 * BPF_MAP_UPDATE_BATCH of `count` keys and values (exactly `count` records
 * each). `elemFlags`: BPF_ANY/NOEXIST/EXIST, BPF_F_LOCK. Returns the number
 * updated; on failure throws BatchError whose `processed` is the number
 * updated before the failing element.
 */
export function mapUpdateBatch(fd: number, keys: Uint8Array, values: Uint8Array, count: number, elemFlags = 0, flags = 0, context?: string): number {
  return writeBatch('MAP_UPDATE_BATCH', fd, keys, values, count, elemFlags, flags, context);
}

/**
 * BPF_MAP_DELETE_BATCH of `count` keys. Returns the number deleted; on
 * failure (e.g. ENOENT for a missing key) throws BatchError whose `processed`
 * is the number deleted before the failing key.
 */
export function mapDeleteBatch(fd: number, keys: Uint8Array, count: number, elemFlags = 0, flags = 0, context?: string): number {
  return writeBatch('MAP_DELETE_BATCH', fd, keys, null, count, elemFlags, flags, context);
}

/** True for the errors meaning "this kernel or map type has no such batch operation". */
export function isBatchRefusal(e: unknown): e is BatchError {
  return e instanceof BatchError && e.refused;
}
