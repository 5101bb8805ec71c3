// Links: a program attached to a hook. Closing the link detaches it; so does
// process exit (the kernel drops an unpinned link with its last fd).

import { readFileSync } from 'node:fs';
import {
  BPF_ATTACH_TYPE, BPF_LINK_TYPE, FD, PERF_TYPE, PERF_EVENT_IOC, perfEventOpen, ioctl, linkCreate, linkUpdate, linkDetach,
  rawTracepointOpen, objPin, objGet, objGetInfo, getFdById, ensureTracefs, BpfError, E, LAYOUTS, layoutSize, readU32,
  readField, writeFields, type FieldName,
} from '../syscall/index.js';
import { checkBpffsPath, unpin as unpinPath } from '../maps/pin.js';
import { ClosedError, NotSupportedError, TsbpfError } from '../errors.js';
import type { Program } from '../programs/program.js';

/** Link types by number, for info(). */
const LINK_TYPE_NAMES: Record<number, string> = Object.fromEntries(Object.entries(BPF_LINK_TYPE).map(([k, v]) => [v, k.toLowerCase()]));

/** The bpf_link_info union member of each link type. */
const LINK_INFO_MEMBER: Record<number, string> = {
  [BPF_LINK_TYPE.RAW_TRACEPOINT]: 'raw_tracepoint',
  [BPF_LINK_TYPE.TRACING]: 'tracing',
  [BPF_LINK_TYPE.CGROUP]: 'cgroup',
  [BPF_LINK_TYPE.ITER]: 'iter',
  [BPF_LINK_TYPE.NETNS]: 'netns',
  [BPF_LINK_TYPE.XDP]: 'xdp',
  [BPF_LINK_TYPE.PERF_EVENT]: 'perf_event',
  [BPF_LINK_TYPE.KPROBE_MULTI]: 'kprobe_multi',
  [BPF_LINK_TYPE.STRUCT_OPS]: 'struct_ops',
  [BPF_LINK_TYPE.NETFILTER]: 'netfilter',
  [BPF_LINK_TYPE.TCX]: 'tcx',
  [BPF_LINK_TYPE.UPROBE_MULTI]: 'uprobe_multi',
  [BPF_LINK_TYPE.NETKIT]: 'netkit',
  [BPF_LINK_TYPE.SOCKMAP]: 'sockmap',
};

/** Pointer members of bpf_link_info (user buffers): not reported as numbers. */
const LINK_INFO_POINTERS = /(^|\.)(tp_name|target_name|addrs|cookies|path|offsets|ref_ctr_offsets|file_name|func_name)$/;

export interface LinkInfo {
  id: number;
  /** BPF_LINK_TYPE_* number and its lower-case name (`'perf_event'`, `'cgroup'`, …). */
  type: number;
  typeName: string;
  progId: number;
  /** The scalar members of the type's part of bpf_link_info (`ifindex`, `cgroup_id`, `attach_type`, …). */
  details: Record<string, number | bigint>;
  /** raw_tracepoint: the tracepoint; iter: the target (`task`, `bpf_map_elem`). */
  name?: string;
}

/** How a Link holds its attachment. */
export interface LinkHandle {
  /** A bpf_link: closing it detaches (unless pinned). */
  fd?: FD;
  /** A perf event that must live as long as the attachment (tracepoint, kprobe, uprobe, perf_event). */
  perf?: FD;
  /** Detach an attachment that is not a bpf_link (PROG_ATTACH, netlink, perf ioctl): run once by close(). */
  detach?: () => void;
  /** Other fds to close with the link (e.g. a cgroup directory fd). */
  owned?: FD[];
}

// Attachments that are not bpf_links (PROG_ATTACH, netlink) outlive the process unless detached: the
// kernel only drops bpf_links with their last fd. Detach them at exit, like links are.
const liveLegacy = new Set<Link>();
let exitHooked = false;
function trackLegacy(l: Link): void {
  liveLegacy.add(l);
  if (exitHooked) return;
  exitHooked = true;
  process.once('exit', () => {
    for (const link of [...liveLegacy]) {
      try {
        link.close();
      } catch {
        /* exiting anyway */
      }
    }
  });
}

/**
 * A program attached to a hook. `close()` detaches it (unless it is pinned: then the pin keeps it), and so
 * does process exit, also for attachments the kernel would otherwise keep (PROG_ATTACH, netlink).
 */
export class Link {
  readonly kind: string;
  readonly target: string;
  readonly program: string;
  #fd: FD | undefined;
  #perf: FD | undefined;
  #detach: (() => void) | undefined;
  #owned: FD[];
  #closed = false;
  #pinnedAt: string | undefined;

  constructor(kind: string, target: string, program: string, handle: LinkHandle | FD | undefined, perf?: FD) {
    this.kind = kind;
    this.target = target;
    this.program = program;
    const h: LinkHandle = handle instanceof FD ? { fd: handle, perf } : { ...(handle ?? {}), ...(perf ? { perf } : {}) };
    this.#fd = h.fd;
    this.#perf = h.perf;
    this.#detach = h.detach;
    this.#owned = h.owned ?? [];
    if (!h.fd && h.detach) trackLegacy(this);
  }

