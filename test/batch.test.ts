import t from 'tap';
import { BpfMap, MapType, UpdateFlags } from '../src/maps/map.js';
import { batchValueStride, deleteBatch, lookupBatch, lookupBatches, readAll, refusedBatchOps, updateBatch } from '../src/maps/batch.js';
import { BatchError, ENOTSUPP, batchTokenSize, mapDeleteBatch, mapLookupBatch, mapUpdateBatch } from '../src/syscall/batch.js';
import { possibleCpus } from '../src/syscall/index.js';

const N = 100_000;

/** keys 0..n-1 (u32) and values key*3+1 (u64), contiguous. */
function records(n: number, first = 0): { keys: Buffer; values: Buffer } {
  const keys = Buffer.alloc(n * 4);
  const values = Buffer.alloc(n * 8);
  for (let i = 0; i < n; i++) {
    keys.writeUInt32LE(first + i, i * 4);
    values.writeBigUInt64LE(BigInt(first + i) * 3n + 1n, i * 8);
  }
  return { keys, values };
}

/** key (u32) → value (hex) from per-key iteration. */
function perKeyContents(map: BpfMap): Map<number, string> {
  const m = new Map<number, string>();
  for (const [k, v] of map.entries()) m.set(k.readUInt32LE(0), (Array.isArray(v) ? Buffer.concat(v) : v).toString('hex'));
  return m;
}

t.test('100k-entry HASH u32→u64: updateBatch, lookups, lookup-and-delete, deleteBatch', (t) => {
  using map = BpfMap.create({ type: MapType.HASH, keySize: 4, valueSize: 8, maxEntries: N, name: 'batch_hash' });
  const { keys, values } = records(N);
  t.equal(updateBatch(map, keys, values), N, 'all updated');
  t.equal(map.lookup(12345)?.readBigUInt64LE(0), 12345n * 3n + 1n, 'per-key lookup sees a batch-written value');

  const perKey = perKeyContents(map);
  t.equal(perKey.size, N);

  const all = readAll(map);
  t.equal(all.count, N, 'readAll returns every element');
  t.equal(all.keys.length, N * 4);
  t.equal(all.values.length, N * 8);
  let same = 0;
  for (let i = 0; i < all.count; i++) {
    if (perKey.get(all.key(i).readUInt32LE(0)) === all.value(i).toString('hex')) same++;
  }
  t.equal(same, N, 'readAll contents = per-key contents');

  const viaGen = new Map<number, string>();
  let chunks = 0;
  for (const c of lookupBatches(map, { batchSize: 1000 })) {
    chunks++;
    if (c.count > 2000) t.fail(`chunk of ${c.count}`);
    for (const [k, v] of c) viaGen.set(k.readUInt32LE(0), (v as Buffer).toString('hex'));
  }
  t.ok(chunks >= 50, `${chunks} chunks`);
  t.same(viaGen, perKey, 'lookupBatches contents = per-key contents');

  const small = new Map<number, string>();
  for (const [k, v] of lookupBatch(map, { batchSize: 1 })) small.set(k.readUInt32LE(0), (v as Buffer).toString('hex'));
  t.equal(small.size, N, 'batchSize 1 grows past crowded buckets (ENOSPC) and still reads everything');
  t.same(small, perKey);

  // deleteBatch: the first 10 000 keys.
  t.equal(deleteBatch(map, keys.subarray(0, 40_000)), 10_000);
  t.equal(map.lookup(5), undefined);
  t.equal(readAll(map).count, N - 10_000);
  // A missing key stops the batch: processed counts what was deleted before it.
  const mixed = Buffer.alloc(12);
  mixed.writeUInt32LE(20_000, 0);
  mixed.writeUInt32LE(20_001, 4);
  mixed.writeUInt32LE(5, 8); // already deleted
  const err = t.throws(() => deleteBatch(map, mixed)) as BatchError;
  t.ok(err instanceof BatchError);
  t.equal(err.errno, 'ENOENT');
  t.equal(err.processed, 2);
  t.equal(map.lookup(20_000), undefined);

  // Update flags: NOEXIST on existing keys fails at the first one.
  const e2 = t.throws(() => updateBatch(map, keys.subarray(4 * 30_000, 4 * 30_010), values.subarray(8 * 30_000, 8 * 30_010), UpdateFlags.NOEXIST)) as BatchError;
  t.equal(e2.errno, 'EEXIST');
  t.equal(e2.processed, 0);
  t.ok(refusedBatchOps(MapType.HASH).includes('updateWithFlags'), 'this kernel refuses NOEXIST/EXIST in batch updates: per key');
  const fresh = Buffer.alloc(8);
  fresh.writeUInt32LE(5, 0); // deleted above
  fresh.writeUInt32LE(6, 4); // deleted above
  const e3 = t.throws(() => updateBatch(map, Buffer.concat([fresh, keys.subarray(4 * 30_000, 4 * 30_001)]), Buffer.alloc(24, 7), UpdateFlags.NOEXIST)) as BatchError;
  t.equal(e3.errno, 'EEXIST');
  t.equal(e3.processed, 2, 'two new keys inserted before the existing one');
  t.equal(map.lookup(6)?.readBigUInt64LE(0), 0x0707070707070707n);
  t.equal(updateBatch(map, keys.subarray(4 * 30_000, 4 * 30_010), values.subarray(8 * 30_000, 8 * 30_010), UpdateFlags.EXIST), 10);

  // Lookup-and-delete empties it.
  let taken = 0;
  let right = 0;
  for (const [k, v] of lookupBatch(map, { andDelete: true, batchSize: 8192 })) {
    const key = k.readUInt32LE(0);
    if ((v as Buffer).readBigUInt64LE(0) === (key === 5 || key === 6 ? 0x0707070707070707n : BigInt(key) * 3n + 1n)) right++;
    taken++;
  }
  t.equal(taken, N - 10_000);
  t.equal(right, taken, 'every value read and deleted is the one written');
  t.equal(map.nextKey(), undefined, 'map is empty');
  t.equal(readAll(map).count, 0);

  // readAll with andDelete.
  updateBatch(map, keys.subarray(0, 400), values.subarray(0, 800));
  const gone = readAll(map, { andDelete: true });
  t.equal(gone.count, 100);
  t.equal(map.nextKey(), undefined);
  t.end();
});

