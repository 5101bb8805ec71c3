// Run by test/concurrency.test.ts in a worker thread: loads its own collections, attaches, streams records
// and uses maps in parallel with a sibling worker, closes everything, and posts what it saw.
import { parentPort, workerData } from 'node:worker_threads';
import { loadCollectionSpec, setVariable, Collection, autoAttach, type Link, ownedFdCount } from '../../src/index.js';
import { RingBufReader, waitersIdle } from '../../src/ringbuf/index.js';
import { rawSyscall, NR } from '../../src/syscall/native.js';
import { obj } from './env.js';

const { id, records, getpids } = workerData as { id: number; records: number; getpids: number };

async function run(): Promise<Record<string, number>> {
  const ownedAtStart = ownedFdCount();
  // 1) An exact stream: submit_n (BPF_PROG_TEST_RUN) in this thread, read back in order with for await.
  const rbSpec = loadCollectionSpec(obj('ringbuf_test.o'));
  const rbColl = new Collection(rbSpec, { programs: ['submit_n'] });
  const reader = new RingBufReader(rbColl.maps.rb);
  let produced = 0;
  let next = 0;
  const producer = (async () => {
    while (produced < records) {
      while (produced - next > 4000) await new Promise((r) => setImmediate(r));
      const ctx = Buffer.alloc(16);
      ctx.writeUInt32LE(500, 0);
      ctx.writeUInt32LE(id * 10_000_000 + produced, 4);
      rbColl.programs.submit_n.run({ ctx });
      produced += 500;
      await new Promise((r) => setImmediate(r));
    }
  })();
  for await (const rec of reader) {
    const seq = rec.readUInt32LE(0) - id * 10_000_000;
    if (seq !== next) throw new Error(`worker ${id}: seq ${seq}, expected ${next}`);
    next++;
    if (next === records) break;
  }
  await producer;
  reader.close();
  rbColl.close();

  // 2) An attached program: raw_tp on getpid() of this process (the sibling's calls count too).
  const spec = loadCollectionSpec(obj('soak.o'));
  setVariable(spec, 'target_tgid', process.pid);
  const coll = new Collection(spec, { programs: ['on_getpid'] });
  const link = autoAttach(coll.programs.on_getpid, spec.programs.on_getpid) as Link; // one raw_tp link
  const events = new RingBufReader(coll.maps.events);
  let seen = 0;
  let lastSeq = -1;
  for (let i = 0; i < getpids; i++) {
    rawSyscall(NR.getpid);
    events.read((rec) => {
      const seq = rec.readUInt32LE(0);
      if (seq !== lastSeq + 1) throw new Error(`worker ${id}: event seq ${seq} after ${lastSeq}`);
      lastSeq = seq;
      seen++;
    });
    if (i % 100 === 0) await new Promise((r) => setImmediate(r));
  }
  const key = Buffer.alloc(4);
  key.writeUInt32LE(process.pid);
  const counted = Number(coll.maps.counts.lookup(key)?.readBigUInt64LE(0) ?? 0n);
  events.close();
  link.close();
  coll.close();
  await waitersIdle();
  return { id, records: next, seen, counted, ownedAtStart, ownedAtEnd: ownedFdCount() };
}

run().then(
  (r) => parentPort!.postMessage({ ok: true, ...r }),
  (e: Error) => parentPort!.postMessage({ ok: false, error: String(e?.stack ?? e) }),
);
