// Cgroup hooks for real: each test makes its own cgroup v2 directory, runs a child process inside it (the
// child writes its pid to cgroup.procs, then execs node) and checks what the BPF program counted, refused
// or rewrote; then closes the link and checks the hook no longer fires.
import t from 'tap';
import type { Test } from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdirSync, rmdirSync, mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadCollectionSpec, Collection, Program, TsbpfError, BPF_ATTACH_TYPE } from '../src/index.js';
import { attachCgroup, cgroup2Root, openCgroup } from '../src/links/cgroup.js';
import { autoAttachCgroup, autoAttachCgroupSupport } from '../src/links/auto-cgroup.js';
import {
  progQuery, sockOpen, sockBind, sockListen, sockAccept, sockPort, sockRecv, AF_INET, AF_INET6, AF_UNIX, SOCK_STREAM, SOCK_DGRAM,
  SOCK_NONBLOCK, type FD,
} from '../src/syscall/index.js';
import { obj, fdCount } from './helpers/env.js';
import { needsKernel } from './helpers/features.js';

const spec = loadCollectionSpec(obj('cgroup_test.o'));
const root = cgroup2Root();
let seq = 0;

function makeCgroup(t: Test, parent = root): string {
  const path = join(parent, `tsbpf-cg-${process.pid}-${seq++}`);
  mkdirSync(path);
  t.teardown(() => rmdirSync(path));
  return path;
}

const PRELUDE = "const A=JSON.parse(process.env.ARGS||'{}');const out=(o)=>console.log(JSON.stringify(o));";

/** Run `js` in a node child that first moves itself into `cg`; returns what it printed last (JSON). */
function inCgroup(cg: string, js: string, args: Record<string, unknown> = {}): Record<string, unknown> {
  const r = spawnSync('/bin/sh', ['-c', 'echo $$ > "$0/cgroup.procs" && exec "$1" -e "$2"', cg, process.execPath, PRELUDE + js], {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ARGS: JSON.stringify(args) },
    encoding: 'utf8',
    timeout: 30_000,
  });
  const lines = (r.stdout ?? '').trim().split('\n').filter(Boolean);
  if (r.status !== 0 || !lines.length) throw new Error(`child failed (status ${r.status}): ${r.stderr}`);
  return JSON.parse(lines[lines.length - 1]) as Record<string, unknown>;
}

const CHILD = {
  udpSend: "const d=require('dgram').createSocket(A.v6?'udp6':'udp4');d.send('x',A.port,A.v6?'::1':'127.0.0.1',(e)=>{out({err:e?e.code:null});d.close()});",
  udpSelf: "const d=require('dgram').createSocket('udp4');const tm=setTimeout(()=>{out({got:false});d.close()},300);" +
    "d.on('message',(m,r)=>{clearTimeout(tm);out({got:true});d.close()});d.bind(A.port,'127.0.0.1',()=>d.send('x',A.port,'127.0.0.1'));",
  udpBind: "const d=require('dgram').createSocket(A.v6?'udp6':'udp4');d.on('error',(e)=>out({err:e.code}));" +
    "d.bind(A.port,A.v6?'::1':'127.0.0.1',()=>{out({port:d.address().port});d.close()});",
  tcpConnect: "const s=require('net').connect(A.port,A.v6?'::1':'127.0.0.1');s.on('connect',()=>{out({ok:true,remotePort:s.remotePort,localPort:s.localPort});s.destroy()});" +
    "s.on('error',(e)=>out({err:e.code}));",
  unixConnect: "const s=require('net').connect(A.path);s.on('connect',()=>{out({ok:true});s.destroy()});s.on('error',(e)=>out({err:e.code}));",
  udpRecvFrom: "const dg=require('dgram');const a=dg.createSocket('udp4'),b=dg.createSocket('udp4');" +
    "b.on('message',(m,r)=>{out({fromPort:r.port});a.close();b.close()});" +
    "b.bind(0,'127.0.0.1',()=>a.bind(A.port,'127.0.0.1',()=>a.send('x',b.address().port,'127.0.0.1')));",
  rcvbuf: "const d=require('dgram').createSocket('udp4');d.bind(0,'127.0.0.1',()=>{let set='ok';try{d.setRecvBufferSize(65536)}catch(e){set=/EPERM/.test(e.message)?'EPERM':e.message}" +
    "out({get:d.getRecvBufferSize(),set});d.close()});",
  sysctl: "const fs=require('fs');const p='/proc/sys/net/ipv4/tcp_keepalive_time';const v=fs.readFileSync(p,'utf8');" +
    "try{fs.writeFileSync(p,v);out({v,write:'ok'})}catch(e){out({v,write:e.code})}",
  openDev: "const fs=require('fs');const r={};for(const p of A.paths){try{fs.closeSync(fs.openSync(p,'r'));r[p]='ok'}catch(e){r[p]=e.code}}out(r);",
  udpSocket: "const d=require('dgram').createSocket('udp4');d.on('error',(e)=>out({err:e.code}));d.bind(0,'127.0.0.1',()=>{d.close(()=>out({ok:true}))});",
};

