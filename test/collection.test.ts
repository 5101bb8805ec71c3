import t from 'tap';
import { readFileSync } from 'node:fs';
import {
  loadCollectionSpec, setVariable, getVariable, Collection, VerifierError, MapType, ProgramType, NotSupportedError,
  attachTracepoint, autoAttach, ownedFdCount,
} from '../src/index.js';
import { rawSyscall, NR } from '../src/syscall/native.js';
import { ringbufSize } from '../src/collection/collection.js';
import { obj, fdCount, rssKiB } from './helpers/env.js';

const u64 = (b: Buffer | undefined) => b!.readBigUInt64LE(0);
const u32 = (b: Buffer | undefined) => b!.readUInt32LE(0);

t.test('loader.o: maps, globals, bpf-to-bpf call and bpf_loop callback behave as asserted', (t) => {
  const spec = loadCollectionSpec(obj('loader.o'));
  t.same(Object.keys(spec.programs).sort(), ['run_all', 'xdp_count']);
  setVariable(spec, 'multiplier', 3);
  setVariable(spec, 'magic', 5n);
  const coll = new Collection(spec);
  t.teardown(() => coll.close());
  const { counts, slots, percpu } = coll.maps;
  t.equal(counts.type, MapType.HASH);
  t.equal(slots.type, MapType.ARRAY);
  t.equal(percpu.type, MapType.PERCPU_ARRAY);
  t.equal(coll.programs.run_all.type, ProgramType.SYSCALL);

  const r = coll.programs.run_all.run();
  t.equal(r.retval, 0);
  // add_mul(magic) = magic * multiplier + 1, with .rodata set from the test before load
  t.equal(u64(coll.readVariable('result')), 16n, '.bss result = 5*3+1 (rodata set before load, bpf-to-bpf call)');
  t.equal(u32(coll.readVariable('loop_sum')), 45, 'bpf_loop callback summed 0..9');
  t.equal(u32(coll.readVariable('loop_iters')), 10);
  t.equal(u64(counts.lookup(1)), 1n, 'hash map counts[1]');
  t.equal(u64(slots.lookup(2)), 21n, 'array slots[2] = data_init (7) * multiplier (3)');
  t.equal(u64(slots.lookup(3)), 42n, 'global subprogram global_helper(41)');
  const pc = percpu.lookupPerCpu(0)!;
  t.equal(pc.reduce((s, b) => s + b.readBigUInt64LE(0), 0n), 1n, 'per-CPU array: one increment across CPUs');

  coll.programs.run_all.run();
  t.equal(u64(counts.lookup(1)), 2n);
  t.equal(u32(coll.readVariable('loop_sum')), 90);

  // .data is writable at run time through the map
  const b = Buffer.alloc(4);
  b.writeUInt32LE(10);
  coll.writeVariable('data_init', b);
  coll.programs.run_all.run();
  t.equal(u64(slots.lookup(2)), 30n, '.data written after load is seen by the program');
  t.throws(() => coll.writeVariable('multiplier', b), /frozen after load/, '.rodata is frozen');

  const info = coll.programs.run_all.info();
  t.ok(info.id > 0, 'program id');
  t.match(info.tag, /^[0-9a-f]{16}$/, 'program tag');
  t.ok(info.xlatedInsns > 10, `${info.xlatedInsns} translated instructions`);
  t.equal(info.name, 'run_all');
  const x = coll.programs.run_all.xlated();
  t.equal(x.length, info.xlatedInsns * 8, 'xlated() returns the translated instructions');
  const mapIds = Object.values(coll.maps).map((m) => m.info().id);
  t.ok(info.mapIds.every((id) => mapIds.includes(id)) && info.mapIds.length >= 4, 'program info lists the maps it uses');
  t.equal(coll.maps.counts.info().name, 'counts');
  t.equal(coll.maps['.rodata'].info().name, 'loader.rodata', 'global data maps get libbpf-style kernel names');

  const xdp = coll.programs.xdp_count.run({ data: Buffer.alloc(64) });
  t.equal(xdp.retval, 2, 'XDP_PASS');
  t.equal(u64(slots.lookup(0)), 64n);
  t.end();
});

