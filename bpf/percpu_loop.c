/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/*
 * percpu_loop.o: the kernel side of `tsbpf run percpu-loop`. Each run of
 * `run_loop` (a raw_tp program, so user space can test-run it on a chosen
 * CPU with BPF_PROG_TEST_RUN + BPF_F_TEST_RUN_ON_CPU) calls bpf_loop()
 * `nr_loops` times and adds to this CPU's slot of a per-CPU array: no atomics
 * needed, each CPU owns its copy. User space then reads one value per CPU and
 * sums them. Written for tsbpf.
 */
#include "common.h"

char LICENSE[] SEC("license") = "GPL";

/* iterations per run; set from user space before load */
const volatile u32 nr_loops = 1000;

struct counters {
	u64 runs;       /* test runs on this CPU */
	u64 iterations; /* bpf_loop callback invocations on this CPU */
	u64 sum;        /* sum of the loop indexes seen (0 + 1 + ... + nr_loops-1 per run) */
	u32 last_cpu;   /* bpf_get_smp_processor_id() of the last run, as a check */
	u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct counters);
} counters SEC(".maps");

/* what one run adds up; bpf_loop hands the callback a pointer to it (it must live on the stack) */
struct loop_ctx {
	u64 iterations;
	u64 sum;
};

static long loop_body(u64 index, void *data)
{
	struct loop_ctx *l = data;

	l->iterations++;
	l->sum += index;
	return 0; /* 0: continue, 1: stop early */
}

SEC("raw_tp")
int run_loop(void *ctx)
{
	struct loop_ctx l = {};
	u32 zero = 0;
	struct counters *c = bpf_map_lookup_elem(&counters, &zero);
	long done;

	if (!c)
		return 0;
	/* returns the number of iterations done, or a negative error */
	done = bpf_loop(nr_loops, loop_body, &l, 0);
	/* this CPU's own copy of the value: plain additions, no other CPU writes it */
	c->runs++;
	c->iterations += l.iterations;
	c->sum += l.sum;
	c->last_cpu = bpf_get_smp_processor_id();
	return done;
}
