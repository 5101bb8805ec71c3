/* SPDX-License-Identifier: GPL-2.0 */
/*
 * sections.o: parse-only coverage of ELF section names -> program
 * type / expected attach type / attach target. Every program just returns
 * 0; most of these hooks cannot be loaded on the test machine (no kprobes,
 * no trampolines), the object exists to test the ELF/section parser.
 */
#include "common.h"

char LICENSE[] SEC("license") = "GPL";

/* global data in the standard and in custom-named sections */
u64 bss_var;                                        /* .bss */
const volatile u32 rodata_var = 1;                  /* .rodata */
u32 data_var = 2;                                   /* .data */
SEC(".data.custom") int custom_var = 3;             /* .data.custom */
SEC(".rodata.consts") const volatile int ro_var = 5; /* .rodata.consts */

#define TRIVIAL(sec, name)              \
	SEC(sec) int name(void *ctx)    \
	{                               \
		return 0;               \
	}

/* two programs sharing one section */
TRIVIAL("xdp", xdp_one)
SEC("xdp")
int xdp_two(struct xdp_md *ctx)
{
	/* touch the globals so every data section is referenced */
	bss_var += rodata_var + data_var + custom_var + ro_var;
	return XDP_PASS;
}

/* '?' prefix: autoload disabled */
TRIVIAL("?xdp", xdp_noautoload)
TRIVIAL("xdp.frags", xdp_frags)

TRIVIAL("socket", socket_filter)
TRIVIAL("tc", tc_prog)
TRIVIAL("tcx/ingress", tcx_ingress)
TRIVIAL("netfilter", netfilter_prog)

TRIVIAL("cgroup_skb/ingress", cg_skb_ingress)
TRIVIAL("cgroup_skb/egress", cg_skb_egress)
TRIVIAL("cgroup/connect4", cg_connect4)
TRIVIAL("cgroup/sock_create", cg_sock_create)
TRIVIAL("cgroup/sysctl", cg_sysctl)
TRIVIAL("cgroup/getsockopt", cg_getsockopt)

TRIVIAL("kprobe/do_unlinkat", kprobe_unlinkat)
TRIVIAL("kretprobe/do_unlinkat", kretprobe_unlinkat)
TRIVIAL("ksyscall/openat", ksyscall_openat)

TRIVIAL("uprobe", uprobe_manual)
TRIVIAL("uprobe.s//proc/self/exe:main", uprobe_sleepable_main)
TRIVIAL("uretprobe/libc.so.6:malloc", uretprobe_malloc)

TRIVIAL("tracepoint/sched/sched_switch", tracepoint_sched_switch)
TRIVIAL("raw_tracepoint/sched_switch", raw_tracepoint_sched_switch)
TRIVIAL("tp_btf/sched_switch", tp_btf_sched_switch)

TRIVIAL("fentry/do_unlinkat", fentry_unlinkat)
TRIVIAL("fexit/do_unlinkat", fexit_unlinkat)
TRIVIAL("fmod_ret/security_inode_unlink", fmod_ret_inode_unlink)
TRIVIAL("lsm/file_open", lsm_file_open)
TRIVIAL("lsm.s/bprm_committed_creds", lsm_s_bprm_committed_creds)

TRIVIAL("iter/task", iter_task)
TRIVIAL("iter.s/bpf_map_elem", iter_s_map_elem)

TRIVIAL("perf_event", perf_event_prog)
TRIVIAL("sk_lookup", sk_lookup_prog)
TRIVIAL("sk_msg", sk_msg_prog)
TRIVIAL("sk_skb/stream_verdict", sk_skb_verdict)

TRIVIAL("syscall", syscall_prog)
TRIVIAL("struct_ops/dummy_op", struct_ops_dummy_op)
