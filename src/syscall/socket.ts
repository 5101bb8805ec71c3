// Sockets, socket options, network namespaces and paths opened as fds: what the socket, cgroup,
// sk_lookup, sockmap and netfilter attachments (src/links/) and their tests need from the kernel.
// Addresses and option values are written to the native arena, like bpf() attrs.

import { arena, NR, rawSyscall, rawSyscall3 } from './native.js';
import { SyscallError, E } from './errors.js';
import { FD } from './fd.js';
import { ioctl } from './os.js';

export const AF_UNIX = 1;
export const AF_INET = 2;
export const AF_INET6 = 10;
export const SOCK_STREAM = 1;
export const SOCK_DGRAM = 2;
export const SOCK_NONBLOCK = 0o4000;
export const SOCK_CLOEXEC = 0o2000000;
export const SOL_SOCKET = 1;
export const SO_RCVBUF = 8;
export const SO_DETACH_BPF = 27;
export const SO_ATTACH_BPF = 50;
export const SO_COOKIE = 57;
export const MSG_DONTWAIT = 0x40;
export const CLONE_NEWNET = 0x40000000;

const O_RDONLY = 0;
const O_DIRECTORY = 0o200000;
const O_CLOEXEC = 0o2000000;
const AT_FDCWD = -100n;
const F_DUPFD_CLOEXEC = 1030n;

// Not in native.ts's table: listen and accept4.
const NR_EXTRA = process.arch === 'arm64' ? { listen: 201, accept4: 242 } : { listen: 50, accept4: 288 };

/** A socket address: IPv4/IPv6 (`address` in text form) with a port, or a unix path. */
export type SockAddr = { family: 'inet' | 'inet6'; address: string; port: number } | { family: 'unix'; path: string };

/** An fd given as a number or an FD. */
export type FdLike = number | FD;

export function fdNumber(fd: FdLike): number {
  return typeof fd === 'number' ? fd : fd.value;
}

function check(r: number, syscall: string, context?: string): number {
  if (r < 0) throw new SyscallError(syscall, undefined, -r, context);
  return r;
}

/** socket(2), close-on-exec. */
export function sockOpen(domain: number, type: number, protocol = 0, context?: string): FD {
  return new FD(check(rawSyscall3(NR.socket, BigInt(domain), BigInt(type | SOCK_CLOEXEC), BigInt(protocol)), 'socket', context));
}

/** Encode a sockaddr. */
export function encodeSockAddr(a: SockAddr): Buffer {
  if (a.family === 'unix') {
    const p = Buffer.from(a.path, 'utf8');
    if (p.length > 107) throw new TypeError(`unix socket path too long (${p.length} bytes, at most 107): ${a.path}`);
    const b = Buffer.alloc(2 + p.length + 1);
    b.writeUInt16LE(AF_UNIX, 0);
    p.copy(b, 2);
    return b;
  }
  if (!Number.isInteger(a.port) || a.port < 0 || a.port > 65535) throw new TypeError(`invalid port ${a.port}`);
  if (a.family === 'inet') {
    const parts = a.address.split('.').map(Number);
    if (parts.length !== 4 || parts.some((x) => !Number.isInteger(x) || x < 0 || x > 255)) throw new TypeError(`invalid IPv4 address "${a.address}"`);
    const b = Buffer.alloc(16);
    b.writeUInt16LE(AF_INET, 0);
    b.writeUInt16BE(a.port, 2);
    Buffer.from(parts).copy(b, 4);
    return b;
  }
  const b = Buffer.alloc(28);
  b.writeUInt16LE(AF_INET6, 0);
  b.writeUInt16BE(a.port, 2);
  parseIpv6(a.address).copy(b, 8);
  return b;
}

function parseIpv6(s: string): Buffer {
  const out = Buffer.alloc(16);
  const [head, tail] = s.includes('::') ? s.split('::') : [s, undefined];
  const hs = head ? head.split(':') : [];
  const ts = tail ? tail.split(':') : [];
  if (tail === undefined && hs.length !== 8) throw new TypeError(`invalid IPv6 address "${s}"`);
  const words = [...hs, ...new Array(8 - hs.length - ts.length).fill('0'), ...ts];
  words.forEach((w, i) => {
    const v = parseInt(w, 16);
    if (!/^[0-9a-fA-F]{1,4}$/.test(w) || Number.isNaN(v)) throw new TypeError(`invalid IPv6 address "${s}"`);
    out.writeUInt16BE(v, i * 2);
  });
  return out;
}

/** Decode a sockaddr_in / sockaddr_in6 / sockaddr_un. */
export function decodeSockAddr(b: Buffer): SockAddr {
  const family = b.readUInt16LE(0);
  if (family === AF_INET) return { family: 'inet', address: [...b.subarray(4, 8)].join('.'), port: b.readUInt16BE(2) };
  if (family === AF_INET6) {
    const words: string[] = [];
    for (let i = 0; i < 8; i++) words.push(b.readUInt16BE(8 + i * 2).toString(16));
    return { family: 'inet6', address: words.join(':'), port: b.readUInt16BE(2) };
  }
  if (family === AF_UNIX) {
    const p = b.subarray(2);
    const z = p.indexOf(0);
    return { family: 'unix', path: p.toString('utf8', 0, z < 0 ? p.length : z) };
  }
  throw new TypeError(`unknown address family ${family}`);
}

