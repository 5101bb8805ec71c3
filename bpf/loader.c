/* SPDX-License-Identifier: GPL-2.0 */
/*
 * loader.o: exercises most loader features in one object:
 *  - BTF-defined maps (hash, array, percpu array)
 *  - .rodata / .data / .bss global variables
 *  - a static bpf-to-bpf call (add_mul) and a global subprogram (global_helper)
 *  - bpf_loop with a callback (ld_imm64 of a subprogram address)
 *  - a syscall program runnable with BPF_PROG_TEST_RUN, and an xdp program
 */
#include "common.h"

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, u32);
	__type(value, u64);
	__uint(max_entries, 1024);
} counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, u32);
	__type(value, u64);
	__uint(max_entries, 8);
} slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, u32);
	__type(value, u64);
	__uint(max_entries, 4);
} percpu SEC(".maps");

/* .rodata: set by the loader before load */
const volatile u32 multiplier = 1;
const volatile u64 magic = 0;

/* .data */
u32 data_init = 7;

/* .bss */
u64 result;
u32 loop_sum;
u32 loop_iters;

/* static subprogram: called with a bpf-to-bpf call (BPF_PSEUDO_CALL) */
static __noinline u64 add_mul(u64 a)
{
	return a * multiplier + 1;
}

/* global subprogram: verified on its own by the kernel */
__noinline int global_helper(u32 x)
{
	return x + 1;
}

/* bpf_loop callback: referenced through ld_imm64 (BPF_PSEUDO_FUNC) */
static long loop_cb(u32 index, void *cb_ctx)
{
	loop_sum += index;
	loop_iters += 1;
	return 0; /* continue */
}

static __always_inline void slot_set(u32 key, u64 val)
{
	u64 *p = bpf_map_lookup_elem(&slots, &key);

	if (p)
		*p = val;
}

SEC("syscall")
int run_all(void *ctx)
{
	u32 key;
	u64 *val;

	result = add_mul(magic);

	key = 1;
	val = bpf_map_lookup_elem(&counts, &key);
	if (val) {
		__sync_fetch_and_add(val, 1);
	} else {
		u64 one = 1;

		bpf_map_update_elem(&counts, &key, &one, BPF_NOEXIST);
	}

	slot_set(2, (u64)data_init * multiplier);

	key = 0;
	val = bpf_map_lookup_elem(&percpu, &key);
	if (val)
		*val += 1;

	bpf_loop(10, loop_cb, NULL, 0);

	slot_set(3, global_helper(41));
	return 0;
}

SEC("xdp")
int xdp_count(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;

	slot_set(0, (u64)(data_end - data));
	return XDP_PASS;
}
