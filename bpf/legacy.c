/* SPDX-License-Identifier: GPL-2.0 */
/*
 * legacy.o: a map defined the pre-BTF way, as a struct bpf_map_def in the
 * "maps" ELF section. libbpf >= 1.0 refuses these, tsbpf still parses them.
 * The struct is our own: modern bpf_helpers.h no longer provides it.
 */
#include "common.h"

char LICENSE[] SEC("license") = "GPL";

struct bpf_map_def {
	unsigned int type;
	unsigned int key_size;
	unsigned int value_size;
	unsigned int max_entries;
	unsigned int map_flags;
};

struct bpf_map_def SEC("maps") legacy_hash = {
	.type = BPF_MAP_TYPE_HASH,
	.key_size = sizeof(u32),
	.value_size = sizeof(u64),
	.max_entries = 16,
	.map_flags = 0,
};

SEC("xdp")
int legacy_xdp(struct xdp_md *ctx)
{
	u32 key = 1;
	u64 init = 1, *val;

	val = bpf_map_lookup_elem(&legacy_hash, &key);
	if (val)
		__sync_fetch_and_add(val, 1);
	else
		bpf_map_update_elem(&legacy_hash, &key, &init, BPF_ANY);
	return XDP_PASS;
}
