// Bad input at the API (issue 9): every case is a typed error whose message names the object, the
// operation and the fix, and is refused before any system call (syscallCount() does not move).
import t from 'tap';
import type { Test } from 'tap';
import { readFileSync, mkdirSync, rmSync } from 'node:fs';
import {
  BpfMap, MapType, UpdateFlags, Program, ProgramType, Collection, loadCollectionSpec, attachRawTracepoint,
  RingBufReader, PerfReader, RecordBatch, lookupBatch, lookupBatches, readAll, updateBatch, deleteBatch, Link,
  ClosedError, ElfError, TsbpfError,
} from '../src/index.js';
import { syscallCount, possibleCpus, pageSize, ensureBpffs } from '../src/syscall/index.js';
import { obj } from './helpers/env.js';

type Matcher = { name: string; message: RegExp };

/** `fn` throws an error matching `m`, and made no system call on the way. */
function refused(t: Test, fn: () => unknown, m: Matcher, label: string): void {
  const before = syscallCount();
  t.throws(fn, m, label);
  t.equal(syscallCount(), before, `${label}: refused before any syscall`);
}

/** The same for functions returning a promise that must reject. */
async function rejected(t: Test, fn: () => Promise<unknown>, m: Matcher, label: string): Promise<void> {
  const before = syscallCount();
  await t.rejects(fn, m, label);
  t.equal(syscallCount(), before, `${label}: refused before any syscall`);
}

const TE = (message: RegExp): Matcher => ({ name: 'TypeError', message });
const NCPU = possibleCpus().length;

t.test('syscallCount counts the calls that reach the kernel', (t) => {
  using m = BpfMap.create({ type: MapType.ARRAY, keySize: 4, valueSize: 8, maxEntries: 4, name: 'bad_count' });
  const before = syscallCount();
  m.lookup(0);
  t.ok(syscallCount() > before, 'a lookup is counted');
  t.end();
});

t.test('BpfMap: keys and values of the wrong size', (t) => {
  using m = BpfMap.create({ type: MapType.HASH, keySize: 4, valueSize: 8, maxEntries: 16, name: 'counts' });
  const v8 = Buffer.alloc(8);
  const keySize = /map "counts" \(HASH\): key is (\d+) bytes, the map's key size is 4: pass a Buffer of exactly 4 bytes/;
  const valueSize = /map "counts" \(HASH\): value is (\d+) bytes, the map's value size is 8: pass a Buffer of exactly 8 bytes/;
  for (const [label, k] of [['short', Buffer.alloc(3)], ['long', Buffer.alloc(5)], ['empty', Buffer.alloc(0)]] as const) {
    refused(t, () => m.lookup(k), TE(keySize), `lookup, ${label} key`);
    refused(t, () => m.update(k, v8), TE(keySize), `update, ${label} key`);
    refused(t, () => m.delete(k), TE(keySize), `delete, ${label} key`);
    refused(t, () => m.lookupAndDelete(k), TE(keySize), `lookupAndDelete, ${label} key`);
    refused(t, () => m.nextKey(k), TE(keySize), `nextKey, ${label} key`);
    refused(t, () => m.lookupPerCpu(k), TE(keySize), `lookupPerCpu, ${label} key`);
    refused(t, () => m.get(k), TE(keySize), `get, ${label} key`);
  }
  for (const [label, v] of [['short', Buffer.alloc(7)], ['long', Buffer.alloc(9)], ['empty', Buffer.alloc(0)]] as const) {
    refused(t, () => m.update(1, v), TE(valueSize), `update, ${label} value`);
  }
  // A Uint8Array view of the wrong length counts by its own length, not its ArrayBuffer's.
  refused(t, () => m.update(new Uint8Array(new ArrayBuffer(16), 4, 3), v8), TE(keySize), 'key as a short view of a larger buffer');
  t.end();
});

