import t from 'tap';
import { readFileSync } from 'node:fs';
import { loadCollectionSpec, setVariable, Collection, autoAttach, ClosedError } from '../src/index.js';
import { PerfReader, RecordBatch, waitersIdle } from '../src/ringbuf/index.js';
import { rawSyscall, NR, onlineCpus } from '../src/syscall/index.js';
import { obj, fdCount } from './helpers/env.js';

const spec = loadCollectionSpec(obj('perf_test.o'));
const perfMappings = () => readFileSync('/proc/self/maps', 'utf8').split('\n').filter((l) => l.includes('perf_event')).length;
const tick = (ms = 0) => new Promise((r) => setTimeout(r, ms));

function open(): Collection {
  return new Collection(spec, { programs: ['emit_n'] });
}

function emit(coll: Collection, n: number, base = 0): void {
  const ctx = Buffer.alloc(16); // raw_tp args: u64 n, u64 base
  ctx.writeUInt32LE(n, 0);
  ctx.writeUInt32LE(base, 8);
  // Always on the same CPU (BPF_F_TEST_RUN_ON_CPU): samples of consecutive runs land in one ring.
  coll.programs.emit_n.run({ ctx, flags: 1, cpu: onlineCpus()[0] });
}

const counter = (coll: Collection, name: 'dropped' | 'emitted'): bigint => {
  const v = spec.variables[name];
  const value = coll.maps[v.map].lookup(0) as Buffer;
  return value.readBigUInt64LE(v.offset);
};

/** Check a sample from emit_n (12 bytes, or 16 + 4 bytes of kernel padding) and return its seq. */
function seqOf(rec: Buffer): number {
  const seq = rec.readUInt32LE(0);
  const kind = rec.readUInt32LE(4);
  if (seq & 1) {
    if (rec.length !== 12 || kind !== 12 || rec.readUInt32LE(8) !== (~seq >>> 0)) throw new Error(`bad 12-byte sample ${rec.toString('hex')}`);
  } else if (rec.length < 16 || rec.length > 16 + 7 || kind !== 16 || rec.readBigUInt64LE(8) !== BigInt(seq) * 3n) {
    throw new Error(`bad 16-byte sample ${rec.toString('hex')}`);
  }
  return seq;
}

t.test('read() delivers exactly the emitted samples, in order, with their contents', (t) => {
  using coll = open();
  using reader = new PerfReader(coll.maps.events);
  t.same(reader.cpus, onlineCpus().filter((c) => c < coll.maps.events.maxEntries));
  t.equal(reader.read(() => t.fail('empty')), 0);
  emit(coll, 1000);
  const seqs: number[] = [];
  const cpus = new Set<number>();
  t.equal(reader.read((rec, cpu) => { cpus.add(cpu); seqs.push(seqOf(rec)); }), 1000);
  t.same(seqs, Array.from({ length: 1000 }, (_, i) => i));
  t.equal(cpus.size, 1, 'one program run stays on one CPU');
  t.equal(reader.read(() => t.fail('drained')), 0);
  emit(coll, 10, 5000);
  const got: number[] = [];
  t.equal(reader.read((r) => got.push(seqOf(r)), { max: 4 }), 4);
  t.equal(reader.read((r) => got.push(seqOf(r)), { copy: true }), 6);
  t.same(got, Array.from({ length: 10 }, (_, i) => 5000 + i));
  t.equal(reader.lost, 0);
  t.equal(counter(coll, 'dropped'), 0n);
  t.end();
});

t.test('records wrap around a one-page ring', (t) => {
  using coll = open();
  using reader = new PerfReader(coll.maps.events, { pagesPerCpu: 1 });
  let next = 0;
  // 4096-byte ring, 24/32-byte records: 100 per round never fill it, 60 rounds go around ~40 times
  for (let round = 0; round < 60; round++) {
    emit(coll, 100, round * 100);
    reader.read((rec) => {
      const s = seqOf(rec);
      if (s !== next) throw new Error(`expected ${next}, got ${s}`);
      next++;
    });
  }
  t.equal(next, 6000, 'every sample in order across the wraps');
  t.equal(reader.lost, 0);
  t.end();
});

