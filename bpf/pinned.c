/* SPDX-License-Identifier: GPL-2.0 */
/* pinned.o: a map pinned by name (LIBBPF_PIN_BY_NAME), reused across loads and processes.
 * pinned_v2.o declares the same map with another value size: reusing the pin must fail. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#ifndef VALUE_T
#define VALUE_T __u64
#endif

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, VALUE_T);
	__uint(max_entries, 64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} tsbpf_pinned_counts SEC(".maps");

SEC("syscall")
int bump(void *ctx)
{
	__u32 key = 1;
	VALUE_T one = 1, *v = bpf_map_lookup_elem(&tsbpf_pinned_counts, &key);

	if (v)
		__sync_fetch_and_add(v, 1);
	else
		bpf_map_update_elem(&tsbpf_pinned_counts, &key, &one, BPF_NOEXIST);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
