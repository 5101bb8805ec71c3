// Run by test/signals.test.ts: the nastiest things a caller can do with the public API, one after the
// other in one process. Each case prints one JSON line { case, outcome, error? } as it ends, so a death
// names the case it died in. Only tsbpf errors (and TypeError for arguments of the wrong JS type) may come
// out; the process must end with exit code 0, never by a signal, even though it leaves objects open.
import { Worker } from 'node:worker_threads';
import {
  loadCollectionSpec, Collection, BpfMap, Program, Link, MapType, TsbpfError, attachRawTracepoint,
  RingBufReader, PerfReader, UserRingBufWriter, RecordBatch,
} from '../../src/index.js';
import { rawSyscall, NR } from '../../src/syscall/index.js';
import { obj } from './env.js';

const gc = (globalThis as { gc?: () => void }).gc ?? (() => {});

async function step(name: string, fn: () => unknown): Promise<void> {
  let outcome = 'ok';
  let error: string | undefined;
  try {
    await fn();
  } catch (e) {
    // A TypeError is how the API refuses a value of the wrong JS type; anything else must be ours.
    if (e instanceof TsbpfError || e instanceof TypeError) {
      outcome = 'refused';
      error = `${(e as Error).name}: ${(e as Error).message}`;
    } else {
      outcome = 'foreign';
      error = e instanceof Error ? `${e.constructor.name}: ${e.message}\n${e.stack}` : String(e);
    }
  }
  process.stdout.write(JSON.stringify({ case: name, outcome, error }) + '\n');
}

/** Read and write every byte of kept views (after close they are placeholder memory). */
function touch(views: Uint8Array[]): number {
  let sum = 0;
  for (const v of views) {
    for (let i = 0; i < v.length; i++) sum += v[i]!;
    v.fill(0xa5);
  }
  return sum;
}

const rbSpec = loadCollectionSpec(obj('ringbuf_test.o'));
const perfSpec = loadCollectionSpec(obj('perf_test.o'));
const urbSpec = loadCollectionSpec(obj('user_ringbuf_test.o'));
const loaderSpec = loadCollectionSpec(obj('loader.o'));
const submitArgs = (n: number): Buffer => {
  const b = Buffer.alloc(16);
  b.writeUInt32LE(n, 0);
  return b;
};

await step('ring buffer views kept past close, read and written, then gc', () => {
  const coll = new Collection(rbSpec, { programs: ['submit_n'] });
  const r = new RingBufReader(coll.maps.rb!);
  coll.programs.submit_n!.run({ ctx: submitArgs(64) });
  const views: Uint8Array[] = [];
  r.read((rec) => void views.push(rec), { max: 16 });
  r.readInPlace((data) => void views.push(data), { max: 16 });
  const batch = new RecordBatch(16);
  r.nextBatch(batch);
  r.close();
  coll.close();
  touch(views);
  gc();
  touch(views);
});

await step('perf views kept past close, read and written, then gc', () => {
  const coll = new Collection(perfSpec, { programs: ['emit_n'] });
  const r = new PerfReader(coll.maps.events!);
  const args = Buffer.alloc(16);
  args.writeBigUInt64LE(32n, 0);
  coll.programs.emit_n!.run({ ctx: args });
  const views: Uint8Array[] = [];
  r.read((s) => void (s.data && views.push(s.data)));
  r.close();
  coll.close();
  touch(views);
  gc();
  touch(views);
});

await step('user ring buffer: a reserved record\'s data kept past close, written', () => {
  const coll = new Collection(urbSpec);
  const w = new UserRingBufWriter(coll.maps.urb!);
  const rec = w.reserve(64)!;
  const data = rec.data;
  w.close();
  coll.close();
  touch([data]);
  rec.submit(); // ClosedError
});

await step('globals after the collection closed', () => {
  const coll = new Collection(loaderSpec);
  const v = Object.values(coll.variables)[0]!;
  coll.close();
  v.get(); // ClosedError
});

await step('a map closed in the middle of iterating it', () => {
  const m = BpfMap.create({ name: 'nasty', type: MapType.HASH, keySize: 4, valueSize: 8, maxEntries: 64 });
  for (let i = 0; i < 32; i++) m.update(i, Buffer.alloc(8, i));
  // entries() reads in batches (what it already copied still comes out); keys() asks the kernel per key.
  let n = 0;
  for (const _ of m.keys()) {
    if (++n === 5) m.close();
  }
});