t.test('overload: received + lost = produced, per CPU', (t) => {
  using coll = open();
  using reader = new PerfReader(coll.maps.events, { pagesPerCpu: 1 });
  let received = 0;
  let produced = 0;
  for (let round = 0; round < 5; round++) {
    emit(coll, 2000, round * 2000);
    produced += 2000;
    received += reader.read((rec) => { seqOf(rec); });
  }
  // The kernel reports lost samples with the next sample that fits: emit one more.
  emit(coll, 1, 99999);
  produced += 1;
  received += reader.read((rec) => { seqOf(rec); });
  const dropped = Number(counter(coll, 'dropped'));
  t.ok(reader.lost > 0, `${reader.lost} lost, ${received} received`);
  t.equal(reader.lost, dropped, 'lost = failed outputs counted by the program');
  t.equal(received + reader.lost, produced, 'received + lost = produced');
  t.equal(Number(counter(coll, 'emitted')), received, 'received = successful outputs');
  const per = reader.lostPerCpu;
  t.equal(Object.values(per).reduce((a, c) => a + c, 0), reader.lost, 'per-CPU counts add up');
  t.end();
});

t.test('pause(): the kernel drops and counts samples while paused, and reports them lost after resume()', (t) => {
  using coll = open();
  using reader = new PerfReader(coll.maps.events);
  emit(coll, 2, 0);
  reader.pause();
  t.ok(reader.paused);
  reader.pause(); // idempotent
  emit(coll, 4, 100);
  t.equal(counter(coll, 'dropped'), 4n, 'outputs fail while paused');
  const seqs: number[] = [];
  t.equal(reader.read((r) => seqs.push(seqOf(r))), 2, 'what was written before the pause stays readable');
  reader.resume();
  t.notOk(reader.paused);
  emit(coll, 1, 200);
  reader.read((r) => seqs.push(seqOf(r)));
  t.same(seqs, [0, 1, 200]);
  t.equal(reader.lost, 4, 'the paused outputs come back as lost');
  t.equal(seqs.length + reader.lost, 7, 'received + lost = produced');
  t.end();
});

t.test('wakeupEvents and watermark decide when a waiting reader wakes', async (t) => {
  using coll = open();
  const woke = (reader: PerfReader) => {
    const state = { woke: false };
    void reader.wait().then(() => { state.woke = true; });
    return state;
  };
  {
    using reader = new PerfReader(coll.maps.events, { wakeupEvents: 4 });
    const w = woke(reader);
    emit(coll, 3);
    await tick(150);
    t.notOk(w.woke, 'wakeupEvents 4: three samples wake nobody');
    emit(coll, 1, 3);
    for (let i = 0; i < 100 && !w.woke; i++) await tick(10);
    t.ok(w.woke, 'the fourth does');
    t.equal(reader.read(() => {}), 4);
  }
  {
    // 24/32-byte records: 10 are about 280 bytes, 40 more pass 1024.
    using reader = new PerfReader(coll.maps.events, { watermark: 1024 });
    const w = woke(reader);
    emit(coll, 10);
    await tick(150);
    t.notOk(w.woke, 'watermark 1024: 280 bytes wake nobody');
    emit(coll, 40, 10);
    for (let i = 0; i < 100 && !w.woke; i++) await tick(10);
    t.ok(w.woke, 'passing 1024 bytes does');
    t.equal(reader.read(() => {}), 50);
  }
});

