// Concurrency (issue 9): two worker threads load, attach and read in parallel; readers closed from another
// async path while a read is pending, or while a burst of events is being consumed, settle cleanly, close
// once, and never touch their mappings after unmap.
import t, { type Test } from 'tap';
import { Worker } from 'node:worker_threads';
import { readFileSync } from 'node:fs';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import { loadCollectionSpec, Collection, ownedFdCount } from '../src/index.js';
import { RingBufReader, PerfReader, waitersIdle, waiterThreads } from '../src/ringbuf/index.js';
import { onlineCpus, rawSyscall, NR } from '../src/syscall/index.js';
import { pendingPlaceholders } from '../src/syscall/os.js';
import { obj, fdCount } from './helpers/env.js';

t.setTimeout(300_000);

const tick = (ms = 0) => new Promise((r) => setTimeout(r, ms));
// gc() without --expose-gc on the command line (tap starts this file): expose it for a fresh context.
v8.setFlagsFromString('--expose-gc');
const gc = (globalThis as { gc?: () => void }).gc ?? (runInNewContext('gc') as (() => void) | undefined);
/** Mappings of bpf maps and perf events (placeholders left by unmap() are anonymous, not counted). */
const bpfMappings = () => readFileSync('/proc/self/maps', 'utf8').split('\n').filter((l) => /bpf|perf_event/.test(l)).length;

// The workers run our TypeScript through the same loader as this file, transpile only.
const tsImport = process.execArgv.find((a) => a.includes('@tapjs/typescript')) ?? '--import=@tapjs/typescript/import';
const workerArgv = tsImport.startsWith('--import=') ? [tsImport] : ['--import', tsImport];

function runWorker(id: number, records: number, getpids: number): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const w = new Worker(new URL('./helpers/concurrency-worker.ts', import.meta.url), {
      execArgv: workerArgv,
      env: { ...process.env, TS_NODE_TRANSPILE_ONLY: '1' },
      workerData: { id, records, getpids },
    });
    let result: Record<string, unknown> | undefined;
    w.on('message', (m) => (result = m));
    w.on('error', reject);
    w.on('exit', (code) => (result ? resolve({ ...result, exitCode: code }) : reject(new Error(`worker ${id} exited ${code} without a result`))));
  });
}

t.test('two worker threads load, attach and read in parallel', async (t) => {
  // The main thread has made no system call through tsbpf yet, on purpose: the workers are the first to
  // load ffi-rs, and their exit must not unload it under the process (that used to be a SIGSEGV; see
  // pinAddon in src/syscall/native.ts).
  const fds = fdCount();
  const owned = ownedFdCount();
  const RECORDS = 20_000;
  const GETPIDS = 500;
  const [a, b] = await Promise.all([runWorker(1, RECORDS, GETPIDS), runWorker(2, RECORDS, GETPIDS)]);
  for (const r of [a, b]) {
    t.comment(`worker ${r.id}: ${JSON.stringify(r)}`);
    t.equal(r.ok, true, `worker ${r.id}: ${r.error ?? 'ok'}`);
    if (!r.ok) continue;
    t.equal(r.exitCode, 0, `worker ${r.id} exit code`);
    t.equal(r.records, RECORDS, `worker ${r.id}: every record of its own ring, in order`);
    // Both programs see every getpid() of the process: at least its own calls, at most both workers'.
    t.ok((r.seen as number) >= GETPIDS, `worker ${r.id}: ${r.seen} events for its ${GETPIDS} getpid() calls`);
    t.ok((r.counted as number) >= (r.seen as number), `worker ${r.id}: counts map ${r.counted} >= events read`);
    t.equal(r.ownedAtEnd, r.ownedAtStart, `worker ${r.id}: its fds all closed`);
  }
  t.equal(ownedFdCount(), owned, 'main thread: ownedFdCount unchanged');
  t.equal(fdCount(), fds, 'main thread: no fd leaked by the workers');
});

function submitter(coll: Collection): (n: number, base: number) => void {
  return (n, base) => {
    const ctx = Buffer.alloc(16);
    ctx.writeUInt32LE(n, 0);
    ctx.writeUInt32LE(base, 4);
    coll.programs.submit_n.run({ ctx });
  };
}

