// Netfilter links for real: a program at ipv4/output counts and drops UDP datagrams to one port over
// loopback, inside a fresh network namespace.
import t from 'tap';
import type { Test } from 'tap';
import { loadCollectionSpec, Collection } from '../src/index.js';
import { attachNetfilter } from '../src/links/netfilter.js';
import {
  sockOpen, sockBind, sockPort, sockTrySend, sockRecv, openNetns, setNs, unshareNs, inNetns, interfaceUp, AF_INET, SOCK_DGRAM, E, type FD,
} from '../src/syscall/index.js';
import { obj, fdCount } from './helpers/env.js';

const spec = loadCollectionSpec(obj('sock_test.o'));
const lo = (port: number) => ({ family: 'inet' as const, address: '127.0.0.1', port });
const n = (c: Collection): number => Number(c.variables.n_nf.value);

/** A fresh network namespace with lo up; the calling thread stays in its own. */
function freshNetns(t: Test): FD {
  const orig = openNetns();
  try {
    unshareNs();
    interfaceUp('lo');
    const ns = openNetns();
    t.teardown(() => ns.close());
    return ns;
  } finally {
    setNs(orig);
    orig.close();
  }
}

function udpPair(t: Test): { tx: FD; rx: FD; port: number } {
  const tx = sockOpen(AF_INET, SOCK_DGRAM);
  const rx = sockOpen(AF_INET, SOCK_DGRAM);
  t.teardown(() => {
    tx.close();
    rx.close();
  });
  sockBind(rx, lo(0));
  return { tx, rx, port: sockPort(rx) };
}

t.test('ipv4/output: counts, drops (EPERM to the sender), detached after close()', (t) => {
  const ns = freshNetns(t);
  using coll = new Collection(spec, { programs: ['nf_count'] });
  inNetns(ns, () => {
    const { tx, rx, port } = udpPair(t);
    coll.variables.nf_port.set(port);
    const before = fdCount();
    const link = attachNetfilter(coll.programs.nf_count, { pf: 'ipv4', hook: 'output', priority: -100 });
    t.ok(link.isBpfLink);
    const info = link.info();
    t.equal(info.typeName, 'netfilter');
    t.match(info.details, { pf: 2, hooknum: 3, priority: -100 >>> 0 });
    t.equal(sockTrySend(tx, Buffer.from('a'), lo(port)), 1);
    t.equal(sockRecv(rx)?.data.toString(), 'a');
    t.equal(n(coll), 1, 'counted');
    coll.variables.nf_drop.set(1);
    t.equal(sockTrySend(tx, Buffer.from('b'), lo(port)), -E.EPERM, 'NF_DROP on output: the sender gets EPERM');
    t.equal(sockRecv(rx), undefined);
    t.equal(n(coll), 2);
    link.close();
    t.equal(sockTrySend(tx, Buffer.from('c'), lo(port)), 1);
    t.equal(sockRecv(rx)?.data.toString(), 'c', 'detached');
    t.equal(n(coll), 2);
    t.equal(fdCount(), before, 'no fd left behind');
  });
  t.end();
});

t.test("netns: attaches in another namespace than the caller's; defrag; priorities checked first", (t) => {
  const ns = freshNetns(t);
  using coll = new Collection(spec, { programs: ['nf_count'] });
  const prog = coll.programs.nf_count;
  using link = attachNetfilter(prog, { pf: 'ipv4', hook: 'output', priority: 10, defrag: true, netns: ns });
  t.match(link.info().details, { flags: 1 });
  inNetns(ns, () => {
    const { tx, rx, port } = udpPair(t);
    coll.variables.nf_port.set(port);
    sockTrySend(tx, Buffer.from('x'), lo(port));
    t.ok(sockRecv(rx));
  });
  t.equal(n(coll), 1, 'the program runs in the namespace it was attached to');
  {
    using v6 = attachNetfilter(prog, { pf: 'ipv6', hook: 'input', priority: 5, netns: ns });
    t.equal(v6.info().details.pf, 10);
  }
  t.throws(() => attachNetfilter(prog, { pf: 'ipv4', hook: 'output', priority: -2147483648 }), { name: 'TypeError', message: /reserved/ });
  t.throws(() => attachNetfilter(prog, { pf: 'ipv4', hook: 'output', priority: -500, defrag: true }), { name: 'TypeError', message: /above -400/ });
  t.throws(() => attachNetfilter(prog, { pf: 'ipx' as 'ipv4', hook: 'output', priority: 1 }), TypeError);
  t.throws(() => attachNetfilter(prog, { pf: 'ipv4', hook: 'outward' as 'output', priority: 1 }), TypeError);
  t.end();
});
