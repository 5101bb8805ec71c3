/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/*
 * net_test.o: the XDP and TC attach tests (test/xdp.test.ts, test/tc.test.ts). Each program counts the
 * packets it sees and the IPv4 UDP packets to `drop_port` (dropped) and to `pass_port` (passed), so a test
 * can tell that a hook runs, that it drops what it should, and that after detach nothing counts.
 * xdp_pass / tc_pass count everything and pass it on (tc_pass to the next filter or tcx program): a second
 * program for "something is attached" and ordering cases.
 */
#include "common.h"
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/in.h>
#include <linux/udp.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>

/* tcx verdicts (linux/bpf.h of 6.6+; the installed headers may predate them): TCX_NEXT runs the next program. */
#ifndef TCX_NEXT
#define TCX_NEXT (-1)
#endif

char LICENSE[] SEC("license") = "GPL";

const volatile u16 drop_port = 0;
const volatile u16 pass_port = 0;

u64 xdp_total, xdp_dropped, xdp_passed, xdp_other_total;
u64 tc_total, tc_dropped, tc_passed, tc_other_total;
u64 tcx_in_total, tcx_eg_total;

/* 1: UDP to drop_port, 2: UDP to pass_port, 0: anything else. */
static __always_inline int classify(void *data, void *data_end)
{
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return 0;
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end || ip->protocol != IPPROTO_UDP || ip->ihl != 5)
		return 0;
	struct udphdr *udp = (void *)(ip + 1);
	if ((void *)(udp + 1) > data_end)
		return 0;
	if (drop_port && udp->dest == bpf_htons(drop_port))
		return 1;
	if (pass_port && udp->dest == bpf_htons(pass_port))
		return 2;
	return 0;
}

SEC("xdp")
int xdp_count(struct xdp_md *ctx)
{
	__sync_fetch_and_add(&xdp_total, 1);
	switch (classify((void *)(long)ctx->data, (void *)(long)ctx->data_end)) {
	case 1:
		__sync_fetch_and_add(&xdp_dropped, 1);
		return XDP_DROP;
	case 2:
		__sync_fetch_and_add(&xdp_passed, 1);
		break;
	}
	return XDP_PASS;
}

SEC("xdp")
int xdp_pass(struct xdp_md *ctx)
{
	__sync_fetch_and_add(&xdp_other_total, 1);
	return XDP_PASS;
}

SEC("xdp.frags")
int xdp_frags(struct xdp_md *ctx)
{
	return XDP_PASS;
}

SEC("tc")
int tc_count(struct __sk_buff *skb)
{
	__sync_fetch_and_add(&tc_total, 1);
	switch (classify((void *)(long)skb->data, (void *)(long)skb->data_end)) {
	case 1:
		__sync_fetch_and_add(&tc_dropped, 1);
		return TC_ACT_SHOT;
	case 2:
		__sync_fetch_and_add(&tc_passed, 1);
		break;
	}
	return TC_ACT_OK;
}

SEC("tc")
int tc_pass(struct __sk_buff *skb)
{
	__sync_fetch_and_add(&tc_other_total, 1);
	return TC_ACT_UNSPEC; /* continue with the next filter (TCX_NEXT for tcx) */
}

SEC("tcx/ingress")
int tcx_in(struct __sk_buff *skb)
{
	__sync_fetch_and_add(&tcx_in_total, 1);
	return TCX_NEXT;
}

SEC("tcx/egress")
int tcx_eg(struct __sk_buff *skb)
{
	__sync_fetch_and_add(&tcx_eg_total, 1);
	return TCX_NEXT;
}

SEC("tc/ingress")
int tc_in_legacy_name(struct __sk_buff *skb)
{
	return TC_ACT_OK;
}