await step('map and program handles that do not exist', () => {
  for (const f of [() => BpfMap.fromId(0), () => BpfMap.fromId(-1), () => BpfMap.fromId(2 ** 53), () => Program.fromId(0xffffffff),
    () => Link.fromId(0), () => BpfMap.fromPin('/sys/fs/bpf/tsbpf-nasty-missing')]) {
    try {
      f();
    } catch (e) {
      if (!(e instanceof TsbpfError || e instanceof TypeError)) throw e;
    }
  }
});

await step('test runs: huge output room, a context of the wrong size, a closed program', () => {
  const coll = new Collection(loaderSpec);
  const xdp = coll.programs.xdp_count!;
  for (const run of [
    () => xdp.run({ data: Buffer.alloc(64), dataOutSize: 0xffffffff }),
    () => xdp.run({ data: Buffer.alloc(0) }),
    () => xdp.run({ data: Buffer.alloc(64), ctx: Buffer.alloc(1) }),
    () => coll.programs.run_all!.run({ ctx: Buffer.alloc(1 << 20) }),
  ]) {
    try {
      run();
    } catch (e) {
      if (!(e instanceof TsbpfError || e instanceof TypeError)) throw e;
    }
  }
  coll.close();
  xdp.run({ data: Buffer.alloc(64) }); // ClosedError
});

await step('a link closed twice, and updated with a closed program', () => {
  const coll = new Collection(rbSpec, { programs: ['submit_n'] });
  const hello = new Collection(loadCollectionSpec(obj('hello.o')), { programs: ['on_raw_sys_enter'] });
  const link = attachRawTracepoint(hello.programs.on_raw_sys_enter!, 'sys_enter');
  const p = hello.programs.on_raw_sys_enter!;
  link.close();
  link.close();
  hello.close();
  coll.close();
  link.update(p); // ClosedError
});

await step('a reader closed inside its own callback, then read again from the callback', () => {
  const coll = new Collection(rbSpec, { programs: ['submit_n'] });
  const r = new RingBufReader(coll.maps.rb!);
  coll.programs.submit_n!.run({ ctx: submitArgs(8) });
  r.read(() => {
    r.close();
    r.read(() => {}); // ClosedError, thrown through the outer read
  });
  coll.close();
});

await step('keys from odd memory: a detached ArrayBuffer, a SharedArrayBuffer', () => {
  const m = BpfMap.create({ name: 'nasty2', type: MapType.ARRAY, keySize: 4, valueSize: 8, maxEntries: 4 });
  const shared = new Uint8Array(new SharedArrayBuffer(4));
  m.update(shared, Buffer.alloc(8));
  const ab = new ArrayBuffer(4);
  const detachedView = new Uint8Array(ab);
  structuredClone(ab, { transfer: [ab] });
  try {
    m.lookup(detachedView); // 0 bytes now: refused by size
  } finally {
    m.close();
  }
});

await step('tsbpf used only from a worker thread, which then exits', async () => {
  // The main thread of this process has made syscalls already; a fresh worker-only process is what
  // the concurrency test checks. Here: a worker that loads, attaches and exits without closing.
  const code = `
    const { loadCollectionSpec, Collection, attachRawTracepoint } = await import(${JSON.stringify(new URL('../../src/index.ts', import.meta.url).href)});
    const c = new Collection(loadCollectionSpec(${JSON.stringify(obj('hello.o'))}), { programs: ['on_raw_sys_enter'] });
    attachRawTracepoint(c.programs.on_raw_sys_enter, 'sys_enter');
  `;
  await new Promise<void>((resolve, reject) => {
    const w = new Worker(code, { eval: true, execArgv: process.execArgv.filter((a) => a !== '--expose-gc') });
    w.on('error', reject);
    w.on('exit', (c) => (c === 0 ? resolve() : reject(new Error(`worker exited ${c}`))));
  });
});

// Left open on purpose: a collection, a link, a reader waiting for records. The process exits anyway.
const open = new Collection(rbSpec);
const reader = new RingBufReader(open.maps.rb!);
const pending = reader.records()[Symbol.asyncIterator]().next();
void pending.catch(() => {});
const hello = new Collection(loadCollectionSpec(obj('hello.o')), { programs: ['on_raw_sys_enter'] });
attachRawTracepoint(hello.programs.on_raw_sys_enter!, 'sys_enter');
rawSyscall(NR.getpid);
process.stdout.write(JSON.stringify({ case: 'end', outcome: 'ok' }) + '\n');
setTimeout(() => process.exit(0), 50);