  /** A Link for the bpf_link with this id (its kind is the link type; detach by close() only if unpinned). */
  static fromId(id: number): Link {
    return Link.#fromFd(getFdById('LINK_GET_FD_BY_ID', id, `link id ${id}`));
  }

  /** The link pinned at `path` (see loadPinnedLink). */
  static fromPin(path: string): Link {
    checkBpffsPath(path);
    const l = Link.#fromFd(objGet(path, 0, `open pinned link ${path}`));
    l.#pinnedAt = path;
    return l;
  }

  static #fromFd(fd: FD): Link {
    try {
      const info = readLinkInfo(fd.value);
      return new Link(info.typeName, info.name ?? String(info.details.ifindex ?? info.details.cgroup_id ?? ''), `prog id ${info.progId}`, { fd });
    } catch (e) {
      fd.close();
      throw e;
    }
  }

  /** The bpf_link fd (or the perf event fd for links made with the ioctl fallback). */
  get fd(): number {
    const f = this.#fd ?? this.#perf;
    if (this.#closed || !f || f.closed) throw this.#closedError();
    return f.value;
  }

  /** true when the kernel gave a real bpf_link (pinnable, updatable, with info()). */
  get isBpfLink(): boolean {
    return this.#fd !== undefined;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Where pin() put it (or fromPin() found it), if anywhere. */
  get pinnedAt(): string | undefined {
    return this.#pinnedAt;
  }

  #closedError(): ClosedError {
    const fix = this.#pinnedAt ? ` (still pinned at ${this.#pinnedAt}: open it with Link.fromPin)` : ': attach the program again for a new link';
    return new ClosedError(`link ${this.kind}:${this.target} is closed${fix}`);
  }

  #bpfLink(what: string): FD {
    if (this.#closed) throw this.#closedError();
    if (!this.#fd) {
      throw new TsbpfError(`link ${this.kind}:${this.target} cannot ${what}: it is not a bpf_link (this kernel or hook needed the ${this.#perf ? 'perf event ioctl' : 'legacy'} attach)`);
    }
    return this.#fd;
  }

  /** Pin the link in a bpffs: it then stays attached after close() and process exit, until unpinned. */
  pin(path: string): void {
    const fd = this.#bpfLink('be pinned');
    checkBpffsPath(path, { pin: true });
    objPin(fd.value, path, `link ${this.kind}:${this.target}: pin to ${path}`);
    this.#pinnedAt = path;
  }

  /** Remove the pin (the one pin() made, or `path`). The link stays attached while this object is open. */
  unpin(path?: string): boolean {
    const p = path ?? this.#pinnedAt;
    if (!p) return false;
    const removed = unpinPath(p);
    if (p === this.#pinnedAt) this.#pinnedAt = undefined;
    return removed;
  }

  /**
   * Swap the attached program for `program` atomically (BPF_LINK_UPDATE). With `expected`, only if the
   * link still runs that program (else a BpfError with EPERM).
   */
  update(program: Program, expected?: Program): void {
    const fd = this.#bpfLink('be updated');
    linkUpdate(fd.value, program.fd, expected?.fd, `update link ${this.kind}:${this.target} to program "${program.name}"`);
  }

  /** What the kernel says about the link (BPF_OBJ_GET_INFO_BY_FD). */
  info(): LinkInfo {
    return readLinkInfo(this.#bpfLink('report info').value);
  }

  /**
   * Detach the program now even if other fds or pins keep the link object (BPF_LINK_DETACH, 5.9+; not
   * every link type supports it). The object stays open (defunct) until close().
   */
  detach(): void {
    linkDetach(this.#bpfLink('be force-detached').value, `detach link ${this.kind}:${this.target}`);
  }

  /** Detach (unless pinned) and release everything. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    liveLegacy.delete(this);
    this.#fd?.close();
    if (this.#perf && !this.#perf.closed) {
      // Without a bpf_link the program is attached through the perf event: disabling first
      // makes the detach immediate even if someone else dup'ed the fd.
      if (!this.#fd) {
        try {
          ioctl(this.#perf.value, PERF_EVENT_IOC.DISABLE, 0);
        } catch {
          /* closing detaches anyway */
        }
      }
      this.#perf.close();
    }
    // After the link and perf fds: the callback is the detach of a non-link attachment, or cleanup that
    // must wait until the program can no longer run (e.g. USDT argument specs).
    let error: unknown;
    if (this.#detach) {
      try {
        this.#detach();
      } catch (e) {
        error = e;
      }
    }
    for (const f of this.#owned) f.close();
    if (error !== undefined) throw error;
  }

  [Symbol.dispose](): void {
    this.close();
  }

  toString(): string {
    return `Link(${this.kind}:${this.target} → ${this.program})`;
  }
}

/** Open the link pinned at `path`. */
export function loadPinnedLink(path: string): Link {
  return Link.fromPin(path);
}

