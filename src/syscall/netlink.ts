// rtnetlink: the route netlink socket XDP (IFLA_XDP) and traffic control (qdiscs, cls_bpf filters) are
// configured through. Messages are built and parsed as data: the headers (nlmsghdr, nlmsgerr, ifinfomsg,
// tcmsg, rtattr, sockaddr_nl) come from the generated kernel layouts, attributes are (type, bytes) pairs,
// nested ones built by a callback. A request is sent with NLM_F_ACK and read until its ack; a failure
// becomes a NetlinkError carrying the kernel's extended-ack text ("Underlying driver does not support XDP
// in native mode", ...). The constants below are #defines or anonymous enums of the uapi headers
// (linux/netlink.h, rtnetlink.h, if_link.h, pkt_sched.h, pkt_cls.h), so they are not in kernel BTF.

import { readFileSync } from 'node:fs';
import { arena, NR, rawSyscall } from './native.js';
import { layoutSize, writeFields, readField, type FieldName, type LayoutName } from './layout.js';
import { NLMSGERR_ATTR } from './kernel-defs.generated.js';
import { SyscallError, E } from './errors.js';
import { FD } from './fd.js';

export const AF_NETLINK = 16;
export const AF_UNSPEC = 0;
export const NETLINK_ROUTE = 0;
const SOCK_RAW = 3;
const SOCK_CLOEXEC = 0o2000000;
const SOL_SOCKET = 1;
const SO_RCVTIMEO = 20;
const SOL_NETLINK = 270;
const NETLINK_CAP_ACK = 10;
const NETLINK_EXT_ACK = 11;
const MSG_PEEK = 2;
const MSG_TRUNC = 0x20;

/** nlmsghdr.nlmsg_flags. */
export const NLM_F = {
  REQUEST: 0x1,
  MULTI: 0x2,
  ACK: 0x4,
  ECHO: 0x8,
  DUMP: 0x300,
  // modifiers of NEW requests
  REPLACE: 0x100,
  EXCL: 0x200,
  CREATE: 0x400,
  APPEND: 0x800,
  // flags of an NLMSG_ERROR reply
  CAPPED: 0x100,
  ACK_TLVS: 0x200,
} as const;

/** Control message types. */
export const NLMSG = { NOOP: 1, ERROR: 2, DONE: 3, OVERRUN: 4 } as const;

/** The rtnetlink message types tsbpf uses. */
export const RTM = {
  NEWLINK: 16,
  DELLINK: 17,
  GETLINK: 18,
  SETLINK: 19,
  NEWQDISC: 36,
  DELQDISC: 37,
  GETQDISC: 38,
  NEWTFILTER: 44,
  DELTFILTER: 45,
  GETTFILTER: 46,
} as const;
const RTM_NAMES: Record<number, string> = Object.fromEntries(Object.entries(RTM).map(([k, v]) => [v, `RTM_${k}`]));

/** Attribute type flags (nla_type high bits). */
export const NLA_F_NESTED = 0x8000;
const NLA_TYPE_MASK = 0x3fff;

/** IFLA_* (linux/if_link.h) used here. */
export const IFLA = { IFNAME: 3, XDP: 43 } as const;
/** Members of the IFLA_XDP nest. */
export const IFLA_XDP = { FD: 1, ATTACHED: 2, FLAGS: 3, PROG_ID: 4, DRV_PROG_ID: 5, SKB_PROG_ID: 6, HW_PROG_ID: 7, EXPECTED_FD: 8 } as const;
/** XDP_FLAGS_* for IFLA_XDP_FLAGS and XDP link creation. */
export const XDP_FLAGS = { UPDATE_IF_NOEXIST: 1, SKB_MODE: 2, DRV_MODE: 4, HW_MODE: 8, REPLACE: 16 } as const;
/** IFLA_XDP_ATTACHED values. */
export const XDP_ATTACHED = { NONE: 0, DRV: 1, SKB: 2, HW: 3, MULTI: 4 } as const;

