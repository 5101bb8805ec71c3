/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/*
 * cgroup_test.o: one program per cgroup hook for test/cgroup.test.ts. Each counts what it sees and, when
 * the test asks through a global, refuses or rewrites: ports are compared with cfg_port (host order) and
 * rewritten to cfg_new_port. Only processes the test moved into its own cgroup run them.
 */
#include "common.h"
#include <linux/in.h>

char LICENSE[] SEC("license") = "GPL";

#define SOL_SOCKET_ 1
#define SO_RCVBUF_ 8
#define SOCK_DGRAM_ 2

u32 cfg_port;
u32 cfg_new_port;
u32 cfg_deny;
u32 cfg_major;
u32 cfg_minor;

u64 n_egress, n_ingress, n_sock_create, n_sock_release, n_post_bind4, n_post_bind6;
u64 n_bind4, n_bind6, n_connect4, n_connect6, n_sendmsg4, n_sendmsg6, n_recvmsg4, n_recvmsg6;
u64 n_getpeername4, n_getpeername6, n_getsockname4, n_getsockname6;
u64 n_connect_unix, n_sendmsg_unix, n_recvmsg_unix, n_getpeername_unix, n_getsockname_unix;
u64 n_getsockopt, n_setsockopt, n_sysctl_read, n_sysctl_write, n_device, n_sockops_connect, n_sockops_established;
u64 n_sock_a, n_sock_b;

static __always_inline u16 swap16(u16 v) { return __builtin_bswap16(v); }
#define add(c) __sync_fetch_and_add(&(c), 1)

/* UDP destination port (host order) of an IPv4 packet; skb data starts at the IP header here. */
static __always_inline u32 udp_dport(struct __sk_buff *skb)
{
	u8 vihl, proto;
	u16 port;

	if (skb->protocol != __builtin_bswap16(0x0800))
		return 0;
	if (bpf_skb_load_bytes(skb, 0, &vihl, 1) || bpf_skb_load_bytes(skb, 9, &proto, 1))
		return 0;
	if (proto != IPPROTO_UDP)
		return 0;
	if (bpf_skb_load_bytes(skb, (vihl & 0xf) * 4 + 2, &port, 2))
		return 0;
	return swap16(port);
}

SEC("cgroup_skb/egress")
int skb_egress(struct __sk_buff *skb)
{
	if (cfg_port && udp_dport(skb) == cfg_port) {
		add(n_egress);
		if (cfg_deny)
			return 0;
	}
	return 1;
}

SEC("cgroup_skb/ingress")
int skb_ingress(struct __sk_buff *skb)
{
	if (cfg_port && udp_dport(skb) == cfg_port) {
		add(n_ingress);
		if (cfg_deny)
			return 0;
	}
	return 1;
}

SEC("cgroup/sock_create")
int sock_create(struct bpf_sock *sk)
{
	if (sk->type == SOCK_DGRAM_ && sk->protocol == IPPROTO_UDP) {
		add(n_sock_create);
		if (cfg_deny)
			return 0;
	}
	return 1;
}

/* Two plain counters on one hook, for the multi/override tests. */
SEC("cgroup/sock_create")
int sock_a(struct bpf_sock *sk)
{
	if (sk->type == SOCK_DGRAM_)
		add(n_sock_a);
	return 1;
}

SEC("cgroup/sock_create")
int sock_b(struct bpf_sock *sk)
{
	if (sk->type == SOCK_DGRAM_)
		add(n_sock_b);
	return 1;
}

SEC("cgroup/sock_release")
int sock_release(struct bpf_sock *sk)
{
	if (sk->type == SOCK_DGRAM_ && sk->protocol == IPPROTO_UDP)
		add(n_sock_release);
	return 1;
}

SEC("cgroup/post_bind4")
int post_bind4(struct bpf_sock *sk)
{
	if (sk->src_port == cfg_port) {
		add(n_post_bind4);
		return 0;
	}
	return 1;
}

SEC("cgroup/post_bind6")
int post_bind6(struct bpf_sock *sk)
{
	if (sk->src_port == cfg_port) {
		add(n_post_bind6);
		return 0;
	}
	return 1;
}

/* sock_addr hooks: user_port is in network order. */
static __always_inline int rewrite(struct bpf_sock_addr *ctx, u64 *counter, int may_deny)
{
	if (swap16(ctx->user_port) != cfg_port)
		return 1;
	__sync_fetch_and_add(counter, 1);
	if (may_deny && cfg_deny)
		return 0;
	if (cfg_new_port)
		ctx->user_port = swap16(cfg_new_port);
	return 1;
}