t.test('per-CPU hash: stride is value size rounded to 8 × possible CPUs', (t) => {
  const ncpu = possibleCpus().length;
  using map = BpfMap.create({ type: MapType.PERCPU_HASH, keySize: 4, valueSize: 4, maxEntries: 1000 });
  t.equal(batchValueStride(map), 8 * ncpu);
  const n = 500;
  const keys = Buffer.alloc(n * 4);
  const values = Buffer.alloc(n * 8 * ncpu);
  for (let i = 0; i < n; i++) {
    keys.writeUInt32LE(i * 7, i * 4);
    for (let c = 0; c < ncpu; c++) values.writeUInt32LE(i * 100 + c, i * 8 * ncpu + c * 8);
  }
  t.throws(() => updateBatch(map, keys, Buffer.alloc(n * 4)), TypeError, 'unpadded per-CPU values refused');
  t.equal(updateBatch(map, keys, values), n);
  const all = readAll(map);
  t.equal(all.count, n);
  const perKey = perKeyContents(map);
  let ok = 0;
  for (let i = 0; i < all.count; i++) {
    const k = all.key(i).readUInt32LE(0);
    const cpus = all.valuesPerCpu(i);
    if (cpus.length === ncpu && cpus.every((c, j) => c.length === 4 && c.readUInt32LE(0) === (k / 7) * 100 + j) &&
      Buffer.concat(map.lookupPerCpu(k)!).equals(Buffer.concat(cpus))) ok++;
  }
  t.equal(ok, n, 'every per-CPU value = what was written = per-key lookupPerCpu');
  t.equal(perKey.size, n);
  const viaGen = [...lookupBatch(map, { batchSize: 64 })];
  t.equal(viaGen.length, n);
  t.ok(Array.isArray(viaGen[0][1]) && (viaGen[0][1] as Buffer[]).length === ncpu, 'per-CPU values come as one view per CPU');
  t.equal(deleteBatch(map, keys), n);
  t.equal(map.nextKey(), undefined);
  t.end();
});

t.test('ARRAY and PERCPU_ARRAY: batch lookup/update; deletes are refused by the kernel', (t) => {
  using arr = BpfMap.create({ type: MapType.ARRAY, keySize: 4, valueSize: 8, maxEntries: 300 });
  const { keys, values } = records(300);
  t.equal(updateBatch(arr, keys, values), 300);
  const all = readAll(arr);
  t.equal(all.count, 300, 'readAll of an array: every index');
  let ok = 0;
  for (let i = 0; i < 300; i++) if (all.value(i).readBigUInt64LE(0) === BigInt(all.key(i).readUInt32LE(0)) * 3n + 1n) ok++;
  t.equal(ok, 300);
  t.same([...lookupBatch(arr, { batchSize: 300 })].length, 300, 'batchSize = max_entries: ends with an empty call');
  t.same([...lookupBatch(arr, { batchSize: 7 })].map(([k]) => k.readUInt32LE(0)), [...Array(300).keys()]);
  t.throws(() => deleteBatch(arr, keys.subarray(0, 4)), 'arrays cannot delete, batch or not');

  using pa = BpfMap.create({ type: MapType.PERCPU_ARRAY, keySize: 4, valueSize: 8, maxEntries: 16 });
  const stride = batchValueStride(pa);
  const pv = Buffer.alloc(16 * stride, 0xab);
  t.equal(updateBatch(pa, records(16).keys, pv), 16);
  const pAll = readAll(pa);
  t.equal(pAll.count, 16);
  t.equal(pAll.values.toString('hex'), pv.toString('hex'));
  t.end();
});