/** TCA_* (linux/rtnetlink.h) used here. */
export const TCA = { KIND: 1, OPTIONS: 2 } as const;
/** Members of the TCA_OPTIONS nest of a "bpf" (cls_bpf) filter. */
export const TCA_BPF = { ACT: 1, POLICE: 2, CLASSID: 3, OPS_LEN: 4, OPS: 5, FD: 6, NAME: 7, FLAGS: 8, FLAGS_GEN: 9, TAG: 10, ID: 11 } as const;
/** TCA_BPF_FLAGS: the program's return code is the action (direct-action mode). */
export const TCA_BPF_FLAG_ACT_DIRECT = 1;
/** Traffic-control handles (linux/pkt_sched.h): the clsact qdisc and its two hook points. */
export const TC_H = {
  UNSPEC: 0,
  ROOT: 0xffffffff,
  CLSACT: 0xfffffff1,
  INGRESS: 0xfffffff1,
  MIN_INGRESS: 0xfff2,
  MIN_EGRESS: 0xfff3,
} as const;
/** `TC_H_MAKE(maj, min)`. */
export const tcHandle = (major: number, minor: number): number => ((major & 0xffff0000) | (minor & 0xffff)) >>> 0;
/** ETH_P_ALL: a filter that sees every protocol. */
export const ETH_P_ALL = 0x0003;

const RECV_TIMEOUT_S = 5;

/** A netlink request failed. `extAck` is the kernel's explanation, when it gave one. */
export class NetlinkError extends SyscallError {
  readonly extAck?: string;
  /** The rtnetlink message type that failed, e.g. `RTM_SETLINK`. */
  readonly request: string;
  constructor(request: string, errnoCode: number, context?: string, extAck?: string) {
    super('netlink', request, errnoCode, context, extAck ? `kernel: ${extAck}` : undefined);
    this.extAck = extAck;
    this.request = request;
  }
}

const align4 = (n: number): number => (n + 3) & ~3;

// ---------------------------------------------------------------------------
// Building messages

/** A netlink message under construction: a header, a fixed struct, then attributes (nests allowed). */
export class NlMessage {
  #buf = Buffer.alloc(256);
  #len: number;
  readonly type: number;

