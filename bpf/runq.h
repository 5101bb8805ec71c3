/* SPDX-License-Identifier: GPL-2.0 */
/*
 * runq.h: what runqslower.c and runqlat.c share. Both measure run-queue
 * latency: the time from a task becoming runnable (woken, newly forked, or
 * preempted while still runnable) until the scheduler switches it in.
 *
 * These are our CO-RE objects: they read task_struct through vmlinux.h and
 * BPF_CORE_READ, so the loader must relocate field offsets to the running
 * kernel (and poison the relocations of fields the kernel does not have).
 */
#ifndef TSBPF_RUNQ_H
#define TSBPF_RUNQ_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

#define RUNQ_COMM_LEN 16
#define RUNQ_MAX_SLOTS 26 /* log2 buckets: 0 -> 1, 2 -> 3, ..., 2^25 -> inf */
#define RUNQ_MAX_ENTRIES 10240
#define RUNQ_TASK_RUNNING 0

/* runqslower's perf event record: 48 bytes, no padding. */
struct event {
	char task[RUNQ_COMM_LEN];      /* the task switched in after waiting */
	char prev_task[RUNQ_COMM_LEN]; /* the task it replaced on the CPU */
	__u64 delta_us;                /* time it waited on the run queue */
	pid_t pid;                     /* its thread id */
	pid_t prev_pid;                /* the replaced task's thread id */
};

/* runqlat's histogram value: 26 u32 counters then the comm, 120 bytes. */
struct hist {
	__u32 slots[RUNQ_MAX_SLOTS];
	char comm[RUNQ_COMM_LEN];
};

/*
 * Kernels before 5.14 call the task state field "state" (a long); newer ones
 * "__state" (an unsigned int). The ___pre514 flavor lets us name the old
 * field: CO-RE matches it against "task_struct" with the suffix dropped. On a
 * kernel without the field its relocation fails, the loader poisons the
 * instruction, and the verifier drops it as dead code because
 * bpf_core_field_exists() already resolved to 1 here.
 */
struct task_struct___pre514 {
	long state;
} __attribute__((preserve_access_index));

static __always_inline long runq_task_state(struct task_struct *t)
{
	if (bpf_core_field_exists(t->__state))
		return BPF_CORE_READ(t, __state);
	return BPF_CORE_READ((struct task_struct___pre514 *)t, state);
}

#endif /* TSBPF_RUNQ_H */
