/* SPDX-License-Identifier: GPL-2.0 */
/*
 * runqslower.o: report each task that waited on a run queue longer than
 * min_us, one perf event per occurrence (the classic runqslower's kernel
 * side, written for tsbpf). BTF-typed tracepoints (tp_btf): the task
 * pointers are trusted, but every task_struct field is still read through
 * BPF_CORE_READ so the object needs CO-RE relocation to load.
 *
 *   enqueue  = sched_wakeup, sched_wakeup_new, or sched_switch of a prev
 *              task that is still TASK_RUNNING (preempted): start[tid] = now
 *   switch-in = sched_switch next: delta = now - start[tid], report it
 */
#include "runq.h"

char LICENSE[] SEC("license") = "GPL";

/* report waits longer than this; 0 reports every switch-in we saw enqueued */
/* Keeps struct event in the object's BTF, so loaders can decode the records by type (tsbpf load --attach). */
const struct event *unused_event __attribute__((unused));

const volatile __u64 min_us = 10000;
/* 0 = any; otherwise only this thread id / this process (tgid) */
const volatile pid_t targ_pid = 0;
const volatile pid_t targ_tgid = 0;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, RUNQ_MAX_ENTRIES);
	__type(key, __u32);   /* thread id */
	__type(value, __u64); /* ktime (ns) it became runnable */
} start SEC(".maps");

/* one perf ring per CPU; max_entries 0 = the loader sizes it to the CPUs */
struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} events SEC(".maps");

static __always_inline int on_enqueue(struct task_struct *p)
{
	__u32 tid = BPF_CORE_READ(p, pid);
	__u32 tgid = BPF_CORE_READ(p, tgid);
	__u64 now;

	if (tid == 0) /* the idle task never waits */
		return 0;
	if (targ_pid != 0 && (pid_t)tid != targ_pid)
		return 0;
	if (targ_tgid != 0 && (pid_t)tgid != targ_tgid)
		return 0;
	now = bpf_ktime_get_ns();
	bpf_map_update_elem(&start, &tid, &now, BPF_ANY);
	return 0;
}

SEC("tp_btf/sched_wakeup")
int BPF_PROG(on_wakeup, struct task_struct *p)
{
	return on_enqueue(p);
}

SEC("tp_btf/sched_wakeup_new")
int BPF_PROG(on_wakeup_new, struct task_struct *p)
{
	return on_enqueue(p);
}

SEC("tp_btf/sched_switch")
int BPF_PROG(on_switch, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	struct event ev = {};
	__u64 *since, delta_us;
	__u32 tid;

	/* involuntary switch: prev goes back on the run queue right now */
	if (runq_task_state(prev) == RUNQ_TASK_RUNNING)
		on_enqueue(prev);

	tid = BPF_CORE_READ(next, pid);
	since = bpf_map_lookup_elem(&start, &tid);
	if (!since)
		return 0; /* enqueued before we attached, or filtered out */
	delta_us = (bpf_ktime_get_ns() - *since) / 1000;
	bpf_map_delete_elem(&start, &tid);
	if (min_us != 0 && delta_us <= min_us)
		return 0;

	ev.delta_us = delta_us;
	ev.pid = tid;
	ev.prev_pid = BPF_CORE_READ(prev, pid);
	BPF_CORE_READ_STR_INTO(&ev.task, next, comm);
	BPF_CORE_READ_STR_INTO(&ev.prev_task, prev, comm);
	bpf_perf_event_output(ctx, &events, BPF_F_CURRENT_CPU, &ev, sizeof(ev));
	return 0;
}
