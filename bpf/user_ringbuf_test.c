/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/*
 * user_ringbuf_test.o: the consumer side of the user ring buffer writer tests
 * (test/user-ringbuf.test.ts). JS writes records into `urb`; this program drains them.
 *   drain  SEC("syscall"): ctx = struct drain_args; calls bpf_user_ringbuf_drain(&urb, ...)
 *          once and records, per record seen, its first 4 bytes, its length, an FNV-1a
 *          checksum of its first PEEK bytes and its last 4 bytes, at index `drained % MAX_SEEN`.
 *          With `stop_after` > 0 the callback returns 1 (stop) after that many records in
 *          this call. `last_ret` is what the helper returned (records it consumed, discarded
 *          ones not counted, or a negative errno).
 */
#include "common.h"

char LICENSE[] SEC("license") = "GPL";

#define MAX_SEEN 1024 /* power of two */
#define PEEK 512

struct {
	__uint(type, BPF_MAP_TYPE_USER_RINGBUF);
	__uint(max_entries, 16 * 1024);
} urb SEC(".maps");

struct drain_args {
	u32 stop_after; /* 0 = drain everything available */
	u32 flags;      /* passed to bpf_user_ringbuf_drain (BPF_RB_NO_WAKEUP / BPF_RB_FORCE_WAKEUP) */
};

struct cb_ctx {
	u32 n;
	u32 stop_after;
};

extern __u32 bpf_dynptr_size(const struct bpf_dynptr *p) __ksym;

u64 drained;  /* records seen, over every run */
s64 last_ret; /* return value of the last bpf_user_ringbuf_drain */
u32 first[MAX_SEEN];
u32 lens[MAX_SEEN];
u32 sums[MAX_SEEN];
u32 tails[MAX_SEEN];
u8 scratch[PEEK];

static long on_record(struct bpf_dynptr *rec, struct cb_ctx *c)
{
	u32 len = bpf_dynptr_size(rec);
	u32 slot = drained & (MAX_SEEN - 1);
	u32 head = 0, tail = 0, h = 2166136261u, n, i;

	n = len < PEEK ? len : PEEK;
	if (bpf_dynptr_read(scratch, n, rec, 0, 0) == 0) {
		for (i = 0; i < n && i < PEEK; i++)
			h = (h ^ scratch[i]) * 16777619u;
	} else {
		h = 0;
	}
	bpf_dynptr_read(&head, len < 4 ? len : 4, rec, 0, 0);
	if (len >= 4)
		bpf_dynptr_read(&tail, 4, rec, len - 4, 0);

	first[slot] = head;
	lens[slot] = len;
	sums[slot] = h;
	tails[slot] = tail;
	drained++;
	c->n++;
	if (c->stop_after && c->n >= c->stop_after)
		return 1;
	return 0;
}

SEC("syscall")
int drain(struct drain_args *args)
{
	struct cb_ctx c = { .n = 0, .stop_after = args->stop_after };

	last_ret = bpf_user_ringbuf_drain(&urb, on_record, &c, args->flags);
	return 0;
}
