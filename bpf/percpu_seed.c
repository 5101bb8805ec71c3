/* SPDX-License-Identifier: GPL-2.0 */
/*
 * percpu_seed.o: read every CPU's slot of a per-CPU map from one CPU with
 * bpf_map_lookup_percpu_elem(). User space seeds slot N of each map with N
 * (one value per possible CPU, written with a single update); on a getuid()
 * from the test process the program walks the CPUs with bpf_loop() and adds
 * up what it finds, so each sum must be 0 + 1 + ... + (nr_cpus - 1).
 * Written for tsbpf (same idea as the kernel's map_lookup_percpu_elem test).
 */
#include "common.h"

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, u32);
	__type(value, u64);
	__uint(max_entries, 1);
} seed_array SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__type(key, u32);
	__type(value, u64);
	__uint(max_entries, 1);
} seed_hash SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_PERCPU_HASH);
	__type(key, u32);
	__type(value, u64);
	__uint(max_entries, 1);
} seed_lru_hash SEC(".maps");

/* set by user space before load */
const volatile u32 my_pid = 0;  /* tgid whose getuid() counts */
const volatile u32 nr_cpus = 0; /* how many CPUs to walk */

u64 array_sum;
u64 hash_sum;
u64 lru_hash_sum;
u32 cpus_walked;
u32 runs;

struct walk {
	u64 array;
	u64 hash;
	u64 lru_hash;
	u32 cpus;
};

static long add_cpu(u64 index, void *data)
{
	struct walk *w = data;
	u32 cpu = (u32)index;
	u32 key = 0;
	u64 *v;

	v = bpf_map_lookup_percpu_elem(&seed_array, &key, cpu);
	if (v)
		w->array += *v;
	v = bpf_map_lookup_percpu_elem(&seed_hash, &key, cpu);
	if (v)
		w->hash += *v;
	v = bpf_map_lookup_percpu_elem(&seed_lru_hash, &key, cpu);
	if (v)
		w->lru_hash += *v;
	w->cpus++;
	return 0;
}

SEC("tp/syscalls/sys_enter_getuid")
int sum_percpu(void *ctx)
{
	struct walk w = {};

	if ((u32)(bpf_get_current_pid_tgid() >> 32) != my_pid)
		return 0;
	bpf_loop(nr_cpus, add_cpu, &w, 0);
	array_sum = w.array;
	hash_sum = w.hash;
	lru_hash_sum = w.lru_hash;
	cpus_walked = w.cpus;
	runs++;
	return 0;
}