t.test('fallback to per-key calls for map types that refuse batches, remembered per type', (t) => {
  // LPM_TRIE supports lookup/update/delete batches but not lookup-and-delete.
  using trie = BpfMap.create({ type: MapType.LPM_TRIE, keySize: 8, valueSize: 8, maxEntries: 64, flags: 1 /* BPF_F_NO_PREALLOC */ });
  const tk = Buffer.alloc(8 * 20);
  const tv = Buffer.alloc(8 * 20);
  for (let i = 0; i < 20; i++) {
    tk.writeUInt32LE(32, i * 8); // prefix length
    tk.writeUInt32BE(0x0a000000 + i, i * 8 + 4);
    tv.writeBigUInt64LE(BigInt(i), i * 8);
  }
  t.equal(updateBatch(trie, tk, tv), 20);
  t.equal(readAll(trie).count, 20);
  t.notOk(refusedBatchOps(MapType.LPM_TRIE).includes('lookupAndDelete'));
  // The kernel refuses LPM_TRIE lookup-and-delete batches and single lookup-and-deletes alike:
  // the fallback's per-key error surfaces, the refusal is remembered.
  t.throws(() => readAll(trie, { andDelete: true }));
  t.ok(refusedBatchOps(MapType.LPM_TRIE).includes('lookupAndDelete'), 'refusal remembered');

  // A refused lookup on an empty STACK_TRACE falls back to per-key iteration.
  using st = BpfMap.create({ type: MapType.STACK_TRACE, keySize: 4, valueSize: 64, maxEntries: 16 });
  t.equal(readAll(st).count, 0, 'STACK_TRACE: refused batch lookup, per-key iteration');
  t.ok(refusedBatchOps(MapType.STACK_TRACE).includes('lookup'));
  t.equal([...lookupBatch(st)].length, 0, 'second time straight to per-key');
  t.end();
});

t.test('fallback with data: DEVMAP_HASH refuses every batch operation, per-key calls give the same results', (t) => {
  using dm = BpfMap.create({ type: MapType.DEVMAP_HASH, keySize: 4, valueSize: 4, maxEntries: 64 });
  const n = 40;
  const keys = Buffer.alloc(n * 4);
  const values = Buffer.alloc(n * 4);
  for (let i = 0; i < n; i++) {
    keys.writeUInt32LE(1000 + i, i * 4);
    values.writeUInt32LE(1, i * 4); // ifindex 1: lo
  }
  t.equal(updateBatch(dm, keys, values), n, 'update: refused batch, done per key');
  t.ok(refusedBatchOps(MapType.DEVMAP_HASH).includes('update'));
  const all = readAll(dm);
  t.equal(all.count, n);
  t.ok(refusedBatchOps(MapType.DEVMAP_HASH).includes('lookup'));
  const perKey = perKeyContents(dm);
  t.ok([...all].every(([k, v]) => perKey.get(k.readUInt32LE(0)) === (v as Buffer).toString('hex')), 'same as per-key lookups');
  t.same([...lookupBatch(dm, { batchSize: 7 })].map(([k]) => k.readUInt32LE(0)).sort(), [...perKey.keys()].sort(), 'chunks of 7 per key');
  t.equal(deleteBatch(dm, keys.subarray(0, 40)), 10);
  t.ok(refusedBatchOps(MapType.DEVMAP_HASH).includes('delete'));
  const e = t.throws(() => deleteBatch(dm, Buffer.concat([keys.subarray(40, 44), keys.subarray(0, 4)]))) as BatchError; // 1010, then 1000 (gone)
  t.equal(e.errno, 'ENOENT', 'a missing key stops the per-key fallback like the batch');
  t.equal(e.processed, 1);
  t.equal(readAll(dm).count, n - 11);
  t.end();
});