type Coll = Collection;
const v = (c: Coll, name: string): number => Number(c.variables[name].value);
const set = (c: Coll, values: Record<string, number>): void => {
  for (const [k, val] of Object.entries(values)) c.variables[k].set(val);
};

/** A port nothing listens on (bound, then released). */
function freePort(type = SOCK_STREAM, family = AF_INET): number {
  const s = sockOpen(family, type);
  try {
    sockBind(s, family === AF_INET ? { family: 'inet', address: '127.0.0.1', port: 0 } : { family: 'inet6', address: '::1', port: 0 });
    return sockPort(s);
  } finally {
    s.close();
  }
}

function listener(t: Test, family = AF_INET): { fd: FD; port: number } {
  const fd = sockOpen(family, SOCK_STREAM | SOCK_NONBLOCK);
  t.teardown(() => fd.close());
  sockBind(fd, family === AF_INET ? { family: 'inet', address: '127.0.0.1', port: 0 } : { family: 'inet6', address: '::1', port: 0 });
  sockListen(fd);
  return { fd, port: sockPort(fd) };
}

function udpReceiver(t: Test, family = AF_INET): { fd: FD; port: number } {
  const fd = sockOpen(family, SOCK_DGRAM);
  t.teardown(() => fd.close());
  sockBind(fd, family === AF_INET ? { family: 'inet', address: '127.0.0.1', port: 0 } : { family: 'inet6', address: '::1', port: 0 });
  return { fd, port: sockPort(fd) };
}

function drainAccept(fd: FD): number {
  let n = 0;
  for (let c = sockAccept(fd, SOCK_NONBLOCK); c; c = sockAccept(fd, SOCK_NONBLOCK)) {
    c.close();
    n++;
  }
  return n;
}

t.test('cgroup_skb egress: counts, refuses (EPERM to the sender); detached after close()', (t) => {
  const cg = makeCgroup(t);
  const rx = udpReceiver(t);
  using coll = new Collection(spec, { programs: ['skb_egress'] });
  set(coll, { cfg_port: rx.port });
  const link = attachCgroup(coll.programs.skb_egress, { cgroup: cg, attachType: 'egress' });
  t.ok(link.isBpfLink);
  t.equal(link.info().details.attach_type, BPF_ATTACH_TYPE.CGROUP_INET_EGRESS);
  t.same(inCgroup(cg, CHILD.udpSend, { port: rx.port }), { err: null });
  t.equal(v(coll, 'n_egress'), 1, 'the egress program saw the datagram');
  t.ok(sockRecv(rx.fd), 'and let it through');
  set(coll, { cfg_deny: 1 });
  t.same(inCgroup(cg, CHILD.udpSend, { port: rx.port }), { err: 'EPERM' }, 'returning 0 refuses the send');
  t.equal(sockRecv(rx.fd), undefined);
  link.close();
  t.same(inCgroup(cg, CHILD.udpSend, { port: rx.port }), { err: null }, 'closed: the hook no longer fires');
  t.equal(v(coll, 'n_egress'), 2);
  t.end();
});

t.test('cgroup_skb ingress: drops datagrams to the cgroup\'s sockets', (t) => {
  const cg = makeCgroup(t);
  const port = freePort(SOCK_DGRAM);
  using coll = new Collection(spec, { programs: ['skb_ingress'] });
  set(coll, { cfg_port: port });
  const link = attachCgroup(coll.programs.skb_ingress, { cgroup: cg, attachType: 'ingress' });
  t.same(inCgroup(cg, CHILD.udpSelf, { port }), { got: true });
  t.equal(v(coll, 'n_ingress'), 1);
  set(coll, { cfg_deny: 1 });
  t.same(inCgroup(cg, CHILD.udpSelf, { port }), { got: false }, 'dropped on ingress');
  link.close();
  t.same(inCgroup(cg, CHILD.udpSelf, { port }), { got: true }, 'detached');
  t.equal(v(coll, 'n_ingress'), 2);
  t.end();
});

