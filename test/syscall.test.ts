import t from 'tap';
import { readdirSync, writeSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { ROOT, childEnv, CHILD_TIMEOUT_MS } from './helpers/env.js';
import {
  mapCreate, mapUpdate, mapLookup, mapDelete, mapNextKey, BpfError, BPF_MAP_TYPE, FD, ownedFdCount,
  perfEventOpen, PERF_TYPE, PERF_COUNT_SW, mmap, PROT_READ, ensureTracefs, possibleCpus, parseCpuList, eventfd,
  epollCreate, epollCtl, epollWait, EPOLLIN, SyscallError,
} from '../src/syscall/index.js';
import { ClosedError } from '../src/errors.js';

const fdCount = () => readdirSync('/proc/self/fd').length;

t.test('map create/update/lookup/delete/next key through the native arena', (t) => {
  const fd = mapCreate({ mapType: BPF_MAP_TYPE.HASH, keySize: 4, valueSize: 8, maxEntries: 16, name: 'tsbpf_t' });
  t.ok(fd.value > 0, 'fd is never 0');
  const key = Buffer.alloc(4);
  for (let i = 0; i < 5; i++) {
    key.writeUInt32LE(i);
    const v = Buffer.alloc(8);
    v.writeBigUInt64LE(BigInt(i * 100));
    mapUpdate(fd.value, key, v, 0);
  }
  const out = Buffer.alloc(8);
  key.writeUInt32LE(3);
  t.ok(mapLookup(fd.value, key, out, 0, 8));
  t.equal(out.readBigUInt64LE(0), 300n);
  key.writeUInt32LE(42);
  t.notOk(mapLookup(fd.value, key, out, 0, 8), 'missing key → false');
  const keys: number[] = [];
  let prev: Buffer | null = null;
  const next = Buffer.alloc(4);
  while (mapNextKey(fd.value, prev, next, 4)) {
    keys.push(next.readUInt32LE(0));
    prev = Buffer.from(next);
  }
  t.same(keys.sort(), [0, 1, 2, 3, 4]);
  key.writeUInt32LE(2);
  t.ok(mapDelete(fd.value, key));
  t.notOk(mapDelete(fd.value, key));
  const v = Buffer.alloc(8);
  key.writeUInt32LE(1);
  t.throws(() => mapUpdate(fd.value, key, v, 1 /* NOEXIST */), { name: 'BpfError', errno: 'EEXIST' });
  fd.close();
  fd.close();
  t.throws(() => fd.value, ClosedError);
  t.end();
});

t.test('BpfError names the command, errno and a hint', (t) => {
  try {
    mapCreate({ mapType: 9999, keySize: 4, valueSize: 4, maxEntries: 1 }, 'map "x"');
    t.fail('should throw');
  } catch (e) {
    t.ok(e instanceof BpfError);
    const err = e as BpfError;
    t.equal(err.cmd, 'MAP_CREATE');
    t.equal(err.errno, 'EINVAL');
    t.match(err.message, /map "x": bpf\(MAP_CREATE\) failed: EINVAL/);
  }
  t.end();
});

t.test('fds are released by close() and counted', (t) => {
  const before = fdCount();
  const owned = ownedFdCount();
  const fds: FD[] = [];
  for (let i = 0; i < 50; i++) fds.push(mapCreate({ mapType: BPF_MAP_TYPE.ARRAY, keySize: 4, valueSize: 4, maxEntries: 1 }));
  t.equal(fdCount(), before + 50);
  t.equal(ownedFdCount(), owned + 50);
  for (const f of fds) f.close();
  t.equal(fdCount(), before);
  t.equal(ownedFdCount(), owned);
  t.end();
});

t.test('perf_event_open + mmap of a BPF_OUTPUT ring', (t) => {
  const cpu = possibleCpus()[0];
  const fd = perfEventOpen({ type: PERF_TYPE.SOFTWARE, config: PERF_COUNT_SW.BPF_OUTPUT, sample_type: 1 << 10, wakeup_events: 1 }, -1, cpu);
  const m = mmap(fd.value, 4096 * 3, PROT_READ);
  t.equal(m.view.length, 4096 * 3);
  m.unmap();
  t.throws(() => m.view, SyscallError, 'view after unmap throws instead of crashing');
  fd.close();
  t.end();
});

t.test('misc', (t) => {
  t.same(parseCpuList('0-3,5,7-8\n'), [0, 1, 2, 3, 5, 7, 8]);
  t.ok(possibleCpus().length >= 1);
  t.match(ensureTracefs(), /tracing$/);
  const e = eventfd();
  const ep = epollCreate();
  t.ok(e.value > 0 && ep.value > 0);
  epollCtl(ep.value, 1 /* ADD */, e.value, EPOLLIN, 0x1234_5678_9abcn);
  t.same(epollWait(ep.value, 4, 0), [], 'nothing ready');
  const one = Buffer.alloc(8);
  one.writeBigUInt64LE(1n);
  writeSync(e.value, one);
  t.same(epollWait(ep.value, 4, 0), [0x1234_5678_9abcn], 'eventfd ready, user data round-trips');
  e.close();
  ep.close();
  t.end();
});

t.test('an fd the kernel numbers 0 is moved: tsbpf never holds fd 0', (t) => {
  const nodeArgs = process.execArgv.filter((a) => a.startsWith('--import') || a === '--enable-source-maps');
  const r = spawnSync(process.execPath, [...nodeArgs, join(ROOT, 'test', 'helpers', 'fd0-child.ts')], { encoding: 'utf8', timeout: CHILD_TIMEOUT_MS, env: childEnv });
  t.equal(r.status, 0, r.stderr);
  const { fd } = JSON.parse(r.stdout) as { fd: number };
  t.ok(fd > 0, `map fd is ${fd}, not 0`);
  t.end();
});