t.test('BpfMap: wrong types where a Buffer (or an integer key) is expected', (t) => {
  using m = BpfMap.create({ type: MapType.HASH, keySize: 4, valueSize: 8, maxEntries: 16, name: 'counts' });
  using m12 = BpfMap.create({ type: MapType.HASH, keySize: 12, valueSize: 8, maxEntries: 16, name: 'wide' });
  const v8 = Buffer.alloc(8);
  const bad: [string, unknown, RegExp][] = [
    ['a DataView', new DataView(new ArrayBuffer(4)), /got DataView/],
    ['a string', '1234', /got string/],
    ['null', null, /got null/],
    ['undefined', undefined, /got undefined/],
    ['a plain array', [1, 2, 3, 4], /got an Array/],
    ['an object', { a: 1 }, /got Object/],
    ['an ArrayBuffer', new ArrayBuffer(4), /got ArrayBuffer/],
  ];
  for (const [label, k] of bad) {
    const msg = /map "counts" \(HASH\): key must be a Buffer\/Uint8Array, number or bigint, got /;
    refused(t, () => m.lookup(k as Buffer), TE(msg), `lookup, key ${label}`);
    refused(t, () => m.lookup(k as Buffer), TE(bad.find((b) => b[0] === label)![2]), `lookup, key ${label}: says what it got`);
    refused(t, () => m.update(k as Buffer, v8), TE(msg), `update, key ${label}`);
    refused(t, () => m.delete(k as Buffer), TE(msg), `delete, key ${label}`);
    if (k !== undefined) refused(t, () => m.nextKey(k as Buffer), TE(msg), `nextKey, key ${label}`);
  }
  for (const [label, v, got] of bad) {
    refused(t, () => m.update(1, v as Buffer), TE(new RegExp(`map "counts" \\(HASH\\): (value must be a Buffer/Uint8Array, ${got.source}|only per-CPU maps take an array of values; pass one 8-byte Buffer)`)),
      `update, value ${label}`);
    refused(t, () => m.push(v as Buffer), TE(/map "counts" \(HASH\): value must be a Buffer\/Uint8Array/), `push, value ${label}`);
  }
  refused(t, () => m12.lookup(1), TE(/map "wide" \(HASH\): a numeric key needs a 4- or 8-byte key size \(this map's is 12\); pass a Buffer/), 'numeric key, 12-byte keys');
  refused(t, () => m12.lookup('x' as unknown as Buffer), TE(/map "wide" \(HASH\): key must be a Buffer\/Uint8Array, got string/), '12-byte keys: no number offered');
  refused(t, () => m.set(1, 5), TE(/map "counts" \(HASH\): the map has no BTF value type; use update\(\) with a Buffer/), 'set without BTF');
  refused(t, () => m.get({ pid: 1 }), TE(/map "counts" \(HASH\): the map has no BTF key type; pass the key as a Buffer/), 'get with an object key, no BTF');
  refused(t, () => m.lookupAndDelete(null), TE(/map "counts" \(HASH\): lookupAndDelete\(null\) is for queues and stacks; this map's keys are 4 bytes: pass a key/),
    'lookupAndDelete(null) on a hash');
  t.end();
});

t.test('BpfMap: numeric keys out of range, fractional, NaN', (t) => {
  using m4 = BpfMap.create({ type: MapType.HASH, keySize: 4, valueSize: 8, maxEntries: 16, name: 'k32' });
  using m8 = BpfMap.create({ type: MapType.HASH, keySize: 8, valueSize: 8, maxEntries: 16, name: 'k64' });
  for (const k of [-1, 1.5, NaN, Infinity, -Infinity, 2 ** 32, -1n, 1n << 32n]) {
    refused(t, () => m4.lookup(k), TE(/map "k32" \(HASH\): key .* is not a u32: numeric keys must be integers in \[0, 2\^32\)/), `u32 key ${String(k)}`);
  }
  for (const k of [-1, 0.5, NaN, Infinity, 2 ** 60, -1n, 1n << 64n]) {
    refused(t, () => m8.lookup(k), TE(/map "k64" \(HASH\): key .* is not a u64: numeric keys must be integers in \[0, 2\^64\)/), `u64 key ${String(k)}`);
  }
  t.throws(() => m8.lookup(2 ** 60), { message: /pass a bigint above 2\^53/ }, 'a u64 number beyond 2^53 points at bigint');
  // The edges still work.
  t.equal(m4.lookup(0xffffffff), undefined, 'u32 max is a valid key');
  t.equal(m8.lookup((1n << 64n) - 1n), undefined, 'u64 max (bigint) is a valid key');
  t.end();
});

t.test('BpfMap: flags that are not non-negative integers', (t) => {
  using m = BpfMap.create({ type: MapType.HASH, keySize: 4, valueSize: 8, maxEntries: 16, name: 'counts' });
  using q = BpfMap.create({ type: MapType.QUEUE, keySize: 0, valueSize: 8, maxEntries: 16, name: 'q' });
  const v8 = Buffer.alloc(8);
  for (const f of [1.5, -1, NaN, Infinity, '1', 1n, null]) {
    const label = typeof f === 'bigint' ? `${f}n` : String(f);
    refused(t, () => m.update(1, v8, f as number), TE(/map "counts" \(HASH\): update: flags must be a non-negative integer \(UpdateFlags\.\*\), got/), `update flags ${label}`);
    refused(t, () => m.lookup(1, f as number), TE(/map "counts" \(HASH\): lookup: flags must be a non-negative integer/), `lookup flags ${label}`);
    refused(t, () => q.push(v8, f as number), TE(/map "q" \(QUEUE\): push: flags must be a non-negative integer/), `push flags ${label}`);
    refused(t, () => updateBatch(m, Buffer.alloc(4), v8, f as number), TE(/map "counts" \(HASH\): updateBatch: flags must be a non-negative integer/),
      `updateBatch flags ${label}`);
  }
  t.end();
});

t.test('per-CPU maps: value arrays of the wrong length or element size', (t) => {
  using m = BpfMap.create({ type: MapType.PERCPU_HASH, keySize: 4, valueSize: 8, maxEntries: 16, name: 'pcpu' });
  const ok = Buffer.alloc(8);
  refused(t, () => m.update(1, Array.from({ length: NCPU + 1 }, () => ok)),
    TE(new RegExp(`map "pcpu" \\(PERCPU_HASH\\): per-CPU value needs ${NCPU} entries \\(one per possible CPU\\), got ${NCPU + 1}: pass one 8-byte Buffer per CPU`)),
    'one value too many');
  refused(t, () => m.update(1, []), TE(/per-CPU value needs \d+ entries .* got 0/), 'no values');
  const wrong = Array.from({ length: NCPU }, (_, i) => (i === NCPU - 1 ? Buffer.alloc(4) : ok));
  refused(t, () => m.update(1, wrong), TE(/map "pcpu" \(PERCPU_HASH\): value is 4 bytes, the map's value size is 8/), 'last CPU\'s value too short');
  const notBuf = Array.from({ length: NCPU }, (_, i) => (i === 0 ? 'x' : ok)) as Buffer[];
  refused(t, () => m.update(1, notBuf), TE(/map "pcpu" \(PERCPU_HASH\): value must be a Buffer\/Uint8Array, got string/), 'a string among the values');
  refused(t, () => m.update(1, Buffer.alloc(16)), TE(/value is 16 bytes, the map's value size is 8/), 'a single value of the wrong size');
  // Batch: values must be round_up(8, 8) × possible CPUs per element.
  refused(t, () => updateBatch(m, Buffer.alloc(4), Buffer.alloc(4)),
    TE(new RegExp(`map "pcpu" \\(PERCPU_HASH\\): updateBatch: values are 4 bytes, 1 element\\(s\\) need ${8 * NCPU} \\(per-CPU: 8 bytes`)), 'updateBatch per-CPU values');
  t.end();
});

t.test('batch operations: bad keys, values and counts', (t) => {
  using m = BpfMap.create({ type: MapType.HASH, keySize: 4, valueSize: 8, maxEntries: 16, name: 'counts' });
  const ctx = /map "counts" \(HASH\)/;
  refused(t, () => updateBatch(m, Buffer.alloc(6), Buffer.alloc(16)), TE(/updateBatch: keys are 6 bytes, not a positive multiple of the key size 4/), 'keys not a multiple');
  refused(t, () => updateBatch(m, Buffer.alloc(0), Buffer.alloc(0)), TE(/updateBatch: keys are 0 bytes/), 'no keys');
  refused(t, () => updateBatch(m, Buffer.alloc(8), Buffer.alloc(8)), TE(/updateBatch: values are 8 bytes, 2 element\(s\) need 16/), 'values short');
  refused(t, () => updateBatch(m, Buffer.alloc(8), Buffer.alloc(24)), TE(/values are 24 bytes, 2 element\(s\) need 16/), 'values long');
  refused(t, () => deleteBatch(m, Buffer.alloc(5)), TE(/deleteBatch: keys are 5 bytes/), 'deleteBatch keys not a multiple');
  for (const [label, v] of [['a DataView', new DataView(new ArrayBuffer(8))], ['a number', 8], ['a string', 'abcd'], ['null', null], ['an array', [0, 0, 0, 0]]] as const) {
    refused(t, () => updateBatch(m, v as unknown as Buffer, Buffer.alloc(8)), TE(/updateBatch: keys must be a Buffer\/Uint8Array of 4-byte keys back to back, got/), `updateBatch keys ${label}`);
    refused(t, () => updateBatch(m, Buffer.alloc(4), v as unknown as Buffer), TE(/updateBatch: values must be a Buffer\/Uint8Array of 8-byte values back to back, got/), `updateBatch values ${label}`);
    refused(t, () => deleteBatch(m, v as unknown as Buffer), TE(/deleteBatch: keys must be a Buffer\/Uint8Array/), `deleteBatch keys ${label}`);
    refused(t, () => updateBatch(m, v as unknown as Buffer, Buffer.alloc(8)), TE(ctx), `updateBatch keys ${label}: names the map`);
  }
  for (const n of [0, -1, 1.5, NaN, Infinity, 2 ** 32, 2 ** 40, '10']) {
    const m1 = TE(/batchSize must be an integer in \[1, 16777216\], got .*: it is the number of elements read per bpf\(\) call/);
    refused(t, () => [...lookupBatch(m, { batchSize: n as number })], m1, `lookupBatch batchSize ${String(n)}`);
    refused(t, () => [...lookupBatches(m, { batchSize: n as number, andDelete: true })], m1, `lookupBatches batchSize ${String(n)}`);
  }
  t.end();
});

t.test('BpfMap.create: sizes, counts and flags that are not u32 integers', (t) => {
  const base = { type: MapType.HASH, keySize: 4, valueSize: 8, maxEntries: 16, name: 'made' };
  for (const f of ['keySize', 'valueSize', 'maxEntries', 'flags', 'type'] as const) {
    for (const v of [-1, 1.5, NaN, 2 ** 32, Infinity, '4']) {
      refused(t, () => BpfMap.create({ ...base, [f]: v } as typeof base),
        TE(new RegExp(`map "made": ${f} must be an integer in \\[0, 2\\^32\\), got`)), `${f} = ${String(v)}`);
    }
  }
  refused(t, () => BpfMap.create({ ...base, maxEntries: undefined } as unknown as typeof base), TE(/map "made": maxEntries must be an integer .* got undefined/), 'maxEntries missing');
  refused(t, () => BpfMap.create({ ...base, mapExtra: -1n }), TE(/mapExtra must be a bigint in \[0, 2\^64\)/), 'mapExtra negative');
  refused(t, () => BpfMap.create({ ...base, name: 5 } as unknown as typeof base), TE(/name must be a string/), 'name a number');
  refused(t, () => BpfMap.create(null as unknown as typeof base), TE(/BpfMap.create: pass an options object, got null/), 'no options');
  t.end();
});

t.test('closed objects: every method throws ClosedError naming the object; close() twice is harmless', async (t) => {
  const coll = new Collection(loadCollectionSpec(obj('hello.o')), { programs: ['on_raw_sys_enter'] });
  const map = coll.maps.calls;
  const prog = coll.programs.on_raw_sys_enter;
  const link = attachRawTracepoint(prog, 'sys_enter');
  link.close();
  link.close();
  const L = { name: 'ClosedError', message: /link \S+:sys_enter is closed: attach the program again for a new link/ };
  refused(t, () => link.fd, L, 'link.fd');
  refused(t, () => link.pin('/sys/fs/bpf/x'), L, 'link.pin');
  refused(t, () => link.info(), L, 'link.info');
  refused(t, () => link.detach(), L, 'link.detach');
  refused(t, () => link.update(prog), L, 'link.update');

  coll.close();
  coll.close();
  t.ok(map.closed && prog.closed, 'closing the collection closed its maps and programs');
  const C = { name: 'ClosedError', message: /collection "hello": .*the collection is closed \(its maps and programs too\); load the object again/ };
  refused(t, () => coll.readVariable('total'), C, 'collection.readVariable');
  refused(t, () => coll.writeVariable('total', Buffer.alloc(8)), C, 'collection.writeVariable');
  refused(t, () => coll.describe(), C, 'collection.describe');

  const M = { name: 'ClosedError', message: /map "calls" \(HASH\) is closed: it can no longer be used/ };
  const k = Buffer.alloc(4);
  const v = Buffer.alloc(8);
  const mapCalls: [string, () => unknown][] = [
    ['fd', () => map.fd], ['info', () => map.info()], ['lookup', () => map.lookup(k)], ['lookupPerCpu', () => map.lookupPerCpu(k)],
    ['lookupAndDelete', () => map.lookupAndDelete(k)], ['update', () => map.update(k, v)], ['delete', () => map.delete(k)],
    ['get', () => map.get(1)], ['set', () => map.set(1, 2n)], ['nextKey', () => map.nextKey()], ['keys', () => [...map.keys()]],
    ['entries', () => [...map.entries()]], ['decodedEntries', () => [...map.decodedEntries()]], ['iterator', () => [...map]],
    ['freeze', () => map.freeze()], ['pin', () => map.pin('/sys/fs/bpf/x')], ['clone', () => map.clone()],
    ['push', () => map.push(v)], ['pop', () => map.pop()], ['peek', () => map.peek()],
    ['readAll', () => readAll(map)], ['lookupBatch', () => [...lookupBatch(map)]], ['updateBatch', () => updateBatch(map, k, v)],
    ['deleteBatch', () => deleteBatch(map, k)],
  ];
  for (const [label, fn] of mapCalls) refused(t, fn, M, `map.${label}`);
  map.close();

  const P = { name: 'ClosedError', message: /program "on_raw_sys_enter" \(RAW_TRACEPOINT\) is closed: it can no longer be used/ };
  const progCalls: [string, () => unknown][] = [
    ['fd', () => prog.fd], ['info', () => prog.info()], ['xlated', () => prog.xlated()], ['run', () => prog.run()],
    ['stats', () => prog.stats()], ['jited', () => prog.jited()], ['jitedInfo', () => prog.jitedInfo()], ['btf', () => prog.btf()],
    ['pin', () => prog.pin('/sys/fs/bpf/x')], ['clone', () => prog.clone()],
  ];
  for (const [label, fn] of progCalls) refused(t, fn, P, `program.${label}`);
  prog.close();
  refused(t, () => attachRawTracepoint(prog, 'sys_enter'), P, 'attaching a closed program');

  // Ring buffer reader.
  const rbMap = BpfMap.create({ type: MapType.RINGBUF, keySize: 0, valueSize: 0, maxEntries: pageSize() * 4, name: 'rb' });
  const rb = new RingBufReader(rbMap);
  rb.close();
  rb.close();
  rbMap.close();
  const R = { name: 'ClosedError', message: /ring buffer reader of map "rb" is closed: make a new RingBufReader to read again/ };
  refused(t, () => rb.read(() => {}), R, 'ringbuf.read');
  refused(t, () => rb.readInPlace(() => {}), R, 'ringbuf.readInPlace');
  refused(t, () => rb.nextBatch(new RecordBatch(16)), R, 'ringbuf.nextBatch');
  await rejected(t, () => rb.wait(), R, 'ringbuf.wait');
  // Iteration and listen() end when the reader closes (documented): started after close(), they end at once.
  let n = 0;
  for await (const r of rb) n += r ? 1 : 1;
  t.equal(n, 0, 'iterating a closed ring buffer reader ends at once');
  await t.resolves(rb.listen(() => {}), 'listen() on a closed reader resolves (it listens "until the reader closes")');

  // Perf reader.
  const pMap = BpfMap.create({ type: MapType.PERF_EVENT_ARRAY, keySize: 4, valueSize: 4, maxEntries: NCPU, name: 'events' });
  const pr = new PerfReader(pMap, { pagesPerCpu: 1 });
  pr.close();
  pr.close();
  pMap.close();
  const PR = { name: 'ClosedError', message: /perf reader of map "events" is closed: make a new PerfReader to read again/ };
  refused(t, () => pr.read(() => {}), PR, 'perf.read');
  refused(t, () => pr.readInPlace(() => {}), PR, 'perf.readInPlace');
  refused(t, () => pr.nextBatch(new RecordBatch(16)), PR, 'perf.nextBatch');
  refused(t, () => pr.pause(), PR, 'perf.pause');
  refused(t, () => pr.resume(), PR, 'perf.resume');
  await rejected(t, () => pr.wait(), PR, 'perf.wait');

  // Programs loaded by hand behave the same.
  const p2 = Program.load({ name: 'ret0', type: ProgramType.SOCKET_FILTER, license: 'GPL',
    insns: Buffer.from('b700000000000000' + '9500000000000000', 'hex') });
  p2.close();
  p2.close();
  refused(t, () => p2.run({ data: Buffer.alloc(64) }), { name: 'ClosedError', message: /program "ret0" \(SOCKET_FILTER\) is closed/ }, 'hand-loaded program.run');
});

t.test('reader options: max that is not a non-negative integer', (t) => {
  using rbMap = BpfMap.create({ type: MapType.RINGBUF, keySize: 0, valueSize: 0, maxEntries: pageSize() * 4, name: 'rb' });
  using rb = new RingBufReader(rbMap);
  for (const max of [-1, 1.5, NaN, '3']) {
    refused(t, () => rb.read(() => {}, { max: max as number }), TE(/RingBufReader.read: max must be a non-negative integer or Infinity, got/), `ringbuf read max ${String(max)}`);
    refused(t, () => rb.readInPlace(() => {}, { max: max as number }), TE(/RingBufReader.readInPlace: max must be/), `ringbuf readInPlace max ${String(max)}`);
  }
  refused(t, () => rb.read('cb' as unknown as () => void), TE(/RingBufReader.read: callback must be a function/), 'ringbuf read without a callback');
  refused(t, () => rb.nextBatch({} as RecordBatch), TE(/RingBufReader.nextBatch: pass a RecordBatch/), 'nextBatch with a plain object');
  t.equal(rb.read(() => {}, { max: 0 }), 0, 'max 0 is fine');
  using pMap = BpfMap.create({ type: MapType.PERF_EVENT_ARRAY, keySize: 4, valueSize: 4, maxEntries: NCPU, name: 'events' });
  using pr = new PerfReader(pMap, { pagesPerCpu: 1 });
  for (const max of [-1, 1.5, NaN, '3']) {
    refused(t, () => pr.read(() => {}, { max: max as number }), TE(/PerfReader.read: max must be a non-negative integer or Infinity, got/), `perf read max ${String(max)}`);
    refused(t, () => pr.readInPlace(() => {}, { max: max as number }), TE(/PerfReader.readInPlace: max must be/), `perf readInPlace max ${String(max)}`);
  }
  for (const pages of [0, 3, -1, 1.5]) {
    refused(t, () => new PerfReader(pMap, { pagesPerCpu: pages }), TE(/PerfReader: pagesPerCpu must be a power of two, got/), `pagesPerCpu ${pages}`);
  }
  refused(t, () => new RingBufReader(pMap), TE(/RingBufReader: map "events" is PERF_EVENT_ARRAY, not RINGBUF/), 'ring buffer reader on a perf map');
  refused(t, () => new PerfReader(rbMap), TE(/PerfReader: map "rb" is RINGBUF, not PERF_EVENT_ARRAY/), 'perf reader on a ring buffer');
  t.end();
});

t.test('pin paths outside a bpffs are refused before the kernel sees them', (t) => {
  const bpffs = ensureBpffs();
  const missing = `${bpffs}/tsbpf-bad-input-${process.pid}-nodir`;
  rmSync(missing, { recursive: true, force: true });
  using m = BpfMap.create({ type: MapType.ARRAY, keySize: 4, valueSize: 8, maxEntries: 1, name: 'pinme' });
  const coll = new Collection(loadCollectionSpec(obj('hello.o')), { programs: ['on_raw_sys_enter'] });
  t.teardown(() => coll.close());
  const prog = coll.programs.on_raw_sys_enter;
  using link = attachRawTracepoint(prog, 'sys_enter');
  const cases: [string, unknown, Matcher][] = [
    ['/tmp', `/tmp/tsbpf-bad-input-${process.pid}`, { name: 'TsbpfError', message: /pin path "\/tmp\/tsbpf-bad-input-\d+" is not in a BPF filesystem \(\/tmp is filesystem 0x[0-9a-f]+\); use a path under \/sys\/fs\/bpf or mount -t bpf bpf DIR/ }],
    ['a directory under /tmp that does not exist', `/tmp/tsbpf-no-such-dir-${process.pid}/x`, { name: 'TsbpfError', message: /is not in a BPF filesystem/ }],
    ['relative', 'relative/pin', { name: 'TsbpfError', message: /pin path "relative\/pin" must be absolute, in a BPF filesystem \(e.g. \/sys\/fs\/bpf\/relative\/pin\)/ }],
    ['./relative', './pin', { name: 'TsbpfError', message: /must be absolute, in a BPF filesystem \(e.g. \/sys\/fs\/bpf\/pin\)/ }],
    ['empty', '', { name: 'TsbpfError', message: /pin path is empty: it must be an absolute path in a BPF filesystem, e.g. \/sys\/fs\/bpf\/NAME/ }],
    ['under a missing bpffs directory', `${missing}/x`, { name: 'TsbpfError', message: new RegExp(`pin path "${missing}/x": directory ${missing} does not exist; create it first`) }],
    ['NUL byte', `${bpffs}/a\0b`, { name: 'TsbpfError', message: /contains a NUL byte/ }],
    ['a number', 5, TE(/pin path must be a string \(an absolute path under \/sys\/fs\/bpf or another bpffs mount\), got number/)],
    ['null', null, TE(/pin path must be a string .* got null/)],
  ];
  for (const [label, path, match] of cases) {
    refused(t, () => m.pin(path as string), match, `map.pin: ${label}`);
    refused(t, () => prog.pin(path as string), match, `program.pin: ${label}`);
    refused(t, () => link.pin(path as string), match, `link.pin: ${label}`);
  }
  // Opening a pin: the same checks (a missing directory is the kernel's ENOENT there, not ours).
  for (const [label, path, match] of cases.filter((c) => c[0] !== 'under a missing bpffs directory')) {
    refused(t, () => BpfMap.fromPin(path as string), match, `BpfMap.fromPin: ${label}`);
    refused(t, () => Program.fromPin(path as string), match, `Program.fromPin: ${label}`);
    refused(t, () => Link.fromPin(path as string), match, `Link.fromPin: ${label}`);
  }
  refused(t, () => new Collection(loadCollectionSpec(obj('pinned.o')), { pinPath: '/tmp' }), { name: 'TsbpfError', message: /is not in a BPF filesystem/ }, 'Collection pinPath /tmp');
  // A good pin still works, and the directory check passes for an existing bpffs directory.
  mkdirSync(missing);
  t.teardown(() => rmSync(missing, { recursive: true, force: true }));
  m.pin(`${missing}/x`);
  t.ok(m.unpin(`${missing}/x`), 'pin into an existing bpffs directory works');
  t.end();
});

t.test('ELF objects for another machine, or not ELF at all', (t) => {
  const good = readFileSync(obj('hello.o'));
  const variant = (fn: (b: Buffer) => void): Buffer => {
    const b = Buffer.from(good);
    fn(b);
    return b;
  };
  const E = (message: RegExp): Matcher => ({ name: 'ElfError', message });
  const cases: [string, Buffer, RegExp][] = [
    ['x86-64', variant((b) => b.writeUInt16LE(62, 18)), /object "hello": not a BPF object: e_machine is 62 \(x86-64\), want EM_BPF \(247\): this is code for another machine; build with clang -target bpf/],
    ['AArch64', variant((b) => b.writeUInt16LE(183, 18)), /object "hello": not a BPF object: e_machine is 183 \(AArch64\), want EM_BPF \(247\)/],
    ['no machine', variant((b) => b.writeUInt16LE(0, 18)), /e_machine is 0 \(none\), want EM_BPF \(247\)/],
    ['big-endian', variant((b) => (b[5] = 2)), /object "hello": big-endian objects are not supported: found ELFDATA2MSB \(bpfeb\), want ELFDATA2LSB \(build with clang -target bpfel\)/],
    ['bad data encoding', variant((b) => (b[5] = 7)), /object "hello": invalid ELF data encoding 7, want ELFDATA2LSB \(1\)/],
    ['32-bit', variant((b) => (b[4] = 1)), /object "hello": 32-bit ELF objects are not supported: found ELFCLASS32, want ELFCLASS64 \(build with clang -target bpf\)/],
    ['bad class', variant((b) => (b[4] = 9)), /object "hello": invalid ELF class 9, want ELFCLASS64 \(2\)/],
    ['executable', variant((b) => b.writeUInt16LE(2, 16)), /object "hello": not a relocatable BPF object: e_type is ET_EXEC, want ET_REL \(build with clang -c, do not link\)/],
    ['shared object', variant((b) => b.writeUInt16LE(3, 16)), /e_type is ET_DYN, want ET_REL/],
    ['not ELF', Buffer.from('#!/bin/sh\necho this is a shell script, not a BPF object at all\n'), /object "hello": not an ELF file \(bad magic\): pass a BPF object built with clang -target bpf -c/],
    ['empty', Buffer.alloc(0), /object "hello": not an ELF file: it is empty \(0 bytes\)/],
    ['truncated header', good.subarray(0, 40), /object "hello": truncated ELF header: 40 bytes, need 64/],
  ];
  for (const [label, buf, message] of cases) {
    refused(t, () => loadCollectionSpec(buf, { name: 'hello' }), E(message), label);
  }
  // Without a name, a Buffer is "obj"; a path is named by its path.
  refused(t, () => loadCollectionSpec(cases[0][1]), E(/^object "obj": not a BPF object/), 'unnamed buffer');
  refused(t, () => loadCollectionSpec(new Uint8Array(cases[3][1])), E(/^object "obj": big-endian/), 'a Uint8Array, big-endian');
  for (const [label, v] of [['a DataView', new DataView(good.buffer)], ['a number', 5], ['null', null], ['an array', [...good.subarray(0, 64)]]] as const) {
    refused(t, () => loadCollectionSpec(v as unknown as Buffer), TE(/loadCollectionSpec: input must be a path or a Buffer with the object's bytes, got/), `input ${label}`);
  }
  // The unmodified object still parses.
  t.ok(loadCollectionSpec(good).programs.on_getpid, 'the original object parses');
  t.end();
});

t.test('errors are TsbpfErrors or TypeErrors, never RangeErrors from Node', (t) => {
  using m = BpfMap.create({ type: MapType.HASH, keySize: 8, valueSize: 8, maxEntries: 4, name: 'k64' });
  for (const k of [1.5, NaN, -0.5, 2 ** 64]) {
    try {
      m.lookup(k);
      t.fail(`key ${k} accepted`);
    } catch (e) {
      t.notOk(e instanceof RangeError, `key ${k}: not a RangeError`);
      t.ok(e instanceof TypeError || e instanceof TsbpfError, `key ${k}: ${(e as Error).name}`);
    }
  }
  t.ok(new ElfError('x') instanceof TsbpfError && new ClosedError('x') instanceof TsbpfError, 'ElfError and ClosedError are TsbpfErrors');
  t.equal(UpdateFlags.ANY, 0);
  t.end();
});
