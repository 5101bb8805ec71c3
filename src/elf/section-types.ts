// Program section names → program type, expected attach type, flags.
//
// The naming conventions are libbpf's (its `section_defs` table in libbpf.c,
// read as the reference for which names exist and what they mean); the table
// below is our own. Matching works like libbpf's:
//  - 'exact': the name must equal the pattern ("tc/ingress", "xdp");
//  - 'plus':  the pattern alone, or the pattern followed by '/' and a target
//             ("kprobe", "kprobe/do_unlinkat"); "kprobe.multi/x" does not match
//             "kprobe" because the character after the pattern is not '/'.
// The first matching entry wins, so more specific patterns come first.
// A leading '?' only turns autoload off and is ignored for matching.
//
// Things libbpf decides at load time, not from the name, and that the loader
// (not this parser) must handle:
//  - "usdt" programs get BPF_TRACE_UPROBE_MULTI as expected attach type when
//    the kernel supports uprobe-multi links; here they have 0.
//  - for xdp, sockops, sk_skb/*, sk_msg, cgroup_skb/*, cgroup/sock, cgroup/dev,
//    flow_dissector and lirc_mode2, libbpf drops the expected attach type on
//    kernels that predate expected_attach_type (before 4.17).

import { BPF_ATTACH_TYPE as A, BPF_PROG_TYPE as P } from '../syscall/kernel-defs.generated.js';

/** BPF_F_SLEEPABLE (include/uapi/linux/bpf.h: a #define, so not in the generated enums). */
export const BPF_F_SLEEPABLE = 1 << 4;
/** BPF_F_XDP_HAS_FRAGS (include/uapi/linux/bpf.h). */
export const BPF_F_XDP_HAS_FRAGS = 1 << 5;

interface SectionDef {
  pattern: string;
  match: 'exact' | 'plus';
  type: number;
  attachType: number;
  sleepable?: boolean;
  frags?: boolean;
}

const exact = (pattern: string, type: number, attachType = 0, extra: Partial<SectionDef> = {}): SectionDef => ({
  pattern,
  match: 'exact',
  type,
  attachType,
  ...extra,
});
const plus = (pattern: string, type: number, attachType = 0, extra: Partial<SectionDef> = {}): SectionDef => ({
  pattern,
  match: 'plus',
  type,
  attachType,
  ...extra,
});
const S = { sleepable: true };