t.test('cgroup/sock_create refuses UDP sockets; cgroup/sock_release counts their release', (t) => {
  const cg = makeCgroup(t);
  using coll = new Collection(spec, { programs: ['sock_create', 'sock_release'] });
  using create = attachCgroup(coll.programs.sock_create, { cgroup: cg, attachType: 'sock_create' });
  using release = attachCgroup(coll.programs.sock_release, { cgroup: cg, attachType: 'sock_release' });
  t.same(inCgroup(cg, CHILD.udpSocket), { ok: true });
  t.equal(v(coll, 'n_sock_create'), 1);
  t.equal(v(coll, 'n_sock_release'), 1);
  set(coll, { cfg_deny: 1 });
  t.same(inCgroup(cg, CHILD.udpSocket), { err: 'EPERM' }, 'socket() refused');
  create.close();
  release.close();
  t.same(inCgroup(cg, CHILD.udpSocket), { ok: true }, 'detached');
  t.equal(v(coll, 'n_sock_create'), 2);
  t.equal(v(coll, 'n_sock_release'), 1);
  t.end();
});

for (const v6 of [false, true]) {
  const n = v6 ? '6' : '4';
  t.test(`cgroup/post_bind${n} refuses a port; cgroup/bind${n} rewrites one`, (t) => {
    const cg = makeCgroup(t);
    const fam = v6 ? AF_INET6 : AF_INET;
    const port = freePort(SOCK_DGRAM, fam);
    const other = freePort(SOCK_DGRAM, fam);
    using coll = new Collection(spec, { programs: [`post_bind${n}`, `bind${n}`] });
    set(coll, { cfg_port: port, cfg_new_port: other });
    {
      using _pb = attachCgroup(coll.programs[`post_bind${n}`], { cgroup: cg, attachType: `post_bind${n}` as 'post_bind4' });
      t.same(inCgroup(cg, CHILD.udpBind, { port, v6 }), { err: 'EPERM' }, `post_bind${n} refuses port ${port}`);
      t.equal(v(coll, `n_post_bind${n}`), 1);
    }
    t.same(inCgroup(cg, CHILD.udpBind, { port, v6 }), { port }, 'detached: the bind succeeds');
    const link = attachCgroup(coll.programs[`bind${n}`], { cgroup: cg, attachType: `bind${n}` as 'bind4' });
    t.same(inCgroup(cg, CHILD.udpBind, { port, v6 }), { port: other }, `bind${n} moved the socket to port ${other}`);
    t.equal(v(coll, `n_bind${n}`), 1);
    link.close();
    t.same(inCgroup(cg, CHILD.udpBind, { port, v6 }), { port }, 'detached');
    t.end();
  });

  t.test(`cgroup/connect${n} rewrites the destination port, or refuses it`, (t) => {
    const cg = makeCgroup(t);
    const fam = v6 ? AF_INET6 : AF_INET;
    const l = listener(t, fam);
    const port = freePort(SOCK_STREAM, fam);
    using coll = new Collection(spec, { programs: [`connect${n}`] });
    set(coll, { cfg_port: port, cfg_new_port: l.port });
    const link = attachCgroup(coll.programs[`connect${n}`], { cgroup: cg, attachType: `connect${n}` as 'connect4' });
    const r = inCgroup(cg, CHILD.tcpConnect, { port, v6 });
    t.equal(r.ok, true, `connect to ${port} reached the listener on ${l.port}`);
    t.equal(drainAccept(l.fd), 1);
    set(coll, { cfg_deny: 1 });
    t.same(inCgroup(cg, CHILD.tcpConnect, { port, v6 }), { err: 'EPERM' });
    t.equal(v(coll, `n_connect${n}`), 2);
    link.close();
    t.same(inCgroup(cg, CHILD.tcpConnect, { port, v6 }), { err: 'ECONNREFUSED' }, 'detached: nothing listens there');
    t.end();
  });

  t.test(`cgroup/sendmsg${n} redirects a datagram to another port`, (t) => {
    const cg = makeCgroup(t);
    const fam = v6 ? AF_INET6 : AF_INET;
    const rx = udpReceiver(t, fam);
    const port = freePort(SOCK_DGRAM, fam);
    using coll = new Collection(spec, { programs: [`sendmsg${n}`] });
    set(coll, { cfg_port: port, cfg_new_port: rx.port });
    const link = attachCgroup(coll.programs[`sendmsg${n}`], { cgroup: cg, attachType: `sendmsg${n}` as 'sendmsg4' });
    t.same(inCgroup(cg, CHILD.udpSend, { port, v6 }), { err: null });
    t.equal(sockRecv(rx.fd)?.data.toString(), 'x', `sent to ${port}, received on ${rx.port}`);
    t.equal(v(coll, `n_sendmsg${n}`), 1);
    link.close();
    inCgroup(cg, CHILD.udpSend, { port, v6 });
    t.equal(sockRecv(rx.fd), undefined, 'detached');
    t.equal(v(coll, `n_sendmsg${n}`), 1);
    t.end();
  });
}

