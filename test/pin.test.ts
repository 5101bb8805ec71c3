import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { loadCollectionSpec, Collection, BpfMap, MapType, loadPinnedMap } from '../src/index.js';
import { ROOT, obj, childEnv, CHILD_TIMEOUT_MS } from './helpers/env.js';

const dir = `/sys/fs/bpf/tsbpf-test-${process.pid}`;
const nodeArgs = process.execArgv.filter((a) => a.startsWith('--import') || a === '--enable-source-maps');

t.before(() => {
  // Collection mounts /sys/fs/bpf when it is missing; the test only needs its own directory in it.
  new Collection(loadCollectionSpec(obj('pinned.o')), { programs: [], pinPath: '/sys/fs/bpf' }).close();
  rmSync('/sys/fs/bpf/tsbpf_pinned_counts', { force: true });
  mkdirSync(dir, { recursive: true });
});
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

t.test('a pinned map survives the process and is reused by a second load', (t) => {
  // First load in a child process: creates, pins, bumps the counter once, exits.
  const script = join(ROOT, 'test', 'helpers', 'pin-child.ts');
  const r = spawnSync(process.execPath, [...nodeArgs, script, obj('pinned.o'), dir, 'bump'], { encoding: 'utf8', timeout: CHILD_TIMEOUT_MS, env: childEnv });
  t.equal(r.status, 0, r.stderr);
  const pin = join(dir, 'tsbpf_pinned_counts');
  t.ok(existsSync(pin), 'the pin outlives the process that made it');

  const coll = new Collection(loadCollectionSpec(obj('pinned.o')), { pinPath: dir });
  t.teardown(() => coll.close());
  t.equal(coll.maps.tsbpf_pinned_counts.lookup(1)?.readBigUInt64LE(0), 1n, 'the second load sees the first process\'s value');
  coll.programs.bump.run();
  const again = loadPinnedMap(pin);
  t.equal(again.lookup(1)?.readBigUInt64LE(0), 2n, 'both use one kernel map');
  t.equal(again.info().id, coll.maps.tsbpf_pinned_counts.info().id);
  again.close();
  t.end();
});

t.test('an incompatible re-definition names the mismatch', (t) => {
  t.throws(
    () => new Collection(loadCollectionSpec(obj('pinned_v2.o')), { pinPath: dir }),
    /map "tsbpf_pinned_counts": the map pinned at .*tsbpf_pinned_counts is incompatible: value size 8 \(want 4\)/,
  );
  t.end();
});

t.test('pins outside a bpffs are refused before any syscall', (t) => {
  const m = BpfMap.create({ type: MapType.ARRAY, keySize: 4, valueSize: 4, maxEntries: 1 });
  t.teardown(() => m.close());
  t.throws(() => m.pin('/tmp/not-bpffs-pin'), /is not in a BPF filesystem/);
  t.throws(() => m.pin('relative/pin'), /must be absolute/);
  t.throws(() => new Collection(loadCollectionSpec(obj('pinned.o')), { pinPath: '/tmp' }), /is not in a BPF filesystem/);
  const p = join(dir, 'plain');
  m.pin(p);
  t.ok(existsSync(p));
  t.ok(m.unpin(p));
  t.notOk(m.unpin(p), 'second unpin: nothing there');
  t.end();
});
