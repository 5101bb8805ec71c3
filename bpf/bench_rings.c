/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/*
 * bench_rings.o: records for the ring buffer / perf buffer drain benchmark (bench/rings.ts, and
 * bench/rings_ref.c through libbpf). Both programs write `n` records of `size` bytes (8..MAX_REC) in one
 * BPF_PROG_TEST_RUN, with bpf_loop; the first 8 bytes of record i are the u64 seq = base + i, the rest
 * is whatever `payload` holds (a global buffer, never written beyond its first 8 bytes).
 *   fill_rb    SEC("syscall"): ctx = struct fill_args; bpf_ringbuf_output into `rb` (64 MiB), no wakeup.
 *   fill_perf  raw_tp, run with BPF_PROG_TEST_RUN (never attached; a SEC("syscall") program may not use
 *              a perf event array): ctx = u64 args[3] = { n, size, base }; bpf_perf_event_output into
 *              `events` on the current CPU (the test run's, BPF_F_TEST_RUN_ON_CPU picks it).
 * Failed outputs (ring full) are counted in `dropped`.
 */
#include "common.h"

char LICENSE[] SEC("license") = "GPL";

#define MAX_REC 1024

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 * 1024 * 1024);
} rb SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(u32));
	__uint(value_size, sizeof(u32));
} events SEC(".maps");

struct fill_args {
	u32 n;
	u32 size;
	u64 base;
};

/* BPF_F_CURRENT_CPU must reach the helper as a 32-bit -1 */
#define CUR_CPU ((u64)0xffffffffULL)

u8 payload[MAX_REC];
u64 dropped;

struct fill_ctx {
	void *ctx; /* raw_tp context, for bpf_perf_event_output */
	u64 base;
	u32 size;
};

static long fill_rb_one(u32 i, struct fill_ctx *c)
{
	u32 size = c->size;

	if (size > MAX_REC)
		return 1;
	*(u64 *)payload = c->base + i;
	if (bpf_ringbuf_output(&rb, payload, size, BPF_RB_NO_WAKEUP))
		__sync_fetch_and_add(&dropped, 1);
	return 0;
}

SEC("syscall")
int fill_rb(struct fill_args *args)
{
	struct fill_ctx c = { .base = args->base, .size = args->size };

	if (c.size < 8 || c.size > MAX_REC)
		return -1;
	bpf_loop(args->n, fill_rb_one, &c, 0);
	return 0;
}

static long fill_perf_one(u32 i, struct fill_ctx *c)
{
	u32 size = c->size;

	if (size > MAX_REC)
		return 1;
	*(u64 *)payload = c->base + i;
	if (bpf_perf_event_output(c->ctx, &events, CUR_CPU, payload, size))
		__sync_fetch_and_add(&dropped, 1);
	return 0;
}

SEC("raw_tp/bench_rings_fill")
int fill_perf(struct bpf_raw_tracepoint_args *args)
{
	struct fill_ctx c = { .ctx = args, .base = args->args[2], .size = (u32)args->args[1] };

	if (c.size < 8 || c.size > MAX_REC)
		return -1;
	bpf_loop((u32)args->args[0], fill_perf_one, &c, 0);
	return 0;
}
