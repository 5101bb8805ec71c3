// Traffic control: a sched_cls program on an interface's ingress or egress, attached either as a tcx
// bpf_link (BPF_LINK_CREATE with BPF_TCX_INGRESS/EGRESS, 6.6+; ordered with before/after, detached when
// its last fd closes) or the classic way through rtnetlink: a clsact qdisc (created if missing) and a
// cls_bpf filter in direct-action mode. The kernel keeps a netlink filter until someone deletes it, so the
// Link deletes exactly its own filter (parent, priority, handle, and still running our program) on close()
// and at process exit, and the clsact qdisc too if it created it and nothing else uses it.

import {
  BPF_ATTACH_TYPE, BPF_PROG_TYPE, BpfError, E, ETH_P_ALL, NetlinkError, SyscallError, TCA_BPF, TCA_BPF_FLAG_ACT_DIRECT, TC_H,
  addBpfFilter, addQdisc, attrU32, deleteFilter, deleteQdisc, getFilter, linkCreate, listFilters, listQdiscs, tcHandle,
  withRtNetlink, type TcObject,
} from '../syscall/index.js';
import { TsbpfError } from '../errors.js';
import { programTypeName, type Program } from '../programs/program.js';
import { Link } from './link.js';
import { describeProgId, resolveInterface } from './xdp.js';

export type TcDirection = 'ingress' | 'egress';

export interface TcOptions {
  /** Interface name or index (in this thread's network namespace). */
  iface: string | number;
  direction: TcDirection;
  /**
   * 'tcx' (a bpf_link, 6.6+) or 'netlink' (clsact qdisc + cls_bpf filter). Default: tcx, or netlink when
   * the kernel has no tcx or `priority`/`handle` are given (they only mean something there).
   */
  via?: 'tcx' | 'netlink';
  /** netlink: the filter priority (1..65535, lower runs first); default: the kernel picks. */
  priority?: number;
  /** netlink: the filter handle; default: the kernel picks. */
  handle?: number;
  /** netlink: replace the filter with this priority and handle instead of failing. */
  replace?: boolean;
  /** tcx: run before this program or link (default: after everything already attached). */
  before?: Program | Link;
  /** tcx: run after this program or link. */
  after?: Program | Link;
}

/** tcx ordering flags (linux/bpf.h, 6.6+; a #define, not in kernel BTF). */
const BPF_F_BEFORE = 1 << 3;
const BPF_F_AFTER = 1 << 4;
const BPF_F_LINK = 1 << 13;

const CLSACT_HANDLE = tcHandle(TC_H.CLSACT, 0);

/**
 * Interfaces (ifindex) whose clsact qdisc this process created. The qdisc is removed when the last of our
 * filters on it goes and nothing else (anyone's filter) is left; one that was there before us stays.
 */
const ourClsact = new Set<number>();

/** The clsact hook point of a direction: ffff:fff2 ingress, ffff:fff3 egress. */
export function clsactParent(direction: TcDirection): number {
  return tcHandle(TC_H.CLSACT, direction === 'ingress' ? TC_H.MIN_INGRESS : TC_H.MIN_EGRESS);
}

/**
 * Attach a sched_cls program to an interface's ingress or egress. The returned Link detaches on close()
 * (and at process exit).
 */