function withAddr(nr: number, fd: FdLike, a: SockAddr): number {
  const bytes = encodeSockAddr(a);
  arena.reserve(bytes.length + 64);
  arena.reset();
  const addr = arena.copyIn(bytes);
  return rawSyscall3(nr, BigInt(fdNumber(fd)), addr, BigInt(bytes.length));
}

export function sockBind(fd: FdLike, a: SockAddr, context?: string): void {
  check(withAddr(NR.bind, fd, a), 'bind', context);
}

/** connect(2); returns 0 or `-errno` (EINPROGRESS on non-blocking sockets, ECONNREFUSED, EPERM...). */
export function sockTryConnect(fd: FdLike, a: SockAddr): number {
  return withAddr(NR.connect, fd, a);
}

export function sockConnect(fd: FdLike, a: SockAddr, context?: string): void {
  check(sockTryConnect(fd, a), 'connect', context);
}

export function sockListen(fd: FdLike, backlog = 16, context?: string): void {
  check(rawSyscall3(NR_EXTRA.listen, BigInt(fdNumber(fd)), BigInt(backlog), 0n), 'listen', context);
}

/** accept4(2), close-on-exec; undefined when nothing is pending on a non-blocking socket. */
export function sockAccept(fd: FdLike, flags = 0, context?: string): FD | undefined {
  const r = rawSyscall(NR_EXTRA.accept4, BigInt(fdNumber(fd)), 0n, 0n, BigInt(flags | SOCK_CLOEXEC));
  if (r === -E.EAGAIN) return undefined;
  return new FD(check(r, 'accept4', context));
}

function nameOf(nr: number, syscall: string, fd: FdLike): SockAddr {
  arena.reserve(256);
  arena.reset();
  const buf = arena.alloc(128);
  const len = arena.alloc(4);
  arena.view.writeUInt32LE(128, len.off);
  check(rawSyscall3(nr, BigInt(fdNumber(fd)), buf.addr, len.addr), syscall);
  return decodeSockAddr(Buffer.from(arena.view.subarray(buf.off, buf.off + arena.view.readUInt32LE(len.off))));
}

/** getsockname(2). */
export function sockName(fd: FdLike): SockAddr {
  return nameOf(NR.getsockname, 'getsockname', fd);
}

/** The port a socket is bound to. */
export function sockPort(fd: FdLike): number {
  const a = sockName(fd);
  if (a.family === 'unix') throw new TypeError('a unix socket has no port');
  return a.port;
}

/** sendto(2); returns the bytes sent or `-errno`. */
export function sockTrySend(fd: FdLike, data: Uint8Array, to?: SockAddr, flags = 0): number {
  const addr = to ? encodeSockAddr(to) : undefined;
  arena.reserve(data.length + (addr?.length ?? 0) + 64);
  arena.reset();
  const d = data.length ? arena.copyIn(data) : 0n;
  const a = addr ? arena.copyIn(addr) : 0n;
  return rawSyscall(NR.sendto, BigInt(fdNumber(fd)), d, BigInt(data.length), BigInt(flags), a, BigInt(addr?.length ?? 0));
}

export function sockSend(fd: FdLike, data: Uint8Array, to?: SockAddr, flags = 0, context?: string): number {
  return check(sockTrySend(fd, data, to, flags), 'sendto', context);
}

/**
 * recvfrom(2) of at most `max` bytes, by default without blocking: undefined when nothing is queued
 * (EAGAIN). `from` is the sender's address for datagram sockets.
 */
export function sockRecv(fd: FdLike, max = 65536, flags = MSG_DONTWAIT, context?: string): { data: Buffer; from?: SockAddr } | undefined {
  arena.reserve(max + 256);
  arena.reset();
  const buf = arena.alloc(max);
  const from = arena.alloc(128);
  const len = arena.alloc(4);
  arena.view.writeUInt32LE(128, len.off);
  const r = rawSyscall(NR.recvfrom, BigInt(fdNumber(fd)), buf.addr, BigInt(max), BigInt(flags), from.addr, len.addr);
  if (r === -E.EAGAIN) return undefined;
  check(r, 'recvfrom', context);
  const data = Buffer.from(arena.view.subarray(buf.off, buf.off + r));
  const flen = arena.view.readUInt32LE(len.off);
  const fromAddr = flen >= 2 ? Buffer.from(arena.view.subarray(from.off, from.off + flen)) : undefined;
  let decoded: SockAddr | undefined;
  try {
    decoded = fromAddr && fromAddr.readUInt16LE(0) !== 0 ? decodeSockAddr(fromAddr) : undefined;
  } catch {
    decoded = undefined;
  }
  return decoded ? { data, from: decoded } : { data };
}

