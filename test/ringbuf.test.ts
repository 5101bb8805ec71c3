import t from 'tap';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { loadCollectionSpec, setVariable, Collection, autoAttach, ClosedError } from '../src/index.js';
import { RingBufReader, RecordBatch, waiterThreads, waitersIdle } from '../src/ringbuf/index.js';
import { rawSyscall, NR } from '../src/syscall/native.js';
import { obj, fdCount } from './helpers/env.js';

const spec = loadCollectionSpec(obj('ringbuf_test.o'));
const bpfMappings = () => readFileSync('/proc/self/maps', 'utf8').split('\n').filter((l) => l.includes('bpf')).length;

function open(programs: string[] = ['submit_n', 'discard_some']): Collection {
  return new Collection(spec, { programs });
}

function submit(coll: Collection, n: number, base = 0, ring = 0): void {
  const ctx = Buffer.alloc(16);
  ctx.writeUInt32LE(n, 0);
  ctx.writeUInt32LE(base, 4);
  ctx.writeUInt32LE(ring, 8);
  coll.programs.submit_n.run({ ctx });
}

/** Check a record from submit_n and return its sequence number. */
function seqOf(rec: Buffer): number {
  const seq = rec.readUInt32LE(0);
  const kind = rec.readUInt32LE(4);
  if (seq & 1) {
    if (rec.length !== 12 || kind !== 12 || rec.readUInt32LE(8) !== (~seq >>> 0)) throw new Error(`bad 12-byte record ${rec.toString('hex')}`);
  } else if (rec.length !== 16 || kind !== 16 || rec.readBigUInt64LE(8) !== BigInt(seq) * 3n) {
    throw new Error(`bad 16-byte record ${rec.toString('hex')}`);
  }
  return seq;
}

const tick = (ms = 0) => new Promise((r) => setTimeout(r, ms));

t.test('read() delivers exactly the submitted records, in order, with their contents', (t) => {
  using coll = open();
  using reader = new RingBufReader(coll.maps.rb);
  t.equal(reader.read(() => t.fail('empty ring')), 0);
  submit(coll, 1000);
  const seqs: number[] = [];
  t.equal(reader.read((rec, ring) => { t.equal(ring, 0); seqs.push(seqOf(rec)); }) === 1000 ? 1000 : -1, 1000);
  t.same(seqs, Array.from({ length: 1000 }, (_, i) => i));
  t.equal(reader.read(() => t.fail('drained')), 0, 'nothing left');
  // max: the rest stays for the next read
  submit(coll, 10, 5000);
  const got: number[] = [];
  t.equal(reader.read((r) => got.push(seqOf(r)), { max: 4 }), 4);
  t.equal(reader.read((r) => got.push(seqOf(r))), 6);
  t.same(got, Array.from({ length: 10 }, (_, i) => 5000 + i));
  t.end();
});

t.test('discarded records are skipped', (t) => {
  using coll = open();
  using reader = new RingBufReader(coll.maps.rb);
  coll.programs.discard_some.run();
  const recs: Buffer[] = [];
  t.equal(reader.read((r) => recs.push(r), { copy: true }), 2);
  t.same(recs.map((r) => r.readUInt32LE(0)), [1, 2]);
  t.ok(recs.every((r) => r.readBigUInt64LE(8) === 0xd15cn));
  t.end();
});

