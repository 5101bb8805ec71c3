/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/*
 * sock_test.o: socket-level programs for test/socket-hooks.test.ts and test/netfilter.test.ts: a socket
 * filter, an sk_lookup steering program, sk_msg and sk_skb programs on a sockmap, and a netfilter program.
 */
#include "common.h"
#include <linux/in.h>

char LICENSE[] SEC("license") = "GPL";

#define SK_DROP_ 0
#define SK_PASS_ 1
#define NF_DROP_ 0
#define NF_ACCEPT_ 1

struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, 4);
	__type(key, u32);
	__type(value, u64);
} sock_map SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, u64);
} lookup_map SEC(".maps");

u64 n_filter_seen, n_filter_dropped, n_lookup, n_msg, n_parser, n_stream_verdict, n_skb_verdict, n_nf;
u32 steer_port;
u32 redirect_key;
u32 nf_port;
u32 nf_drop;

/* Drops datagrams whose last byte is 'D', keeps the others. */
SEC("socket")
int sock_filter(struct __sk_buff *skb)
{
	u8 last = 0;

	__sync_fetch_and_add(&n_filter_seen, 1);
	if (skb->len > 0 && bpf_skb_load_bytes(skb, skb->len - 1, &last, 1) == 0 && last == 'D') {
		__sync_fetch_and_add(&n_filter_dropped, 1);
		return 0;
	}
	return skb->len;
}

/* Connections and datagrams to steer_port go to the socket in lookup_map[0]. */
SEC("sk_lookup")
int steer(struct bpf_sk_lookup *ctx)
{
	u32 zero = 0;
	struct bpf_sock *sk;
	long err;

	if (ctx->local_port != steer_port)
		return SK_PASS_;
	sk = bpf_map_lookup_elem(&lookup_map, &zero);
	if (!sk)
		return SK_PASS_;
	err = bpf_sk_assign(ctx, sk, 0);
	bpf_sk_release(sk);
	if (!err)
		__sync_fetch_and_add(&n_lookup, 1);
	return err ? SK_DROP_ : SK_PASS_;
}

/* Messages sent by sockets in sock_map land in the receive queue of sock_map[redirect_key]. */
SEC("sk_msg")
int msg_redirect(struct sk_msg_md *msg)
{
	__sync_fetch_and_add(&n_msg, 1);
	return bpf_msg_redirect_map(msg, &sock_map, redirect_key, BPF_F_INGRESS);
}

SEC("sk_skb/stream_parser")
int stream_parser(struct __sk_buff *skb)
{
	__sync_fetch_and_add(&n_parser, 1);
	return skb->len;
}

/* Data received by sockets in sock_map is moved to the receive queue of sock_map[redirect_key]. */
SEC("sk_skb/stream_verdict")
int stream_verdict(struct __sk_buff *skb)
{
	__sync_fetch_and_add(&n_stream_verdict, 1);
	return bpf_sk_redirect_map(skb, &sock_map, redirect_key, BPF_F_INGRESS);
}

SEC("sk_skb/verdict")
int skb_verdict(struct __sk_buff *skb)
{
	__sync_fetch_and_add(&n_skb_verdict, 1);
	return bpf_sk_redirect_map(skb, &sock_map, redirect_key, BPF_F_INGRESS);
}

/* Netfilter: the kernel's context and the two sk_buff fields we need, relocated by CO-RE. */
struct sk_buff___nf {
	unsigned char *head;
	u16 network_header;
} __attribute__((preserve_access_index));

struct bpf_nf_ctx___nf {
	const void *state;
	struct sk_buff___nf *skb;
} __attribute__((preserve_access_index));

struct iphdr_ {
	u8 vihl, tos;
	u16 tot_len, id, frag_off;
	u8 ttl, protocol;
	u16 check;
	u32 saddr, daddr;
};

/* Counts UDP/IPv4 packets to nf_port; drops them when nf_drop. */
SEC("netfilter")
int nf_count(struct bpf_nf_ctx___nf *ctx)
{
	struct sk_buff___nf *skb = ctx->skb;
	unsigned char *head = 0;
	u16 nh = 0, port = 0;
	struct iphdr_ iph = {};

	if (bpf_probe_read_kernel(&head, sizeof(head), __builtin_preserve_access_index(&skb->head)) ||
	    bpf_probe_read_kernel(&nh, sizeof(nh), __builtin_preserve_access_index(&skb->network_header)))
		return NF_ACCEPT_;
	if (bpf_probe_read_kernel(&iph, sizeof(iph), head + nh))
		return NF_ACCEPT_;
	if ((iph.vihl >> 4) != 4 || iph.protocol != IPPROTO_UDP)
		return NF_ACCEPT_;
	if (bpf_probe_read_kernel(&port, sizeof(port), head + nh + (iph.vihl & 0xf) * 4 + 2))
		return NF_ACCEPT_;
	if (__builtin_bswap16(port) != nf_port)
		return NF_ACCEPT_;
	__sync_fetch_and_add(&n_nf, 1);
	return nf_drop ? NF_DROP_ : NF_ACCEPT_;
}