t.test('cgroup/recvmsg4 rewrites the source port a receiver sees', (t) => {
  const cg = makeCgroup(t);
  const port = freePort(SOCK_DGRAM);
  using coll = new Collection(spec, { programs: ['recvmsg4'] });
  set(coll, { cfg_port: port, cfg_new_port: 4242 });
  const link = attachCgroup(coll.programs.recvmsg4, { cgroup: cg, attachType: 'recvmsg4' });
  t.same(inCgroup(cg, CHILD.udpRecvFrom, { port }), { fromPort: 4242 });
  t.equal(v(coll, 'n_recvmsg4'), 1);
  link.close();
  t.same(inCgroup(cg, CHILD.udpRecvFrom, { port }), { fromPort: port }, 'detached');
  t.end();
});

t.test('cgroup/getpeername4 and getsockname4 rewrite the ports a process is told', (t) => {
  const cg = makeCgroup(t);
  const l = listener(t);
  using coll = new Collection(spec, { programs: ['getpeername4', 'getsockname4'] });
  set(coll, { cfg_port: l.port, cfg_new_port: 4343 });
  {
    using _peer = attachCgroup(coll.programs.getpeername4, { cgroup: cg, attachType: 'getpeername4' });
    t.match(inCgroup(cg, CHILD.tcpConnect, { port: l.port }), { ok: true, remotePort: 4343 });
    t.equal(v(coll, 'n_getpeername4'), 1);
  }
  t.match(inCgroup(cg, CHILD.tcpConnect, { port: l.port }), { ok: true, remotePort: l.port }, 'detached');
  const port = freePort(SOCK_DGRAM);
  set(coll, { cfg_port: port });
  {
    using _name = attachCgroup(coll.programs.getsockname4, { cgroup: cg, attachType: 'getsockname4' });
    t.same(inCgroup(cg, CHILD.udpBind, { port }), { port: 4343 });
    t.equal(v(coll, 'n_getsockname4'), 1);
  }
  t.same(inCgroup(cg, CHILD.udpBind, { port }), { port }, 'detached');
  drainAccept(l.fd);
  t.end();
});