t.test('BPF_RB_NO_WAKEUP records wake nobody; a periodic BPF_RB_FORCE_WAKEUP flush delivers them all, in order', async (t) => {
  using coll = open(['submit_quiet']);
  using reader = new RingBufReader(coll.maps.rb);
  const quiet = (n: number, base: number, flush: boolean) => {
    const ctx = Buffer.alloc(16);
    ctx.writeUInt32LE(n, 0);
    ctx.writeUInt32LE(base, 4);
    ctx.writeUInt32LE(flush ? 1 : 0, 8);
    coll.programs.submit_quiet.run({ ctx });
  };
  const quietSeq = (r: Buffer) => {
    const seq = r.readUInt32LE(0);
    if (r.length !== 16 || r.readUInt32LE(4) !== 16 || r.readBigUInt64LE(8) !== BigInt(seq) * 3n) throw new Error(`bad record ${r.toString('hex')}`);
    return seq;
  };
  quiet(5, 0, false);
  let woke = false;
  const first = reader.wait().then(() => { woke = true; });
  await tick(200);
  t.notOk(woke, 'records committed with BPF_RB_NO_WAKEUP do not wake the waiter');
  quiet(5, 5, true);
  await first;
  t.ok(woke, 'the forced wakeup does');
  const seqs: number[] = [];
  reader.read((r) => seqs.push(quietSeq(r)));
  t.same(seqs, Array.from({ length: 10 }, (_, i) => i), 'quiet records and the flushing one, in order');

  // A producer that writes a batch every 10 ms and flushes every 4th batch.
  let batches = 0;
  let flushes = 0;
  const timer = setInterval(() => {
    const flush = ++batches % 4 === 0;
    if (flush) flushes++;
    quiet(10, 10 * batches, flush);
    if (batches === 16) clearInterval(timer);
  }, 10);
  let wakes = 0;
  while (seqs.length < 170) {
    await reader.wait();
    wakes++;
    reader.read((r) => seqs.push(quietSeq(r)));
  }
  clearInterval(timer);
  t.same(seqs, Array.from({ length: 170 }, (_, i) => i), 'every record of every batch, in order');
  t.ok(wakes >= 1 && wakes <= flushes, `${wakes} wakeup(s) for ${flushes} flushes of ${batches} batches`);
});

t.test('records wrap around the end of a small ring; several rings share one reader', (t) => {
  using coll = open();
  using reader = new RingBufReader([coll.maps.rb, coll.maps.rb2]);
  t.equal(reader.rings, 2);
  let next = 0;
  let total = 0;
  // rb2 is 64 KiB; 1000 records of 24 bytes on average: 8 rounds go around it about 3 times.
  for (let round = 0; round < 8; round++) {
    submit(coll, 1000, round * 1000, 1);
    submit(coll, 3, 100000 + round * 3, 0);
    const rings: number[] = [];
    total += reader.read((rec, ring) => {
      rings.push(ring);
      const s = seqOf(rec);
      if (ring === 1) {
        if (s !== next) throw new Error(`expected ${next}, got ${s}`);
        next++;
      }
    });
    t.same([rings.filter((r) => r === 0).length, rings.filter((r) => r === 1).length], [3, 1000], `round ${round}`);
  }
  t.equal(next, 8000);
  t.equal(total, 8024);
  t.equal(coll.variables.dropped.value, 0n, 'no failed reservation');
  t.end();
});

t.test('a callback may close the reader; read() after close throws; views are copies on request', (t) => {
  using coll = open();
  const reader = new RingBufReader(coll.maps.rb);
  submit(coll, 10);
  const kept: Buffer[] = [];
  t.equal(reader.read((r) => { kept.push(r); if (kept.length === 3) reader.close(); }, { copy: true }), 3);
  t.ok(reader.closed);
  t.throws(() => reader.read(() => {}), ClosedError);
  t.same(kept.map(seqOf), [0, 1, 2], 'copies stay readable after close');
  t.rejects(reader.wait(), ClosedError);
  t.end();
});

t.test('a throwing callback stops the read; its record is consumed', (t) => {
  using coll = open();
  using reader = new RingBufReader(coll.maps.rb);
  submit(coll, 5);
  t.throws(() => reader.read((r) => { if (seqOf(r) === 1) throw new Error('boom'); }), /boom/);
  const rest: number[] = [];
  reader.read((r) => rest.push(seqOf(r)));
  t.same(rest, [2, 3, 4]);
  t.end();
});

t.test('for await wakes on events submitted later by a tracepoint program', async (t) => {
  const s = loadCollectionSpec(obj('ringbuf_test.o'));
  setVariable(s, 'target_tgid', process.pid);
  const coll = new Collection(s, { programs: ['on_getpid'] });
  const link = autoAttach(coll.programs.on_getpid, s.programs.on_getpid);
  const reader = new RingBufReader(coll.maps.rb);
  t.teardown(() => { reader.close(); link.close(); coll.close(); });
  const timer = setTimeout(() => { for (let i = 0; i < 5; i++) rawSyscall(NR.getpid); }, 50);
  const seqs: number[] = [];
  for await (const rec of reader) {
    t.equal(rec.readBigUInt64LE(8) >> 32n, BigInt(process.pid));
    seqs.push(rec.readUInt32LE(0));
    if (seqs.length === 5) break;
  }
  clearTimeout(timer);
  // other code of this process (the test harness) may call getpid too: records are consecutive, not exactly ours
  t.same(seqs, seqs.map((_, i) => seqs[0] + i), 'in order, none lost');
  // later events after a quiet period wake the iterator again
  reader.read(() => {});
  setTimeout(() => rawSyscall(NR.getpid), 30);
  for await (const rec of reader.records()) {
    t.ok(rec.readUInt32LE(0) > seqs[4]);
    break;
  }
});