t.test('overwritable rings keep the newest samples, hand them out oldest first, never twice', (t) => {
  using coll = open();
  using reader = new PerfReader(coll.maps.events, { overwritable: true, pagesPerCpu: 1 });
  t.ok(reader.overwritable);
  t.equal(reader.read(() => t.fail('empty')), 0, 'an empty ring has nothing');
  emit(coll, 1000);
  t.equal(counter(coll, 'dropped'), 0n, 'an overwrite ring never refuses a sample');
  let seqs: number[] = [];
  reader.read((r) => seqs.push(seqOf(r)));
  // 4096 bytes of 24- and 32-byte records: about 146 fit.
  t.ok(seqs.length > 100 && seqs.length < 171, `${seqs.length} newest samples kept`);
  t.same(seqs, seqs.map((_, i) => 1000 - seqs.length + i), 'the newest ones, consecutive, oldest first, ending with the last');
  t.equal(reader.read(() => t.fail('already read')), 0, 'a second read finds nothing new');

  emit(coll, 5, 2000);
  seqs = [];
  t.equal(reader.read((r) => seqs.push(seqOf(r)), { max: 2 }), 2);
  t.equal(reader.read((r) => seqs.push(seqOf(r))), 3);
  t.same(seqs, [2000, 2001, 2002, 2003, 2004], 'only the new ones; max leaves the newer ones for the next read');

  // Wrap the ring several times between reads: a sample cut by the overwrite is never surfaced.
  for (let round = 0; round < 20; round++) {
    emit(coll, 150 + round * 7, 10000 * (round + 1));
    seqs = [];
    reader.read((r) => seqs.push(seqOf(r)));
    const last = 10000 * (round + 1) + 150 + round * 7 - 1;
    if (seqs.at(-1) !== last || seqs.some((s, i) => i > 0 && s !== seqs[i - 1] + 1)) {
      t.fail(`round ${round}: ${seqs.slice(0, 3)} … ${seqs.slice(-3)}`);
    }
  }
  t.pass('20 rounds of wrapped rings read back as consecutive runs ending with the newest sample');

  reader.pause();
  emit(coll, 3, 50000);
  t.equal(counter(coll, 'dropped'), 3n, 'paused: outputs fail');
  t.equal(reader.read(() => t.fail('nothing new')), 0);
  reader.resume();
  emit(coll, 2, 60000);
  seqs = [];
  reader.read((r) => seqs.push(seqOf(r)));
  t.same(seqs, [60000, 60001]);
  t.equal(reader.lost, 3, 'samples dropped while paused are reported lost');
  t.end();
});

t.test('decode and listen() for perf samples', async (t) => {
  using coll = open();
  using reader = new PerfReader<{ seq: number; kind: number; tail: number }>(coll.maps.events, { decode: 'rec12' });
  emit(coll, 4, 10);
  const got: { cpu: number; data: unknown }[] = [];
  for await (const s of reader) {
    got.push(s);
    if (got.length === 4) break;
  }
  t.same(got.map((s) => s.data), [
    { seq: 10, kind: 16, tail: 30 }, { seq: 11, kind: 12, tail: ~11 >>> 0 }, { seq: 12, kind: 16, tail: 36 }, { seq: 13, kind: 12, tail: ~13 >>> 0 },
  ], 'samples decoded as struct rec12 (a 16-byte sample decodes its first 12 bytes)');
  t.ok(got.every((s) => s.cpu === got[0].cpu));
  reader.decode = 'rec16';
  emit(coll, 2, 20);
  const seen: unknown[] = [];
  await t.rejects(reader.listen((ev) => { seen.push(ev); }), { name: 'TsbpfError', message: /perf event array "events": a 12-byte record is shorter than the decode type \(16 bytes\)/ });
  t.same(seen, [{ seq: 20, kind: 16, cookie: 60n }], 'the sample before the short one was delivered');
  reader.decode = undefined;
  emit(coll, 3, 30);
  const lens: number[] = [];
  const p = reader.listen(async (view) => {
    lens.push(view.length);
    await tick(1);
    if (lens.length === 3) reader.close();
  }, { copy: true });
  await p;
  t.same(lens, [20, 12, 20], 'copies with the kernel padding; listen ends when the reader closes');
});

