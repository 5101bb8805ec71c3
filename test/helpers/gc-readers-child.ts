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

// ---- ring buffer: submit_n (BPF_PROG_TEST_RUN) produces, readers consume, gc() every 100 records.
async function ringbuf(): Promise<Record<string, number>> {
  const spec = loadCollectionSpec(obj('ringbuf_test.o'));
  const coll = new Collection(spec, { programs: ['submit_n'] });
  const reader = new RingBufReader(coll.maps.rb);
  const submit = (n: number, base: number): void => {
    const ctx = Buffer.alloc(16);
    ctx.writeUInt32LE(n, 0);
    ctx.writeUInt32LE(base, 4);
    coll.programs.submit_n.run({ ctx });
  };
  let produced = 0;
  let next = 0;
  const half = TOTAL / 2;
  // 1) zero-copy read() with gc() inside the callback, while the view is live.
  while (produced < half) {
    submit(500, produced);
    produced += 500;
    reader.read((rec) => {
      check(seqOf(rec) === next, `ring read: seq ${seqOf(rec)}, expected ${next}`);
      next++;
      if (next % 100 === 0) {
        collect();
        check(seqOf(rec) === next - 1, 'view changed across gc()');
      }
    });
  }
  // 2) for await (copies), the producer in another async path, the ring never more than 4000 records ahead.
  const producer = (async () => {
    while (produced < TOTAL) {
      while (produced - next > 4000) await tick();
      submit(500, produced);
      produced += 500;
      await tick();
    }
  })();
  for await (const rec of reader) {
    check(seqOf(rec) === next, `ring for await: seq ${seqOf(rec)}, expected ${next}`);
    next++;
    if (next % 100 === 0) collect();
    if (next === TOTAL) break;
  }
  await producer;
  const dropped = (coll.variables.dropped.value as bigint);
  check(dropped === 0n, `ring dropped ${dropped}`);
  // 3) views kept past close: from read(), readInPlace() (the whole data area) and nextBatch().
  submit(8, TOTAL);
  const kept: View[] = [];
  reader.read((rec) => kept.push(rec), { max: 3 });
  reader.readInPlace((data, off, len) => kept.push(data, data.subarray(off, off + len), new Uint32Array(data.buffer, data.byteOffset + off, 2)), { max: 2 });
  const batch = new RecordBatch(16);
  check(reader.nextBatch(batch) === 3, 'nextBatch: 3 records left');
  kept.push(batch.data!.subarray(batch.offsets[0], batch.offsets[0] + batch.lengths[0]));
  check(seqOf(kept[0] as Buffer) === TOTAL, 'kept view before close');
  reader.close();
  reader.close(); // idempotent
  coll.close();
  const afterClose = readSum(kept);
  const badWrites = writeAll(kept);
  collect();
  const afterGc = readSum(kept) + writeAll(kept);
  await expectClosed('RingBufReader', {
    read: () => reader.read(() => {}),
    readInPlace: () => reader.readInPlace(() => {}),
    nextBatch: () => reader.nextBatch(batch),
  }, () => reader.wait());
  let iterated = 0;
  for await (const _ of reader) iterated++; // a closed reader's iteration just ends
  check(iterated === 0, 'iteration after close');
  const pendingWithViews = pendingPlaceholders();
  const keptViews = kept.length;
  kept.length = 0;
  batch.clear();
  return { records: next, keptViews, afterClose, badWrites, afterGc, pendingWithViews };
}

// ---- perf event array: emit_n on one CPU produces, gc() every 100 samples.
async function perf(): Promise<Record<string, number>> {
  const spec = loadCollectionSpec(obj('perf_test.o'));
  const coll = new Collection(spec, { programs: ['emit_n'] });
  const reader = new PerfReader(coll.maps.events);
  const cpu = onlineCpus()[0];
  const emit = (n: number, base: number): void => {
    const ctx = Buffer.alloc(16);
    ctx.writeUInt32LE(n, 0);
    ctx.writeUInt32LE(base, 8);
    coll.programs.emit_n.run({ ctx, flags: 1, cpu });
  };
  let produced = 0;
  let next = 0;
  const half = TOTAL / 2;
  while (produced < half) {
    emit(200, produced);
    produced += 200;
    reader.read((rec) => {
      check(seqOf(rec) === next, `perf read: seq ${seqOf(rec)}, expected ${next}`);
      next++;
      if (next % 100 === 0) {
        collect();
        check(seqOf(rec) === next - 1, 'view changed across gc()');
      }
    });
  }
  // The default ring (8 pages per CPU) holds ~900 samples: stay well below.
  const producer = (async () => {
    while (produced < TOTAL) {
      while (produced - next > 400) await tick();
      emit(200, produced);
      produced += 200;
      await tick();
    }
  })();
  for await (const s of reader) {
    check(seqOf(s.data) === next, `perf for await: seq ${seqOf(s.data)}, expected ${next}`);
    next++;
    if (next % 100 === 0) collect();
    if (next === TOTAL) break;
  }
  await producer;
  check(reader.lost === 0, `perf lost ${reader.lost}`);
  const dropped = coll.variables.dropped.value as bigint;
  check(dropped === 0n, `perf dropped ${dropped}`);
  emit(8, TOTAL);
  const kept: View[] = [];
  reader.read((rec) => kept.push(rec), { max: 3 });
  reader.readInPlace((buf, off, len) => kept.push(buf, buf.subarray(off, off + len)), { max: 2 });
  const batch = new RecordBatch(16);
  check(reader.nextBatch(batch) === 3, 'nextBatch: 3 samples left');
  kept.push(batch.data!.subarray(batch.offsets[0], batch.offsets[0] + batch.lengths[0]));
  check(seqOf(kept[0] as Buffer) === TOTAL, 'kept view before close');
  reader.close();
  reader.close();
  coll.close();
  const afterClose = readSum(kept);
  const badWrites = writeAll(kept);
  collect();
  const afterGc = readSum(kept) + writeAll(kept);
  await expectClosed('PerfReader', {
    read: () => reader.read(() => {}),
    readInPlace: () => reader.readInPlace(() => {}),
    nextBatch: () => reader.nextBatch(batch),
  }, () => reader.wait());
  const pendingWithViews = pendingPlaceholders();
  const keptViews = kept.length;
  kept.length = 0;
  batch.clear();
  return { records: next, keptViews, afterClose, badWrites, afterGc, pendingWithViews };
}

const rb = await ringbuf();
const pf = await perf();
for (let i = 0; i < 3; i++) {
  collect();
  await new Promise((r) => setTimeout(r, 10));
}
process.stdout.write(JSON.stringify({ ringbuf: rb, perf: pf, gcs, pendingAtEnd: pendingPlaceholders() }) + '\n');