t.test('key/value sizes are refused before the syscall', (t) => {
  const coll = new Collection(loadCollectionSpec(obj('loader.o')), { programs: [] });
  t.teardown(() => coll.close());
  const { counts, percpu } = coll.maps;
  t.throws(() => counts.lookup(Buffer.alloc(3)), TypeError);
  t.throws(() => counts.update(1, Buffer.alloc(4)), TypeError);
  t.throws(() => counts.update(1, new DataView(new ArrayBuffer(8)) as unknown as Buffer), TypeError);
  t.throws(() => counts.lookup('x' as unknown as number), TypeError);
  t.throws(() => counts.lookup(-1), TypeError);
  t.throws(() => percpu.update(0, [Buffer.alloc(8)].concat(Array(400).fill(Buffer.alloc(8)))), TypeError);
  counts.update(7, Buffer.from([1, 0, 0, 0, 0, 0, 0, 0]));
  t.same([...counts.keys()].map((k) => k.readUInt32LE(0)), [7]);
  t.end();
});

t.test('hello.o: a tracepoint program fires on a syscall the test makes', (t) => {
  const spec = loadCollectionSpec(obj('hello.o'));
  setVariable(spec, 'target_tgid', process.pid);
  const coll = new Collection(spec);
  t.teardown(() => coll.close());
  const links = Object.entries(coll.programs).map(([n, p]) => autoAttach(p, spec.programs[n]));
  t.same(links.map((l) => l.kind).sort(), ['raw_tracepoint', 'tp_btf', 'tracepoint']);
  const key = Buffer.alloc(4);
  key.writeUInt32LE(process.pid);
  const read = () => [u64(coll.readVariable('total')), u64(coll.readVariable('raw_total')), u64(coll.readVariable('btf_total')), u64(coll.maps.calls.lookup(key) ?? Buffer.alloc(8))];
  const before = read();
  // process.pid is cached by Node: make real getpid() calls (only getpid counts; the reads above don't).
  for (let i = 0; i < 5; i++) rawSyscall(NR.getpid);
  const after = read();
  t.equal(after[0] - before[0], 5n, 'tp/syscalls/sys_enter_getpid fired 5 times');
  t.equal(after[1] - before[1], 5n, 'raw_tp/sys_enter saw them');
  t.equal(after[2] - before[2], 5n, 'tp_btf/sys_enter saw them');
  t.equal(after[3] - before[3], 5n, 'per-tgid hash map counted them');
  for (const l of links) l.close();
  rawSyscall(NR.getpid);
  t.equal(u64(coll.readVariable('total')), after[0], 'detached: no more events');
  t.end();
});

t.test('tracepoint attach by name, and a missing tracepoint is a clear error', (t) => {
  const spec = loadCollectionSpec(obj('hello.o'));
  const coll = new Collection(spec, { programs: ['on_getpid'] });
  t.teardown(() => coll.close());
  const l = attachTracepoint(coll.programs.on_getpid, 'syscalls', 'sys_enter_getpid');
  l.close();
  l.close();
  t.throws(() => attachTracepoint(coll.programs.on_getpid, 'syscalls', 'no_such_tp'), /tracepoint syscalls\/no_such_tp/);
  t.end();
});

t.test('bad.o: VerifierError names the program, carries the log and the source line', (t) => {
  const spec = loadCollectionSpec(obj('bad.o'));
  const before = fdCount();
  try {
    new Collection(spec);
    t.fail('bad.o must not load');
  } catch (e) {
    t.ok(e instanceof VerifierError, 'VerifierError');
    const v = e as VerifierError;
    t.equal(v.program, 'bad_access');
    t.match(v.message, /program "bad_access": the verifier rejected it/);
    t.match(v.log, /invalid mem access/);
    t.match(v.message, /invalid mem access/, 'message ends with the relevant log lines');
    const src = readFileSync(obj('bad.c').replace(/\.c$/, '.c'), 'utf8').split('\n');
    const line = src.findIndex((l) => l.includes('VERIFIER_FAILS_HERE')) + 1;
    t.equal(v.source?.line, line, `points at bad.c:${line}`);
    t.match(v.message, new RegExp(`bad\\.c:${line}`));
  }
  t.equal(fdCount(), before, 'a failed load leaks no fd');
  t.end();
});

