/* SPDX-License-Identifier: GPL-2.0 */
/*
 * runqlat.o: run-queue latency as log2 histograms (the classic runqlat's
 * kernel side, written for tsbpf). Raw tracepoints: the task pointers in
 * ctx->args are plain numbers to the verifier, so every task_struct field is
 * read with BPF_CORE_READ (bpf_probe_read_kernel at CO-RE-relocated offsets).
 *
 * One histogram per key in `hists`:
 *   targ_per_process  key = tgid     comm = first thread seen of it
 *   targ_per_thread   key = tid      comm = that thread
 *   targ_per_pidns    key = pid namespace inode number   (comm empty)
 *   none of them      key = 0xffffffff, one histogram     (comm empty)
 * slot k counts waits of 2^k .. 2^(k+1)-1 units (slot 0: 0 and 1), the last
 * slot everything above; units are usecs, or msecs with targ_ms.
 */
#include "runq.h"

char LICENSE[] SEC("license") = "GPL";

const volatile bool targ_per_process = false;
const volatile bool targ_per_thread = false;
const volatile bool targ_per_pidns = false;
const volatile bool targ_ms = false;
/* 0 = any process; otherwise only tasks of this tgid are timed */
const volatile pid_t targ_tgid = 0;
/* only count events whose current task is under the cgroup in cgroup_map[0]
 * (user space stores an fd of a cgroup v2 directory there before setting
 * this); when the slot is empty nothing is counted */
const volatile bool filter_cg = false;

struct {
	__uint(type, BPF_MAP_TYPE_CGROUP_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} cgroup_map SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, RUNQ_MAX_ENTRIES);
	__type(key, __u32);   /* thread id */
	__type(value, __u64); /* ktime (ns) it became runnable */
} start SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, RUNQ_MAX_ENTRIES);
	__type(key, __u32);
	__type(value, struct hist);
} hists SEC(".maps");

/* floor(log2(v)), 0 for v = 0: a binary search over the bit positions */
static __always_inline __u32 log2l(__u64 v)
{
	__u32 r = 0;

	if (v >> 32) { v >>= 32; r += 32; }
	if (v >> 16) { v >>= 16; r += 16; }
	if (v >> 8)  { v >>= 8;  r += 8; }
	if (v >> 4)  { v >>= 4;  r += 4; }
	if (v >> 2)  { v >>= 2;  r += 2; }
	if (v >> 1)  { r += 1; }
	return r;
}

static __always_inline bool cg_allowed(void)
{
	/* the helper returns 1 (under), 0 (not under) or a negative error */
	return !filter_cg || bpf_current_task_under_cgroup(&cgroup_map, 0) == 1;
}

static __always_inline int on_enqueue(struct task_struct *p)
{
	__u32 tid = BPF_CORE_READ(p, pid);
	__u64 now;

	if (tid == 0)
		return 0;
	if (targ_tgid != 0 && BPF_CORE_READ(p, tgid) != targ_tgid)
		return 0;
	now = bpf_ktime_get_ns();
	bpf_map_update_elem(&start, &tid, &now, BPF_ANY);
	return 0;
}

/* inode number of the task's own (active) pid namespace: the namespace at the
 * deepest level of its struct pid, as task_active_pid_ns() finds it */
static __always_inline __u32 pidns_inum(struct task_struct *t)
{
	struct pid *pid = BPF_CORE_READ(t, thread_pid);
	unsigned int level = BPF_CORE_READ(pid, level);
	struct pid_namespace *ns = NULL;

	bpf_core_read(&ns, sizeof(ns), &pid->numbers[level].ns);
	return BPF_CORE_READ(ns, ns.inum);
}

SEC("raw_tp/sched_wakeup")
int BPF_PROG(on_wakeup, struct task_struct *p)
{
	if (!cg_allowed())
		return 0;
	return on_enqueue(p);
}

SEC("raw_tp/sched_wakeup_new")
int BPF_PROG(on_wakeup_new, struct task_struct *p)
{
	if (!cg_allowed())
		return 0;
	return on_enqueue(p);
}

SEC("raw_tp/sched_switch")
int BPF_PROG(on_switch, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	struct hist *h;
	__u64 *since, slot;
	__u32 tid, key;
	__s64 delta;

	if (!cg_allowed())
		return 0;

	if (runq_task_state(prev) == RUNQ_TASK_RUNNING)
		on_enqueue(prev);

	tid = BPF_CORE_READ(next, pid);
	since = bpf_map_lookup_elem(&start, &tid);
	if (!since)
		return 0;
	delta = bpf_ktime_get_ns() - *since;
	bpf_map_delete_elem(&start, &tid);
	if (delta < 0)
		return 0;

	if (targ_per_process)
		key = BPF_CORE_READ(next, tgid);
	else if (targ_per_thread)
		key = tid;
	else if (targ_per_pidns)
		key = pidns_inum(next);
	else
		key = 0xffffffff;

	h = bpf_map_lookup_elem(&hists, &key);
	if (!h) {
		struct hist fresh = {};

		if (targ_per_process || targ_per_thread)
			BPF_CORE_READ_STR_INTO(&fresh.comm, next, comm);
		/* NOEXIST: another CPU may have created it meanwhile; keep theirs */
		bpf_map_update_elem(&hists, &key, &fresh, BPF_NOEXIST);
		h = bpf_map_lookup_elem(&hists, &key);
		if (!h)
			return 0; /* map full */
	}

	delta /= targ_ms ? 1000000 : 1000;
	slot = log2l(delta);
	if (slot >= RUNQ_MAX_SLOTS)
		slot = RUNQ_MAX_SLOTS - 1;
	__sync_fetch_and_add(&h->slots[slot], 1);
	return 0;
}
