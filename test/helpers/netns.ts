// A network namespace joined to this one by a veth pair, for tests that need real packets:
//
//   this namespace: <host> hostAddr/30  <-- veth -->  <nsIf> nsAddr/30 : namespace <ns>
//
// Names carry the pid and a counter, addresses come from 198.18.0.0/15 (the benchmarking range, RFC 2544)
// by pid, so parallel runs do not collide. MACs and neighbour entries are fixed, so no ARP (and, with IPv6
// off, no router solicitations) add packets of their own. destroy() (registered as a tap teardown)
// removes everything even when the test failed.

import { execFileSync, spawn } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import type { Tap } from 'tap';

export interface NetEnv {
  ns: string;
  /** The veth end in this (the test's) namespace, and its address. */
  host: string;
  hostAddr: string;
  hostMac: string;
  /** The veth end inside the namespace, and its address. */
  nsIf: string;
  nsAddr: string;
  nsMac: string;
  /** Run a command inside the namespace (`ip netns exec`); returns stdout. */
  nsExec(cmd: string, ...args: string[]): string;
  destroy(): void;
}

let counter = 0;

/** `ip ...` in this namespace; throws with stderr on failure. */
export function ip(...args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** `tc ...` in this namespace. */
export function tc(...args: string[]): string {
  return execFileSync('tc', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

export function createNetEnv(t: Tap.Test): NetEnv {
  const k = counter++;
  const pid = process.pid;
  const slot = (pid * 16 + k) % 32768;
  const base = slot * 4;
  const net = `198.${18 + (base >> 16)}.${(base >> 8) & 255}`;
  const hostAddr = `${net}.${(base & 255) + 1}`;
  const nsAddr = `${net}.${(base & 255) + 2}`;
  const hex = (n: number) => n.toString(16).padStart(2, '0');
  const macBase = `02:54:${hex((slot >> 8) & 255)}:${hex(slot & 255)}:${hex(k & 255)}`;
  const hostMac = `${macBase}:01`;
  const nsMac = `${macBase}:02`;
  const ns = `tsbpf-${pid}-${k}`;
  const host = `tb${pid}${k}h`.slice(0, 15);
  const nsIf = `tb${pid}${k}n`.slice(0, 15);

  const nsExec = (cmd: string, ...args: string[]): string =>
    execFileSync('ip', ['netns', 'exec', ns, cmd, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

  let destroyed = false;
  const destroy = (): void => {
    if (destroyed) return;
    destroyed = true;
    try {
      ip('link', 'del', host);
    } catch {
      /* gone with the namespace, or never made */
    }
    try {
      ip('netns', 'del', ns);
    } catch {
      /* never made */
    }
  };
  t.teardown(destroy);

  try {
    ip('netns', 'add', ns);
    ip('link', 'add', host, 'address', hostMac, 'type', 'veth', 'peer', 'name', nsIf, 'address', nsMac, 'netns', ns);
    try {
      writeFileSync(`/proc/sys/net/ipv6/conf/${host}/disable_ipv6`, '1');
    } catch {
      /* no IPv6 */
    }
    ip('addr', 'add', `${hostAddr}/30`, 'dev', host);
    ip('link', 'set', host, 'up');
    ip('neigh', 'replace', nsAddr, 'lladdr', nsMac, 'dev', host, 'nud', 'permanent');
    try {
      nsExec('sysctl', '-qw', `net.ipv6.conf.all.disable_ipv6=1`);
    } catch {
      /* no IPv6 */
    }
    ip('-n', ns, 'addr', 'add', `${nsAddr}/30`, 'dev', nsIf);
    ip('-n', ns, 'link', 'set', 'lo', 'up');
    ip('-n', ns, 'link', 'set', nsIf, 'up');
    ip('-n', ns, 'neigh', 'replace', hostAddr, 'lladdr', hostMac, 'dev', nsIf, 'nud', 'permanent');
  } catch (e) {
    destroy();
    throw e;
  }
  return { ns, host, hostAddr, hostMac, nsIf, nsAddr, nsMac, nsExec, destroy };
}

// The UDP sender and receiver are small scripts run in the namespace: Python when the system has it (a
// tenth of node's start-up time), else node.
const PYTHON = ['/usr/bin/python3', '/usr/local/bin/python3'].find((p) => existsSync(p));

const SEND_PY = `
import socket, sys
dst, count, ports = sys.argv[1], int(sys.argv[2]), [int(p) for p in sys.argv[3:]]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for p in ports:
    for _ in range(count):
        s.sendto(b'tsbpf', (dst, p))
`;
const SEND_JS = `
const s = require('dgram').createSocket('udp4');
const [dst, count, ...ports] = process.argv.slice(1);
const jobs = [];
for (const p of ports) for (let i = 0; i < Number(count); i++) jobs.push(Number(p));
const next = () => {
  const p = jobs.shift();
  if (p === undefined) return s.close();
  s.send(Buffer.from('tsbpf'), p, dst, (e) => { if (e) { console.error(e.message); process.exit(1); } next(); });
};
next();
`;
const RECV_PY = `
import socket, sys, select
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
sys.stdout.write('ready\\n'); sys.stdout.flush()
n = 0
while True:
    r, _, _ = select.select([s, sys.stdin], [], [])
    if s in r:
        s.recv(2048); n += 1
    elif sys.stdin in r and not sys.stdin.buffer.read1(4096):
        while True:
            try:
                s.recv(2048, socket.MSG_DONTWAIT); n += 1
            except BlockingIOError:
                break
        sys.stdout.write(str(n) + '\\n'); sys.stdout.flush(); break
`;
const RECV_JS = `
const s = require('dgram').createSocket('udp4');
const [addr, port] = process.argv.slice(1);
let n = 0;
s.on('message', () => n++);
s.bind(Number(port), addr, () => process.stdout.write('ready\\n'));
process.stdin.on('data', () => {});
process.stdin.on('end', () => { process.stdout.write(String(n) + '\\n'); process.exit(0); });
`;

/** A script run inside `ns` (or here when ns is undefined). */
function scriptArgs(ns: string | undefined, py: string, js: string, ...args: string[]): [string, string[]] {
  const run = PYTHON ? [PYTHON, '-c', py, ...args] : [process.execPath, '-e', js, ...args];
  return ns ? ['ip', ['netns', 'exec', ns, ...run]] : [run[0], run.slice(1)];
}

/** Send `count` UDP datagrams to each of `ports` at `dst`, from inside `ns` (or from here). Waits until sent. */
export function sendUdp(ns: string | undefined, dst: string, count: number, ...ports: number[]): void {
  const [cmd, args] = scriptArgs(ns, SEND_PY, SEND_JS, dst, String(count), ...ports.map(String));
  execFileSync(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

export interface UdpReceiver {
  /** Stop listening (after a short settle time) and return how many datagrams arrived. */
  stop(settleMs?: number): Promise<number>;
}

/** Count UDP datagrams to `addr:port` inside `ns` (or here). Resolves once the socket is bound. */
export function udpReceiver(ns: string | undefined, addr: string, port: number): Promise<UdpReceiver> {
  const [cmd, args] = scriptArgs(ns, RECV_PY, RECV_JS, addr, String(port));
  const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  return new Promise((resolve, reject) => {
    const onExit = (code: number | null) => reject(new Error(`udp receiver exited early (${code}): ${err}`));
    child.once('exit', onExit);
    child.stdout.on('data', function ready(d: Buffer) {
      out += d.toString();
      if (!out.startsWith('ready\n')) return;
      child.stdout.off('data', ready);
      out = out.slice(6);
      child.stdout.on('data', (x: Buffer) => (out += x.toString()));
      resolve({
        stop: (settleMs = 150) =>
          new Promise<number>((res, rej) => {
            child.off('exit', onExit);
            setTimeout(() => {
              child.once('exit', () => {
                const n = parseInt(out.trim(), 10);
                if (Number.isNaN(n)) rej(new Error(`udp receiver said ${JSON.stringify(out)} ${err}`));
                else res(n);
              });
              child.stdin.end();
            }, settleMs);
          }),
      });
    });
  });
}
