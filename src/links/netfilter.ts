// Netfilter programs (6.4+): a netfilter bpf_link registers the program as a hook function at one
// (protocol family, hook, priority) in a network namespace, like an nftables base chain.

import { BPF_ATTACH_TYPE, BPF_PROG_TYPE, BpfError, E, linkCreate, inNetns, type FdLike } from '../syscall/index.js';
import { NotSupportedError, TsbpfError } from '../errors.js';
import type { Program } from '../programs/program.js';
import { Link } from './link.js';

/** NFPROTO_* by name. */
export const NF_PROTO = { ipv4: 2, ipv6: 10 } as const;
/** NF_INET_* hooks by name. */
export const NF_HOOK = { prerouting: 0, input: 1, forward: 2, output: 3, postrouting: 4 } as const;
/** BPF_F_NETFILTER_IP_DEFRAG (6.6+): packets reach the program reassembled. */
export const BPF_F_NETFILTER_IP_DEFRAG = 1;
/** NF_IP_PRI_CONNTRACK_DEFRAG: with defrag, the priority must be above this. */
const PRI_DEFRAG = -400;
const INT_MIN = -2147483648;
const INT_MAX = 2147483647;

export interface NetfilterAttachOptions {
  pf: keyof typeof NF_PROTO;
  hook: keyof typeof NF_HOOK;
  /** Lower runs first; INT_MIN and INT_MAX are reserved. Conntrack is at -200, filter tables at 0. */
  priority: number;
  /** Reassemble fragments before the program sees them (6.6+; priority must be above -400). */
  defrag?: boolean;
  /** The network namespace (path or fd); default: the calling thread's. */
  netns?: string | FdLike;
}

/**
 * Attach a netfilter program (SEC("netfilter")): it returns NF_ACCEPT (1) or NF_DROP (0) for each packet
 * at the hook. The link is per network namespace; close() unregisters it.
 */
export function attachNetfilter(prog: Program, opts: NetfilterAttachOptions): Link {
  if (prog.type !== BPF_PROG_TYPE.NETFILTER) throw new TypeError(`program "${prog.name}" (type ${prog.type}) is not a netfilter program (SEC("netfilter"))`);
  const pf = NF_PROTO[opts.pf];
  if (pf === undefined) throw new TypeError(`pf must be ${Object.keys(NF_PROTO).map((k) => `'${k}'`).join(' or ')}, not ${String(opts.pf)}`);
  const hooknum = NF_HOOK[opts.hook];
  if (hooknum === undefined) throw new TypeError(`hook must be one of ${Object.keys(NF_HOOK).join(', ')}, not ${String(opts.hook)}`);
  const p = opts.priority;
  if (!Number.isInteger(p) || p <= INT_MIN || p >= INT_MAX) {
    throw new TypeError(`priority must be an integer strictly between ${INT_MIN} and ${INT_MAX} (those two are reserved), not ${p}`);
  }
  if (opts.defrag && p <= PRI_DEFRAG) {
    throw new TypeError(`with defrag the priority must be above ${PRI_DEFRAG} (NF_IP_PRI_CONNTRACK_DEFRAG), where reassembly happens; got ${p}`);
  }
  const target = `${opts.pf}/${opts.hook}@${p}`;
  const what = `attach netfilter "${prog.name}" at ${target}`;
  const create = () =>
    linkCreate({
      progFd: prog.fd,
      attachType: BPF_ATTACH_TYPE.NETFILTER,
      fields: { 'netfilter.pf': pf, 'netfilter.hooknum': hooknum, 'netfilter.priority': p >>> 0, 'netfilter.flags': opts.defrag ? BPF_F_NETFILTER_IP_DEFRAG : 0 },
    }, what);
  try {
    const fd = opts.netns === undefined ? create() : inNetns(opts.netns, create);
    return new Link('netfilter', target, prog.name, { fd });
  } catch (e) {
    if (e instanceof BpfError) {
      if (e.errnoCode === E.EOPNOTSUPP && opts.defrag) throw new NotSupportedError('netfilter defrag (BPF_F_NETFILTER_IP_DEFRAG)', '6.6', e.message);
      if (e.errnoCode === E.EOPNOTSUPP || e.errnoCode === 524) throw new NotSupportedError('netfilter bpf links (CONFIG_NETFILTER_BPF_LINK)', '6.4', e.message);
      if (e.errnoCode === E.EBUSY) throw new TsbpfError(`${what}: another netfilter bpf program holds this priority at this hook; pick another priority`, { cause: e });
    }
    throw e;
  }
}