const SECTION_DEFS: readonly SectionDef[] = [
  exact('socket', P.SOCKET_FILTER),
  exact('sk_reuseport/migrate', P.SK_REUSEPORT, A.SK_REUSEPORT_SELECT_OR_MIGRATE),
  exact('sk_reuseport', P.SK_REUSEPORT, A.SK_REUSEPORT_SELECT),

  // kprobes and uprobes (all BPF_PROG_TYPE_KPROBE)
  plus('kprobe', P.KPROBE),
  plus('uprobe', P.KPROBE),
  plus('uprobe.s', P.KPROBE, 0, S),
  plus('kretprobe', P.KPROBE),
  plus('uretprobe', P.KPROBE),
  plus('uretprobe.s', P.KPROBE, 0, S),
  plus('kprobe.multi', P.KPROBE, A.TRACE_KPROBE_MULTI),
  plus('kretprobe.multi', P.KPROBE, A.TRACE_KPROBE_MULTI),
  plus('kprobe.session', P.KPROBE, A.TRACE_KPROBE_SESSION),
  plus('uprobe.multi', P.KPROBE, A.TRACE_UPROBE_MULTI),
  plus('uretprobe.multi', P.KPROBE, A.TRACE_UPROBE_MULTI),
  plus('uprobe.session', P.KPROBE, A.TRACE_UPROBE_SESSION),
  plus('uprobe.multi.s', P.KPROBE, A.TRACE_UPROBE_MULTI, S),
  plus('uretprobe.multi.s', P.KPROBE, A.TRACE_UPROBE_MULTI, S),
  plus('uprobe.session.s', P.KPROBE, A.TRACE_UPROBE_SESSION, S),
  plus('ksyscall', P.KPROBE),
  plus('kretsyscall', P.KPROBE),
  plus('usdt', P.KPROBE),
  plus('usdt.s', P.KPROBE, 0, S),

  // traffic control: "tc/ingress" and "tc/egress" are the tcx attach points
  exact('tc/ingress', P.SCHED_CLS, A.TCX_INGRESS),
  exact('tc/egress', P.SCHED_CLS, A.TCX_EGRESS),
  exact('tcx/ingress', P.SCHED_CLS, A.TCX_INGRESS),
  exact('tcx/egress', P.SCHED_CLS, A.TCX_EGRESS),
  exact('tc', P.SCHED_CLS),
  exact('classifier', P.SCHED_CLS),
  exact('action', P.SCHED_ACT),
  exact('netkit/primary', P.SCHED_CLS, A.NETKIT_PRIMARY),
  exact('netkit/peer', P.SCHED_CLS, A.NETKIT_PEER),

  // tracepoints
  plus('tracepoint', P.TRACEPOINT),
  plus('tp', P.TRACEPOINT),
  plus('tracepoint.s', P.TRACEPOINT, 0, S),
  plus('tp.s', P.TRACEPOINT, 0, S),
  plus('raw_tracepoint', P.RAW_TRACEPOINT),
  plus('raw_tp', P.RAW_TRACEPOINT),
  plus('raw_tracepoint.s', P.RAW_TRACEPOINT, 0, S),
  plus('raw_tp.s', P.RAW_TRACEPOINT, 0, S),
  plus('raw_tracepoint.w', P.RAW_TRACEPOINT_WRITABLE),
  plus('raw_tp.w', P.RAW_TRACEPOINT_WRITABLE),

  // BTF-attached tracing (target = kernel function / hook by BTF name)
  plus('tp_btf', P.TRACING, A.TRACE_RAW_TP),
  plus('tp_btf.s', P.TRACING, A.TRACE_RAW_TP, S),
  plus('fentry', P.TRACING, A.TRACE_FENTRY),
  plus('fmod_ret', P.TRACING, A.MODIFY_RETURN),
  plus('fexit', P.TRACING, A.TRACE_FEXIT),
  plus('fentry.s', P.TRACING, A.TRACE_FENTRY, S),
  plus('fmod_ret.s', P.TRACING, A.MODIFY_RETURN, S),
  plus('fexit.s', P.TRACING, A.TRACE_FEXIT, S),
  plus('freplace', P.EXT),
  plus('lsm', P.LSM, A.LSM_MAC),
  plus('lsm.s', P.LSM, A.LSM_MAC, S),
  plus('lsm_cgroup', P.LSM, A.LSM_CGROUP),
  plus('iter', P.TRACING, A.TRACE_ITER),
  plus('iter.s', P.TRACING, A.TRACE_ITER, S),
  // libbpf always loads syscall programs as sleepable.
  exact('syscall', P.SYSCALL, 0, S),

  // XDP
  exact('xdp.frags/devmap', P.XDP, A.XDP_DEVMAP, { frags: true }),
  exact('xdp/devmap', P.XDP, A.XDP_DEVMAP),
  exact('xdp.frags/cpumap', P.XDP, A.XDP_CPUMAP, { frags: true }),
  exact('xdp/cpumap', P.XDP, A.XDP_CPUMAP),
  exact('xdp.frags', P.XDP, A.XDP, { frags: true }),
  exact('xdp', P.XDP, A.XDP),

  exact('perf_event', P.PERF_EVENT),
  exact('lwt_in', P.LWT_IN),
  exact('lwt_out', P.LWT_OUT),
  exact('lwt_xmit', P.LWT_XMIT),
  exact('lwt_seg6local', P.LWT_SEG6LOCAL),

  // sockets
  exact('sockops', P.SOCK_OPS, A.CGROUP_SOCK_OPS),
  exact('sk_skb/stream_parser', P.SK_SKB, A.SK_SKB_STREAM_PARSER),
  exact('sk_skb/stream_verdict', P.SK_SKB, A.SK_SKB_STREAM_VERDICT),
  exact('sk_skb/verdict', P.SK_SKB, A.SK_SKB_VERDICT),
  exact('sk_skb', P.SK_SKB),
  exact('sk_msg', P.SK_MSG, A.SK_MSG_VERDICT),
  exact('lirc_mode2', P.LIRC_MODE2, A.LIRC_MODE2),
  exact('flow_dissector', P.FLOW_DISSECTOR, A.FLOW_DISSECTOR),

  // cgroups
  exact('cgroup_skb/ingress', P.CGROUP_SKB, A.CGROUP_INET_INGRESS),
  exact('cgroup_skb/egress', P.CGROUP_SKB, A.CGROUP_INET_EGRESS),
  exact('cgroup/skb', P.CGROUP_SKB),
  exact('cgroup/sock_create', P.CGROUP_SOCK, A.CGROUP_INET_SOCK_CREATE),
  exact('cgroup/sock_release', P.CGROUP_SOCK, A.CGROUP_INET_SOCK_RELEASE),
  exact('cgroup/sock', P.CGROUP_SOCK, A.CGROUP_INET_SOCK_CREATE),
  exact('cgroup/post_bind4', P.CGROUP_SOCK, A.CGROUP_INET4_POST_BIND),
  exact('cgroup/post_bind6', P.CGROUP_SOCK, A.CGROUP_INET6_POST_BIND),
  exact('cgroup/bind4', P.CGROUP_SOCK_ADDR, A.CGROUP_INET4_BIND),
  exact('cgroup/bind6', P.CGROUP_SOCK_ADDR, A.CGROUP_INET6_BIND),
  exact('cgroup/connect4', P.CGROUP_SOCK_ADDR, A.CGROUP_INET4_CONNECT),
  exact('cgroup/connect6', P.CGROUP_SOCK_ADDR, A.CGROUP_INET6_CONNECT),
  exact('cgroup/connect_unix', P.CGROUP_SOCK_ADDR, A.CGROUP_UNIX_CONNECT),
  exact('cgroup/sendmsg4', P.CGROUP_SOCK_ADDR, A.CGROUP_UDP4_SENDMSG),
  exact('cgroup/sendmsg6', P.CGROUP_SOCK_ADDR, A.CGROUP_UDP6_SENDMSG),
  exact('cgroup/sendmsg_unix', P.CGROUP_SOCK_ADDR, A.CGROUP_UNIX_SENDMSG),
  exact('cgroup/recvmsg4', P.CGROUP_SOCK_ADDR, A.CGROUP_UDP4_RECVMSG),
  exact('cgroup/recvmsg6', P.CGROUP_SOCK_ADDR, A.CGROUP_UDP6_RECVMSG),
  exact('cgroup/recvmsg_unix', P.CGROUP_SOCK_ADDR, A.CGROUP_UNIX_RECVMSG),
  exact('cgroup/getpeername4', P.CGROUP_SOCK_ADDR, A.CGROUP_INET4_GETPEERNAME),
  exact('cgroup/getpeername6', P.CGROUP_SOCK_ADDR, A.CGROUP_INET6_GETPEERNAME),
  exact('cgroup/getpeername_unix', P.CGROUP_SOCK_ADDR, A.CGROUP_UNIX_GETPEERNAME),
  exact('cgroup/getsockname4', P.CGROUP_SOCK_ADDR, A.CGROUP_INET4_GETSOCKNAME),
  exact('cgroup/getsockname6', P.CGROUP_SOCK_ADDR, A.CGROUP_INET6_GETSOCKNAME),
  exact('cgroup/getsockname_unix', P.CGROUP_SOCK_ADDR, A.CGROUP_UNIX_GETSOCKNAME),
  exact('cgroup/sysctl', P.CGROUP_SYSCTL, A.CGROUP_SYSCTL),
  exact('cgroup/getsockopt', P.CGROUP_SOCKOPT, A.CGROUP_GETSOCKOPT),
  exact('cgroup/setsockopt', P.CGROUP_SOCKOPT, A.CGROUP_SETSOCKOPT),
  exact('cgroup/dev', P.CGROUP_DEVICE, A.CGROUP_DEVICE),

  plus('struct_ops', P.STRUCT_OPS),
  plus('struct_ops.s', P.STRUCT_OPS, 0, S),
  exact('sk_lookup', P.SK_LOOKUP, A.SK_LOOKUP),
  exact('netfilter', P.NETFILTER, A.NETFILTER),
];

