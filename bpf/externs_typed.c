/* SPDX-License-Identifier: GPL-2.0 */
/*
 * externs_typed.o: strong typed __ksym variables (per-CPU ones from kernel
 * BTF). They load only on kernels whose kallsyms lists data symbols
 * (CONFIG_KALLSYMS_ALL); elsewhere the loader must refuse them with an
 * error naming the extern. Returns 0, or the __LINE__ of the failed check.
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

#define CHECK(cond)                      \
	do {                             \
		if (!(cond))             \
			return __LINE__; \
	} while (0)

/* Only used through pointers: the loader matches the kind (struct), not the members. */
struct rq {
	int cpu;
};

extern const struct rq runqueues __ksym;
extern const int cpu_number __ksym;

SEC("syscall")
int ksyms_typed(void *ctx)
{
	__u32 cpu = bpf_get_smp_processor_id();
	struct rq *rq = bpf_per_cpu_ptr(&runqueues, cpu);
	const int *n;

	CHECK(rq);
	CHECK(rq == bpf_this_cpu_ptr(&runqueues));
	n = bpf_per_cpu_ptr(&cpu_number, cpu);
	CHECK(n);
	CHECK(*n == cpu);
	return 0;
}