export function attachTc(prog: Program, opts: TcOptions): Link {
  const what = `attach tc program "${prog.name}"`;
  if (prog.type !== BPF_PROG_TYPE.SCHED_CLS) {
    const hint = prog.type === BPF_PROG_TYPE.SCHED_ACT ? ' (an "action" program runs from a tc action, not as a filter)' : '';
    throw new TsbpfError(`${what}: it is a ${programTypeName(prog.type).toLowerCase()} program; tc needs one loaded from SEC("tc"), SEC("tcx/ingress") or SEC("tcx/egress") (BPF_PROG_TYPE_SCHED_CLS)${hint}`);
  }
  if (opts.direction !== 'ingress' && opts.direction !== 'egress') {
    throw new TsbpfError(`${what}: direction must be 'ingress' or 'egress', not ${JSON.stringify(opts.direction)}`);
  }
  if (opts.via !== undefined && opts.via !== 'tcx' && opts.via !== 'netlink') {
    throw new TsbpfError(`${what}: unknown via ${JSON.stringify(opts.via)} (want 'tcx' or 'netlink')`);
  }
  for (const k of ['priority', 'handle'] as const) {
    const v = opts[k];
    if (v !== undefined && (!Number.isInteger(v) || v < 1 || v > (k === 'priority' ? 0xffff : 0xffffffff))) {
      throw new TsbpfError(`${what}: ${k} must be an integer in 1..${k === 'priority' ? 65535 : 0xffffffff}, not ${v}`);
    }
  }
  if (opts.before && opts.after) throw new TsbpfError(`${what}: give before or after, not both`);
  const ordered = opts.before !== undefined || opts.after !== undefined;
  const classic = opts.priority !== undefined || opts.handle !== undefined || opts.replace === true;
  if (ordered && (opts.via === 'netlink' || classic)) {
    throw new TsbpfError(`${what}: before/after order tcx programs; netlink filters are ordered by priority`);
  }
  if (classic && opts.via === 'tcx') {
    throw new TsbpfError(`${what}: priority, handle and replace belong to netlink filters; tcx orders with before/after`);
  }
  const { ifindex, name } = resolveInterface(opts.iface, what);
  const target = `${name}:${opts.direction}`;

  if (opts.via === 'tcx' || (opts.via === undefined && !classic)) {
    try {
      return attachTcx(prog, ifindex, target, opts);
    } catch (e) {
      // No tcx before 6.6: the attach type is unknown (EINVAL).
      const fallback = opts.via === undefined && !ordered && e instanceof BpfError && (e.errnoCode === E.EINVAL || e.errnoCode === E.EOPNOTSUPP);
      if (!fallback) throw e;
    }
  }
  return attachTcNetlink(prog, ifindex, name, target, opts);
}

function attachTcx(prog: Program, ifindex: number, target: string, opts: TcOptions): Link {
  const rel = opts.before ?? opts.after;
  let flags = opts.before ? BPF_F_BEFORE : opts.after ? BPF_F_AFTER : 0;
  if (rel instanceof Link) flags |= BPF_F_LINK;
  const relFd = rel ? rel.fd : undefined;
  const context = `attach tc program "${prog.name}" to ${target} (tcx)`;
  try {
    const fd = linkCreate(
      {
        progFd: prog.fd,
        targetIfindex: ifindex,
        attachType: opts.direction === 'ingress' ? BPF_ATTACH_TYPE.TCX_INGRESS : BPF_ATTACH_TYPE.TCX_EGRESS,
        flags,
        ...(relFd !== undefined ? { fields: { 'tcx.relative_fd': relFd } } : {}),
      },
      context,
    );
    return new Link('tcx', target, prog.name, { fd });
  } catch (e) {
    if (e instanceof BpfError && e.errnoCode === E.EEXIST) {
      throw new TsbpfError(`${context}: program "${prog.name}" already runs at ${target} (tcx runs each program once per hook; load another instance to run it twice)`, { cause: e });
    }
    if (e instanceof BpfError && e.errnoCode === E.ENOENT && rel) {
      throw new TsbpfError(`${context}: the ${rel instanceof Link ? 'link' : 'program'} given as ${opts.before ? 'before' : 'after'} is not attached at ${target}`, { cause: e });
    }
    throw e;
  }
}

function describeFilters(filters: TcObject[]): string {
  return filters
    .map((f) => {
      const id = attrU32(f.options.get(TCA_BPF.ID));
      return `${f.kind} filter priority ${f.priority} handle 0x${f.handle.toString(16)}${id ? ` running ${describeProgId(id)}` : ''}`;
    })
    .join(', ');
}

