// Cgroup attachments: every BPF_CGROUP_* hook, as a bpf_link (BPF_LINK_CREATE on the cgroup directory
// fd, 5.7+) or, where links are missing or cannot express the request, with BPF_PROG_ATTACH. Also where
// cgroup v2 is mounted and how a cgroup is opened.

import { existsSync, mkdirSync, readFileSync, statfsSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import {
  BPF_ATTACH_TYPE, BPF_PROG_TYPE, BpfError, E, FD, linkCreate, progAttach, progDetach, mount, openPathFd, dupFdNumber,
  BPF_F_REPLACE, type FdLike,
} from '../syscall/index.js';
import { NotSupportedError, TsbpfError } from '../errors.js';
import type { Program } from '../programs/program.js';
import { Link } from './link.js';

/** BPF_F_ALLOW_OVERRIDE / BPF_F_ALLOW_MULTI (cgroup PROG_ATTACH modes). */
export const BPF_F_ALLOW_OVERRIDE = 1 << 0;
export const BPF_F_ALLOW_MULTI = 1 << 1;
/** mprog ordering flags (cgroups: 6.16+; tcx/netkit: 6.6+). */
export const BPF_F_BEFORE = 1 << 3;
export const BPF_F_AFTER = 1 << 4;
/** The relative fd is a bpf_link, not a program. */
export const BPF_F_LINK = 1 << 13;

const CGROUP2_SUPER_MAGIC = 0x63677270;
const A = BPF_ATTACH_TYPE;
const P = BPF_PROG_TYPE;

/** Cgroup hooks by name: what `attachType` may say instead of a number. */
export const CGROUP_ATTACH_TYPES = {
  ingress: A.CGROUP_INET_INGRESS,
  egress: A.CGROUP_INET_EGRESS,
  sock_create: A.CGROUP_INET_SOCK_CREATE,
  sock_release: A.CGROUP_INET_SOCK_RELEASE,
  post_bind4: A.CGROUP_INET4_POST_BIND,
  post_bind6: A.CGROUP_INET6_POST_BIND,
  bind4: A.CGROUP_INET4_BIND,
  bind6: A.CGROUP_INET6_BIND,
  connect4: A.CGROUP_INET4_CONNECT,
  connect6: A.CGROUP_INET6_CONNECT,
  connect_unix: A.CGROUP_UNIX_CONNECT,
  sendmsg4: A.CGROUP_UDP4_SENDMSG,
  sendmsg6: A.CGROUP_UDP6_SENDMSG,
  sendmsg_unix: A.CGROUP_UNIX_SENDMSG,
  recvmsg4: A.CGROUP_UDP4_RECVMSG,
  recvmsg6: A.CGROUP_UDP6_RECVMSG,
  recvmsg_unix: A.CGROUP_UNIX_RECVMSG,
  getpeername4: A.CGROUP_INET4_GETPEERNAME,
  getpeername6: A.CGROUP_INET6_GETPEERNAME,
  getpeername_unix: A.CGROUP_UNIX_GETPEERNAME,
  getsockname4: A.CGROUP_INET4_GETSOCKNAME,
  getsockname6: A.CGROUP_INET6_GETSOCKNAME,
  getsockname_unix: A.CGROUP_UNIX_GETSOCKNAME,
  getsockopt: A.CGROUP_GETSOCKOPT,
  setsockopt: A.CGROUP_SETSOCKOPT,
  sysctl: A.CGROUP_SYSCTL,
  device: A.CGROUP_DEVICE,
  sock_ops: A.CGROUP_SOCK_OPS,
  lsm_cgroup: A.LSM_CGROUP,
} as const;

export type CgroupAttachName = keyof typeof CGROUP_ATTACH_TYPES;

const ATTACH_NAME: Record<number, CgroupAttachName> = Object.fromEntries(
  Object.entries(CGROUP_ATTACH_TYPES).map(([k, v]) => [v, k as CgroupAttachName]),
);

/** Which hooks each cgroup program type may attach to. */
const HOOKS_OF_TYPE: Record<number, CgroupAttachName[]> = {
  [P.CGROUP_SKB]: ['ingress', 'egress'],
  [P.CGROUP_SOCK]: ['sock_create', 'sock_release', 'post_bind4', 'post_bind6'],
  [P.CGROUP_SOCK_ADDR]: [
    'bind4', 'bind6', 'connect4', 'connect6', 'connect_unix', 'sendmsg4', 'sendmsg6', 'sendmsg_unix', 'recvmsg4', 'recvmsg6',
    'recvmsg_unix', 'getpeername4', 'getpeername6', 'getpeername_unix', 'getsockname4', 'getsockname6', 'getsockname_unix',
  ],
  [P.CGROUP_SOCKOPT]: ['getsockopt', 'setsockopt'],
  [P.CGROUP_SYSCTL]: ['sysctl'],
  [P.CGROUP_DEVICE]: ['device'],
  [P.SOCK_OPS]: ['sock_ops'],
  [P.LSM]: ['lsm_cgroup'],
};

/** Kernel that brought each hook (for errors on older kernels). */
const HOOK_SINCE: Partial<Record<CgroupAttachName, string>> = {
  sock_release: '5.9', getpeername4: '5.8', getpeername6: '5.8', getsockname4: '5.8', getsockname6: '5.8',
  connect_unix: '6.7', sendmsg_unix: '6.7', recvmsg_unix: '6.7', getpeername_unix: '6.7', getsockname_unix: '6.7',
  getsockopt: '5.3', setsockopt: '5.3', recvmsg4: '5.2', recvmsg6: '5.2', sysctl: '5.2', lsm_cgroup: '6.0',
};

/** The name of a cgroup attach type number (`'connect4'`), or `attach type N`. */
export function cgroupAttachName(type: number): string {
  return ATTACH_NAME[type] ?? `attach type ${type}`;
}

function mountedCgroup2(): string | undefined {
  let mounts = '';
  try {
    mounts = readFileSync('/proc/self/mounts', 'utf8');
  } catch {
    return undefined;
  }
  for (const line of mounts.split('\n')) {
    const [, target, fstype] = line.split(' ');
    if (fstype === 'cgroup2' && target) return target.replace(/\\040/g, ' ');
  }
  return undefined;
}

function isMountpoint(path: string): boolean {
  try {
    return readFileSync('/proc/self/mounts', 'utf8').split('\n').some((l) => l.split(' ')[1] === path);
  } catch {
    return false;
  }
}

/**
 * Where the cgroup v2 hierarchy is mounted (`/sys/fs/cgroup` on unified systems, `/sys/fs/cgroup/unified` on
 * hybrid ones). When none is mounted it mounts one: on `/sys/fs/cgroup` if that is free, else on
 * `/sys/fs/cgroup/unified` (where systemd's hybrid layout puts it).
 */
export function cgroup2Root(): string {
  const found = mountedCgroup2();
  if (found) return found;
  const target = isMountpoint('/sys/fs/cgroup') ? '/sys/fs/cgroup/unified' : '/sys/fs/cgroup';
  try {
    if (!existsSync(target)) mkdirSync(target, { recursive: true });
    mount('cgroup2', target, 'cgroup2');
  } catch (e) {
    throw new TsbpfError(`no cgroup v2 hierarchy is mounted and mounting one on ${target} failed (${(e as Error).message}); ` +
      'mount it yourself (mount -t cgroup2 none /sys/fs/cgroup) and pass the cgroup path', { cause: e });
  }
  return target;
}

/** An opened cgroup: the directory fd (owned) and its path (or `fd N`). */
export interface OpenedCgroup {
  fd: FD;
  path: string;
}

/**
 * Open a cgroup v2 directory as an fd: an absolute path, a path relative to the cgroup v2 root
 * (`'system.slice'`), or an fd you opened (duplicated; yours stays yours).
 */
export function openCgroup(cgroup: string | FdLike): OpenedCgroup {
  if (typeof cgroup !== 'string') {
    const n = typeof cgroup === 'number' ? cgroup : cgroup.value;
    return { fd: dupFdNumber(n, `duplicate cgroup fd ${n}`), path: `fd ${n}` };
  }
  const path = isAbsolute(cgroup) ? cgroup : join(cgroup2Root(), cgroup);
  let type: number;
  try {
    type = Number(statfsSync(path).type);
  } catch (e) {
    throw new TsbpfError(`cgroup "${path}" does not exist (create it with mkdir under ${mountedCgroup2() ?? 'the cgroup v2 root'})`, { cause: e });
  }
  if (type !== CGROUP2_SUPER_MAGIC) {
    const root = mountedCgroup2();
    throw new TsbpfError(`"${path}" is not in a cgroup v2 hierarchy: BPF programs attach to cgroup v2 directories` +
      (root ? ` (cgroup v2 is mounted at ${root})` : ' (none is mounted: mount -t cgroup2 none /sys/fs/cgroup)'));
  }
  return { fd: openPathFd(path, true, `open cgroup ${path}`), path };
}

export type CgroupFlags = 'multi' | 'override' | 'none';

export interface CgroupAttachOptions {
  /** The cgroup: a path (absolute, or relative to the cgroup v2 root) or an open directory fd. */
  cgroup: string | FdLike;
  /**
   * The hook, as a BPF_ATTACH_TYPE number or a name (`'connect4'`, `'ingress'`, ...). Default: the program's
   * expected attach type, or the only hook its program type has.
   */
  attachType?: number | CgroupAttachName;
  /**
   * How programs on this cgroup combine with those of sub-cgroups (the PROG_ATTACH modes): `'multi'`
   * (default; every program runs, the only mode links have), `'override'` (a sub-cgroup's program replaces
   * this one for the sub-cgroup) or `'none'` (sub-cgroups may attach nothing). `'override'` and `'none'` use
   * PROG_ATTACH.
   */
  flags?: CgroupFlags;
  /** Run before this program or link of the same hook (6.16+). */
  before?: Program | Link;
  /** Run after this program or link of the same hook (6.16+). */
  after?: Program | Link;
  /** Attach only if the hook's revision (progQuery().revision) is still this (6.16+). */
  expectedRevision?: bigint;
  /** Replace this PROG_ATTACHed program atomically (multi mode, PROG_ATTACH with BPF_F_REPLACE). */
  replace?: Program;
  /** `'link'`: a bpf_link or an error; `'attach'`: PROG_ATTACH; `'auto'` (default): a link, else PROG_ATTACH. */
  via?: 'auto' | 'link' | 'attach';
}

function resolveAttachType(prog: Program, at: number | CgroupAttachName | undefined): number {
  const allowed = HOOKS_OF_TYPE[prog.type];
  if (!allowed) {
    throw new TypeError(`program "${prog.name}" (type ${prog.type}) is not a cgroup program: cgroup hooks take cgroup_skb, cgroup_sock, ` +
      'cgroup_sock_addr, cgroup_sockopt, cgroup_sysctl, cgroup_device, sock_ops and lsm_cgroup programs');
  }
  let type: number | undefined;
  if (typeof at === 'string') {
    type = CGROUP_ATTACH_TYPES[at];
    if (type === undefined) throw new TypeError(`unknown cgroup hook "${at}"; known: ${Object.keys(CGROUP_ATTACH_TYPES).join(', ')}`);
  } else if (typeof at === 'number') {
    type = at;
  } else {
    const expected = prog.expectedAttachType;
    if (expected) type = expected;
    else if (allowed.length === 1) type = CGROUP_ATTACH_TYPES[allowed[0]];
    else {
      throw new TypeError(`program "${prog.name}": say which hook to attach to: attachType: ${allowed.map((h) => `'${h}'`).join(' | ')} ` +
        '(or attach from the section name with autoAttachCgroup)');
    }
  }
  const name = ATTACH_NAME[type];
  if (!name) throw new TypeError(`attach type ${type} is not a cgroup hook; known: ${Object.keys(CGROUP_ATTACH_TYPES).join(', ')}`);
  if (!allowed.includes(name)) {
    throw new TypeError(`program "${prog.name}" cannot attach to the cgroup hook "${name}": its program type's hooks are ${allowed.join(', ')}`);
  }
  return type;
}

function relative(o: CgroupAttachOptions): { flags: number; fd?: number } {
  if (o.before && o.after) throw new TypeError('give before or after, not both');
  const rel = o.before ?? o.after;
  if (!rel) return { flags: 0 };
  const flags = (o.before ? BPF_F_BEFORE : BPF_F_AFTER) | (rel instanceof Link ? BPF_F_LINK : 0);
  return { flags, fd: rel.fd };
}

/**
 * Attach a cgroup program to a cgroup v2 directory. A bpf_link by default (closing it detaches; pinnable,
 * updatable); PROG_ATTACH when links are missing (before 5.7), when `flags` is `'override'` or `'none'`, when
 * `replace` is given, or with `via: 'attach'`: that Link detaches exactly this program (PROG_DETACH) on
 * close() or at process exit.
 */
export function attachCgroup(prog: Program, opts: CgroupAttachOptions): Link {
  const type = resolveAttachType(prog, opts.attachType);
  const hook = ATTACH_NAME[type];
  const mode = opts.flags ?? 'multi';
  if (mode !== 'multi' && mode !== 'override' && mode !== 'none') throw new TypeError(`flags must be 'multi', 'override' or 'none', not ${String(mode)}`);
  const via = opts.via ?? 'auto';
  if (via === 'link' && mode !== 'multi') {
    throw new TypeError(`flags: '${mode}' needs PROG_ATTACH: a cgroup bpf_link always attaches in 'multi' mode (use via: 'auto' or 'attach')`);
  }
  if (via === 'link' && opts.replace) throw new TypeError('replace is a PROG_ATTACH feature; to swap the program of a link use link.update(prog)');
  if ((opts.before || opts.after) && mode !== 'multi') throw new TypeError(`before/after order programs in 'multi' mode only, not '${mode}'`);
  const rel = relative(opts);
  const cg = openCgroup(opts.cgroup);
  const what = `attach "${prog.name}" to cgroup ${cg.path} (${hook})`;
  const orderingHint = (e: unknown): unknown => {
    if ((rel.fd !== undefined || opts.expectedRevision !== undefined) && e instanceof BpfError && (e.errnoCode === E.EINVAL || e.errnoCode === E.E2BIG)) {
      return new NotSupportedError('ordered cgroup attach (before/after/expectedRevision)', '6.16', e.message);
    }
    return e;
  };
  try {
    if (via !== 'attach' && mode === 'multi' && !opts.replace) {
      try {
        const fields: Record<string, number | bigint> = {};
        if (rel.fd !== undefined) fields['cgroup.relative_fd'] = rel.fd;
        if (opts.expectedRevision !== undefined) fields['cgroup.expected_revision'] = opts.expectedRevision;
        const fd = linkCreate({ progFd: prog.fd, targetFd: cg.fd.value, attachType: type, flags: rel.flags, fields }, what);
        cg.fd.close();
        return new Link('cgroup', `${cg.path}:${hook}`, prog.name, { fd });
      } catch (e) {
        if (!(e instanceof BpfError)) throw e;
        if (e.errnoCode === E.EPERM) {
          throw new TsbpfError(`${what}: the kernel refused (EPERM): a program is already attached to this hook of the cgroup ` +
            `(or an ancestor) without BPF_F_ALLOW_MULTI ('override'/'none' mode), and links always use 'multi'; detach it or attach with flags: 'override'`, { cause: e });
        }
        const noLinks = e.errnoCode === E.EINVAL || e.errnoCode === E.E2BIG || e.errnoCode === E.EOPNOTSUPP || e.errnoCode === 524;
        if (via === 'link' || !noLinks || rel.fd !== undefined || opts.expectedRevision !== undefined) throw orderingHint(e);
      }
    }
    // PROG_ATTACH: the link holds dups of the program and cgroup fds so it can detach exactly this program
    // even after the Program is closed.
    const progDup = dupFdNumber(prog.fd, `keep program "${prog.name}" for detach`);
    let flags = mode === 'multi' ? BPF_F_ALLOW_MULTI : mode === 'override' ? BPF_F_ALLOW_OVERRIDE : 0;
    flags |= rel.flags;
    if (opts.replace) flags |= BPF_F_REPLACE;
    try {
      progAttach({
        targetFd: cg.fd.value, progFd: prog.fd, attachType: type, flags,
        ...(opts.replace ? { replaceProgFd: opts.replace.fd } : {}),
        ...(rel.fd !== undefined ? { relativeFd: rel.fd } : {}),
        ...(opts.expectedRevision !== undefined ? { expectedRevision: opts.expectedRevision } : {}),
      }, what);
    } catch (e) {
      progDup.close();
      if (e instanceof BpfError && e.errnoCode === E.EPERM) {
        throw new TsbpfError(`${what}: the kernel refused (EPERM): this cgroup or an ancestor has a program on this hook attached in a mode ` +
          `that does not allow it ('none' forbids sub-cgroup programs; 'multi' and 'override' cannot be mixed on one cgroup)`, { cause: e });
      }
      if (e instanceof BpfError && e.errnoCode === E.EINVAL && HOOK_SINCE[hook] && rel.fd === undefined) {
        throw new NotSupportedError(`the cgroup hook "${hook}"`, HOOK_SINCE[hook], e.message);
      }
      throw orderingHint(e);
    }
    const cgFd = cg.fd;
    return new Link('cgroup', `${cg.path}:${hook}`, prog.name, {
      detach: () => progDetach(cgFd.value, type, progDup.value, `detach "${prog.name}" from cgroup ${cg.path} (${hook})`),
      owned: [progDup, cgFd],
    });
  } catch (e) {
    if (!cg.fd.closed) cg.fd.close();
    throw e;
  }
}
