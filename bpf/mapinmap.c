/* SPDX-License-Identifier: GPL-2.0 */
/*
 * mapinmap.o: map-in-map and prog-array with static initialisers.
 *  - outer: ARRAY_OF_MAPS (2 slots) whose inner template is an anonymous
 *    ARRAY u32->u32 (1 entry); slot 0 is pre-populated with inner_a.
 *  - jmp:   PROG_ARRAY (2 slots); slot 1 is pre-populated with tail_target.
 *  The fd-holding maps use key_size rather than a BTF key type: the kernel
 *  rejects BTF key/value types for them (value type is a map/prog fd).
 *  - xdp_entry: reads outer[0][0], then tail-calls jmp[1] (-> XDP_DROP).
 */
#include "common.h"

char LICENSE[] SEC("license") = "GPL";

struct inner_map {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, u32);
	__type(value, u32);
	__uint(max_entries, 1);
};

struct inner_map inner_a SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(key_size, sizeof(u32));
	__uint(max_entries, 2);
	__array(values, struct {
		__uint(type, BPF_MAP_TYPE_ARRAY);
		__type(key, u32);
		__type(value, u32);
		__uint(max_entries, 1);
	});
} outer SEC(".maps") = {
	.values = { [0] = (void *)&inner_a },
};

SEC("xdp")
int tail_target(struct xdp_md *ctx)
{
	return XDP_DROP;
}

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(key_size, sizeof(u32));
	__uint(max_entries, 2);
	__array(values, int(void *));
} jmp SEC(".maps") = {
	.values = { [1] = (void *)&tail_target },
};

/* last value seen in outer[0][0] (lets tests check the inner map is wired) */
u32 inner_seen;

SEC("xdp")
int xdp_entry(struct xdp_md *ctx)
{
	u32 key = 0;
	u32 *val;
	void *inner;

	inner = bpf_map_lookup_elem(&outer, &key);
	if (inner) {
		val = bpf_map_lookup_elem(inner, &key);
		if (val)
			inner_seen = *val;
	}

	bpf_tail_call(ctx, &jmp, 1);
	return XDP_PASS; /* only reached if jmp[1] is empty */
}
