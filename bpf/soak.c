/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/*
 * soak.o: the collection of the soak, GC and concurrency tests (test/soak.test.ts, test/concurrency.test.ts).
 *   on_getpid  raw_tp/sys_enter: on each getpid() of target_tgid, one 16-byte record { seq, tgid, cookie }
 *              in `events` and +1 in `counts[tgid]`. A raw tracepoint, not tp/syscalls/...: detaching a
 *              perf-event tracepoint waits for RCU grace periods (tens of ms), a raw tracepoint link does not,
 *              and the soak detaches 10,000 times.
 */
#include "common.h"

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 * 1024);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, u32);   /* tgid */
	__type(value, u64); /* getpid() calls seen */
	__uint(max_entries, 64);
} counts SEC(".maps");

struct soak_event {
	u32 seq;
	u32 tgid;
	u64 cookie; /* seq * 3 + 1 */
};

const struct soak_event *soak_event_type __attribute__((unused));

const volatile u32 target_tgid = 0;
u32 seq;
u64 dropped;

/* args[0] = struct pt_regs *, args[1] = long id */
SEC("raw_tp/sys_enter")
int on_getpid(struct bpf_raw_tracepoint_args *ctx)
{
	struct soak_event *e;
	u32 tgid = current_tgid();
	u64 one = 1, *val;
	u32 s;

	if (ctx->args[1] != TSBPF_NR_getpid || tgid != target_tgid)
		return 0;
	val = bpf_map_lookup_elem(&counts, &tgid);
	if (val)
		__sync_fetch_and_add(val, 1);
	else
		bpf_map_update_elem(&counts, &tgid, &one, BPF_NOEXIST);
	s = __sync_fetch_and_add(&seq, 1);
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		__sync_fetch_and_add(&dropped, 1);
		return 0;
	}
	e->seq = s;
	e->tgid = tgid;
	e->cookie = (u64)s * 3 + 1;
	bpf_ringbuf_submit(e, 0);
	return 0;
}
