import t from 'tap';
import { readFileSync } from 'node:fs';
import { loadCollectionSpec, Collection, ClosedError, TsbpfError } from '../src/index.js';
import { UserRingBufWriter, UserRingBufRecord, waitersIdle, waiterThreads } from '../src/ringbuf/index.js';
import { ownedFdCount, mmap, pageSize, PROT_READ, PROT_WRITE } from '../src/syscall/index.js';
import { obj, fdCount } from './helpers/env.js';

const spec = loadCollectionSpec(obj('user_ringbuf_test.o'));
const bpfMappings = () => readFileSync('/proc/self/maps', 'utf8').split('\n').filter((l) => l.includes('bpf')).length;
const RING = 16 * 1024;
const MAX_SEEN = 1024;
const PEEK = 512;

const open = (): Collection => new Collection(spec);
const tick = (ms = 0) => new Promise((r) => setTimeout(r, ms));

/** Run the program's drain once; returns what bpf_user_ringbuf_drain returned. */
function drain(coll: Collection, stopAfter = 0, flags = 0): number {
  const ctx = Buffer.alloc(8);
  ctx.writeUInt32LE(stopAfter, 0);
  ctx.writeUInt32LE(flags, 4);
  coll.programs.drain.run({ ctx });
  return Number(coll.variables.last_ret.value);
}

interface Seen { first: number; len: number; sum: number; tail: number }

/** Records the program saw, numbers `from` (inclusive) to the current count (over every run). */
function seenSince(coll: Collection, from: number): Seen[] {
  const total = Number(coll.variables.drained.value);
  if (total - from > MAX_SEEN) throw new Error('more records than the program keeps');
  const v = (n: string) => coll.variables[n].value as Buffer;
  const [first, lens, sums, tails] = [v('first'), v('lens'), v('sums'), v('tails')];
  const out: Seen[] = [];
  for (let i = from; i < total; i++) {
    const s = (i % MAX_SEEN) * 4;
    out.push({ first: first.readUInt32LE(s), len: lens.readUInt32LE(s), sum: sums.readUInt32LE(s), tail: tails.readUInt32LE(s) });
  }
  return out;
}

const drainedCount = (coll: Collection): number => Number(coll.variables.drained.value);

/** Deterministic contents: seq in the first 4 bytes (as far as they go), then a pattern. */
function record(seq: number, size: number): Buffer {
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; i++) b[i] = (seq * 7 + i * 13 + (i >> 8)) & 0xff;
  const head = Buffer.alloc(4);
  head.writeUInt32LE(seq >>> 0);
  head.copy(b, 0, 0, Math.min(4, size));
  return b;
}

/** What the program computes for a record: first (up to) 4 bytes, FNV-1a of the first PEEK bytes, last 4 bytes. */
function expected(b: Buffer): Seen {
  let h = 2166136261;
  for (let i = 0; i < Math.min(b.length, PEEK); i++) h = Math.imul(h ^ b[i], 16777619) >>> 0;
  const head = Buffer.alloc(4);
  b.copy(head, 0, 0, Math.min(4, b.length));
  return { first: head.readUInt32LE(0), len: b.length, sum: h, tail: b.length >= 4 ? b.readUInt32LE(b.length - 4) : 0 };
}

const total = (n: number) => (n + 8 + 7) & ~7;