t.test('map-in-map: ARRAY_OF_MAPS batch lookup returns map ids; its delete batch is refused', (t) => {
  using inner = BpfMap.create({ type: MapType.ARRAY, keySize: 4, valueSize: 4, maxEntries: 1 });
  using aom = BpfMap.create({ type: MapType.ARRAY_OF_MAPS, keySize: 4, valueSize: 4, maxEntries: 4, innerMap: inner });
  const fdv = Buffer.alloc(4);
  fdv.writeUInt32LE(inner.fd);
  aom.update(2, fdv);
  const all = readAll(aom);
  t.equal(all.count, 1);
  t.equal(all.key(0).readUInt32LE(0), 2);
  t.equal(all.value(0).readUInt32LE(0), inner.info().id, 'map-in-map values read as map ids');
  t.equal(deleteBatch(aom, all.keys), 1, 'refused as a batch, clears the slot per key');
  t.ok(refusedBatchOps(MapType.ARRAY_OF_MAPS).includes('delete'), 'ARRAY_OF_MAPS delete batch refused and remembered');
  t.equal(readAll(aom).count, 0);
  t.end();
});

t.test('sizes are checked before any system call', (t) => {
  using map = BpfMap.create({ type: MapType.HASH, keySize: 4, valueSize: 8, maxEntries: 16 });
  t.throws(() => updateBatch(map, Buffer.alloc(6), Buffer.alloc(8)), TypeError, 'keys not a multiple of key size');
  t.throws(() => updateBatch(map, Buffer.alloc(8), Buffer.alloc(8)), TypeError, 'values for 1 of 2 keys');
  t.throws(() => updateBatch(map, Buffer.alloc(0), Buffer.alloc(0)), TypeError, 'empty');
  t.throws(() => deleteBatch(map, Buffer.alloc(3)), TypeError);
  t.throws(() => [...lookupBatch(map, { batchSize: 0 })], TypeError);
  t.throws(() => [...lookupBatch(map, { batchSize: 1.5 })], TypeError);
  t.throws(() => updateBatch(map, 'abcd' as unknown as Buffer, Buffer.alloc(8)), TypeError);
  // Low level: buffers must hold exactly `count` records, tokens must be big enough.
  t.throws(() => mapLookupBatch(map.fd, null, Buffer.alloc(4), Buffer.alloc(10), Buffer.alloc(16), 2), TypeError);
  t.throws(() => mapLookupBatch(map.fd, null, Buffer.alloc(2), Buffer.alloc(8), Buffer.alloc(16), 2), TypeError);
  t.throws(() => mapUpdateBatch(map.fd, Buffer.alloc(8), Buffer.alloc(16), 0), TypeError);
  t.throws(() => mapDeleteBatch(map.fd, Buffer.alloc(8), 3), TypeError);
  t.equal(batchTokenSize(4), 4);
  t.equal(batchTokenSize(2), 4, 'hash maps use a u32 bucket token whatever the key size');
  t.equal(batchTokenSize(16), 16, 'arrays use a key');
  t.equal(map.nextKey(), undefined, 'nothing reached the map');
  t.end();
});

t.test('low-level wrappers: tokens, done, processed counts, refusals', (t) => {
  using map = BpfMap.create({ type: MapType.HASH, keySize: 4, valueSize: 8, maxEntries: 64 });
  const { keys, values } = records(40);
  t.equal(mapUpdateBatch(map.fd, keys, values, 40), 40);
  const tok = Buffer.alloc(4);
  let got = 0;
  let inTok: Buffer | null = null;
  for (let i = 0; i < 100; i++) {
    const r = mapLookupBatch(map.fd, inTok, tok, Buffer.alloc(16 * 4), Buffer.alloc(16 * 8), 16);
    got += r.count;
    t.equal(r.nextToken, tok);
    if (r.done) break;
    inTok = r.nextToken;
  }
  t.equal(got, 40);
  const e = t.throws(() => mapLookupBatch(map.fd, null, tok, Buffer.alloc(16), Buffer.alloc(32), 4, 0, 1 /* flags must be 0 */)) as BatchError;
  t.equal(e.errno, 'EINVAL');
  t.equal(e.processed, 0);
  t.equal(e.refused, false, 'EINVAL from a flag we set is not a refusal');
  using pa = BpfMap.create({ type: MapType.PROG_ARRAY, keySize: 4, valueSize: 4, maxEntries: 4 });
  const r = t.throws(() => mapLookupBatch(pa.fd, null, Buffer.alloc(4), Buffer.alloc(16), Buffer.alloc(16), 4)) as BatchError;
  t.equal(r.errnoCode, ENOTSUPP);
  t.equal(r.refused, true);
  t.equal(r.processed, 0);
  t.end();
});
