/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/*
 * links_test.o: the Link API tests (test/links.test.ts): two tracepoint programs with the same hook, so a
 * link can be moved from one to the other (BPF_LINK_UPDATE), and a raw tracepoint for BPF_LINK_DETACH.
 * Each counts the getpid() calls of target_tgid in its own counter. skb_a/skb_b: cgroup links, which the
 * kernel lets update and detach (tracepoint and raw tracepoint links refuse both).
 */
#include "common.h"

char LICENSE[] SEC("license") = "GPL";

const volatile u32 target_tgid = 0;

u64 count_a;
u64 count_b;
u64 count_raw;

SEC("tp/syscalls/sys_enter_getpid")
int prog_a(void *ctx)
{
	if (current_tgid() == target_tgid)
		__sync_fetch_and_add(&count_a, 1);
	return 0;
}

SEC("tp/syscalls/sys_enter_getpid")
int prog_b(void *ctx)
{
	if (current_tgid() == target_tgid)
		__sync_fetch_and_add(&count_b, 1);
	return 0;
}

SEC("raw_tp/sys_enter")
int prog_raw(void *ctx)
{
	if (current_tgid() == target_tgid)
		__sync_fetch_and_add(&count_raw, 1);
	return 0;
}

/* Two cgroup programs for the updatable, detachable link type: both let every packet through. */
u64 skb_seen_a;
u64 skb_seen_b;

SEC("cgroup_skb/egress")
int skb_a(struct __sk_buff *skb)
{
	__sync_fetch_and_add(&skb_seen_a, 1);
	return 1;
}

SEC("cgroup_skb/egress")
int skb_b(struct __sk_buff *skb)
{
	__sync_fetch_and_add(&skb_seen_b, 1);
	return 1;
}
