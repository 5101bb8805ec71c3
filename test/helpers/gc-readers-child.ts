// Run by test/soak.test.ts under --expose-gc: ring buffer and perf readers stream records while gc() runs
// every 100 records, inside read callbacks too (views live); then record views kept past close() are
// touched after close and after gc(): they must read zeros, never crash. Prints one JSON line.
//   node --expose-gc --import=@tapjs/typescript/import test/helpers/gc-readers-child.ts [records]
import { loadCollectionSpec, Collection, ClosedError } from '../../src/index.js';
import { RingBufReader, PerfReader, RecordBatch } from '../../src/ringbuf/index.js';
import { onlineCpus } from '../../src/syscall/index.js';
import { pendingPlaceholders } from '../../src/syscall/os.js';
import { obj } from './env.js';

const TOTAL = Number(process.argv[2] ?? 20_000);
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('gc-readers-child: run with --expose-gc');
let gcs = 0;
const collect = (): void => {
  gc!();
  gcs++;
};
const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

function check(cond: boolean, msg: string): asserts cond {
  if (!cond) throw new Error(`gc-readers: ${msg}`);
}

/** seq of a submit_n / emit_n record (12 bytes, or 16 (+ perf padding)), checking its contents. */
function seqOf(rec: Buffer): number {
  const seq = rec.readUInt32LE(0);
  const kind = rec.readUInt32LE(4);
  if (seq & 1) check(rec.length === 12 && kind === 12 && rec.readUInt32LE(8) === (~seq >>> 0), `bad record ${rec.toString('hex')}`);
  else check(rec.length >= 16 && kind === 16 && rec.readBigUInt64LE(8) === BigInt(seq) * 3n, `bad record ${rec.toString('hex')}`);
  return seq;
}

async function expectClosed(what: string, fns: Record<string, () => unknown>, wait: () => Promise<unknown>): Promise<void> {
  for (const [name, fn] of Object.entries(fns)) {
    let threw: unknown;
    try {
      fn();
    } catch (e) {
      threw = e;
    }
    check(threw instanceof ClosedError, `${what}.${name}() after close: ${String(threw)}`);
  }
  let rejected: unknown;
  await wait().catch((e) => (rejected = e));
  check(rejected instanceof ClosedError, `${what}.wait() after close: ${String(rejected)}`);
}

/** A view kept past close: a Buffer, a subarray or another typed array over the mapping. */
type View = Uint8Array | Uint32Array;

/** Read every element of the kept views: after close they are placeholder memory, zero-filled. */
function readSum(views: View[]): number {
  let sum = 0;
  for (const v of views) for (let i = 0; i < v.length; i++) sum += v[i];
  return sum;
}

/** Write through the kept views (the placeholder is private read-write memory); returns the bytes read back wrong. */
function writeAll(views: View[]): number {
  let bad = 0;
  for (const v of views) {
    if (!v.length) continue;
    v[v.length - 1] = 0x5a;
    if (v[v.length - 1] !== 0x5a) bad++;
  }
  return bad;
}

/** What both readers offer the drive below (RingBufReader and PerfReader). */
interface Reader {
  read(cb: (rec: Buffer) => void, o?: { max?: number }): number;
  readInPlace(cb: (data: Buffer, off: number, len: number) => void, o?: { max?: number }): number;
  nextBatch(batch: RecordBatch): number;
  wait(): Promise<void>;
  close(): void;
}

interface Drive<R extends Reader> {
  /** 'ring' or 'perf', for messages; `Class` names the reader in expectClosed messages. */
  label: string;
  Class: string;
  reader: R;
  /** Produce n records numbered from base (one test run of the program). */
  produce(n: number, base: number): void;
  /** Records per produce() call, and how far the producer may run ahead of the consumer. */
  chunk: number;
  ahead: number;
  /** The reader's async iteration, as records. */
  records(reader: R): AsyncIterable<Buffer>;
  /** The views readInPlace() lets a user keep of (data, off, len). */
  inPlaceViews(data: Buffer, off: number, len: number): View[];
  /** 'records' or 'samples'. */
  unit: string;
}

/**
 * TOTAL records through `d.reader`, gc() every 100: half through zero-copy read() (gc() inside the
 * callback, the view live), half through for await with the producer on another async path. Returns how
 * many arrived, in order.
 */
async function stream<R extends Reader>(d: Drive<R>): Promise<number> {
  let produced = 0;
  let next = 0;
  const half = TOTAL / 2;
  while (produced < half) {
    d.produce(d.chunk, produced);
    produced += d.chunk;
    d.reader.read((rec) => {
      check(seqOf(rec) === next, `${d.label} read: seq ${seqOf(rec)}, expected ${next}`);
      next++;
      if (next % 100 === 0) {
        collect();
        check(seqOf(rec) === next - 1, 'view changed across gc()');
      }
    });
  }
  const producer = (async () => {
    while (produced < TOTAL) {
      while (produced - next > d.ahead) await tick();
      d.produce(d.chunk, produced);
      produced += d.chunk;
      await tick();
    }
  })();
  for await (const rec of d.records(d.reader)) {
    check(seqOf(rec) === next, `${d.label} for await: seq ${seqOf(rec)}, expected ${next}`);
    next++;
    if (next % 100 === 0) collect();
    if (next === TOTAL) break;
  }
  await producer;
  return next;
}