t.test('legacy maps section and map-in-map / prog-array initial values', (t) => {
  const legacy = new Collection(loadCollectionSpec(obj('legacy.o')));
  t.equal(legacy.maps.legacy_hash.type, MapType.HASH);
  t.equal(legacy.maps.legacy_hash.valueSize, 8);
  legacy.close();
  const mim = new Collection(loadCollectionSpec(obj('mapinmap.o')));
  t.teardown(() => mim.close());
  t.equal(mim.maps.outer.type, MapType.ARRAY_OF_MAPS);
  t.ok(mim.maps.outer.lookup(0), 'outer[0] holds inner_a');
  t.ok(mim.maps.jmp.lookup(1), 'jmp[1] holds tail_target');
  t.equal(mim.programs.xdp_entry.run({ data: Buffer.alloc(64) }).retval, 1, 'tail call reached tail_target (XDP_DROP)');
  t.end();
});

t.test('1,000 load/close cycles leave fd count and RSS where they started', (t) => {
  const spec = loadCollectionSpec(obj('loader.o'));
  const cycle = () => {
    const c = new Collection(spec);
    c.programs.run_all.run();
    c.close();
  };
  for (let i = 0; i < 50; i++) cycle(); // warm up JIT, arena, caches
  global.gc?.();
  const fds = fdCount();
  const owned = ownedFdCount();
  const rss = rssKiB();
  for (let i = 0; i < 1000; i++) cycle();
  global.gc?.();
  t.equal(fdCount(), fds, 'fd count unchanged');
  t.equal(ownedFdCount(), owned, 'owned fd count unchanged');
  const grew = rssKiB() - rss;
  t.ok(grew < 32 * 1024, `RSS grew ${grew} KiB over 1,000 cycles (bound 32 MiB)`);
  t.end();
});

t.test('programs tsbpf cannot load are refused up front with the reason', (t) => {
  const spec = loadCollectionSpec(obj('sections.o'));
  t.throws(() => new Collection(spec, { programs: ['struct_ops_dummy_op'] }), NotSupportedError, 'struct_ops');
  const ldr = loadCollectionSpec(obj('loader.o'));
  ldr.programs.xdp_count.type = 0;
  t.throws(() => new Collection(ldr, { programs: ['xdp_count'] }), /section "xdp" does not name a program type/);
  t.end();
});

t.test('ring buffer sizes are rounded up to a power-of-two number of pages, like libbpf', (t) => {
  t.equal(ringbufSize(1000), 4096);
  t.equal(ringbufSize(4096), 4096);
  t.equal(ringbufSize(4097), 8192);
  t.equal(ringbufSize(3 * 4096), 4 * 4096);
  t.equal(ringbufSize(256 * 1024), 256 * 1024);
  t.end();
});

t.test('maps with BTF types speak JS values: get/set/decodedEntries', (t) => {
  const ldr = new Collection(loadCollectionSpec(obj('loader.o')), { programs: [] });
  t.teardown(() => ldr.close());
  ldr.maps.counts.set(5, 7n);
  t.equal(ldr.maps.counts.get(5), 7n, 'u64 values are bigint');
  t.equal(ldr.maps.counts.get(6), undefined);
  t.throws(() => ldr.maps.counts.set(5, 7), TypeError, 'a number for a u64 is refused');
  ldr.maps.percpu.set(0, 3n);
  t.same(ldr.maps.percpu.get(0), Array(ldr.maps.percpu.lookupPerCpu(0)!.length).fill(3n), 'per-CPU: one decoded value per CPU');

  const rq = new Collection(loadCollectionSpec(obj('runqlat.o')), { programs: [] });
  t.teardown(() => rq.close());
  const slots = Array(26).fill(0);
  slots[3] = 9;
  rq.maps.hists.set(42, { slots: [0, 0, 0, 9], comm: 'bash' });
  t.same(rq.maps.hists.get(42), { slots, comm: 'bash' }, 'struct hist as a JS object, char[] as a string');
  t.same([...rq.maps.hists.decodedEntries()], [[42, { slots, comm: 'bash' }]]);
  t.throws(() => rq.maps.hists.set(1, { slots: [2 ** 32], comm: '' }), /slots\[0\]: 4294967296 does not fit/);
  t.throws(() => rq.maps.hists.set(1, { comm: 'x'.repeat(16) }), TypeError, 'a string that leaves no room for NUL');
  t.end();
});