t.test('close() ends a pending for await and releases everything', async (t) => {
  const coll = open();
  t.teardown(() => coll.close());
  const reader = new RingBufReader(coll.maps.rb);
  setTimeout(() => reader.close(), 50);
  let n = 0;
  for await (const _ of reader) n++;
  t.equal(n, 0);
  t.ok(reader.closed);
  const r2 = new RingBufReader(coll.maps.rb);
  await r2[Symbol.asyncDispose]();
  t.ok(r2.closed, 'asyncDispose closes');
  t.doesNotThrow(() => r2.close(), 'close is idempotent');
});

t.test('AbortSignal: aborting an iteration rejects it; aborting the reader closes it', async (t) => {
  using coll = open();
  using reader = new RingBufReader(coll.maps.rb);
  const ac = new AbortController();
  setTimeout(() => ac.abort(new Error('stop waiting')), 30);
  await t.rejects(async () => { for await (const _ of reader.records({ signal: ac.signal })) t.fail('no record'); }, /stop waiting/);
  t.notOk(reader.closed, 'an aborted iteration leaves the reader open');
  submit(coll, 2);
  t.equal(reader.read(() => {}), 2);

  const ac2 = new AbortController();
  const r2 = new RingBufReader(coll.maps.rb, { signal: ac2.signal });
  setTimeout(() => ac2.abort(new Error('reader aborted')), 30);
  await t.rejects(async () => { for await (const _ of r2) t.fail('no record'); }, /reader aborted/);
  t.ok(r2.closed);
  t.throws(() => r2.read(() => {}), /reader aborted/);
  await t.rejects(reader.wait({ signal: AbortSignal.abort(new Error('pre-aborted')) }), /pre-aborted/);
});