function attachTcNetlink(prog: Program, ifindex: number, name: string, target: string, opts: TcOptions): Link {
  const context = `attach tc program "${prog.name}" to ${target} (netlink)`;
  const parent = clsactParent(opts.direction);
  const progId = prog.info().id;
  const made = withRtNetlink((nl) => {
    const createdQdisc = addQdisc(ifindex, 'clsact', CLSACT_HANDLE, TC_H.CLSACT, nl, `${context}: create the clsact qdisc`);
    if (createdQdisc) {
      ourClsact.add(ifindex);
    } else {
      const q = listQdiscs(ifindex, nl).find((x) => x.parent === TC_H.CLSACT || x.handle === CLSACT_HANDLE);
      if (q && q.kind !== 'clsact') {
        throw new TsbpfError(`${context}: ${name} has an "${q.kind}" qdisc where clsact goes; remove it first (\`tc qdisc del dev ${name} ${q.kind}\`) or use via 'tcx'`);
      }
    }
    try {
      const f = addBpfFilter(
        {
          ifindex,
          parent,
          priority: opts.priority ?? 0,
          handle: opts.handle ?? 0,
          protocol: ETH_P_ALL,
          progFd: prog.fd,
          name: prog.name,
          flags: TCA_BPF_FLAG_ACT_DIRECT,
        },
        nl,
        context,
        opts.replace === true,
      );
      return { createdQdisc, filter: f };
    } catch (e) {
      if (createdQdisc) {
        ourClsact.delete(ifindex);
        try {
          deleteQdisc(ifindex, 'clsact', CLSACT_HANDLE, TC_H.CLSACT, nl);
        } catch {
          /* best effort */
        }
      }
      if (e instanceof NetlinkError && (e.errnoCode === E.EEXIST || e.errnoCode === E.EINVAL)) {
        let others = '';
        try {
          const same = listFilters(ifindex, parent, nl).filter((x) => x.priority === opts.priority && (!opts.handle || x.handle === opts.handle));
          if (same.length) others = `: ${target} already has ${describeFilters(same)}`;
        } catch {
          /* keep the kernel's words */
        }
        if (others || e.errnoCode === E.EEXIST) {
          throw new TsbpfError(
            `${context}${others || `: a filter with priority ${opts.priority ?? 'auto'} handle ${opts.handle ?? 'auto'} exists`}; ` +
              `choose another priority/handle or pass replace: true${e.extAck ? ` (kernel: ${e.extAck})` : ''}`,
            { cause: e },
          );
        }
      }
      throw e;
    }
  });
  const { priority, handle } = made.filter;
  const detach = (): void => detachTcNetlink(ifindex, parent, priority, handle, progId, `detach tc program "${prog.name}" from ${target}`);
  return new Link('tc', `${target} prio ${priority} handle 0x${handle.toString(16)}`, prog.name, { detach });
}

function detachTcNetlink(ifindex: number, parent: number, priority: number, handle: number, progId: number, context: string): void {
  try {
    withRtNetlink((nl) => {
      // Delete the filter only if it is still ours (nobody replaced it meanwhile).
      const f = getFilter(ifindex, parent, priority, ETH_P_ALL, handle, 'bpf', nl);
      const id = f ? attrU32(f.options.get(TCA_BPF.ID)) : undefined;
      if (f && (id === undefined || id === progId)) {
        try {
          deleteFilter(ifindex, parent, priority, ETH_P_ALL, handle, 'bpf', nl, context);
        } catch (e) {
          if (!(e instanceof SyscallError && e.errnoCode === E.ENOENT)) throw e;
        }
      }
      if (!ourClsact.has(ifindex)) return;
      // The qdisc we made goes when no filter (ours or anyone's) is left on either hook.
      const left = listFilters(ifindex, clsactParent('ingress'), nl).length + listFilters(ifindex, clsactParent('egress'), nl).length;
      if (left === 0) {
        ourClsact.delete(ifindex);
        try {
          deleteQdisc(ifindex, 'clsact', CLSACT_HANDLE, TC_H.CLSACT, nl, `${context}: remove the clsact qdisc`);
        } catch (e) {
          if (!(e instanceof SyscallError && (e.errnoCode === E.ENOENT || e.errnoCode === E.EINVAL))) throw e;
        }
      }
    });
  } catch (e) {
    // The interface is gone, and its filters with it.
    if (e instanceof SyscallError && e.errnoCode === E.ENODEV) {
      ourClsact.delete(ifindex);
      return;
    }
    throw e;
  }
}

/** The cls_bpf (and other) filters on an interface's clsact ingress or egress hook. */
export function listTcFilters(iface: string | number, direction: TcDirection): { kind: string; priority: number; handle: number; progId?: number; name?: string }[] {
  const { ifindex } = resolveInterface(iface, 'list tc filters');
  return listFilters(ifindex, clsactParent(direction))
    .filter((f) => f.handle !== 0)
    .map((f) => {
      const nameRaw = f.options.get(TCA_BPF.NAME);
      const progId = attrU32(f.options.get(TCA_BPF.ID));
      return {
        kind: f.kind,
        priority: f.priority,
        handle: f.handle,
        ...(progId !== undefined ? { progId } : {}),
        ...(nameRaw ? { name: nameRaw.toString('utf8').replace(/\0.*$/s, '') } : {}),
      };
    });
}