t.test('records written from JS reach the program in order, with their exact contents, across wrap-arounds', (t) => {
  using coll = open();
  using w = new UserRingBufWriter(coll.maps.urb);
  t.equal(w.size, RING);
  t.equal(w.maxRecordSize, RING - 8);
  t.equal(w.free, RING);
  t.equal(drain(coll), 0, 'empty ring: nothing drained');
  const sizes = [1, 2, 3, 4, 5, 7, 8, 9, 12, 13, 16, 17, 31, 64, 100, 255, 511, 512, 513, 1000, 1023, 2049];
  let seq = 0;
  let pos = 0; // producer position, as the ring counts it
  let wrapped = 0;
  let from = 0;
  for (let round = 0; round < 12; round++) {
    const sent: Buffer[] = [];
    // Fill close to full: the batch's records are contiguous in the ring and several straddle its end.
    for (let i = 0; ; i++) {
      const size = sizes[(seq + round) % sizes.length];
      if (w.free < total(size)) break;
      const b = record(seq++, size);
      if ((pos % RING) + total(size) > RING) wrapped++;
      t.ok(w.write(b), 'written while there is room') || t.bailout();
      pos += total(size);
      sent.push(b);
    }
    t.ok(w.free < RING / 2, `round ${round}: the ring is mostly full (${w.free} bytes free)`);
    t.equal(drain(coll), sent.length, `round ${round}: drained ${sent.length}`);
    t.equal(w.free, RING, 'all space back after the drain');
    const seen = seenSince(coll, from);
    from += seen.length;
    t.same(seen, sent.map(expected), `round ${round}: contents and order`);
  }
  t.ok(wrapped >= 10, `records straddled the end of the ring ${wrapped} times`);
  t.ok(pos > 10 * RING, 'went around the ring many times');
  t.end();
});

t.test('reserve() fills in place; discarded records are never seen; pending records hold back later ones', (t) => {
  using coll = open();
  using w = new UserRingBufWriter(coll.maps.urb);
  const from = drainedCount(coll);
  const a = record(1, 20);
  const r1 = w.reserve(20)!;
  t.ok(r1 instanceof UserRingBufRecord);
  t.equal(r1.data.length, 20);
  t.equal(r1.size, 20);
  a.copy(r1.data);
  r1.submit();
  t.notOk(r1.pending);
  t.throws(() => r1.submit(), TsbpfError, 'submit twice');
  t.throws(() => r1.data, /already submitted/, 'no view after submit');
  const r2 = w.reserve(33)!;
  record(0xdead, 33).copy(r2.data);
  r2.discard();
  t.throws(() => r2.discard(), /already discarded/);
  t.ok(w.write(record(2, 9)));

  // Out of order: r3 pending hides r4 (submitted) from the program.
  const r3 = w.reserve(11)!;
  const r4 = w.reserve(40)!;
  t.equal(w.pendingRecords, 2);
  record(4, 40).copy(r4.data);
  r4.submit();
  t.equal(drain(coll), 2, 'drain stops at the pending (BUSY) record: only 1 and 2');
  t.same(seenSince(coll, from).map((s) => s.first), [1, 2]);
  t.equal(drain(coll), 0, 'still blocked by the pending record (no error: it reads as an empty ring)');
  record(3, 11).copy(r3.data);
  r3.submit();
  t.equal(w.pendingRecords, 0);
  t.equal(drain(coll), 2);
  t.same(seenSince(coll, from), [record(1, 20), record(2, 9), record(3, 11), record(4, 40)].map(expected));

  // A discarded pending record unblocks the ring too, and is skipped.
  const r5 = w.reserve(8)!;
  t.ok(w.write(record(6, 8)));
  t.equal(drain(coll), 0);
  r5.discard();
  t.equal(drain(coll), 1, 'the discarded record is not counted');
  t.same(seenSince(coll, from + 4).map((s) => s.first), [6]);
  t.end();
});

t.test('a callback that stops early leaves the rest for the next drain', (t) => {
  using coll = open();
  using w = new UserRingBufWriter(coll.maps.urb);
  const from = drainedCount(coll);
  for (let i = 0; i < 5; i++) t.ok(w.write(record(100 + i, 24)));
  t.equal(drain(coll, 2), 2);
  t.equal(w.free, RING - 3 * total(24));
  t.equal(drain(coll), 3);
  t.same(seenSince(coll, from).map((s) => s.first), [100, 101, 102, 103, 104]);
  t.end();
});