  constructor(type: number, flags: number) {
    this.type = type;
    this.#len = layoutSize('nlmsghdr');
    writeFields(this.#buf, 0, 'nlmsghdr', { nlmsg_type: type, nlmsg_flags: flags | NLM_F.REQUEST });
  }

  #grow(n: number): number {
    const off = this.#len;
    const end = align4(off + n);
    if (end > this.#buf.length) {
      const b = Buffer.alloc(Math.max(end, this.#buf.length * 2));
      this.#buf.copy(b, 0, 0, this.#len);
      this.#buf = b;
    }
    this.#buf.fill(0, off, end);
    this.#len = end;
    return off;
  }

  /** Append a kernel struct (ifinfomsg, tcmsg) described by its generated layout. */
  struct<L extends LayoutName>(layout: L, values: Partial<Record<FieldName<L>, number | bigint>>): this {
    const off = this.#grow(layoutSize(layout));
    writeFields(this.#buf, off, layout, values);
    return this;
  }

  /** Append one attribute with raw bytes. */
  attr(type: number, data: Uint8Array): this {
    const hdr = layoutSize('rtattr');
    const off = this.#grow(hdr + data.length);
    writeFields(this.#buf, off, 'rtattr', { rta_len: hdr + data.length, rta_type: type });
    this.#buf.set(data, off + hdr);
    return this;
  }

  u8(type: number, v: number): this {
    return this.attr(type, Buffer.of(v & 0xff));
  }

  u16(type: number, v: number): this {
    const b = Buffer.alloc(2);
    b.writeUInt16LE(v);
    return this.attr(type, b);
  }

  u32(type: number, v: number): this {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v >>> 0);
    return this.attr(type, b);
  }

  s32(type: number, v: number): this {
    const b = Buffer.alloc(4);
    b.writeInt32LE(v);
    return this.attr(type, b);
  }

  /** A NUL-terminated string attribute. */
  str(type: number, s: string): this {
    return this.attr(type, Buffer.from(s + '\0', 'utf8'));
  }

  /** A nested attribute whose members `fill` appends. */
  nest(type: number, fill: (m: this) => void): this {
    const hdr = layoutSize('rtattr');
    const off = this.#grow(hdr);
    fill(this);
    writeFields(this.#buf, off, 'rtattr', { rta_len: this.#len - off, rta_type: type | NLA_F_NESTED });
    return this;
  }

  /** The finished bytes with length and sequence number filled in. */
  bytes(seq: number): Buffer {
    writeFields(this.#buf, 0, 'nlmsghdr', { nlmsg_len: this.#len, nlmsg_seq: seq });
    return Buffer.from(this.#buf.subarray(0, this.#len));
  }
}

// ---------------------------------------------------------------------------
// Parsing replies

/** One received message: header fields and the bytes after the header. */
export interface NlReply {
  type: number;
  flags: number;
  seq: number;
  payload: Buffer;
}

/** Split a datagram into messages. */
export function parseMessages(buf: Buffer): NlReply[] {
  const out: NlReply[] = [];
  const H = layoutSize('nlmsghdr');
  let off = 0;
  while (off + H <= buf.length) {
    const len = Number(readField(buf, off, 'nlmsghdr', 'nlmsg_len'));
    if (len < H || off + len > buf.length) break;
    out.push({
      type: Number(readField(buf, off, 'nlmsghdr', 'nlmsg_type')),
      flags: Number(readField(buf, off, 'nlmsghdr', 'nlmsg_flags')),
      seq: Number(readField(buf, off, 'nlmsghdr', 'nlmsg_seq')),
      payload: buf.subarray(off + H, off + len),
    });
    off += align4(len);
  }
  return out;
}

/** Attributes from `off` to the end of `buf`, by type (flag bits stripped). Later duplicates win. */
export function parseAttrs(buf: Buffer, off = 0): Map<number, Buffer> {
  const out = new Map<number, Buffer>();
  const H = layoutSize('rtattr');
  while (off + H <= buf.length) {
    const len = Number(readField(buf, off, 'rtattr', 'rta_len'));
    const type = Number(readField(buf, off, 'rtattr', 'rta_type')) & NLA_TYPE_MASK;
    if (len < H || off + len > buf.length) break;
    out.set(type, buf.subarray(off + H, off + len));
    off += align4(len);
  }
  return out;
}

/** A string attribute's text (NUL dropped). */
export function attrString(b: Buffer | undefined): string | undefined {
  if (!b) return undefined;
  const z = b.indexOf(0);
  return b.toString('utf8', 0, z < 0 ? b.length : z);
}

export const attrU32 = (b: Buffer | undefined): number | undefined => (b && b.length >= 4 ? b.readUInt32LE(0) : undefined);
export const attrU8 = (b: Buffer | undefined): number | undefined => (b && b.length >= 1 ? b.readUInt8(0) : undefined);

/** error and extended-ack text of an NLMSG_ERROR (or a dump's NLMSG_DONE) reply. */
function parseError(m: NlReply, isDone: boolean): { errno: number; msg?: string } {
  if (m.payload.length < 4) return { errno: 0 };
  const errno = -m.payload.readInt32LE(0);
  if (!(m.flags & NLM_F.ACK_TLVS)) return { errno };
  let tlvOff: number;
  if (isDone) {
    tlvOff = 4;
  } else {
    // nlmsgerr = the error and the request's header, then (unless capped) the request's payload.
    tlvOff = layoutSize('nlmsgerr');
    if (!(m.flags & NLM_F.CAPPED)) {
      const reqLen = Number(readField(m.payload, 0, 'nlmsgerr', 'msg.nlmsg_len'));
      tlvOff += align4(Math.max(0, reqLen - layoutSize('nlmsghdr')));
    }
  }
  if (tlvOff > m.payload.length) return { errno };
  const msg = attrString(parseAttrs(m.payload, tlvOff).get(NLMSGERR_ATTR.MSG));
  return { errno, msg: msg || undefined };
}

// ---------------------------------------------------------------------------
// The socket

let seqCounter = Math.floor(Date.now() / 1000) & 0xffffff;

function setsockoptInt(fd: number, level: number, name: number, value: number): number {
  arena.reserve(64);
  arena.reset();
  const v = arena.alloc(4);
  arena.view.writeInt32LE(value, v.off);
  return rawSyscall(NR.setsockopt, BigInt(fd), BigInt(level), BigInt(name), v.addr, 4n);
}

/**
 * An rtnetlink socket (close-on-exec, in the calling thread's network namespace). Requests are
 * synchronous: the kernel handles rtnetlink requests inside sendto() and queues the reply before it
 * returns, so the following recv never waits long (a 5 s receive timeout guards against surprises).
 */
export class RtNetlink {
  #fd: FD;

  constructor() {
    const r = rawSyscall(NR.socket, BigInt(AF_NETLINK), BigInt(SOCK_RAW | SOCK_CLOEXEC), BigInt(NETLINK_ROUTE));
    if (r < 0) throw new SyscallError('socket', 'AF_NETLINK', -r, 'open an rtnetlink socket');
    this.#fd = new FD(r);
    const fd = this.#fd.value;
    // Best effort: extended acks (5.0+) and capped acks only improve error reports.
    setsockoptInt(fd, SOL_NETLINK, NETLINK_EXT_ACK, 1);
    setsockoptInt(fd, SOL_NETLINK, NETLINK_CAP_ACK, 1);
    arena.reserve(64);
    arena.reset();
    const tv = arena.alloc(16);
    arena.view.writeBigInt64LE(BigInt(RECV_TIMEOUT_S), tv.off);
    rawSyscall(NR.setsockopt, BigInt(fd), BigInt(SOL_SOCKET), BigInt(SO_RCVTIMEO), tv.addr, 16n);
  }

  close(): void {
    this.#fd.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  #send(bytes: Buffer, what: string, context?: string): void {
    const sa = layoutSize('sockaddr_nl');
    arena.reserve(bytes.length + sa + 64);
    arena.reset();
    const addr = arena.alloc(sa);
    writeFields(arena.view, addr.off, 'sockaddr_nl', { nl_family: AF_NETLINK });
    const data = arena.copyIn(bytes);
    let r: number;
    do {
      r = rawSyscall(NR.sendto, BigInt(this.#fd.value), data, BigInt(bytes.length), 0n, addr.addr, BigInt(sa));
    } while (r === -E.EINTR);
    if (r < 0) throw new NetlinkError(what, -r, context);
  }

  #recv(what: string, context?: string): Buffer {
    const fd = BigInt(this.#fd.value);
    arena.reserve(64);
    arena.reset();
    let n: number;
    do {
      n = rawSyscall(NR.recvfrom, fd, 0n, 0n, BigInt(MSG_PEEK | MSG_TRUNC), 0n, 0n);
    } while (n === -E.EINTR);
    if (n < 0) {
      if (n === -E.EAGAIN) throw new NetlinkError(what, E.ETIMEDOUT, context, `no reply from the kernel within ${RECV_TIMEOUT_S} s`);
      throw new NetlinkError(what, -n, context);
    }
    arena.reserve(n + 64);
    arena.reset();
    const buf = arena.alloc(Math.max(n, 16));
    do {
      n = rawSyscall(NR.recvfrom, fd, buf.addr, BigInt(Math.max(n, 16)), 0n, 0n, 0n);
    } while (n === -E.EINTR);
    if (n < 0) throw new NetlinkError(what, -n, context);
    return Buffer.from(arena.view.subarray(buf.off, buf.off + n));
  }

  /**
   * Send `msg` and collect its replies: for a request, what the kernel echoes (NLM_F_ECHO) up to the
   * ack; for a dump (NLM_F_DUMP in the flags), every message up to NLMSG_DONE. Throws NetlinkError.
   */
  request(msg: NlMessage, context?: string): NlReply[] {
    const seq = (seqCounter = (seqCounter + 1) & 0x7fffffff);
    const bytes = msg.bytes(seq);
    const flags = Number(readField(bytes, 0, 'nlmsghdr', 'nlmsg_flags'));
    // rtnetlink types come in fours (NEW, DEL, GET, SET): a GET with NLM_F_DUMP ends with NLMSG_DONE, not an ack.
    const dump = (flags & NLM_F.DUMP) === NLM_F.DUMP && msg.type % 4 === 2;
    if (!dump) writeFields(bytes, 0, 'nlmsghdr', { nlmsg_flags: flags | NLM_F.ACK });
    const what = RTM_NAMES[msg.type] ?? `netlink type ${msg.type}`;
    this.#send(bytes, what, context);
    const out: NlReply[] = [];
    for (;;) {
      for (const m of parseMessages(this.#recv(what, context))) {
        if (m.seq !== seq) continue;
        if (m.type === NLMSG.ERROR) {
          const { errno, msg: text } = parseError(m, false);
          if (errno !== 0) throw new NetlinkError(what, errno, context, text);
          return out;
        }
        if (m.type === NLMSG.DONE) {
          const { errno, msg: text } = parseError(m, true);
          if (errno > 0) throw new NetlinkError(what, errno, context, text);
          return out;
        }
        if (m.type === NLMSG.NOOP) continue;
        out.push(m);
      }
    }
  }
}

/** Open an rtnetlink socket, run `fn` with it, close it. */
export function withRtNetlink<T>(fn: (nl: RtNetlink) => T): T {
  const nl = new RtNetlink();
  try {
    return fn(nl);
  } finally {
    nl.close();
  }
}

// ---------------------------------------------------------------------------
// Interfaces

export interface XdpState {
  /** IFLA_XDP_ATTACHED: 'none', 'drv', 'skb', 'hw' or 'multi'. */
  attached: 'none' | 'drv' | 'skb' | 'hw' | 'multi';
  /** The program id (when exactly one program is attached), else 0. */
  progId: number;
  drvProgId: number;
  skbProgId: number;
  hwProgId: number;
}

export interface LinkState {
  ifindex: number;
  name: string;
  xdp: XdpState;
}

const ATTACHED_NAMES = ['none', 'drv', 'skb', 'hw', 'multi'] as const;

function parseLink(m: NlReply): LinkState {
  const ifindex = Number(readField(m.payload, 0, 'ifinfomsg', 'ifi_index'));
  const attrs = parseAttrs(m.payload, layoutSize('ifinfomsg'));
  const xdpRaw = attrs.get(IFLA.XDP);
  const x = xdpRaw ? parseAttrs(xdpRaw) : new Map<number, Buffer>();
  const attached = ATTACHED_NAMES[attrU8(x.get(IFLA_XDP.ATTACHED)) ?? 0] ?? 'multi';
  const progId = attrU32(x.get(IFLA_XDP.PROG_ID)) ?? 0;
  return {
    ifindex,
    name: attrString(attrs.get(IFLA.IFNAME)) ?? '',
    xdp: {
      attached,
      progId,
      drvProgId: attrU32(x.get(IFLA_XDP.DRV_PROG_ID)) ?? (attached === 'drv' ? progId : 0),
      skbProgId: attrU32(x.get(IFLA_XDP.SKB_PROG_ID)) ?? (attached === 'skb' ? progId : 0),
      hwProgId: attrU32(x.get(IFLA_XDP.HW_PROG_ID)) ?? (attached === 'hw' ? progId : 0),
    },
  };
}

/** RTM_GETLINK for one interface (by index or name); ENODEV when there is none. */
export function getLink(iface: string | number, nl?: RtNetlink): LinkState {
  const run = (s: RtNetlink): LinkState => {
    const msg = new NlMessage(RTM.GETLINK, 0).struct('ifinfomsg', { ifi_family: AF_UNSPEC, ifi_index: typeof iface === 'number' ? iface : 0 });
    if (typeof iface === 'string') msg.str(IFLA.IFNAME, iface);
    const replies = s.request(msg, `look up interface ${JSON.stringify(iface)}`).filter((m) => m.type === RTM.NEWLINK);
    if (!replies.length) throw new NetlinkError('RTM_GETLINK', E.ENODEV, `look up interface ${JSON.stringify(iface)}`);
    return parseLink(replies[0]);
  };
  return nl ? run(nl) : withRtNetlink(run);
}

/**
 * if_nametoindex(3) in the calling thread's network namespace (through rtnetlink; /sys/class/net only
 * as a fallback, since sysfs shows the namespace it was mounted in). Returns 0 when there is no such
 * interface.
 */
export function ifNameToIndex(name: string): number {
  if (!name || name.length > 15 || /[/\s]/.test(name)) return 0;
  try {
    return getLink(name).ifindex;
  } catch (e) {
    if (e instanceof SyscallError && e.errnoCode === E.ENODEV) return 0;
    try {
      return parseInt(readFileSync(`/sys/class/net/${name}/ifindex`, 'utf8'), 10) || 0;
    } catch {
      return 0;
    }
  }
}

/** The name of interface `ifindex`, or undefined. */
export function ifIndexToName(ifindex: number): string | undefined {
  try {
    return getLink(ifindex).name;
  } catch {
    return undefined;
  }
}

/**
 * RTM_SETLINK with an IFLA_XDP nest: attach program `fd` (or detach with -1) in the mode `flags` say.
 * `expectedFd` (with XDP_FLAGS_REPLACE, 5.7+) makes the kernel act only if that program is attached.
 */
export function setLinkXdp(ifindex: number, fd: number, flags: number, expectedFd?: number, context?: string): void {
  const msg = new NlMessage(RTM.SETLINK, 0)
    .struct('ifinfomsg', { ifi_family: AF_UNSPEC, ifi_index: ifindex })
    .nest(IFLA.XDP, (m) => {
      m.s32(IFLA_XDP.FD, fd);
      if (expectedFd !== undefined) m.s32(IFLA_XDP.EXPECTED_FD, expectedFd);
      if (flags) m.u32(IFLA_XDP.FLAGS, flags);
    });
  withRtNetlink((nl) => nl.request(msg, context));
}

// ---------------------------------------------------------------------------
// Traffic control

export interface TcObject {
  /** "clsact", "bpf", "matchall", ... */
  kind: string;
  ifindex: number;
  handle: number;
  parent: number;
  /** Filters: priority (upper 16 bits of tcm_info). */
  priority: number;
  /** Filters: protocol in host order (lower 16 bits of tcm_info, network order on the wire). */
  protocol: number;
  /** The nested TCA_OPTIONS attributes, by type. */
  options: Map<number, Buffer>;
}

function parseTc(m: NlReply): TcObject {
  const p = m.payload;
  const info = Number(readField(p, 0, 'tcmsg', 'tcm_info'));
  const attrs = parseAttrs(p, layoutSize('tcmsg'));
  const opts = attrs.get(TCA.OPTIONS);
  return {
    kind: attrString(attrs.get(TCA.KIND)) ?? '',
    ifindex: Number(readField(p, 0, 'tcmsg', 'tcm_ifindex')),
    handle: Number(readField(p, 0, 'tcmsg', 'tcm_handle')),
    parent: Number(readField(p, 0, 'tcmsg', 'tcm_parent')),
    priority: info >>> 16,
    protocol: ((info & 0xff) << 8) | ((info >>> 8) & 0xff),
    options: opts ? parseAttrs(opts) : new Map(),
  };
}

/** tcm_info of a filter: priority and protocol (in network order on the wire). */
export const tcInfo = (priority: number, protocol: number): number =>
  (((priority & 0xffff) << 16) | ((protocol & 0xff) << 8) | ((protocol >>> 8) & 0xff)) >>> 0;

/** The qdiscs of interface `ifindex`. */
export function listQdiscs(ifindex: number, nl?: RtNetlink): TcObject[] {
  const run = (s: RtNetlink) =>
    s
      .request(new NlMessage(RTM.GETQDISC, NLM_F.DUMP).struct('tcmsg', { tcm_family: AF_UNSPEC, tcm_ifindex: ifindex }), `list qdiscs of ifindex ${ifindex}`)
      .filter((m) => m.type === RTM.NEWQDISC)
      .map(parseTc)
      .filter((q) => q.ifindex === ifindex);
  return nl ? run(nl) : withRtNetlink(run);
}

/** The filters of interface `ifindex` under `parent` (e.g. the clsact ingress hook). */
export function listFilters(ifindex: number, parent: number, nl?: RtNetlink): TcObject[] {
  const run = (s: RtNetlink) =>
    s
      .request(
        new NlMessage(RTM.GETTFILTER, NLM_F.DUMP).struct('tcmsg', { tcm_family: AF_UNSPEC, tcm_ifindex: ifindex, tcm_parent: parent }),
        `list filters of ifindex ${ifindex}`,
      )
      .filter((m) => m.type === RTM.NEWTFILTER)
      .map(parseTc)
      .filter((f) => f.ifindex === ifindex && f.parent === parent);
  return nl ? run(nl) : withRtNetlink(run);
}

/** Add a qdisc with no options (clsact). Returns false if one with that handle already existed. */
export function addQdisc(ifindex: number, kind: string, handle: number, parent: number, nl: RtNetlink, context?: string): boolean {
  try {
    nl.request(
      new NlMessage(RTM.NEWQDISC, NLM_F.CREATE | NLM_F.EXCL)
        .struct('tcmsg', { tcm_family: AF_UNSPEC, tcm_ifindex: ifindex, tcm_handle: handle, tcm_parent: parent })
        .str(TCA.KIND, kind),
      context,
    );
    return true;
  } catch (e) {
    if (e instanceof NetlinkError && e.errnoCode === E.EEXIST) return false;
    throw e;
  }
}

export function deleteQdisc(ifindex: number, kind: string, handle: number, parent: number, nl: RtNetlink, context?: string): void {
  nl.request(
    new NlMessage(RTM.DELQDISC, 0)
      .struct('tcmsg', { tcm_family: AF_UNSPEC, tcm_ifindex: ifindex, tcm_handle: handle, tcm_parent: parent })
      .str(TCA.KIND, kind),
    context,
  );
}

export interface BpfFilterSpec {
  ifindex: number;
  parent: number;
  /** 0: the kernel picks (the echo tells which). */
  priority: number;
  handle: number;
  protocol: number;
  progFd: number;
  name: string;
  flags: number;
}

/**
 * Add a cls_bpf filter (exclusively, EEXIST if priority/handle are taken, unless `replace`); returns it as
 * the kernel made it (NLM_F_ECHO tells the priority and handle it picked).
 */
export function addBpfFilter(f: BpfFilterSpec, nl: RtNetlink, context?: string, replace = false): TcObject {
  const replies = nl.request(
    new NlMessage(RTM.NEWTFILTER, NLM_F.CREATE | (replace ? NLM_F.REPLACE : NLM_F.EXCL) | NLM_F.ECHO)
      .struct('tcmsg', { tcm_family: AF_UNSPEC, tcm_ifindex: f.ifindex, tcm_parent: f.parent, tcm_handle: f.handle, tcm_info: tcInfo(f.priority, f.protocol) })
      .str(TCA.KIND, 'bpf')
      .nest(TCA.OPTIONS, (m) => {
        m.u32(TCA_BPF.FD, f.progFd);
        m.str(TCA_BPF.NAME, f.name);
        m.u32(TCA_BPF.FLAGS, f.flags);
      }),
    context,
  );
  const echo = replies.find((m) => m.type === RTM.NEWTFILTER);
  if (echo) return parseTc(echo);
  // No echo (should not happen): report what was asked.
  return { kind: 'bpf', ifindex: f.ifindex, handle: f.handle, parent: f.parent, priority: f.priority, protocol: f.protocol, options: new Map() };
}

/** One filter by parent/priority/protocol/handle, or undefined when it is gone. */
export function getFilter(ifindex: number, parent: number, priority: number, protocol: number, handle: number, kind: string, nl: RtNetlink): TcObject | undefined {
  try {
    const r = nl.request(
      new NlMessage(RTM.GETTFILTER, 0)
        .struct('tcmsg', { tcm_family: AF_UNSPEC, tcm_ifindex: ifindex, tcm_parent: parent, tcm_handle: handle, tcm_info: tcInfo(priority, protocol) })
        .str(TCA.KIND, kind),
    );
    const m = r.find((x) => x.type === RTM.NEWTFILTER);
    return m ? parseTc(m) : undefined;
  } catch (e) {
    if (e instanceof NetlinkError && (e.errnoCode === E.ENOENT || e.errnoCode === E.EINVAL || e.errnoCode === E.ENODEV)) return undefined;
    throw e;
  }
}

/** Delete exactly one filter (priority and handle both given). */
export function deleteFilter(ifindex: number, parent: number, priority: number, protocol: number, handle: number, kind: string, nl: RtNetlink, context?: string): void {
  nl.request(
    new NlMessage(RTM.DELTFILTER, 0)
      .struct('tcmsg', { tcm_family: AF_UNSPEC, tcm_ifindex: ifindex, tcm_parent: parent, tcm_handle: handle, tcm_info: tcInfo(priority, protocol) })
      .str(TCA.KIND, kind),
    context,
  );
}

