// Socket filters, sk_lookup and sockmap programs for real, over loopback.
import t from 'tap';
import type { Test } from 'tap';
import { setTimeout as sleep } from 'node:timers/promises';
import { loadCollectionSpec, Collection, BPF_ATTACH_TYPE } from '../src/index.js';
import { attachSocketFilter, attachSkLookup, attachSockmap } from '../src/links/socket.js';
import {
  sockOpen, sockBind, sockListen, sockAccept, sockConnect, sockTryConnect, sockPort, sockSend, sockRecv, openNetns, setNs, unshareNs,
  interfaceUp, AF_INET, SOCK_STREAM, SOCK_DGRAM, SOCK_NONBLOCK, E, type FD,
} from '../src/syscall/index.js';
import { obj, fdCount } from './helpers/env.js';

const spec = loadCollectionSpec(obj('sock_test.o'));
const lo = (port: number) => ({ family: 'inet' as const, address: '127.0.0.1', port });
const u64 = (n: number): Buffer => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(n));
  return b;
};
const v = (c: Collection, name: string): number => Number(c.variables[name].value);

function own(t: Test, fd: FD): FD {
  t.teardown(() => fd.close());
  return fd;
}

function udp(t: Test): { fd: FD; port: number } {
  const fd = own(t, sockOpen(AF_INET, SOCK_DGRAM));
  sockBind(fd, lo(0));
  return { fd, port: sockPort(fd) };
}

function tcpListener(t: Test): { fd: FD; port: number } {
  const fd = own(t, sockOpen(AF_INET, SOCK_STREAM | SOCK_NONBLOCK));
  sockBind(fd, lo(0));
  sockListen(fd);
  return { fd, port: sockPort(fd) };
}

/** A connected TCP pair over loopback: [client, accepted]. */
function tcpPair(t: Test, l: { fd: FD; port: number }): [FD, FD] {
  const c = own(t, sockOpen(AF_INET, SOCK_STREAM));
  sockConnect(c, lo(l.port));
  const s = sockAccept(l.fd, 0);
  if (!s) throw new Error('no connection to accept');
  return [c, own(t, s)];
}

async function recvWait(fd: FD, ms = 2000): Promise<string | undefined> {
  for (let waited = 0; waited <= ms; waited += 10) {
    const r = sockRecv(fd);
    if (r) return r.data.toString();
    await sleep(10);
  }
  return undefined;
}

/** Move this thread into a fresh network namespace with lo up; the teardown moves it back. */
function freshNetns(t: Test): FD {
  const orig = openNetns();
  unshareNs();
  t.teardown(() => {
    setNs(orig);
    orig.close();
  });
  interfaceUp('lo');
  return own(t, openNetns());
}

t.test('socket filter: drops and keeps datagrams on a UDP socket; detached after close()', (t) => {
  using coll = new Collection(spec, { programs: ['sock_filter'] });
  const rx = udp(t);
  const tx = udp(t);
  const before = fdCount();
  const link = attachSocketFilter(coll.programs.sock_filter, rx.fd);
  t.notOk(link.isBpfLink, 'SO_ATTACH_BPF makes no bpf_link');
  sockSend(tx.fd, Buffer.from('keep'), lo(rx.port));
  sockSend(tx.fd, Buffer.from('dropD'), lo(rx.port));
  t.equal(sockRecv(rx.fd)?.data.toString(), 'keep');
  t.equal(sockRecv(rx.fd), undefined, "the datagram ending in 'D' was dropped");
  t.equal(v(coll, 'n_filter_seen'), 2);
  t.equal(v(coll, 'n_filter_dropped'), 1);
  link.close();
  sockSend(tx.fd, Buffer.from('dropD'), lo(rx.port));
  t.equal(sockRecv(rx.fd)?.data.toString(), 'dropD', 'detached: everything arrives');
  t.equal(v(coll, 'n_filter_seen'), 2);
  t.equal(fdCount(), before, 'no fd left behind');
  const notSock = own(t, openNetns());
  t.throws(() => attachSocketFilter(coll.programs.sock_filter, notSock), { name: 'TypeError', message: /not an open socket/ });
  t.end();
});

t.test('sk_lookup steers connections for a port to another socket, in a fresh netns', (t) => {
  const ns = freshNetns(t);
  using coll = new Collection(spec, { programs: ['steer'] });
  const l = tcpListener(t);
  const spare = own(t, sockOpen(AF_INET, SOCK_STREAM));
  sockBind(spare, lo(0));
  const steered = sockPort(spare);
  spare.close();
  coll.variables.steer_port.set(steered);
  coll.maps.lookup_map.update(0, u64(l.fd.value));
  const before = fdCount();
  const link = attachSkLookup(coll.programs.steer, ns);
  t.ok(link.isBpfLink);
  t.equal(link.info().typeName, 'netns');
  t.equal(link.info().details.attach_type, BPF_ATTACH_TYPE.SK_LOOKUP);
  const c = own(t, sockOpen(AF_INET, SOCK_STREAM));
  t.equal(sockTryConnect(c, lo(steered)), 0, `connect to ${steered} succeeds`);
  const got = sockAccept(l.fd, 0);
  t.ok(got, `the listener on ${l.port} accepted it`);
  got?.close();
  t.equal(v(coll, 'n_lookup'), 1);
  link.close();
  const c2 = own(t, sockOpen(AF_INET, SOCK_STREAM));
  t.equal(sockTryConnect(c2, lo(steered)), -E.ECONNREFUSED, 'detached: refused');
  t.equal(fdCount(), before + 2, 'only the two client sockets remain');
  using l2 = attachSkLookup(coll.programs.steer);
  t.ok(l2.isBpfLink, "default: the calling thread's namespace");
  t.end();
});