/** What a program's section name says about it. */
export interface SectionInfo {
  type: number;
  expectedAttachType: number;
  attachTo: string;
  sectionKind: string;
  flags: number;
  autoload: boolean;
}

function matches(def: SectionDef, name: string): boolean {
  if (def.match === 'exact') return name === def.pattern;
  if (!name.startsWith(def.pattern)) return false;
  return name.length === def.pattern.length || name[def.pattern.length] === '/';
}

/**
 * Interprets a program section name. Never fails: an unknown name gives
 * type 0 (BPF_PROG_TYPE_UNSPEC), which the user can override before loading.
 */
export function classifySection(sectionName: string): SectionInfo {
  const autoload = !sectionName.startsWith('?');
  const name = autoload ? sectionName : sectionName.slice(1);
  const slash = name.indexOf('/');
  let sectionKind = slash < 0 ? name : name.slice(0, slash);
  if (sectionKind.endsWith('.s')) sectionKind = sectionKind.slice(0, -2);

  const def = SECTION_DEFS.find((d) => matches(d, name));
  if (!def) {
    return {
      type: P.UNSPEC,
      expectedAttachType: 0,
      attachTo: slash < 0 ? '' : name.slice(slash + 1),
      sectionKind,
      flags: 0,
      autoload,
    };
  }
  let flags = 0;
  if (def.sleepable) flags |= BPF_F_SLEEPABLE;
  if (def.frags && def.type === P.XDP) flags |= BPF_F_XDP_HAS_FRAGS;
  const attachTo = def.match === 'plus' && name.length > def.pattern.length ? name.slice(def.pattern.length + 1) : '';
  return { type: def.type, expectedAttachType: def.attachType, attachTo, sectionKind, flags, autoload };
}