t.test('full ring: reserve() gives undefined and write() false until the program drains', (t) => {
  using coll = open();
  using w = new UserRingBufWriter(coll.maps.urb);
  let n = 0;
  for (let r = w.reserve(100); r; r = w.reserve(100)) {
    r.submit();
    n++;
  }
  t.equal(n, Math.floor(RING / total(100)), `${n} records fit`);
  t.equal(w.free, RING - n * total(100));
  t.equal(w.reserve(100), undefined, 'no room for one more');
  t.equal(w.write(Buffer.alloc(100)), false);
  t.equal(drain(coll, 1), 1, 'the program takes one');
  t.type(w.reserve(100), UserRingBufRecord, 'room again');
  // The ring can be filled exactly: one record of the largest size takes all of it.
  using c2 = open();
  using w2 = new UserRingBufWriter(c2.maps.urb);
  const big = record(77, w2.maxRecordSize);
  t.ok(w2.write(big));
  t.equal(w2.free, 0);
  t.equal(w2.reserve(1), undefined);
  t.equal(drain(c2), 1);
  t.same(seenSince(c2, 0), [expected(big)]);
  t.equal(w2.free, RING);
  t.end();
});

t.test('reserveAsync waits for the program to drain, without blocking Node', async (t) => {
  using coll = open();
  using w = new UserRingBufWriter(coll.maps.urb);
  t.equal(await w.reserveAsync(10).then((r) => (r.discard(), 'at once')), 'at once', 'resolves at once when there is room');
  t.equal(drain(coll), 0);
  // Leave some room, but not enough for 1000 bytes: EPOLLOUT is already reported, the writer must keep waiting.
  while (w.free >= 1200) t.ok(w.write(record(1, 1000 - 8 * 10)) || w.write(record(1, 8)));
  t.ok(w.free > 0 && w.free < total(1000), `${w.free} bytes free`);
  let settled = false;
  const p = w.reserveAsync(1000).then((r) => { settled = true; return r; });
  let ticks = 0;
  const iv = setInterval(() => ticks++, 5);
  await tick(60);
  t.notOk(settled, 'still waiting while the ring is full');
  t.ok(ticks >= 3, 'timers keep running while waiting');
  setTimeout(() => drain(coll, 3), 10);
  const rec = await p;
  clearInterval(iv);
  t.equal(rec.size, 1000);
  const before = drainedCount(coll);
  record(4242, 1000).copy(rec.data);
  rec.submit();
  t.ok(drain(coll) >= 1);
  const seen = seenSince(coll, before);
  t.same(seen[seen.length - 1], expected(record(4242, 1000)), 'the awaited record arrives');
  t.equal(waiterThreads() >= 1, true, 'waits in the shared waiter thread');

  // A drain that frees too little wakes the writer, which goes back to waiting.
  while (w.write(record(5, 200)));
  const p2 = w.reserveAsync(2000);
  setTimeout(() => drain(coll, 1), 10);
  setTimeout(() => drain(coll), 60);
  const r2 = await p2;
  r2.discard();
  t.pass('resolved after the second drain');
});

t.test('reserveAsync rejects on abort, on timeout and on close', async (t) => {
  using coll = open();
  const w = new UserRingBufWriter(coll.maps.urb);
  t.ok(w.write(record(1, w.maxRecordSize)));
  const ac = new AbortController();
  setTimeout(() => ac.abort(new Error('stop waiting')), 20);
  await t.rejects(w.reserveAsync(8, { signal: ac.signal }), /stop waiting/);
  await t.rejects(w.reserveAsync(8, { signal: AbortSignal.abort(new Error('pre-aborted')) }), /pre-aborted/);
  const t0 = performance.now();
  await t.rejects(w.reserveAsync(8, { timeoutMs: 30 }), { name: 'TimeoutError' });
  t.ok(performance.now() - t0 >= 25, 'waited for the timeout');
  const ac2 = new AbortController();
  const both = w.reserveAsync(8, { signal: ac2.signal, timeoutMs: 10000 });
  setTimeout(() => ac2.abort(new Error('aborted with a timeout set')), 10);
  await t.rejects(both, /aborted with a timeout set/);
  t.notOk(w.closed, 'aborting a wait leaves the writer open');

  const pending = [w.reserveAsync(8), w.reserveAsync(16, { timeoutMs: 5000 })];
  setTimeout(() => w.close(), 20);
  for (const p of pending) await t.rejects(p, ClosedError);
  t.ok(w.closed);
  await t.rejects(w.reserveAsync(8), ClosedError);
  t.throws(() => w.reserve(8), ClosedError);
  t.throws(() => w.write(Buffer.alloc(8)), ClosedError);
  t.throws(() => w.free, ClosedError);
  t.doesNotThrow(() => w.close(), 'close is idempotent');
});

