/* SPDX-License-Identifier: GPL-2.0 */
/*
 * bad.o: an xdp program the verifier MUST reject.
 *
 * The map value pointer returned by bpf_map_lookup_elem() may be NULL and
 * is dereferenced without a check. The verifier reports something like
 * "R0 invalid mem access 'map_value_or_null'" with BTF line info pointing
 * at the tagged line below (tests grep for the tag comment to find it).
 * (A HASH map on purpose: recent kernels know that an ARRAY lookup with a
 * constant in-range key cannot return NULL and would accept the program.)
 */
#include "common.h"

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, u32);
	__type(value, u64);
	__uint(max_entries, 1);
} bad_values SEC(".maps");

SEC("xdp")
int bad_access(struct xdp_md *ctx)
{
	u32 key = 0;
	u64 *val;

	val = bpf_map_lookup_elem(&bad_values, &key);
	return *val ? XDP_PASS : XDP_DROP; /* VERIFIER_FAILS_HERE */
}
