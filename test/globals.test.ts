import t from 'tap';
import { loadCollectionSpec, setVariable, Collection, autoAttach, ClosedError } from '../src/index.js';
import { rawSyscall, NR } from '../src/syscall/native.js';
import { readFileSync } from 'node:fs';
import { obj, fdCount, mappingCount } from './helpers/env.js';

const bpfMappings = () => readFileSync('/proc/self/maps', 'utf8').split('\n').filter((l) => l.includes('bpf-map')).length;

t.test('a .bss counter bumped by a program is read live through the mmap; JS writes reach the program', (t) => {
  const spec = loadCollectionSpec(obj('hello.o'));
  setVariable(spec, 'target_tgid', process.pid);
  const coll = new Collection(spec, { programs: ['on_getpid'] });
  t.teardown(() => coll.close());
  const total = coll.variables.total;
  t.ok(total.live, '.bss is mmapped (BPF_F_MMAPABLE)');
  t.equal(total.value, 0n);
  const link = autoAttach(coll.programs.on_getpid, spec.programs.on_getpid);
  for (let i = 0; i < 3; i++) rawSyscall(NR.getpid);
  t.equal(total.value, 3n, 'read through the mapping, no syscall');
  total.set(100n);
  rawSyscall(NR.getpid);
  t.equal(total.value, 101n, 'the program incremented the value JS wrote');
  link.close();
  t.equal(coll.variables.target_tgid.value, process.pid, '.rodata is readable live');
  t.ok(coll.variables.target_tgid.readonly);
  t.throws(() => coll.variables.target_tgid.set(1), /read-only/);
  t.end();
});

t.test('.data written from JS is seen by the program; readInto does not allocate', (t) => {
  const coll = new Collection(loadCollectionSpec(obj('loader.o')));
  t.teardown(() => coll.close());
  coll.variables.data_init.set(11);
  coll.programs.run_all.run();
  t.equal(coll.maps.slots.lookup(2)!.readBigUInt64LE(0), 11n);
  t.equal(coll.variables.loop_sum.value, 45);
  const into = Buffer.alloc(8);
  coll.variables.result.readInto(into);
  t.equal(into.readBigUInt64LE(0), 1n);
  t.throws(() => coll.variables.data_init.set(2 ** 40), RangeError, 'values that do not fit are refused');
  t.end();
});

t.test('a variable used after close() throws instead of touching unmapped memory', (t) => {
  const coll = new Collection(loadCollectionSpec(obj('loader.o')), { programs: [] });
  const v = coll.variables.result;
  coll.close();
  t.throws(() => v.value, ClosedError);
  t.throws(() => v.get(), ClosedError);
  t.throws(() => v.set(1n), ClosedError);
  t.end();
});

t.test('load/close cycles leave no mapping and no fd behind', (t) => {
  const spec = loadCollectionSpec(obj('loader.o'));
  for (let i = 0; i < 20; i++) new Collection(spec, { programs: [] }).close();
  const maps = mappingCount();
  const bpf = bpfMappings();
  const fds = fdCount();
  const probe = new Collection(spec, { programs: [] });
  t.equal(bpfMappings(), bpf + 3, '.rodata, .data and .bss are mapped while loaded');
  probe.close();
  for (let i = 0; i < 200; i++) {
    const c = new Collection(spec, { programs: [] });
    c.variables.result.value;
    c.close();
  }
  t.equal(bpfMappings(), bpf, 'no BPF map mapping left in /proc/self/maps');
  t.ok(mappingCount() - maps < 64, `all mappings: ${maps} → ${mappingCount()} (V8's own heap may grow a little)`);
  t.equal(fdCount(), fds, 'fd count unchanged');
  t.end();
});
