// Socket-level attachments: socket filters (SO_ATTACH_BPF on one socket), sk_lookup (a netns link) and the
// programs of sockmaps/sockhashes (sk_msg, sk_skb parser/verdict: a sockmap link on 6.10+, else PROG_ATTACH
// to the map).

import {
  BPF_ATTACH_TYPE, BPF_MAP_TYPE, BPF_PROG_TYPE, BpfError, E, FD, linkCreate, progAttach, progDetach, progQuery, trySetsockopt, setsockopt,
  socketCookie, openNetns, dupFdNumber, fdNumber, SOL_SOCKET, SO_ATTACH_BPF, SO_DETACH_BPF, SyscallError, type FdLike,
} from '../syscall/index.js';
import { NotSupportedError, TsbpfError } from '../errors.js';
import type { Program } from '../programs/program.js';
import type { BpfMap } from '../maps/map.js';
import { Link } from './link.js';

function requireType(prog: Program, type: number, what: string, section: string): void {
  if (prog.type !== type) {
    throw new TypeError(`program "${prog.name}" (type ${prog.type}) is not a ${what} program (SEC("${section}"))`);
  }
}

/**
 * Attach a socket filter (SEC("socket")) to a socket (SO_ATTACH_BPF). Returning 0 drops a packet, n keeps its
 * first n bytes. close() detaches (SO_DETACH_BPF) if the fd still refers to the same socket; the filter also
 * goes away with the socket.
 */
export function attachSocketFilter(prog: Program, socketFd: FdLike | { fd: number }): Link {
  requireType(prog, BPF_PROG_TYPE.SOCKET_FILTER, 'socket filter', 'socket');
  const fd = typeof socketFd === 'object' && !(socketFd instanceof FD) ? socketFd.fd : fdNumber(socketFd as FdLike);
  const cookie = socketCookie(fd);
  if (cookie === undefined) throw new TypeError(`fd ${fd} is not an open socket`);
  const r = trySetsockopt(fd, SOL_SOCKET, SO_ATTACH_BPF, prog.fd);
  if (r < 0) throw new SyscallError('setsockopt', 'SO_ATTACH_BPF', -r, `attach socket filter "${prog.name}" to socket fd ${fd}`);
  return new Link('socket_filter', `socket fd ${fd}`, prog.name, {
    detach: () => {
      // Only if the number still names the socket we attached to (it may have been closed and reused).
      if (socketCookie(fd) !== cookie) return;
      const d = trySetsockopt(fd, SOL_SOCKET, SO_DETACH_BPF, 0);
      if (d < 0 && d !== -E.ENOENT) throw new SyscallError('setsockopt', 'SO_DETACH_BPF', -d, `detach socket filter "${prog.name}" from socket fd ${fd}`);
    },
  });
}

/**
 * Attach an sk_lookup program to a network namespace (a netns link, 5.9+): it runs when a TCP connection
 * or UDP packet looks for a socket in that namespace and may pick one with bpf_sk_assign. `netns` is a path
 * (`/proc/PID/ns/net`, `/run/netns/NAME`) or an fd; default: the calling thread's namespace.
 */
export function attachSkLookup(prog: Program, netns?: string | FdLike): Link {
  requireType(prog, BPF_PROG_TYPE.SK_LOOKUP, 'sk_lookup', 'sk_lookup');
  const path = typeof netns === 'string' ? netns : netns === undefined ? '/proc/thread-self/ns/net' : `fd ${fdNumber(netns)}`;
  const ns = typeof netns === 'string' || netns === undefined ? openNetns(path) : undefined;
  try {
    const fd = linkCreate({ progFd: prog.fd, targetFd: ns ? ns.value : fdNumber(netns as FdLike), attachType: BPF_ATTACH_TYPE.SK_LOOKUP },
      `attach sk_lookup "${prog.name}" to network namespace ${path}`);
    return new Link('sk_lookup', path, prog.name, { fd });
  } catch (e) {
    if (e instanceof BpfError && (e.errnoCode === E.EINVAL || e.errnoCode === E.EBADF)) {
      if (e.errnoCode === E.EBADF) throw new TsbpfError(`${path} is not a network namespace (attachSkLookup wants /proc/PID/ns/net or /run/netns/NAME)`, { cause: e });
      throw new NotSupportedError('sk_lookup programs', '5.9', e.message);
    }
    throw e;
  } finally {
    ns?.close();
  }
}

/** Sockmap/sockhash hooks by name. */
export const SOCKMAP_ATTACH_TYPES = {
  msg_verdict: BPF_ATTACH_TYPE.SK_MSG_VERDICT,
  stream_parser: BPF_ATTACH_TYPE.SK_SKB_STREAM_PARSER,
  stream_verdict: BPF_ATTACH_TYPE.SK_SKB_STREAM_VERDICT,
  skb_verdict: BPF_ATTACH_TYPE.SK_SKB_VERDICT,
} as const;
export type SockmapAttachName = keyof typeof SOCKMAP_ATTACH_TYPES;

const SOCKMAP_NAME: Record<number, SockmapAttachName> = Object.fromEntries(Object.entries(SOCKMAP_ATTACH_TYPES).map(([k, v]) => [v, k as SockmapAttachName]));

export interface SockmapAttachOptions {
  /** `'link'`: a sockmap bpf_link (6.10+) or an error; `'attach'`: PROG_ATTACH; `'auto'` (default): a link, else PROG_ATTACH. */
  via?: 'auto' | 'link' | 'attach';
}

