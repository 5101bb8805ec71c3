import t from 'tap';
import { readFileSync } from 'node:fs';
import {
  loadCollectionSpec, setVariable, Collection, attachKprobe, attachKprobeMulti, attachKsyscall, ksyscallName, kprobeSupport,
  autoAttachTracing, autoAttachTracingSupport, type Link,
} from '../src/index.js';
import { rawSyscall, NR, ensureTracefs } from '../src/syscall/index.js';
import { obj, fdCount } from './helpers/env.js';
import { skipReason } from './helpers/features.js';

const spec = loadCollectionSpec(obj('tracing_test.o'));
setVariable(spec, 'target_tgid', process.pid);
const getpid = (n = 1) => { for (let i = 0; i < n; i++) rawSyscall(NR.getpid); };
const kprobes = skipReason('kprobes');
const multi = skipReason('kprobeMulti');
const v = (coll: Collection, name: string) => BigInt(coll.variables[name].value as bigint);

t.test('ksyscallName names the arch syscall entry point listed in /proc/kallsyms', (t) => {
  const name = ksyscallName('getpid');
  const prefix = { x64: '__x64_sys_', arm64: '__arm64_sys_' }[process.arch as string];
  if (prefix) t.equal(name, `${prefix}getpid`);
  t.match(readFileSync('/proc/kallsyms', 'utf8'), new RegExp(` [tT] ${name}$`, 'm'), 'the kernel has that function');
  t.throws(() => ksyscallName('getpid; rm'), /invalid syscall name/);
  t.end();
});

t.test('auto-attach support names the missing kprobes, or none', (t) => {
  const why = kprobeSupport();
  t.equal(autoAttachTracingSupport(spec.programs.on_ksyscall), why);
  t.match(autoAttachTracingSupport(spec.programs.on_kprobe), /names no kernel function/, 'kprobe without a function');
  t.equal(autoAttachTracingSupport(spec.programs.on_kprobe_multi), 'section "?kprobe.multi" names no functions (want kprobe.multi/<glob>)');
  t.equal(autoAttachTracingSupport(spec.programs.raw_on_cpu), null, 'raw_tp is not this module\'s');
  t.end();
});

t.test('a kprobe and a kretprobe on the getpid syscall fire for each call', { skip: kprobes }, (t) => {
  const before = fdCount();
  {
    using coll = new Collection(spec, { programs: ['on_kprobe', 'on_kretprobe'] });
    const sym = ksyscallName('getpid');
    using kp = attachKprobe(coll.programs.on_kprobe, { symbol: sym, cookie: 0xc00c1en });
    using krp = attachKprobe(coll.programs.on_kretprobe, { symbol: sym, retprobe: true });
    t.equal(kp.kind, 'kprobe');
    t.equal(krp.kind, 'kretprobe');
    t.ok(kp.isBpfLink, 'a perf_event bpf_link');
    getpid(5);
    t.equal(v(coll, 'kprobe_hits'), 5n);
    t.equal(v(coll, 'kretprobe_hits'), 5n);
    t.equal(v(coll, 'kprobe_cookie'), 0xc00c1en, 'bpf_get_attach_cookie() sees the cookie');
    kp.close();
    krp.close();
    getpid(2);
    t.equal(v(coll, 'kprobe_hits'), 5n, 'detached on close');
  }
  t.equal(fdCount(), before);
  t.end();
});

t.test('maxActive uses tracefs kprobe_events; the event is removed on close', { skip: kprobes }, (t) => {
  using coll = new Collection(spec, { programs: ['on_kretprobe'] });
  const events = `${ensureTracefs()}/kprobe_events`;
  const ours = () => readFileSync(events, 'utf8').split('\n').filter((l) => l.includes(`tsbpf_${process.pid}_`));
  const link = attachKprobe(coll.programs.on_kretprobe, { symbol: ksyscallName('getpid'), retprobe: true, maxActive: 8 });
  t.equal(ours().length, 1, `kprobe_events has our entry: ${ours()[0]}`);
  getpid(3);
  t.equal(v(coll, 'kretprobe_hits'), 3n);
  link.close();
  t.same(ours(), [], 'removed with the link');
  t.end();
});

t.test('ksyscall sections auto-attach to the syscall', { skip: kprobes }, (t) => {
  using coll = new Collection(spec, { programs: ['on_ksyscall'] });
  const l = autoAttachTracing(coll.programs.on_ksyscall, spec.programs.on_ksyscall) as Link;
  getpid(4);
  t.equal(v(coll, 'ksyscall_hits'), 4n);
  l.close();
  using l2 = attachKsyscall(coll.programs.on_ksyscall, 'getpid');
  getpid(1);
  t.equal(v(coll, 'ksyscall_hits'), 5n);
  t.end();
});

t.test('a kprobe on a function that does not exist is refused with its name', { skip: kprobes }, (t) => {
  using coll = new Collection(spec, { programs: ['on_kprobe'] });
  t.throws(() => attachKprobe(coll.programs.on_kprobe, { symbol: 'tsbpf_no_such_function' }), /cannot probe kernel function "tsbpf_no_such_function"/);
  t.throws(() => attachKprobe(coll.programs.on_kprobe, { symbol: 'x; rm -rf' }), /invalid kernel symbol/);
  t.end();
});

t.test('kprobe.multi: a list of functions, a glob, cookies, return probes', { skip: multi }, (t) => {
  using coll = new Collection(spec, { programs: ['on_kprobe_multi'] });
  const prog = coll.programs.on_kprobe_multi;
  const sym = ksyscallName('getpid');
  {
    using l = attachKprobeMulti(prog, { symbols: [sym, ksyscallName('getppid')], cookies: [1n, 2n] });
    t.equal(l.info().typeName, 'kprobe_multi');
    getpid(3);
    rawSyscall(NR.getpid === 39 ? 110 : 173); // getppid
    t.equal(v(coll, 'multi_hits'), 4n, 'fires on both functions');
  }
  {
    using l = attachKprobeMulti(prog, { symbols: sym.replace(/getpid$/, 'getp?d'), retprobe: true });
    t.equal(l.kind, 'kretprobe.multi');
    getpid(2);
    t.equal(v(coll, 'multi_hits'), 6n, 'a glob resolved from available_filter_functions');
  }
  t.throws(() => attachKprobeMulti(prog, { symbols: 'tsbpf_no_such_*' }), /no function matches/);
  t.end();
});