/** bpf_link_info of a link fd, with the type's scalar members and its name where it has one. */
export function readLinkInfo(fd: number): LinkInfo {
  const L = 'bpf_link_info' as const;
  const size = layoutSize(L);
  const first = objGetInfo(fd, size, 0, undefined, 'link info').info;
  const type = readU32(first, 0, L, 'type');
  const member = LINK_INFO_MEMBER[type];
  let info = first;
  let name: string | undefined;
  const nameField = member === 'raw_tracepoint' ? 'raw_tracepoint.tp_name' : member === 'iter' ? 'iter.target_name' : undefined;
  if (nameField) {
    const lenField = `${nameField}_len` as FieldName<typeof L>;
    const r = objGetInfo(fd, size, 512, (inf, out) => {
      writeFields(inf.view, inf.off, L, { [nameField]: out(256), [lenField]: 256 } as Partial<Record<FieldName<typeof L>, bigint | number>>);
    }, 'link info');
    info = r.info;
    const raw = r.outs[0];
    const nul = raw.indexOf(0);
    name = raw.subarray(0, nul < 0 ? raw.length : nul).toString('utf8');
  }
  const details: Record<string, number | bigint> = {};
  if (member) {
    for (const [field, desc] of Object.entries(LAYOUTS[L].fields)) {
      if (!field.startsWith(`${member}.`) || LINK_INFO_POINTERS.test(field) || !Array.isArray(desc)) continue;
      const [, bytes] = desc as readonly [number, number];
      if (bytes !== 1 && bytes !== 2 && bytes !== 4 && bytes !== 8) continue;
      details[field.slice(member.length + 1)] = readField(info, 0, L, field as FieldName<typeof L>);
    }
  }
  return {
    id: readU32(info, 0, L, 'id'),
    type,
    typeName: LINK_TYPE_NAMES[type] ?? `type ${type}`,
    progId: readU32(info, 0, L, 'prog_id'),
    details,
    ...(name !== undefined ? { name } : {}),
  };
}

/** The tracefs id of `category/name`, or a NotSupportedError naming the tracepoint. */
export function tracepointId(category: string, name: string): number {
  if (!/^[\w.-]+$/.test(category) || !/^[\w.-]+$/.test(name)) {
    throw new TsbpfError(`invalid tracepoint name "${category}/${name}"`);
  }
  const root = ensureTracefs();
  const path = `${root}/events/${category}/${name}/id`;
  try {
    return parseInt(readFileSync(path, 'utf8'), 10);
  } catch {
    throw new NotSupportedError(`tracepoint ${category}/${name}`, undefined, `${path} does not exist (see ${root}/available_events)`);
  }
}

/** Attach to a tracepoint (`tp/<category>/<name>`): a perf event plus a bpf_link (ioctl fallback before 5.15). */
export function attachTracepoint(prog: Program, category: string, name: string, cookie?: bigint): Link {
  const id = tracepointId(category, name);
  const target = `${category}/${name}`;
  const perf = perfEventOpen(
    { type: PERF_TYPE.TRACEPOINT, config: BigInt(id), sample_period: 1n, wakeup_events: 1 },
    -1,
    0,
    -1,
    0n,
    `tracepoint ${target}`,
  );
  try {
    try {
      const fd = linkCreate({ progFd: prog.fd, targetFd: perf.value, attachType: BPF_ATTACH_TYPE.PERF_EVENT, bpfCookie: cookie }, `attach "${prog.name}" to tracepoint ${target}`);
      return new Link('tracepoint', target, prog.name, fd, perf);
    } catch (e) {
      // Kernels before 5.15 have no perf_event bpf_link: use the ioctls.
      if (!(e instanceof BpfError) || (e.errnoCode !== E.EINVAL && e.errnoCode !== E.E2BIG && e.errnoCode !== E.EOPNOTSUPP)) throw e;
      if (cookie) throw new NotSupportedError('BPF cookies on perf events', '5.15');
      ioctl(perf.value, PERF_EVENT_IOC.SET_BPF, prog.fd, `attach "${prog.name}" to tracepoint ${target}`);
      ioctl(perf.value, PERF_EVENT_IOC.ENABLE, 0, `enable tracepoint ${target}`);
      return new Link('tracepoint', target, prog.name, { perf });
    }
  } catch (e) {
    perf.close();
    throw e;
  }
}

/** Attach a `raw_tp` program to the raw tracepoint `name`. */
export function attachRawTracepoint(prog: Program, name: string): Link {
  const fd = rawTracepointOpen(prog.fd, name, `attach "${prog.name}" to raw tracepoint ${name}`);
  return new Link('raw_tracepoint', name, prog.name, fd);
}

/**
 * Attach a BTF-typed program whose target was fixed at load (tp_btf, fentry,
 * fexit, fmod_ret, lsm, iter is separate): BPF_RAW_TRACEPOINT_OPEN with no name.
 */
export function attachTracing(prog: Program, target: string, kind = 'tracing'): Link {
  const fd = rawTracepointOpen(prog.fd, null, `attach "${prog.name}" (${kind}) to ${target}`);
  return new Link(kind, target, prog.name, fd);
}