SEC("cgroup/bind4") int bind4(struct bpf_sock_addr *ctx) { return rewrite(ctx, &n_bind4, 1); }
SEC("cgroup/bind6") int bind6(struct bpf_sock_addr *ctx) { return rewrite(ctx, &n_bind6, 1); }
SEC("cgroup/connect4") int connect4(struct bpf_sock_addr *ctx) { return rewrite(ctx, &n_connect4, 1); }
SEC("cgroup/connect6") int connect6(struct bpf_sock_addr *ctx) { return rewrite(ctx, &n_connect6, 1); }
SEC("cgroup/sendmsg4") int sendmsg4(struct bpf_sock_addr *ctx) { return rewrite(ctx, &n_sendmsg4, 1); }
SEC("cgroup/sendmsg6") int sendmsg6(struct bpf_sock_addr *ctx) { return rewrite(ctx, &n_sendmsg6, 1); }
/* recvmsg and get{peer,sock}name programs may only rewrite (and must return 1). */
SEC("cgroup/recvmsg4") int recvmsg4(struct bpf_sock_addr *ctx) { return rewrite(ctx, &n_recvmsg4, 0); }
SEC("cgroup/recvmsg6") int recvmsg6(struct bpf_sock_addr *ctx) { return rewrite(ctx, &n_recvmsg6, 0); }
SEC("cgroup/getpeername4") int getpeername4(struct bpf_sock_addr *ctx) { return rewrite(ctx, &n_getpeername4, 0); }
SEC("cgroup/getpeername6") int getpeername6(struct bpf_sock_addr *ctx) { return rewrite(ctx, &n_getpeername6, 0); }
SEC("cgroup/getsockname4") int getsockname4(struct bpf_sock_addr *ctx) { return rewrite(ctx, &n_getsockname4, 0); }
SEC("cgroup/getsockname6") int getsockname6(struct bpf_sock_addr *ctx) { return rewrite(ctx, &n_getsockname6, 0); }

/* unix socket hooks (6.7+): count; connect_unix refuses when cfg_deny. */
SEC("cgroup/connect_unix")
int connect_unix(struct bpf_sock_addr *ctx)
{
	add(n_connect_unix);
	return cfg_deny ? 0 : 1;
}
SEC("cgroup/sendmsg_unix") int sendmsg_unix(struct bpf_sock_addr *ctx) { add(n_sendmsg_unix); return 1; }
SEC("cgroup/recvmsg_unix") int recvmsg_unix(struct bpf_sock_addr *ctx) { add(n_recvmsg_unix); return 1; }
SEC("cgroup/getpeername_unix") int getpeername_unix(struct bpf_sock_addr *ctx) { add(n_getpeername_unix); return 1; }
SEC("cgroup/getsockname_unix") int getsockname_unix(struct bpf_sock_addr *ctx) { add(n_getsockname_unix); return 1; }

/* getsockopt(SOL_SOCKET, SO_RCVBUF) reports cfg_new_port instead of the real size. */
SEC("cgroup/getsockopt")
int getsockopt_prog(struct bpf_sockopt *ctx)
{
	if (ctx->level == SOL_SOCKET_ && ctx->optname == SO_RCVBUF_) {
		int *v = ctx->optval;
		add(n_getsockopt);
		if ((void *)(v + 1) > ctx->optval_end)
			return 1;
		*v = cfg_new_port;
		ctx->optlen = 4;
		asm volatile("" ::: "memory"); /* keep the two stores apart: the verifier wants 4-byte ctx writes */
		ctx->retval = 0;
	}
	return 1;
}

/* setsockopt(SOL_SOCKET, SO_RCVBUF) is refused (EPERM) when cfg_deny. */
SEC("cgroup/setsockopt")
int setsockopt_prog(struct bpf_sockopt *ctx)
{
	if (ctx->level == SOL_SOCKET_ && ctx->optname == SO_RCVBUF_) {
		add(n_setsockopt);
		if (cfg_deny)
			return 0;
	}
	return 1;
}

/* net/ipv4/tcp_keepalive_time: reads counted, writes refused. */
SEC("cgroup/sysctl")
int sysctl_prog(struct bpf_sysctl *ctx)
{
	char name[24] = {};
	const char want[] = "tcp_keepalive_time";
	int i;

	if (bpf_sysctl_get_name(ctx, name, sizeof(name), BPF_F_SYSCTL_BASE_NAME) != sizeof(want) - 1)
		return 1;
	for (i = 0; i < sizeof(want); i++)
		if (name[i] != want[i])
			return 1;
	if (ctx->write) {
		add(n_sysctl_write);
		return 0;
	}
	add(n_sysctl_read);
	return 1;
}

/* Refuse the character device cfg_major:cfg_minor. */
SEC("cgroup/dev")
int device_prog(struct bpf_cgroup_dev_ctx *ctx)
{
	if ((ctx->access_type & 0xffff) == BPF_DEVCG_DEV_CHAR && ctx->major == cfg_major && ctx->minor == cfg_minor) {
		add(n_device);
		return 0;
	}
	return 1;
}

SEC("sockops")
int sockops_prog(struct bpf_sock_ops *ctx)
{
	if (ctx->op == BPF_SOCK_OPS_TCP_CONNECT_CB)
		add(n_sockops_connect);
	else if (ctx->op == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB)
		add(n_sockops_established);
	return 1;
}
