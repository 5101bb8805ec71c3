/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/*
 * ringbuf_test.o: records for the ring buffer reader tests (test/ringbuf.test.ts).
 *   submit_n      SEC("syscall"): ctx = struct submit_args; `n` records, alternating
 *                 a 16-byte reserve/submit record and a 12-byte bpf_ringbuf_output record
 *                 (the reader must round its data up to 8);
 *   discard_some  SEC("syscall"): reserve+discard, submit marker 1, reserve+discard, submit marker 2;
 *   on_getpid     tp/syscalls/sys_enter_getpid: one record per getpid() of target_tgid.
 *   submit_quiet  SEC("syscall"): ctx = struct submit_args; `n` 16-byte records with BPF_RB_NO_WAKEUP, the
 *                 last one with BPF_RB_FORCE_WAKEUP when ctx.ring (here: "flush") is 1: a producer that
 *                 batches its wakeups;
 * `rb2` is a second ring for multi-ring readers: submit_n writes there when ctx.ring == 1.
 */
#include "common.h"

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} rb SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 * 1024);
} rb2 SEC(".maps");

struct submit_args {
	u32 n;
	u32 base;
	u32 ring;
	u32 __pad;
};

/* 16 bytes */
struct rec16 {
	u32 seq;
	u32 kind; /* 16 */
	u64 cookie;
};

/* 12 bytes: the ring stores 8 + 16 */
struct rec12 {
	u32 seq;
	u32 kind; /* 12 */
	u32 tail;
};

/* Put the record types in the object's BTF, for readers that decode records by type name. */
const struct rec16 *rec16_type __attribute__((unused));
const struct rec12 *rec12_type __attribute__((unused));

const volatile u32 target_tgid = 0;
u64 dropped; /* failed reservations */
u32 getpid_seq;

static __always_inline void *pick(u32 ring)
{
	return ring ? (void *)&rb2 : (void *)&rb;
}

struct loop_ctx {
	void *map;
	u32 base;
};

static long submit_one(u32 i, struct loop_ctx *c)
{
	u32 seq = c->base + i;

	if (seq & 1) {
		struct rec12 r = { .seq = seq, .kind = 12, .tail = ~seq };
		if (bpf_ringbuf_output(c->map, &r, sizeof(r), 0))
			__sync_fetch_and_add(&dropped, 1);
	} else {
		struct rec16 *r = bpf_ringbuf_reserve(c->map, sizeof(*r), 0);
		if (!r) {
			__sync_fetch_and_add(&dropped, 1);
			return 0;
		}
		r->seq = seq;
		r->kind = 16;
		r->cookie = (u64)seq * 3;
		bpf_ringbuf_submit(r, 0);
	}
	return 0;
}

SEC("syscall")
int submit_n(struct submit_args *args)
{
	struct loop_ctx c = { .map = pick(args->ring), .base = args->base };

	bpf_loop(args->n, submit_one, &c, 0);
	return 0;
}

struct quiet_ctx {
	u32 n;
	u32 base;
	u32 flush;
};

static long submit_quiet_one(u32 i, struct quiet_ctx *c)
{
	struct rec16 r = { .seq = c->base + i, .kind = 16, .cookie = (u64)(c->base + i) * 3 };
	u64 flags = (c->flush && i + 1 == c->n) ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;

	if (bpf_ringbuf_output(&rb, &r, sizeof(r), flags))
		__sync_fetch_and_add(&dropped, 1);
	return 0;
}

SEC("syscall")
int submit_quiet(struct submit_args *args)
{
	struct quiet_ctx c = { .n = args->n, .base = args->base, .flush = args->ring };

	bpf_loop(args->n, submit_quiet_one, &c, 0);
	return 0;
}

SEC("syscall")
int discard_some(void *ctx)
{
	struct rec16 *r;

	r = bpf_ringbuf_reserve(&rb, sizeof(*r), 0);
	if (r)
		bpf_ringbuf_discard(r, 0);
	r = bpf_ringbuf_reserve(&rb, sizeof(*r), 0);
	if (r) {
		r->seq = 1;
		r->kind = 16;
		r->cookie = 0xd15c;
		bpf_ringbuf_submit(r, 0);
	}
	r = bpf_ringbuf_reserve(&rb, sizeof(*r), 0);
	if (r) {
		r->seq = 0xdead;
		r->kind = 16;
		r->cookie = 0xdead;
		bpf_ringbuf_discard(r, 0);
	}
	r = bpf_ringbuf_reserve(&rb, sizeof(*r), 0);
	if (r) {
		r->seq = 2;
		r->kind = 16;
		r->cookie = 0xd15c;
		bpf_ringbuf_submit(r, 0);
	}
	return 0;
}

SEC("tp/syscalls/sys_enter_getpid")
int on_getpid(void *ctx)
{
	struct rec16 *r;

	if (current_tgid() != target_tgid)
		return 0;
	r = bpf_ringbuf_reserve(&rb, sizeof(*r), 0);
	if (!r) {
		__sync_fetch_and_add(&dropped, 1);
		return 0;
	}
	r->seq = __sync_fetch_and_add(&getpid_seq, 1);
	r->kind = 16;
	r->cookie = bpf_get_current_pid_tgid();
	bpf_ringbuf_submit(r, 0);
	return 0;
}