t.test('8 readers wait at once on one thread; fs stays responsive', async (t) => {
  // Waiter threads of earlier tests stop asynchronously after their last reader closed: let them go
  // first, so the count below is about these 8 readers only.
  await waitersIdle();
  const colls = Array.from({ length: 8 }, () => open(['submit_n']));
  const readers = colls.map((c) => new RingBufReader(c.maps.rb));
  t.teardown(() => { for (const r of readers) r.close(); for (const c of colls) c.close(); });
  const pending = readers.map(async (r) => {
    const got: number[] = [];
    for await (const rec of r) {
      got.push(seqOf(rec));
      if (got.length === 3) break;
    }
    return got;
  });
  await tick(20);
  t.equal(waiterThreads(), 1, 'one waiter thread for all readers');
  const times: number[] = [];
  for (let i = 0; i < 5; i++) {
    const t0 = performance.now();
    await readFile(obj('ringbuf_test.c'));
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  t.ok(times[2] < 200, `readFile median ${times[2].toFixed(1)} ms with 8 pending waits (generous bound)`);
  colls.forEach((c, i) => submit(c, 3, i * 10));
  const results = await Promise.all(pending);
  t.same(results, colls.map((_, i) => [i * 10, i * 10 + 1, i * 10 + 2]));
});

t.test('no fd or mapping left behind after close; the waiter thread stops', async (t) => {
  const coll = open();
  t.teardown(() => coll.close());
  { const r = new RingBufReader([coll.maps.rb, coll.maps.rb2]); submit(coll, 3); r.read(() => {}); r.close(); }
  await waitersIdle();
  const fds = fdCount();
  const maps = bpfMappings();
  for (let i = 0; i < 5; i++) {
    const r = new RingBufReader([coll.maps.rb, coll.maps.rb2]);
    const it = r.records();
    const p = it.next();
    await tick(5);
    r.close();
    t.same(await p, { value: undefined, done: true });
  }
  await waitersIdle();
  t.equal(waiterThreads(), 0);
  t.equal(fdCount(), fds, 'fds');
  t.equal(bpfMappings(), maps, 'mappings');
});

t.test('under overload, records received + failed reservations = getpid calls, in order', async (t) => {
  const N = 200000;
  const child = spawn('python3', ['-c', `import os,sys\nsys.stdin.readline()\nfor _ in range(${N}): os.getpid()`], { stdio: ['pipe', 'ignore', 'inherit'] });
  const exited = new Promise((r) => child.once('exit', r));
  const s = loadCollectionSpec(obj('ringbuf_test.o'));
  setVariable(s, 'target_tgid', child.pid!);
  const coll = new Collection(s, { programs: ['on_getpid'] });
  const link = autoAttach(coll.programs.on_getpid, s.programs.on_getpid);
  const reader = new RingBufReader(coll.maps.rb);
  t.teardown(() => { reader.close(); link.close(); coll.close(); });
  let received = 0;
  let next = 0;
  let outOfOrder = 0;
  const consume = (async () => {
    for await (const rec of reader.records({ batch: 4096 })) {
      if (rec.readUInt32LE(0) !== next) outOfOrder++;
      next = rec.readUInt32LE(0) + 1;
      received++;
    }
  })();
  child.stdin!.end('go\n');
  await exited;
  const produced = () => coll.variables.getpid_seq.value as number;
  for (let i = 0; i < 500 && received < produced(); i++) await tick(10);
  reader.close();
  await consume;
  const dropped = Number(coll.variables.dropped.value);
  t.equal(received, produced(), `every committed record was received (${received}; ${dropped} reservations failed)`);
  t.ok(received + dropped >= N, 'received + failed reservations covers every getpid call');
  t.equal(outOfOrder, 0, 'in order');
});

t.test('decode: records as JS objects through the BTF type named in the object', async (t) => {
  using coll = open(['submit_n', 'discard_some']);
  using reader = new RingBufReader<{ seq: number; kind: number; cookie: bigint }>(coll.maps.rb, { decode: 'rec16' });
  t.equal(reader.decode, 'rec16');
  coll.programs.discard_some.run();
  const got: unknown[] = [];
  for await (const ev of reader.records()) {
    got.push(ev);
    if (got.length === 2) break;
  }
  t.same(got, [{ seq: 1, kind: 16, cookie: 0xd15cn }, { seq: 2, kind: 16, cookie: 0xd15cn }], 'struct rec16 values; discarded ones never surface');

  // A record shorter than the type: the records before it arrive, then a TsbpfError names the sizes.
  submit(coll, 3, 10); // seq 10 (16 bytes), 11 (12 bytes), 12
  const seqs: number[] = [];
  await t.rejects(async () => {
    for await (const ev of reader) seqs.push(ev.seq);
  }, { name: 'TsbpfError', message: /ring buffer "rb": a 12-byte record is shorter than the decode type \(16 bytes\)/ });
  t.same(seqs, [10]);
  reader.decode = 'struct rec12';
  for await (const ev of reader) {
    t.same(ev, { seq: 12, kind: 16, tail: 36 }, 'a 16-byte record decodes as its first 12 bytes (tail = low half of cookie 12 * 3)');
    break;
  }
  reader.decode = undefined;
  submit(coll, 1, 20);
  for await (const ev of reader) {
    t.ok(Buffer.isBuffer(ev), 'decode = undefined: Buffers again');
    break;
  }
  t.throws(() => { reader.decode = 'no_such_type'; }, { name: 'TsbpfError', message: /ring buffer "rb": no BTF type "no_such_type"/ });
  t.equal(reader.decode, undefined, 'a refused decode leaves the setting as it was');
});

t.test('listen(): the callback form, with back-pressure from async callbacks, ends on close or abort', async (t) => {
  using coll = open(['submit_n']);
  const reader = new RingBufReader(coll.maps.rb, { decode: 'rec12' });
  t.teardown(() => reader.close());
  submit(coll, 6);
  const seen: number[] = [];
  let inFlight = 0;
  let maxInFlight = 0;
  const done = reader.listen(async (ev: { seq: number }) => {
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    await tick(5);
    seen.push(ev.seq);
    inFlight--;
    if (seen.length === 6) setTimeout(() => submit(coll, 4, 6), 20); // later records wake the listener
    if (seen.length === 10) reader.close();
  });
  await done;
  t.same(seen, Array.from({ length: 10 }, (_, i) => i), 'every record, in order, including ones that came while listening');
  t.equal(maxInFlight, 1, 'an async callback is awaited before the next record is read');

  using r2 = new RingBufReader(coll.maps.rb);
  const ac = new AbortController();
  const views: number[] = [];
  const p = r2.listen((view) => {
    views.push(view.length);
    if (views.length === 3) ac.abort(new Error('enough'));
  }, { signal: ac.signal });
  submit(coll, 5, 100);
  await t.rejects(p, /enough/, 'aborting rejects with the reason');
  t.same(views, [16, 12, 16, 12, 16], 'the batch in progress finishes; records are views of their exact length');
  t.notOk(r2.closed, 'aborting a listen leaves the reader open');
  submit(coll, 2, 200);
  let calls = 0;
  await t.rejects(r2.listen(() => { calls++; throw new Error('boom'); }), /boom/, 'a throwing callback ends listening with its error');
  t.equal(calls, 1, 'after its first record');
  t.equal(r2.read(() => {}), 1, 'the record it threw on is consumed, the next one is still there');
});

t.test('nextBatch(): records by position in a reusable batch, released by the next call', async (t) => {
  using coll = open(['submit_n', 'discard_some']);
  using reader = new RingBufReader([coll.maps.rb, coll.maps.rb2]);
  const batch = new RecordBatch(300);
  t.equal(reader.nextBatch(batch), 0, 'empty');
  submit(coll, 1000, 0, 0);
  submit(coll, 10, 0, 1);
  const seen: number[][] = [[], []];
  const sizes: number[] = [];
  let n: number;
  while ((n = reader.nextBatch(batch)) > 0) {
    t.equal(batch.count, n);
    sizes.push(n);
    for (let i = 0; i < n; i++) seen[batch.ring].push(seqOf(batch.data.subarray(batch.offsets[i], batch.offsets[i] + batch.lengths[i])));
  }
  t.same(seen[0], Array.from({ length: 1000 }, (_, i) => i), 'ring 0: every record, in order');
  t.same(seen[1], Array.from({ length: 10 }, (_, i) => i), 'ring 1 too');
  t.ok(sizes.every((k) => k <= 300), `batches of at most the capacity: ${sizes.join(' ')}`);
  t.ok(sizes.indexOf(10) > 0 && sizes.indexOf(10) < sizes.length - 1, 'the rings take turns (round robin)');

  // Held records stay valid until the next call: the kernel cannot reuse their space before.
  submit(coll, 4, 50);
  t.equal(reader.nextBatch(batch), 4);
  const first = batch.record(0);
  t.equal(seqOf(first), 50);
  coll.programs.discard_some.run(); // a producer running meanwhile does not touch held records
  t.equal(seqOf(first), 50, 'still intact');
  const got: number[] = [];
  reader.read((r) => got.push(r.readUInt32LE(0)));
  t.same(got, [1, 2], 'read() releases the held batch first; discarded records never surface');
  t.throws(() => batch.record(5), RangeError);

  // wait() after a batch that was not released resolves at once (the kernel would not wake us otherwise).
  submit(coll, 2, 70);
  t.equal(reader.nextBatch(batch), 2);
  await reader.wait();
  t.equal(reader.nextBatch(batch), 0);
  t.throws(() => reader.nextBatch({} as RecordBatch), TypeError);
  t.throws(() => new RecordBatch(0), TypeError);
});

t.test('a process with an idle open reader exits on its own', (t) => {
  const here = fileURLToPath(new URL('.', import.meta.url));
  const loader = new URL('../node_modules/@tapjs/typescript/dist/esm/import.mjs', import.meta.url).href;
  const src = new URL('../src/', import.meta.url).href;
  const code = `const { loadCollectionSpec, Collection } = await import('${src}index.ts');
const { RingBufReader } = await import('${src}ringbuf/index.ts');
const coll = new Collection(loadCollectionSpec(${JSON.stringify(obj('ringbuf_test.o'))}), { programs: ['submit_n'] });
const reader = new RingBufReader(coll.maps.rb);
setTimeout(() => console.log('left open'), 50);`;
  const r = spawnSync(process.execPath, [`--import=${loader}`, '--input-type=module', '-e', code], {
    cwd: here, env: { ...process.env, TS_NODE_TRANSPILE_ONLY: '1' }, encoding: 'utf8', timeout: 60000,
  });
  t.equal(r.status, 0, r.stderr);
  t.match(r.stdout, /left open/);
  t.end();
});

t.test('bad arguments are refused before touching the kernel', (t) => {
  using coll = new Collection(loadCollectionSpec(obj('loader.o')), { programs: [] });
  const someMap = Object.values(coll.maps)[0];
  t.throws(() => new RingBufReader(someMap), /not RINGBUF/);
  t.throws(() => new RingBufReader([]), TypeError);
  t.end();
});
