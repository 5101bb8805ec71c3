/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/*
 * perf_test.o: samples for the perf event array reader tests (test/perf.test.ts).
 *   emit_n     raw_tp, run with BPF_PROG_TEST_RUN (never attached; a SEC("syscall") program is sleepable and
 *              may not use a perf event array): ctx = u64 args[2] = { n, base }; `n` samples through bpf_perf_event_output on the
 *              current CPU, seq = base + i: odd seq a 12-byte struct (raw size 12, no padding), even seq
 *              a 16-byte struct (raw size 20 with the u32 header: the kernel pads it to 24, the sample
 *              shows 4 bytes of padding). Failed outputs (ring full) are counted in `dropped`.
 *   on_getpid  tp/syscalls/sys_enter_getpid: one sample per getpid() of target_tgid.
 */
#include "common.h"

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(u32));
	__uint(value_size, sizeof(u32));
} events SEC(".maps");

struct rec16 {
	u32 seq;
	u32 kind; /* 16 */
	u64 cookie;
};

struct rec12 {
	u32 seq;
	u32 kind; /* 12 */
	u32 tail;
};

/* Put the sample types in the object's BTF, for readers that decode samples by type name. */
const struct rec16 *rec16_type __attribute__((unused));
const struct rec12 *rec12_type __attribute__((unused));

const volatile u32 target_tgid = 0;
u64 dropped;
u64 emitted;
u32 getpid_seq;

/* BPF_F_CURRENT_CPU must reach the helper as a 32-bit -1 */
#define CUR_CPU ((u64)0xffffffffULL)

struct loop_ctx {
	void *ctx;
	u32 base;
};

static long emit_one(u32 i, struct loop_ctx *c)
{
	u32 seq = c->base + i;
	long err;

	if (seq & 1) {
		struct rec12 r = { .seq = seq, .kind = 12, .tail = ~seq };
		err = bpf_perf_event_output(c->ctx, &events, CUR_CPU, &r, sizeof(r));
	} else {
		struct rec16 r = { .seq = seq, .kind = 16, .cookie = (u64)seq * 3 };
		err = bpf_perf_event_output(c->ctx, &events, CUR_CPU, &r, sizeof(r));
	}
	if (err)
		__sync_fetch_and_add(&dropped, 1);
	else
		__sync_fetch_and_add(&emitted, 1);
	return 0;
}

SEC("raw_tp/perf_test_emit")
int emit_n(struct bpf_raw_tracepoint_args *args)
{
	struct loop_ctx c = { .ctx = args, .base = (u32)args->args[1] };

	bpf_loop((u32)args->args[0], emit_one, &c, 0);
	return 0;
}

SEC("tp/syscalls/sys_enter_getpid")
int on_getpid(void *ctx)
{
	struct rec16 r = {};

	if ((u32)(bpf_get_current_pid_tgid() >> 32) != target_tgid)
		return 0;
	r.seq = __sync_fetch_and_add(&getpid_seq, 1);
	r.kind = 16;
	r.cookie = bpf_get_current_pid_tgid();
	if (bpf_perf_event_output(ctx, &events, CUR_CPU, &r, sizeof(r)))
		__sync_fetch_and_add(&dropped, 1);
	return 0;
}