function emitter(coll: Collection): (n: number, base: number) => void {
  const cpu = onlineCpus()[0];
  return (n, base) => {
    const ctx = Buffer.alloc(16);
    ctx.writeUInt32LE(n, 0);
    ctx.writeUInt32LE(base, 8);
    coll.programs.emit_n.run({ ctx, flags: 1, cpu });
  };
}

async function released(t: Test, fds: number, maps: number): Promise<void> {
  await waitersIdle();
  t.equal(waiterThreads(), 0, 'waiter thread gone');
  t.equal(fdCount(), fds, 'fds back');
  t.equal(bpfMappings(), maps, 'kernel mappings gone');
}

t.test('ring buffer reader closed from another async path while a read is pending', async (t) => {
  const fds = fdCount();
  const maps = bpfMappings();
  const coll = new Collection(loadCollectionSpec(obj('ringbuf_test.o')), { programs: ['submit_n'] });
  const mapsWithColl = bpfMappings();

  // for await waiting for data: ends (the documented outcome of close), with nothing delivered.
  let reader = new RingBufReader(coll.maps.rb);
  setTimeout(() => reader.close(), 30);
  let n = 0;
  for await (const _ of reader) n++;
  t.equal(n, 0, 'for await ended by close()');
  reader.close();
  t.throws(() => reader.read(() => {}), { name: 'ClosedError' }, 'read() after close throws ClosedError');

  // wait() pending: resolves on close (documented), and a later wait() rejects with ClosedError.
  reader = new RingBufReader(coll.maps.rb);
  const waiting = reader.wait();
  setTimeout(() => { reader.close(); reader.close(); }, 30);
  await t.resolves(waiting, 'pending wait() resolves on close');
  await t.rejects(reader.wait(), { name: 'ClosedError' });

  // listen() pending: resolves on close.
  reader = new RingBufReader(coll.maps.rb);
  let heard = 0;
  const listening = reader.listen(() => { heard++; });
  setTimeout(() => reader.close(), 30);
  await t.resolves(listening, 'pending listen() resolves on close');
  t.equal(heard, 0);

  // Two async paths close at once, and a third closes from a read callback.
  reader = new RingBufReader(coll.maps.rb);
  const r3 = reader;
  submitter(coll)(10, 0);
  await Promise.all([tick(5).then(() => r3.close()), tick(5).then(() => r3.close())]);
  t.ok(r3.closed);
  reader = new RingBufReader(coll.maps.rb);
  submitter(coll)(10, 0);
  const r4 = reader;
  let inCallback = 0;
  t.equal(r4.read(() => { inCallback++; r4.close(); r4.close(); }), 1, 'close() from a read callback stops the read');
  t.equal(inCallback, 1);
  t.ok(r4.closed);
  t.equal(bpfMappings(), mapsWithColl, 'readers unmapped');
  coll.close();
  await released(t, fds, maps);
});

t.test('perf reader closed from another async path while a read is pending', async (t) => {
  const fds = fdCount();
  const maps = bpfMappings();
  const coll = new Collection(loadCollectionSpec(obj('perf_test.o')), { programs: ['emit_n'] });
  const mapsWithColl = bpfMappings();

  let reader = new PerfReader(coll.maps.events);
  setTimeout(() => reader.close(), 30);
  let n = 0;
  for await (const _ of reader) n++;
  t.equal(n, 0, 'for await ended by close()');
  reader.close();
  t.throws(() => reader.read(() => {}), { name: 'ClosedError' });

  reader = new PerfReader(coll.maps.events);
  const waiting = reader.wait();
  setTimeout(() => { reader.close(); reader.close(); }, 30);
  await t.resolves(waiting, 'pending wait() resolves on close');
  await t.rejects(reader.wait(), { name: 'ClosedError' });

  reader = new PerfReader(coll.maps.events);
  const listening = reader.listen(() => {});
  setTimeout(() => reader.close(), 30);
  await t.resolves(listening, 'pending listen() resolves on close');

  reader = new PerfReader(coll.maps.events);
  emitter(coll)(10, 0);
  const r4 = reader;
  let inCallback = 0;
  t.equal(r4.read(() => { inCallback++; r4.close(); }), 1, 'close() from a read callback stops the read');
  t.equal(inCallback, 1);
  t.equal(bpfMappings(), mapsWithColl, 'readers unmapped');
  coll.close();
  await released(t, fds, maps);
});

