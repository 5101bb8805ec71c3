// A reusable batch of records for the readers' fastest path: nextBatch() fills it with the positions of up
// to `capacity` records of one ring, and the caller walks them in its own loop. Nothing is allocated per
// record and no function is called per record; the records are views of the ring, valid until the next
// nextBatch()/read() on the same reader (that call hands their space back to the kernel) or close().

export class RecordBatch {
  /** How many records the batch can hold. */
  readonly capacity: number;
  /** Records in the batch after the last nextBatch(). */
  count = 0;
  /** Ring (RingBufReader: index of the map; PerfReader: CPU) the records come from. */
  ring = -1;
  /** The Buffer the records live in: the ring's data area (or a scratch copy of a record that wraps). */
  data: Buffer = Buffer.alloc(0);
  /** Record i is `data[offsets[i] .. offsets[i] + lengths[i])`. */
  readonly offsets: Uint32Array;
  readonly lengths: Uint32Array;

  constructor(capacity = 1024) {
    if (!(Number.isInteger(capacity) && capacity > 0 && capacity <= 1 << 24)) {
      throw new TypeError(`RecordBatch: capacity must be an integer between 1 and ${1 << 24}, got ${String(capacity)}`);
    }
    this.capacity = capacity;
    this.offsets = new Uint32Array(capacity);
    this.lengths = new Uint32Array(capacity);
  }

  /** Record `i` as a view (allocates a Buffer: for convenience, not for the hot path). */
  record(i: number): Buffer {
    if (!(Number.isInteger(i) && i >= 0 && i < this.count)) throw new RangeError(`RecordBatch: no record ${i} (count ${this.count})`);
    return this.data.subarray(this.offsets[i], this.offsets[i] + this.lengths[i]);
  }

  /** @internal Reset before a fill. */
  clear(): void {
    this.count = 0;
    this.ring = -1;
    this.data = EMPTY;
  }
}

const EMPTY = Buffer.alloc(0);