/**
 * Attach an sk_msg or sk_skb program to a SOCKMAP/SOCKHASH: it runs for the sockets in the map (those added
 * after the attach; sockets already in the map keep the programs they had). `attachType` is a name or a
 * BPF_ATTACH_TYPE (`SK_MSG_VERDICT`, `SK_SKB_STREAM_PARSER`, `SK_SKB_STREAM_VERDICT`, `SK_SKB_VERDICT`); by
 * default the only one an sk_msg program has. A sockmap bpf_link on 6.10+, else PROG_ATTACH (detached with
 * PROG_DETACH on close() or at exit).
 */
export function attachSockmap(prog: Program, map: BpfMap | FdLike, attachType?: number | SockmapAttachName, opts: SockmapAttachOptions = {}): Link {
  let type: number;
  if (attachType === undefined) {
    if (prog.type !== BPF_PROG_TYPE.SK_MSG) {
      throw new TypeError(`program "${prog.name}": say which sockmap hook: 'stream_parser' | 'stream_verdict' | 'skb_verdict'`);
    }
    type = BPF_ATTACH_TYPE.SK_MSG_VERDICT;
  } else if (typeof attachType === 'string') {
    type = SOCKMAP_ATTACH_TYPES[attachType];
    if (type === undefined) throw new TypeError(`unknown sockmap hook "${attachType}"; known: ${Object.keys(SOCKMAP_ATTACH_TYPES).join(', ')}`);
  } else type = attachType;
  const hook = SOCKMAP_NAME[type];
  if (!hook) throw new TypeError(`attach type ${type} is not a sockmap hook; known: ${Object.keys(SOCKMAP_ATTACH_TYPES).join(', ')}`);
  const wantType = type === BPF_ATTACH_TYPE.SK_MSG_VERDICT ? BPF_PROG_TYPE.SK_MSG : BPF_PROG_TYPE.SK_SKB;
  if (prog.type !== wantType) {
    throw new TypeError(`program "${prog.name}" cannot attach as ${hook}: that hook takes ${wantType === BPF_PROG_TYPE.SK_MSG ? 'sk_msg (SEC("sk_msg"))' : 'sk_skb (SEC("sk_skb/..."))'} programs`);
  }
  let mapFd: number;
  let mapName: string;
  if (typeof map === 'number' || map instanceof FD) {
    mapFd = fdNumber(map);
    mapName = `map fd ${mapFd}`;
  } else {
    if (map.type !== BPF_MAP_TYPE.SOCKMAP && map.type !== BPF_MAP_TYPE.SOCKHASH) {
      throw new TypeError(`map "${map.name}" is not a SOCKMAP or SOCKHASH (type ${map.type}): sk_msg/sk_skb programs attach to socket maps`);
    }
    mapFd = map.fd;
    mapName = `map "${map.name}"`;
  }
  const what = `attach "${prog.name}" to ${mapName} (${hook})`;
  const via = opts.via ?? 'auto';
  const busy = (e: unknown): unknown =>
    e instanceof BpfError && e.errnoCode === E.EBUSY
      ? new TsbpfError(`${what}: the map already has a ${hook} program${hook.endsWith('verdict') ? ' (or another verdict: stream_verdict and skb_verdict exclude each other)' : ''}; close its link first`, { cause: e })
      : e;
  if (via !== 'attach') {
    try {
      const fd = linkCreate({ progFd: prog.fd, targetFd: mapFd, attachType: type }, what);
      return new Link('sockmap', `${mapName}:${hook}`, prog.name, { fd });
    } catch (e) {
      const noLink = e instanceof BpfError && (e.errnoCode === E.EINVAL || e.errnoCode === E.EOPNOTSUPP || e.errnoCode === 524);
      if (via === 'link' && noLink) throw new NotSupportedError('sockmap links', '6.10', (e as Error).message);
      if (via === 'link' || !noLink) throw busy(e);
    }
  }
  // PROG_ATTACH would silently replace a program already on the hook: refuse like a link does.
  let attached: number[] = [];
  try {
    attached = progQuery(mapFd, type, 4).ids;
  } catch {
    /* before 5.19 sockmaps cannot be queried */
  }
  if (attached.length) throw busy(new BpfError('PROG_ATTACH', E.EBUSY, what));
  const mapDup = dupFdNumber(mapFd, `keep ${mapName} for detach`);
  const progDup = dupFdNumber(prog.fd, `keep program "${prog.name}" for detach`);
  try {
    progAttach({ targetFd: mapFd, progFd: prog.fd, attachType: type }, what);
  } catch (e) {
    mapDup.close();
    progDup.close();
    throw busy(e);
  }
  return new Link('sockmap', `${mapName}:${hook}`, prog.name, {
    detach: () => progDetach(mapDup.value, type, progDup.value, `detach "${prog.name}" from ${mapName} (${hook})`),
    owned: [progDup, mapDup],
  });
}

// Kept for symmetry with other attach helpers: detach a socket filter the caller attached by other means.
/** SO_DETACH_BPF on a socket. */
export function detachSocketFilter(socketFd: FdLike): void {
  setsockopt(socketFd, SOL_SOCKET, SO_DETACH_BPF, 0, `detach the socket filter of fd ${fdNumber(socketFd)}`);
}