/** setsockopt(2); a number value is passed as a 4-byte int. Returns 0 or `-errno`. */
export function trySetsockopt(fd: FdLike, level: number, name: number, value: Uint8Array | number): number {
  const bytes = typeof value === 'number' ? Buffer.alloc(4) : value;
  if (typeof value === 'number') (bytes as Buffer).writeInt32LE(value, 0);
  arena.reserve(bytes.length + 64);
  arena.reset();
  const v = arena.copyIn(bytes);
  return rawSyscall(NR.setsockopt, BigInt(fdNumber(fd)), BigInt(level), BigInt(name), v, BigInt(bytes.length));
}

export function setsockopt(fd: FdLike, level: number, name: number, value: Uint8Array | number, context?: string): void {
  check(trySetsockopt(fd, level, name, value), 'setsockopt', context);
}

/** getsockopt(2) into `size` bytes; returns the bytes the kernel wrote. */
export function getsockopt(fd: FdLike, level: number, name: number, size = 4, context?: string): Buffer {
  arena.reserve(size + 64);
  arena.reset();
  const v = arena.alloc(size);
  const len = arena.alloc(4);
  arena.view.writeUInt32LE(size, len.off);
  check(rawSyscall(NR.getsockopt, BigInt(fdNumber(fd)), BigInt(level), BigInt(name), v.addr, len.addr), 'getsockopt', context);
  return Buffer.from(arena.view.subarray(v.off, v.off + arena.view.readUInt32LE(len.off)));
}

/** The socket's cookie (SO_COOKIE), or undefined if `fd` is not an open socket. */
export function socketCookie(fd: FdLike): bigint | undefined {
  try {
    return getsockopt(fd, SOL_SOCKET, SO_COOKIE, 8).readBigUInt64LE(0);
  } catch {
    return undefined;
  }
}

/** openat(2) read-only, close-on-exec; `directory` adds O_DIRECTORY. */
export function openPathFd(path: string, directory = false, context?: string): FD {
  arena.reserve(Buffer.byteLength(path) * 1 + 64);
  arena.reset();
  const p = arena.cString(path);
  const r = rawSyscall(NR.openat, AT_FDCWD, p, BigInt(O_RDONLY | O_CLOEXEC | (directory ? O_DIRECTORY : 0)), 0n);
  return new FD(check(r, 'openat', context ?? `open ${path}`));
}

/** A new FD for the open file behind the fd number `fd` (close-on-exec). */
export function dupFdNumber(fd: FdLike, context?: string): FD {
  return new FD(check(rawSyscall3(NR.fcntl, BigInt(fdNumber(fd)), F_DUPFD_CLOEXEC, 1n), 'fcntl', context ?? 'dup'));
}

/** The network namespace of the calling thread, as an fd. */
export function openNetns(path = '/proc/thread-self/ns/net'): FD {
  return openPathFd(path, false, `open network namespace ${path}`);
}

/** setns(2): move the calling thread into the namespace behind `fd` (a network namespace by default). */
export function setNs(fd: FdLike, nstype = CLONE_NEWNET, context?: string): void {
  check(rawSyscall3(NR.setns, BigInt(fdNumber(fd)), BigInt(nstype), 0n), 'setns', context);
}

/** unshare(2): give the calling thread new namespaces (a new network namespace by default). */
export function unshareNs(flags = CLONE_NEWNET, context?: string): void {
  check(rawSyscall3(NR.unshare, BigInt(flags), 0n, 0n), 'unshare', context);
}

/**
 * Run `fn` with the calling thread in the network namespace `netns` (a path such as `/run/netns/x`
 * or `/proc/PID/ns/net`, or an fd), then move it back, even if `fn` throws.
 */
export function inNetns<T>(netns: string | FdLike, fn: () => T): T {
  const back = openNetns();
  try {
    const target = typeof netns === 'string' ? openNetns(netns) : undefined;
    try {
      setNs(target ?? (netns as FdLike), CLONE_NEWNET, `enter network namespace ${typeof netns === 'string' ? netns : `fd ${fdNumber(netns)}`}`);
    } finally {
      target?.close();
    }
    try {
      return fn();
    } finally {
      setNs(back, CLONE_NEWNET, 'return to the original network namespace');
    }
  } finally {
    back.close();
  }
}

const SIOCGIFFLAGS = 0x8913n;
const SIOCSIFFLAGS = 0x8914n;
const IFF_UP = 1;

/** Bring an interface up (`ip link set NAME up`) in the calling thread's network namespace. */
export function interfaceUp(name = 'lo'): void {
  const s = sockOpen(AF_INET, SOCK_DGRAM, 0, 'socket for SIOCSIFFLAGS');
  try {
    arena.reserve(128);
    arena.reset();
    const ifr = arena.alloc(40);
    arena.view.write(name, ifr.off, 15, 'utf8');
    ioctl(s.value, SIOCGIFFLAGS, ifr.addr, `SIOCGIFFLAGS ${name}`);
    arena.view.writeUInt16LE(arena.view.readUInt16LE(ifr.off + 16) | IFF_UP, ifr.off + 16);
    ioctl(s.value, SIOCSIFFLAGS, ifr.addr, `SIOCSIFFLAGS ${name} up`);
  } finally {
    s.close();
  }
}