t.test('close() discards pending records; their views are refused afterwards', (t) => {
  using coll = open();
  const from = drainedCount(coll);
  const w = new UserRingBufWriter(coll.maps.urb);
  const r = w.reserve(64)!;
  t.ok(w.write(record(9, 30)));
  w.close();
  t.notOk(r.pending);
  t.throws(() => r.data, ClosedError);
  t.throws(() => r.submit(), ClosedError);
  t.throws(() => r.discard(), ClosedError);
  t.equal(drain(coll), 1, 'the pending record was discarded: the one behind it gets through');
  t.same(seenSince(coll, from).map((s) => s.first), [9]);
  // asyncDispose and dispose close too
  const w2 = new UserRingBufWriter(coll.maps.urb);
  { using w3 = new UserRingBufWriter(coll.maps.urb); t.ok(w3.write(record(10, 8))); }
  t.equal(drain(coll), 1);
  return w2[Symbol.asyncDispose]().then(() => t.ok(w2.closed));
});

t.test('bad arguments are refused before touching the ring', (t) => {
  using coll = open();
  using w = new UserRingBufWriter(coll.maps.urb);
  for (const bad of [0, -1, 1.5, NaN, Infinity, RING - 7, RING, 2 ** 32, '8' as unknown as number]) {
    t.throws(() => w.reserve(bad), { name: 'TypeError', message: /user ring buffer "urb".*record size must be an integer in \[1, 16376\]/ }, `size ${String(bad)}`);
  }
  t.rejects(w.reserveAsync(0), TypeError);
  t.rejects(w.reserveAsync(8, { timeoutMs: -1 }), TypeError);
  t.throws(() => w.write('abc' as unknown as Uint8Array), TypeError);
  t.throws(() => w.write(new Uint8Array(0)), TypeError, 'empty record');
  t.equal(w.free, RING, 'nothing was reserved');
  t.equal(drain(coll), 0);
  using other = new Collection(loadCollectionSpec(obj('ringbuf_test.o')), { programs: [] });
  const fds = ownedFdCount();
  t.throws(() => new UserRingBufWriter(other.maps.rb), { name: 'TypeError', message: /"rb" is RINGBUF, not USER_RINGBUF/ });
  t.throws(() => new UserRingBufWriter({} as never), TypeError);
  t.equal(ownedFdCount(), fds, 'no fd opened');
  // The kernel's side of the layout: the consumer page cannot be mapped writable by user space.
  t.throws(() => mmap(coll.maps.urb.fd, pageSize(), PROT_READ | PROT_WRITE, 0), { errno: 'EPERM' }, 'consumer page is read-only');
  t.end();
});

t.test('no fd or mapping left behind after close; the waiter thread stops', async (t) => {
  const coll = open();
  t.teardown(() => coll.close());
  { const w = new UserRingBufWriter(coll.maps.urb); w.write(record(1, 8)); w.close(); }
  drain(coll);
  await waitersIdle();
  const fds = fdCount();
  const owned = ownedFdCount();
  const maps = bpfMappings();
  for (let i = 0; i < 5; i++) {
    const w = new UserRingBufWriter(coll.maps.urb);
    t.ok(w.write(record(i, w.maxRecordSize)));
    const p = w.reserveAsync(100);
    w.reserve(1); // refused (full): nothing pending
    await tick(5);
    w.close();
    await t.rejects(p, ClosedError);
    drain(coll);
  }
  await waitersIdle();
  t.equal(waiterThreads(), 0);
  t.equal(fdCount(), fds, 'fds');
  t.equal(ownedFdCount(), owned, 'owned fds');
  t.equal(bpfMappings(), maps, 'mappings');
});