/**
 * close() at a random moment of a burst: a producer fills the ring in another async path while the
 * consumer iterates; the iteration ends cleanly, everything it got is in order, and kept views are safe.
 */
async function burst(
  t: Test,
  open: () => { produce: (n: number, base: number) => void; iterate: () => AsyncIterable<Buffer>; close: () => void; view: (keep: Buffer[]) => void },
  rounds: number,
): Promise<void> {
  let keptViews = 0;
  let keptNonEmpty = 0;
  for (let round = 0; round < rounds; round++) {
    const r = open();
    // A ring outlives its readers: records a previous round left there come first; this round's are numbered from base.
    const base = round * 1_000_000;
    let produced = 0;
    let stop = false;
    const producer = (async () => {
      while (!stop) {
        try {
          r.produce(200, base + produced);
        } catch {
          break;
        }
        produced += 200;
        await new Promise((res) => setImmediate(res));
      }
    })();
    const kept: Buffer[] = [];
    setTimeout(() => {
      r.view(kept); // zero-copy views taken just before close
      r.close();
    }, 1 + ((round * 7) % 23));
    let next = base;
    let outOfOrder = 0;
    let earlier = 0;
    for await (const rec of r.iterate()) {
      const seq = rec.readUInt32LE(0);
      if (seq < base) {
        earlier++;
        continue;
      }
      if (seq !== next) outOfOrder++;
      next = seq + 1;
    }
    stop = true;
    await producer;
    r.close();
    if (outOfOrder) t.fail(`round ${round}: ${outOfOrder} records out of order`);
    // The kept views now sit over placeholder memory: zeros, no fault.
    for (const v of kept) if (v.some((b) => b !== 0)) t.fail(`round ${round}: a kept view reads non-zero after close`);
    keptViews += kept.length;
    if (kept.length) keptNonEmpty++;
  }
  t.pass(`${rounds} close()/burst races ended cleanly`);
  t.ok(keptNonEmpty > 0, `views taken right before close() in ${keptNonEmpty} of ${rounds} rounds (${keptViews} views), all zeros afterwards`);
}

t.test('ring buffer: close() racing a burst of events', async (t) => {
  const fds = fdCount();
  const maps = bpfMappings();
  const coll = new Collection(loadCollectionSpec(obj('ringbuf_test.o')), { programs: ['submit_n'] });
  const produce = submitter(coll);
  await burst(t, () => {
    const reader = new RingBufReader(coll.maps.rb);
    return {
      produce,
      iterate: () => reader.records({ batch: 64 }),
      close: () => reader.close(),
      view: (keep) => { if (!reader.closed) reader.read((rec) => { keep.push(rec); }, { max: 4 }); },
    };
  }, 30);
  coll.close();
  if (gc) gc();
  await released(t, fds, maps);
});

t.test('perf reader: close() racing a burst of events', async (t) => {
  const fds = fdCount();
  const maps = bpfMappings();
  const coll = new Collection(loadCollectionSpec(obj('perf_test.o')), { programs: ['emit_n'] });
  const produce = emitter(coll);
  await burst(t, () => {
    const reader = new PerfReader(coll.maps.events);
    return {
      produce,
      iterate: async function* () { for await (const s of reader.samples({ batch: 64 })) yield s.data; },
      close: () => reader.close(),
      view: (keep) => { if (!reader.closed) reader.read((rec) => { keep.push(rec); }, { max: 4 }); },
    };
  }, 30);
  coll.close();
  await released(t, fds, maps);
});

t.test('placeholders of closed readers are released once their views are collected', { skip: !gc && 'no gc()' }, async (t) => {
  for (let i = 0; i < 3; i++) {
    gc!();
    await tick(10);
  }
  t.equal(pendingPlaceholders(), 0);
});
