// Auto-attach for the cgroup and socket program sections: cgroup/*, cgroup_skb/*, sockops, lsm_cgroup,
// sk_lookup; and why not for netfilter, sk_msg and sk_skb (their section names do not say enough).

import { BPF_ATTACH_TYPE, BPF_PROG_TYPE } from '../syscall/index.js';
import { TsbpfError } from '../errors.js';
import type { ProgramSpec } from '../elf/spec.js';
import type { Program } from '../programs/program.js';
import type { Link } from './link.js';
import { attachCgroup, cgroup2Root } from './cgroup.js';
import { attachSkLookup } from './socket.js';

export interface AutoAttachCgroupOptions {
  /** Cgroup for cgroup programs (a path, absolute or relative to the cgroup v2 root). Default: the cgroup v2 root. */
  cgroup?: string;
}

const P = BPF_PROG_TYPE;
const CGROUP_TYPES = new Set<number>([P.CGROUP_SKB, P.CGROUP_SOCK, P.CGROUP_SOCK_ADDR, P.CGROUP_SOCKOPT, P.CGROUP_SYSCTL, P.CGROUP_DEVICE, P.SOCK_OPS]);

function isCgroupSpec(spec: ProgramSpec): boolean {
  return CGROUP_TYPES.has(spec.type) || (spec.type === P.LSM && spec.expectedAttachType === BPF_ATTACH_TYPE.LSM_CGROUP);
}

/**
 * For the program types this module attaches: undefined when `spec` can be auto-attached, else why not.
 * `null` when the program type is not one of them (ask another attacher).
 */
export function autoAttachCgroupSupport(spec: ProgramSpec, _opts: AutoAttachCgroupOptions = {}): string | undefined | null {
  if (isCgroupSpec(spec)) {
    if (!spec.expectedAttachType) {
      return `section "${spec.section}" does not say which cgroup hook (e.g. cgroup_skb/ingress or cgroup_skb/egress, not cgroup/skb); ` +
        'use attachCgroup(prog, { cgroup, attachType })';
    }
    return undefined;
  }
  switch (spec.type) {
    case P.SK_LOOKUP:
      return undefined;
    case P.NETFILTER:
      return 'netfilter sections do not say the protocol family, hook and priority: use attachNetfilter(prog, { pf, hook, priority })';
    case P.SK_MSG:
    case P.SK_SKB:
      return `${spec.sectionKind} programs attach to a SOCKMAP or SOCKHASH that user space fills with sockets: ` +
        `use attachSockmap(prog, map${spec.type === P.SK_SKB ? ", 'stream_parser' | 'stream_verdict' | 'skb_verdict'" : ''})`;
    default:
      return null;
  }
}

/**
 * Attach `prog` by its section name if it is a cgroup, sock_ops, lsm_cgroup or sk_lookup program: cgroup
 * programs to `opts.cgroup` (default: the cgroup v2 root, i.e. every process), sk_lookup to the calling
 * thread's network namespace. undefined when the program type is not one of these; an error that says what
 * to do for those that cannot be auto-attached (netfilter, sk_msg, sk_skb, cgroup/skb).
 */
export function autoAttachCgroup(prog: Program, spec: ProgramSpec, opts: AutoAttachCgroupOptions = {}): Link | undefined {
  const why = autoAttachCgroupSupport(spec, opts);
  if (why === null) return undefined;
  if (why !== undefined) throw new TsbpfError(`program "${spec.name}" (SEC "${spec.section}"): cannot auto-attach: ${why}`);
  if (spec.type === P.SK_LOOKUP) return attachSkLookup(prog);
  return attachCgroup(prog, { cgroup: opts.cgroup ?? cgroup2Root(), attachType: spec.expectedAttachType });
}