t.test('sk_msg: a message sent on one connection is redirected into another socket', async (t) => {
  const coll = new Collection(spec, { programs: ['msg_redirect'] });
  t.teardown(() => coll.close());
  const m = coll.maps.sock_map;
  const l = tcpListener(t);
  const link = attachSockmap(coll.programs.msg_redirect, m);
  t.ok(link.isBpfLink, 'a sockmap link (6.10+)');
  t.equal(link.info().typeName, 'sockmap');
  const [c1, s1] = tcpPair(t, l);
  const [, s2] = tcpPair(t, l);
  m.update(0, u64(c1.value));
  m.update(1, u64(s2.value));
  coll.variables.redirect_key.set(1);
  sockSend(c1, Buffer.from('hello'));
  t.equal(await recvWait(s2), 'hello', 'landed in the other connection');
  t.equal(sockRecv(s1), undefined, 'not in its own');
  t.equal(v(coll, 'n_msg'), 1);
  link.close();
  // Sockets keep the programs they had when added: check with new ones.
  const [c3, s3] = tcpPair(t, l);
  const [, s4] = tcpPair(t, l);
  m.update(2, u64(c3.value));
  m.update(3, u64(s4.value));
  coll.variables.redirect_key.set(3);
  sockSend(c3, Buffer.from('bye'));
  t.equal(await recvWait(s3), 'bye', 'detached: delivered normally');
  t.equal(sockRecv(s4), undefined);
  t.equal(v(coll, 'n_msg'), 1);
});

for (const [label, programs] of [
  ['sk_skb stream_parser + stream_verdict', ['stream_parser', 'stream_verdict']],
  ['sk_skb skb_verdict', ['skb_verdict']],
] as const) {
  t.test(`${label}: received data is redirected into another socket`, async (t) => {
    const coll = new Collection(spec, { programs: [...programs] });
    t.teardown(() => coll.close());
    const m = coll.maps.sock_map;
    const l = tcpListener(t);
    const links = programs.map((p) => attachSockmap(coll.programs[p], m, p));
    t.ok(links.every((k) => k.isBpfLink));
    const [c1, s1] = tcpPair(t, l);
    const [, s2] = tcpPair(t, l);
    m.update(0, u64(s1.value));
    m.update(1, u64(s2.value));
    coll.variables.redirect_key.set(1);
    sockSend(c1, Buffer.from('x'));
    t.equal(await recvWait(s2), 'x', 'what s1 received went to s2');
    t.equal(sockRecv(s1), undefined);
    const counter = programs.length === 2 ? 'n_stream_verdict' : 'n_skb_verdict';
    t.equal(v(coll, counter), 1);
    if (programs.length === 2) t.ok(v(coll, 'n_parser') >= 1, 'the parser ran');
    for (const k of links) k.close();
    const [c3, s3] = tcpPair(t, l);
    m.update(2, u64(s3.value));
    sockSend(c3, Buffer.from('y'));
    t.equal(await recvWait(s3), 'y', 'detached: delivered normally');
    t.equal(v(coll, counter), 1);
  });
}

t.test("sockmap PROG_ATTACH fallback (via: 'attach'); a second verdict is refused with a reason", async (t) => {
  const coll = new Collection(spec, { programs: ['msg_redirect', 'stream_verdict', 'skb_verdict'] });
  t.teardown(() => coll.close());
  const m = coll.maps.sock_map;
  const before = fdCount();
  const link = attachSockmap(coll.programs.msg_redirect, m, 'msg_verdict', { via: 'attach' });
  t.notOk(link.isBpfLink);
  const l = tcpListener(t);
  const [c1] = tcpPair(t, l);
  const [, s2] = tcpPair(t, l);
  m.update(0, u64(c1.value));
  m.update(1, u64(s2.value));
  coll.variables.redirect_key.set(1);
  sockSend(c1, Buffer.from('via attach'));
  t.equal(await recvWait(s2), 'via attach');
  t.throws(() => attachSockmap(coll.programs.msg_redirect, m, 'msg_verdict', { via: 'attach' }), { message: /already has a msg_verdict program/ });
  link.close();
  attachSockmap(coll.programs.msg_redirect, m, 'msg_verdict', { via: 'attach' }).close();
  t.pass('detached: the hook is free again');
  using sv = attachSockmap(coll.programs.stream_verdict, m, 'stream_verdict');
  t.throws(() => attachSockmap(coll.programs.skb_verdict, m, 'skb_verdict'), { message: /exclude each other/ });
  sv.close();
  t.equal(fdCount(), before + 5, 'only the listener and four sockets remain');
  t.throws(() => attachSockmap(coll.programs.skb_verdict, m, 'msg_verdict'), TypeError);
  t.throws(() => attachSockmap(coll.programs.skb_verdict, m), { name: 'TypeError', message: /say which sockmap hook/ });
});
