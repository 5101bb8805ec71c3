/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/*
 * rb_vs_perf.o: the kernel side of `tsbpf run ringbuf-vs-perf`. One program
 * on the getppid() syscall tracepoint (process.ppid in Node makes that
 * syscall every time it is read) writes the same record to two transports:
 * a BPF ring buffer (one buffer shared by all CPUs, reserve/commit) and a perf
 * event array (one ring per CPU, bpf_perf_event_output copies the record).
 * User space reads both and compares counts and delivery latency. Written
 * for tsbpf.
 */
#include "common.h"

char LICENSE[] SEC("license") = "GPL";

/* only this process (thread group id) produces events; 0 = every process */
const volatile u32 targ_tgid = 0;

/* the record, identical on both transports: 24 bytes */
struct event {
	u64 ts_ns; /* bpf_ktime_get_ns() when produced (CLOCK_MONOTONIC) */
	u64 seq;   /* sequence number, per transport */
	u32 cpu;   /* CPU that produced it */
	u32 tid;   /* thread that made the syscall */
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20); /* 1 MiB */
} rb SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(u32));
	__uint(value_size, sizeof(u32));
} perf SEC(".maps");

/* events that did not fit: [0] ring buffer full, [1] perf ring full */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, u32);
	__type(value, u64);
} dropped SEC(".maps");

u64 rb_seq = 0;
u64 perf_seq = 0;

static __always_inline void count_drop(u32 which)
{
	u64 *n = bpf_map_lookup_elem(&dropped, &which);

	if (n)
		__sync_fetch_and_add(n, 1);
}

SEC("tp/syscalls/sys_enter_getppid")
int on_getppid(void *ctx)
{
	u64 id = bpf_get_current_pid_tgid();
	struct event *e, ev = {};

	if (targ_tgid && (u32)(id >> 32) != targ_tgid)
		return 0;

	ev.cpu = bpf_get_smp_processor_id();
	ev.tid = (u32)id;

	/* ring buffer: reserve room in the shared buffer, fill it in place, commit */
	e = bpf_ringbuf_reserve(&rb, sizeof(*e), 0);
	if (e) {
		e->ts_ns = bpf_ktime_get_ns();
		e->seq = __sync_fetch_and_add(&rb_seq, 1);
		e->cpu = ev.cpu;
		e->tid = ev.tid;
		bpf_ringbuf_submit(e, 0);
	} else {
		count_drop(0);
	}

	/* perf buffer: build the record on the stack, copied into this CPU's ring */
	ev.seq = __sync_fetch_and_add(&perf_seq, 1);
	ev.ts_ns = bpf_ktime_get_ns();
	if (bpf_perf_event_output(ctx, &perf, BPF_F_CURRENT_CPU, &ev, sizeof(ev)))
		count_drop(1);
	return 0;
}