t.test('cgroup/connect_unix (6.7+) counts and refuses unix connects; the other unix hooks attach', { skip: needsKernel(6, 7, 'cgroup hooks for unix sockets') }, (t) => {
  const cg = makeCgroup(t);
  const dir = mkdtempSync(join(tmpdir(), 'tsbpf-unix-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'sock');
  const l = sockOpen(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK);
  t.teardown(() => l.close());
  sockBind(l, { family: 'unix', path });
  sockListen(l);
  using coll = new Collection(spec, { programs: ['connect_unix', 'sendmsg_unix', 'recvmsg_unix', 'getpeername_unix', 'getsockname_unix'] });
  const link = attachCgroup(coll.programs.connect_unix, { cgroup: cg, attachType: 'connect_unix' });
  for (const h of ['sendmsg_unix', 'recvmsg_unix', 'getpeername_unix', 'getsockname_unix'] as const) {
    using l2 = attachCgroup(coll.programs[h], { cgroup: cg, attachType: h });
    t.ok(l2.isBpfLink, `${h} attaches`);
  }
  t.same(inCgroup(cg, CHILD.unixConnect, { path }), { ok: true });
  t.equal(v(coll, 'n_connect_unix'), 1);
  set(coll, { cfg_deny: 1 });
  t.same(inCgroup(cg, CHILD.unixConnect, { path }), { err: 'EPERM' });
  link.close();
  t.same(inCgroup(cg, CHILD.unixConnect, { path }), { ok: true }, 'detached');
  t.equal(v(coll, 'n_connect_unix'), 2);
  drainAccept(l);
  t.end();
});

t.test('cgroup/getsockopt rewrites SO_RCVBUF; cgroup/setsockopt refuses it', (t) => {
  const cg = makeCgroup(t);
  using coll = new Collection(spec, { programs: ['getsockopt_prog', 'setsockopt_prog'] });
  set(coll, { cfg_new_port: 12345, cfg_deny: 1 });
  const g = attachCgroup(coll.programs.getsockopt_prog, { cgroup: cg, attachType: 'getsockopt' });
  const s = attachCgroup(coll.programs.setsockopt_prog, { cgroup: cg, attachType: 'setsockopt' });
  t.same(inCgroup(cg, CHILD.rcvbuf), { get: 12345, set: 'EPERM' });
  t.ok(v(coll, 'n_getsockopt') >= 1);
  t.equal(v(coll, 'n_setsockopt'), 1);
  g.close();
  s.close();
  const r = inCgroup(cg, CHILD.rcvbuf);
  t.equal(r.set, 'ok', 'detached: setsockopt allowed');
  t.not(r.get, 12345, 'detached: the real size');
  t.end();
});

t.test('cgroup/sysctl sees reads and refuses writes of net.ipv4.tcp_keepalive_time', (t) => {
  const cg = makeCgroup(t);
  using coll = new Collection(spec, { programs: ['sysctl_prog'] });
  const link = attachCgroup(coll.programs.sysctl_prog, { cgroup: cg });
  const r = inCgroup(cg, CHILD.sysctl);
  t.equal(r.write, 'EPERM', 'the write (of the same value) is refused');
  t.ok(v(coll, 'n_sysctl_read') >= 1, 'the read was seen');
  t.equal(v(coll, 'n_sysctl_write'), 1);
  link.close();
  t.equal(inCgroup(cg, CHILD.sysctl).write, 'ok', 'detached');
  t.equal(v(coll, 'n_sysctl_write'), 1);
  t.end();
});

t.test('cgroup/dev refuses a character device (1:3, like /dev/null) made with mknod', (t) => {
  const cg = makeCgroup(t);
  const dir = mkdtempSync(join(tmpdir(), 'tsbpf-dev-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const nul = join(dir, 'null');
  const zero = join(dir, 'zero');
  for (const [p, minor] of [[nul, '3'], [zero, '5']] as const) {
    const r = spawnSync('mknod', [p, 'c', '1', minor], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`mknod: ${r.stderr}`);
  }
  using coll = new Collection(spec, { programs: ['device_prog'] });
  set(coll, { cfg_major: 1, cfg_minor: 3 });
  const link = attachCgroup(coll.programs.device_prog, { cgroup: cg });
  t.same(inCgroup(cg, CHILD.openDev, { paths: [nul, zero] }), { [nul]: 'EPERM', [zero]: 'ok' });
  t.ok(v(coll, 'n_device') >= 1, 'the device program saw the open');
  const seen = v(coll, 'n_device');
  link.close();
  t.same(inCgroup(cg, CHILD.openDev, { paths: [nul, zero] }), { [nul]: 'ok', [zero]: 'ok' }, 'detached');
  t.equal(v(coll, 'n_device'), seen);
  t.end();
});

t.test('sockops sees a TCP connection being made and established', (t) => {
  const cg = makeCgroup(t);
  const l = listener(t);
  using coll = new Collection(spec, { programs: ['sockops_prog'] });
  const link = attachCgroup(coll.programs.sockops_prog, { cgroup: cg });
  t.equal(inCgroup(cg, CHILD.tcpConnect, { port: l.port }).ok, true);
  t.equal(v(coll, 'n_sockops_connect'), 1);
  t.equal(v(coll, 'n_sockops_established'), 1);
  link.close();
  inCgroup(cg, CHILD.tcpConnect, { port: l.port });
  t.equal(v(coll, 'n_sockops_connect'), 1, 'detached');
  drainAccept(l.fd);
  t.end();
});

t.test('multi: two programs on one hook both run; before/after orders them', (t) => {
  const cg = makeCgroup(t);
  using coll = new Collection(spec, { programs: ['sock_a', 'sock_b'] });
  const { sock_a: a, sock_b: b } = coll.programs;
  using la = attachCgroup(a, { cgroup: cg, attachType: 'sock_create' });
  {
    using _lb = attachCgroup(b, { cgroup: cg, attachType: 'sock_create' });
    t.same(inCgroup(cg, CHILD.udpSocket), { ok: true });
    t.equal(v(coll, 'n_sock_a'), 1);
    t.equal(v(coll, 'n_sock_b'), 1);
    const { fd } = openCgroup(cg);
    t.same(progQuery(fd.value, BPF_ATTACH_TYPE.CGROUP_INET_SOCK_CREATE).ids, [a.info().id, b.info().id], 'FIFO by default');
    fd.close();
  }
  t.test('before/after order them', { skip: needsKernel(6, 16, 'ordered cgroup attach (before/after)') }, (t) => {
    using _lb2 = attachCgroup(b, { cgroup: cg, attachType: 'sock_create', before: la });
    const { fd } = openCgroup(cg);
    t.same(progQuery(fd.value, BPF_ATTACH_TYPE.CGROUP_INET_SOCK_CREATE).ids, [b.info().id, a.info().id], 'before: the link of a');
    fd.close();
    t.end();
  });
  t.end();
});

t.test("override: a sub-cgroup's program replaces its parent's; 'none' forbids sub-cgroup programs", (t) => {
  const parent = makeCgroup(t);
  const child = makeCgroup(t, parent);
  using coll = new Collection(spec, { programs: ['sock_a', 'sock_b'] });
  const { sock_a: a, sock_b: b } = coll.programs;
  {
    using la = attachCgroup(a, { cgroup: parent, attachType: 'sock_create', flags: 'override' });
    t.notOk(la.isBpfLink, "'override' is a PROG_ATTACH mode");
    using _lb = attachCgroup(b, { cgroup: child, attachType: 'sock_create', flags: 'override' });
    inCgroup(child, CHILD.udpSocket);
    t.equal(v(coll, 'n_sock_a'), 0, "the parent's program does not run in the child cgroup");
    t.equal(v(coll, 'n_sock_b'), 1);
    inCgroup(parent, CHILD.udpSocket);
    t.equal(v(coll, 'n_sock_a'), 1, "the parent's program runs in the parent");
    t.equal(v(coll, 'n_sock_b'), 1);
  }
  {
    using _la = attachCgroup(a, { cgroup: parent, attachType: 'sock_create', flags: 'none' });
    t.throws(() => attachCgroup(b, { cgroup: child, attachType: 'sock_create', flags: 'override' }), { name: 'TsbpfError', message: /EPERM.*'none' forbids sub-cgroup programs/ });
    t.throws(() => attachCgroup(b, { cgroup: child, attachType: 'sock_create' }), { name: 'TsbpfError', message: /EPERM/ });
  }
  {
    using _la = attachCgroup(a, { cgroup: parent, attachType: 'sock_create', flags: 'multi', via: 'attach' });
    using _lb = attachCgroup(b, { cgroup: child, attachType: 'sock_create' });
    inCgroup(child, CHILD.udpSocket);
    t.equal(v(coll, 'n_sock_a'), 2, "multi: the parent's program runs in the child too");
    t.equal(v(coll, 'n_sock_b'), 2);
  }
  t.throws(() => attachCgroup(a, { cgroup: parent, attachType: 'sock_create', flags: 'override', via: 'link' }), TypeError);
  t.end();
});

t.test("the PROG_ATTACH fallback (via: 'attach') detaches exactly its program on close()", (t) => {
  const cg = makeCgroup(t);
  const port = freePort();
  using coll = new Collection(spec, { programs: ['connect4', 'sock_a'] });
  set(coll, { cfg_port: port, cfg_deny: 1 });
  const prog = coll.programs.connect4;
  const { fd } = openCgroup(cg);
  t.teardown(() => fd.close());
  const before = fdCount();
  const link = attachCgroup(prog, { cgroup: cg, attachType: 'connect4', via: 'attach' });
  t.notOk(link.isBpfLink);
  t.throws(() => link.info(), { message: /not a bpf_link/ });
  using other = attachCgroup(coll.programs.sock_a, { cgroup: cg, attachType: 'sock_create', via: 'attach' });
  t.same(progQuery(fd.value, BPF_ATTACH_TYPE.CGROUP_INET4_CONNECT).ids, [prog.info().id]);
  t.same(inCgroup(cg, CHILD.tcpConnect, { port }), { err: 'EPERM' });
  link.close();
  link.close();
  t.same(progQuery(fd.value, BPF_ATTACH_TYPE.CGROUP_INET4_CONNECT).ids, [], 'detached');
  t.equal(progQuery(fd.value, BPF_ATTACH_TYPE.CGROUP_INET_SOCK_CREATE).ids.length, 1, 'the other attachment stays');
  t.same(inCgroup(cg, CHILD.tcpConnect, { port }), { err: 'ECONNREFUSED' });
  other.close();
  t.equal(fdCount(), before, 'no fd left behind');
  t.end();
});

t.test('no fd leak across attach/close, link or PROG_ATTACH', (t) => {
  const cg = makeCgroup(t);
  using coll = new Collection(spec, { programs: ['sock_a'] });
  const before = fdCount();
  for (let i = 0; i < 20; i++) {
    attachCgroup(coll.programs.sock_a, { cgroup: cg, attachType: 'sock_create' }).close();
    attachCgroup(coll.programs.sock_a, { cgroup: cg, attachType: 'sock_create', via: 'attach' }).close();
  }
  t.equal(fdCount(), before);
  t.end();
});

t.test('autoAttachCgroup: by section name, default cgroup the v2 root; says why not for the others', (t) => {
  const cg = makeCgroup(t);
  const port = freePort();
  using coll = new Collection(spec, { programs: ['connect4'] });
  set(coll, { cfg_port: port, cfg_deny: 1 });
  const ps = spec.programs.connect4;
  t.equal(autoAttachCgroupSupport(ps, {}), undefined);
  const link = autoAttachCgroup(coll.programs.connect4, ps, { cgroup: cg })!;
  t.ok(link.isBpfLink);
  t.same(inCgroup(cg, CHILD.tcpConnect, { port }), { err: 'EPERM' });
  link.close();
  const fake = (section: string, type: number, expectedAttachType = 0) => ({ ...ps, section, sectionKind: section.split('/')[0], type, expectedAttachType });
  t.match(autoAttachCgroupSupport(fake('netfilter', 32), {}), /attachNetfilter/);
  t.match(autoAttachCgroupSupport(fake('sk_msg', 16, 7), {}), /SOCKMAP or SOCKHASH/);
  t.match(autoAttachCgroupSupport(fake('cgroup/skb', 8), {}), /cgroup_skb\/ingress/);
  t.equal(autoAttachCgroupSupport(fake('tp/x/y', 5), {}), null);
  t.equal(autoAttachCgroup(coll.programs.connect4, fake('tp/x/y', 5), {}), undefined);
  t.end();
});

t.test('errors that say what to do', (t) => {
  using coll = new Collection(spec, { programs: ['connect4', 'skb_egress'] });
  const cg = makeCgroup(t);
  // The hook defaults to the program's expected attach type; a program opened by id has none to offer.
  attachCgroup(coll.programs.connect4, { cgroup: cg }).close();
  {
    using byId = Program.fromId(coll.programs.connect4.info().id);
    t.throws(() => attachCgroup(byId, { cgroup: cg }), { name: 'TypeError', message: /say which hook.*'connect4'/ });
  }
  t.throws(() => attachCgroup(coll.programs.skb_egress, { cgroup: cg, attachType: 'nope' as 'egress' }), { name: 'TypeError', message: /unknown cgroup hook "nope"/ });
  t.throws(() => attachCgroup(coll.programs.connect4, { cgroup: cg, attachType: 'ingress' }), { name: 'TypeError', message: /hooks are bind4/ });
  t.throws(() => attachCgroup(coll.programs.skb_egress, { cgroup: `${cg}/missing`, attachType: 'egress' }), { name: 'TsbpfError', message: /does not exist/ });
  if (existsSync('/sys/fs/cgroup/devices/cgroup.procs')) {
    t.throws(() => attachCgroup(coll.programs.skb_egress, { cgroup: '/sys/fs/cgroup/devices', attachType: 'egress' }), { message: /not in a cgroup v2 hierarchy/ });
  }
  t.throws(() => attachCgroup(coll.programs.skb_egress, { cgroup: '/tmp', attachType: 'egress' }), TsbpfError);
  t.end();
});
