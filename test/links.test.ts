import t from 'tap';
import { existsSync, mkdirSync, openSync, closeSync, rmdirSync } from 'node:fs';
import type { Tap } from 'tap';
import { loadCollectionSpec, setVariable, Collection, attachTracepoint, attachRawTracepoint, Link, loadPinnedLink, ClosedError, TsbpfError } from '../src/index.js';
import { rawSyscall, NR, ensureBpffs, BPF_LINK_TYPE, BPF_ATTACH_TYPE, linkCreate, progQuery } from '../src/syscall/index.js';
import { obj, fdCount } from './helpers/env.js';

const spec = loadCollectionSpec(obj('links_test.o'));
setVariable(spec, 'target_tgid', process.pid);
const getpid = (n = 1) => { for (let i = 0; i < n; i++) rawSyscall(NR.getpid); };
const count = (coll: Collection, name: 'count_a' | 'count_b' | 'count_raw') => Number(coll.variables[name].value);

function cgroupDir(t: Tap.Test): { path: string; fd: number } {
  const root = ['/sys/fs/cgroup/unified', '/sys/fs/cgroup'].find((p) => existsSync(`${p}/cgroup.procs`) && existsSync(`${p}/cgroup.subtree_control`))!;
  const path = `${root}/tsbpf-links-${process.pid}`;
  mkdirSync(path, { recursive: true });
  const fd = openSync(path, 'r');
  t.teardown(() => { closeSync(fd); rmdirSync(path); });
  return { path, fd };
}

t.test('a tracepoint link: info() tells the truth; update() and detach() are refused by the kernel', (t) => {
  using coll = new Collection(spec, { programs: ['prog_a', 'prog_b'] });
  using link = attachTracepoint(coll.programs.prog_a, 'syscalls', 'sys_enter_getpid');
  t.ok(link.isBpfLink);
  getpid(3);
  t.equal(count(coll, 'count_a'), 3);
  const info = link.info();
  t.equal(info.type, BPF_LINK_TYPE.PERF_EVENT);
  t.equal(info.typeName, 'perf_event');
  t.equal(info.progId, coll.programs.prog_a.info().id);
  t.ok(info.id > 0);
  t.throws(() => link.update(coll.programs.prog_b), { name: 'BpfError', errnoCode: 22 });
  t.end();
});

t.test('update() moves a cgroup link to another program; expected guards it; detach() empties the hook', (t) => {
  const cg = cgroupDir(t);
  const fds = fdCount();
  {
    using coll = new Collection(spec, { programs: ['skb_a', 'skb_b'] });
    const a = coll.programs.skb_a;
    const b = coll.programs.skb_b;
    const type = BPF_ATTACH_TYPE.CGROUP_INET_EGRESS;
    using link = new Link('cgroup', cg.path, a.name, { fd: linkCreate({ progFd: a.fd, targetFd: cg.fd, attachType: type }) });
    t.same(progQuery(cg.fd, type).ids, [a.info().id]);
    t.equal(link.info().typeName, 'cgroup');
    t.equal(link.info().details.attach_type, type);
    link.update(b);
    t.same(progQuery(cg.fd, type).ids, [b.info().id], 'the hook now runs skb_b');
    t.equal(link.info().progId, b.info().id);
    t.throws(() => link.update(a, a), { name: 'BpfError', errnoCode: 1 }, 'expected program no longer attached: EPERM');
    link.update(a, b);
    t.same(progQuery(cg.fd, type).ids, [a.info().id], 'a guarded update that matches succeeds');
    link.detach();
    t.same(progQuery(cg.fd, type).ids, [], 'detach() empties the hook');
    t.notOk(link.closed, 'the link object stays open');
  }
  t.equal(fdCount(), fds, 'links, programs and maps closed');
  t.end();
});

t.test('close() detaches; a pinned link outlives close() until unpinned', (t) => {
  using coll = new Collection(spec);
  const dir = ensureBpffs();
  const path = `${dir}/tsbpf-links-test-${process.pid}`;
  const link = attachRawTracepoint(coll.programs.prog_raw, 'sys_enter');
  getpid(2);
  t.ok(count(coll, 'count_raw') >= 2);
  link.pin(path);
  t.equal(link.pinnedAt, path);
  t.ok(existsSync(path));
  const id = link.info().id;
  t.equal(link.info().name, 'sys_enter', 'raw tracepoint links report their tracepoint');
  link.close();
  t.ok(link.closed);
  t.throws(() => link.info(), ClosedError);
  let before = count(coll, 'count_raw');
  getpid(3);
  t.ok(count(coll, 'count_raw') >= before + 3, 'still attached through the pin');

  const again = loadPinnedLink(path);
  t.equal(again.info().id, id, 'loadPinnedLink opens the same link');
  {
    using byId = Link.fromId(id);
    t.equal(byId.info().progId, coll.programs.prog_raw.info().id, 'Link.fromId too');
  }
  t.ok(again.unpin(), 'unpin removes the pin');
  t.notOk(existsSync(path));
  t.notOk(again.unpin(), 'nothing left to unpin');
  again.close();
  before = count(coll, 'count_raw');
  getpid(3);
  t.equal(count(coll, 'count_raw'), before, 'unpinned and closed: detached');
  t.end();
});

t.test('pins outside a bpffs are refused before the kernel is asked', (t) => {
  using coll = new Collection(spec);
  using link = attachRawTracepoint(coll.programs.prog_raw, 'sys_enter');
  t.throws(() => link.pin('/tmp/not-bpffs-link'), { name: 'TsbpfError', message: /not in a BPF filesystem/ });
  t.throws(() => link.pin('relative/path'), TsbpfError);
  t.end();
});