/**
 * Views kept past close, from read(), readInPlace() and nextBatch(): closes the reader and `coll`, then
 * reads and writes through the views, before and after gc(), and checks every call on the closed reader.
 */
async function keepViewsPastClose<R extends Reader>(d: Drive<R>, coll: Collection): Promise<Record<string, number>> {
  const { reader } = d;
  d.produce(8, TOTAL);
  const kept: View[] = [];
  reader.read((rec) => kept.push(rec), { max: 3 });
  reader.readInPlace((data, off, len) => kept.push(...d.inPlaceViews(data, off, len)), { max: 2 });
  const batch = new RecordBatch(16);
  check(reader.nextBatch(batch) === 3, `nextBatch: 3 ${d.unit} left`);
  kept.push(batch.data!.subarray(batch.offsets[0], batch.offsets[0] + batch.lengths[0]));
  check(seqOf(kept[0] as Buffer) === TOTAL, 'kept view before close');
  reader.close();
  reader.close(); // idempotent
  coll.close();
  const afterClose = readSum(kept);
  const badWrites = writeAll(kept);
  collect();
  const afterGc = readSum(kept) + writeAll(kept);
  await expectClosed(d.Class, {
    read: () => reader.read(() => {}),
    readInPlace: () => reader.readInPlace(() => {}),
    nextBatch: () => reader.nextBatch(batch),
  }, () => reader.wait());
  const pendingWithViews = pendingPlaceholders();
  const keptViews = kept.length;
  kept.length = 0;
  batch.clear();
  return { keptViews, afterClose, badWrites, afterGc, pendingWithViews };
}

// ---- ring buffer: submit_n (BPF_PROG_TEST_RUN) produces, the ring never more than 4000 records ahead.
async function ringbuf(): Promise<Record<string, number>> {
  const spec = loadCollectionSpec(obj('ringbuf_test.o'));
  const coll = new Collection(spec, { programs: ['submit_n'] });
  const d: Drive<RingBufReader> = {
    label: 'ring',
    Class: 'RingBufReader',
    reader: new RingBufReader(coll.maps.rb),
    produce: (n, base) => {
      const ctx = Buffer.alloc(16);
      ctx.writeUInt32LE(n, 0);
      ctx.writeUInt32LE(base, 4);
      coll.programs.submit_n.run({ ctx });
    },
    chunk: 500,
    ahead: 4000,
    records: (r) => r,
    // The whole data area, the record, and a typed array over it.
    inPlaceViews: (data, off, len) => [data, data.subarray(off, off + len), new Uint32Array(data.buffer, data.byteOffset + off, 2)],
    unit: 'records',
  };
  const records = await stream(d);
  const dropped = (coll.variables.dropped.value as bigint);
  check(dropped === 0n, `ring dropped ${dropped}`);
  const views = await keepViewsPastClose(d, coll);
  let iterated = 0;
  for await (const _ of d.reader) iterated++; // a closed reader's iteration just ends
  check(iterated === 0, 'iteration after close');
  return { records, ...views };
}

// ---- perf event array: emit_n on one CPU produces; the default ring (8 pages per CPU) holds ~900 samples,
// so the producer stays at most 400 ahead.
async function perf(): Promise<Record<string, number>> {
  const spec = loadCollectionSpec(obj('perf_test.o'));
  const coll = new Collection(spec, { programs: ['emit_n'] });
  const cpu = onlineCpus()[0];
  const d: Drive<PerfReader> = {
    label: 'perf',
    Class: 'PerfReader',
    reader: new PerfReader(coll.maps.events),
    produce: (n, base) => {
      const ctx = Buffer.alloc(16);
      ctx.writeUInt32LE(n, 0);
      ctx.writeUInt32LE(base, 8);
      coll.programs.emit_n.run({ ctx, flags: 1, cpu });
    },
    chunk: 200,
    ahead: 400,
    records: async function* (r) {
      for await (const s of r) yield s.data;
    },
    inPlaceViews: (buf, off, len) => [buf, buf.subarray(off, off + len)],
    unit: 'samples',
  };
  const records = await stream(d);
  check(d.reader.lost === 0, `perf lost ${d.reader.lost}`);
  const dropped = coll.variables.dropped.value as bigint;
  check(dropped === 0n, `perf dropped ${dropped}`);
  return { records, ...(await keepViewsPastClose(d, coll)) };
}

const rb = await ringbuf();
const pf = await perf();
for (let i = 0; i < 3; i++) {
  collect();
  await new Promise((r) => setTimeout(r, 10));
}
process.stdout.write(JSON.stringify({ ringbuf: rb, perf: pf, gcs, pendingAtEnd: pendingPlaceholders() }) + '\n');