t.test('nextBatch(): samples by position, wrapped ones alone in a scratch copy, lost ones counted', (t) => {
  using coll = open();
  using reader = new PerfReader(coll.maps.events, { pagesPerCpu: 1 });
  const batch = new RecordBatch(64);
  let next = 0;
  let wrapped = 0;
  for (let round = 0; round < 30; round++) {
    emit(coll, 100, round * 100);
    while (reader.nextBatch(batch) > 0) {
      if (batch.count === 1 && batch.offsets[0] === 12 && batch.data.length !== 4096) wrapped++;
      for (let i = 0; i < batch.count; i++) {
        const s = seqOf(batch.data.subarray(batch.offsets[i], batch.offsets[i] + batch.lengths[i]));
        if (s !== next) throw new Error(`expected ${next}, got ${s}`);
        next++;
      }
    }
  }
  t.equal(next, 3000, 'every sample in order across ~20 wraps');
  t.ok(wrapped > 0, `${wrapped} samples wrapped and came copied`);
  emit(coll, 2000, 0);
  let got = 0;
  while (reader.nextBatch(batch) > 0) got += batch.count;
  emit(coll, 1, 0);
  while (reader.nextBatch(batch) > 0) got += batch.count;
  t.equal(got + reader.lost, 2001, 'received + lost = produced');
  using ow = new PerfReader(coll.maps.events, { overwritable: true });
  t.throws(() => ow.nextBatch(batch), { name: 'TsbpfError', message: /overwritable/ });
  t.end();
});

t.test('tp/syscalls/sys_enter_getpid samples under async iteration', async (t) => {
  const s = loadCollectionSpec(obj('perf_test.o'));
  setVariable(s, 'target_tgid', process.pid);
  using coll = new Collection(s, { programs: ['on_getpid'] });
  using link = autoAttach(coll.programs.on_getpid, s.programs.on_getpid);
  using reader = new PerfReader(coll.maps.events);
  const timer = setTimeout(() => { for (let i = 0; i < 5; i++) rawSyscall(NR.getpid); }, 50);
  const seen: number[] = [];
  for await (const { cpu, data } of reader) {
    t.ok(onlineCpus().includes(cpu));
    t.equal(data.readUInt32LE(4), 16);
    t.equal(Number(data.readBigUInt64LE(8) >> 32n), process.pid);
    seen.push(data.readUInt32LE(0));
    if (seen.length === 5) break;
  }
  clearTimeout(timer);
  t.equal(seen.length, 5);
  void link;
});

t.test('close() ends a pending for await; no fd or mapping leaks; map entries removed', async (t) => {
  await waitersIdle(); // the waiter thread of earlier tests owns fds too
  const fds = fdCount();
  const maps = perfMappings();
  {
    using coll = open();
    const reader = new PerfReader(coll.maps.events, { wakeupEvents: 1 });
    t.ok(perfMappings() > maps, 'rings mapped');
    const it = (async () => {
      let n = 0;
      for await (const _ of reader) n++;
      return n;
    })();
    await tick(30);
    reader.close();
    t.equal(await it, 0, 'the iterator ended');
    t.throws(() => reader.read(() => {}), ClosedError);
    await t.rejects(reader.wait(), ClosedError);
    reader.close();
    // entries deleted: the program's outputs now fail (ENOENT), counted as dropped
    emit(coll, 3);
    t.equal(counter(coll, 'dropped'), 3n);
  }
  await waitersIdle();
  t.equal(perfMappings(), maps, 'every ring unmapped');
  t.equal(fdCount(), fds, 'every fd closed');
});

t.test('closing the map while reading keeps the rings working (the reader holds a dup)', (t) => {
  const coll = open();
  const reader = new PerfReader(coll.maps.events, { watermark: 64 });
  coll.maps.events.close();
  emit(coll, 10);
  const got: number[] = [];
  reader.read((r) => got.push(seqOf(r)));
  t.same(got, Array.from({ length: 10 }, (_, i) => i));
  reader.close();
  coll.close();
  t.throws(() => new PerfReader(coll.maps.events), /closed/);
  t.end();
});

t.test('options are validated', (t) => {
  using coll = open();
  t.throws(() => new PerfReader(coll.maps.events, { pagesPerCpu: 3 }), TypeError);
  t.throws(() => new PerfReader(coll.maps.events, { wakeupEvents: 0 }), TypeError);
  t.throws(() => new PerfReader(coll.maps['.bss']), TypeError);
  t.end();
});
