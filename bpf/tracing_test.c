/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/*
 * tracing_test.o: the attach kinds beyond tracepoints (test/iter.test.ts, perf-event.test.ts,
 * kprobe.test.ts, trampoline.test.ts, program.test.ts).
 *
 * Programs whose section starts with '?' are not loaded by default: the tests load them by name,
 * after probing that the kernel has the hook (kprobes, trampolines and BPF LSM may be missing).
 * Every counter only counts events of target_tgid, set by the test before load.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

const volatile u32 target_tgid = 0;

static __always_inline bool is_target(void)
{
	return (u32)(bpf_get_current_pid_tgid() >> 32) == target_tgid;
}

/* ---- iterators ---------------------------------------------------------------------------- */

/* One line per task (thread group leaders only): "<tgid> <comm>". */
SEC("iter/task")
int dump_task(struct bpf_iter__task *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct task_struct *task = ctx->task;

	if (!task)
		return 0;
	if (task->pid != task->tgid)
		return 0;
	BPF_SEQ_PRINTF(seq, "%d %s\n", task->tgid, task->comm);
	return 0;
}

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, u32);
	__type(value, u64);
} iter_hash SEC(".maps");

/* One line per element of the map it is attached to: "<key>=<value>". */
SEC("iter/bpf_map_elem")
int dump_hash(struct bpf_iter__bpf_map_elem *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	u32 *key = ctx->key;
	u64 *val = ctx->value;

	if (!key || !val)
		return 0;
	BPF_SEQ_PRINTF(seq, "%u=%llu\n", *key, *val);
	return 0;
}

/* ---- perf_event sampling -------------------------------------------------------------------- */

u64 samples;

SEC("perf_event")
int on_sample(struct bpf_perf_event_data *ctx)
{
	if (is_target())
		__sync_fetch_and_add(&samples, 1);
	return 0;
}

/* ---- kprobes ---------------------------------------------------------------------------------- */

u64 kprobe_hits;
u64 kretprobe_hits;
u64 kprobe_cookie;
u64 multi_hits;
u64 ksyscall_hits;

/* Attached by the test to the getpid syscall's kernel function (the arch's __<arch>_sys_getpid). */
SEC("?kprobe")
int on_kprobe(struct pt_regs *ctx)
{
	if (is_target()) {
		__sync_fetch_and_add(&kprobe_hits, 1);
		kprobe_cookie = bpf_get_attach_cookie(ctx);
	}
	return 0;
}

SEC("?kretprobe")
int on_kretprobe(struct pt_regs *ctx)
{
	if (is_target())
		__sync_fetch_and_add(&kretprobe_hits, 1);
	return 0;
}

SEC("?kprobe.multi")
int on_kprobe_multi(struct pt_regs *ctx)
{
	if (is_target())
		__sync_fetch_and_add(&multi_hits, 1);
	return 0;
}

SEC("?ksyscall/getpid")
int on_ksyscall(struct pt_regs *ctx)
{
	if (is_target())
		__sync_fetch_and_add(&ksyscall_hits, 1);
	return 0;
}

/* ---- trampolines (fentry/fexit/fmod_ret run by BPF_PROG_TEST_RUN of a tracing program) --------- */

u64 fentry_arg;
u64 fexit_ret;
u64 fmod_ret_calls;

/* The kernel's test-run of a tracing program calls bpf_fentry_test1(1), which returns 2. */
SEC("?fentry/bpf_fentry_test1")
int BPF_PROG(on_fentry, int a)
{
	fentry_arg = a;
	return 0;
}

SEC("?fexit/bpf_fentry_test1")
int BPF_PROG(on_fexit, int a, int ret)
{
	fexit_ret = ret;
	return 0;
}

/* bpf_modify_return_test(a, b) returns a + *b: returning non-zero skips it and makes that the result. */
SEC("?fmod_ret/bpf_modify_return_test")
int BPF_PROG(on_fmod_ret, int a, int *b, int ret)
{
	__sync_fetch_and_add(&fmod_ret_calls, 1);
	return 1234;
}

/* BPF LSM: refuse socket(AF_UNIX, SOCK_SEQPACKET, 0) to target_tgid only. */
SEC("?lsm/socket_create")
int BPF_PROG(deny_seqpacket, int family, int type, int protocol, int kern, int ret)
{
	if (ret)
		return ret;
	if (!kern && is_target() && family == 1 /* AF_UNIX */ && type == 5 /* SOCK_SEQPACKET */)
		return -1 /* -EPERM */;
	return 0;
}

/* ---- freplace: an XDP program with a global function a freplace program replaces ------------- */

__noinline int xdp_verdict(struct xdp_md *ctx)
{
	if (!ctx)
		return XDP_ABORTED;
	return XDP_PASS;
}

SEC("xdp")
int xdp_with_verdict(struct xdp_md *ctx)
{
	return xdp_verdict(ctx);
}

SEC("?freplace/xdp_verdict")
int new_verdict(struct xdp_md *ctx)
{
	return XDP_DROP;
}

/* ---- BPF_PROG_TEST_RUN options ------------------------------------------------------------- */

u64 xdp_runs;

/* Rewrites the first byte of the packet to 0xab and returns XDP_TX (XDP_DROP for empty packets). */
SEC("xdp")
int xdp_rewrite(struct xdp_md *ctx)
{
	u8 *data = (u8 *)(long)ctx->data;
	u8 *end = (u8 *)(long)ctx->data_end;

	__sync_fetch_and_add(&xdp_runs, 1);
	if (data + 1 > end)
		return XDP_DROP;
	data[0] = 0xab;
	return XDP_TX;
}

u64 live_runs;

/* For BPF_F_TEST_XDP_LIVE_FRAMES: counts and drops every frame. */
SEC("xdp")
int xdp_count_drop(struct xdp_md *ctx)
{
	__sync_fetch_and_add(&live_runs, 1);
	return XDP_DROP;
}

/* ctx in/out: adds 1 to skb->mark and returns the packet length. */
SEC("tc")
int tc_mark(struct __sk_buff *skb)
{
	skb->mark += 1;
	return skb->len;
}

u32 ran_on_cpu;

/* BPF_F_TEST_RUN_ON_CPU: records where it ran; returns its first argument. */
SEC("raw_tp/sys_enter")
int raw_on_cpu(u64 *ctx)
{
	ran_on_cpu = bpf_get_smp_processor_id();
	return (int)ctx[0];
}
