/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/*
 * uprobe_test.o: the uprobe, uretprobe, uprobe_multi and USDT tests (test/uprobe.test.ts, test/usdt.test.ts)
 * against the native fixture test/fixtures/uprobe_target.c. Every program records into globals the tests
 * read through coll.variables.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "usdt.h"

char LICENSE[] SEC("license") = "GPL";

/* fx_add(a, b): calls, last arguments, last cookie; its return value from the uretprobe. */
__u64 add_calls;
__s64 add_a;
__s64 add_b;
__u64 add_cookie;
__u64 ret_calls;
__s64 add_ret;

SEC("uprobe")
int on_add(struct pt_regs *ctx)
{
	__sync_fetch_and_add(&add_calls, 1);
	add_a = (int)PT_REGS_PARM1(ctx);
	add_b = (int)PT_REGS_PARM2(ctx);
	add_cookie = bpf_get_attach_cookie(ctx);
	return 0;
}

SEC("uretprobe")
int on_add_ret(struct pt_regs *ctx)
{
	__sync_fetch_and_add(&ret_calls, 1);
	add_ret = (int)PT_REGS_RC(ctx);
	return 0;
}

/* atoi(s) in libc: calls and the string. The section names its target, for auto-attach. */
__u64 atoi_calls;
char atoi_arg[32];

SEC("uprobe/libc.so.6:atoi")
int on_atoi(struct pt_regs *ctx)
{
	__sync_fetch_and_add(&atoi_calls, 1);
	bpf_probe_read_user_str(atoi_arg, sizeof(atoi_arg), (const void *)PT_REGS_PARM1(ctx));
	return 0;
}

/* uprobe_multi: each attach point's cookie is a bit, so the test sees which functions fired. */
__u64 multi_calls;
__u64 multi_mask;
__u64 multi_ret_calls;
__s64 multi_ret_sum;

SEC("uprobe.multi")
int on_multi(struct pt_regs *ctx)
{
	__sync_fetch_and_add(&multi_calls, 1);
	__sync_fetch_and_or(&multi_mask, bpf_get_attach_cookie(ctx));
	return 0;
}

SEC("uretprobe.multi")
int on_multi_ret(struct pt_regs *ctx)
{
	__sync_fetch_and_add(&multi_ret_calls, 1);
	__sync_fetch_and_add(&multi_ret_sum, (long)PT_REGS_RC(ctx));
	return 0;
}

/* USDT tsbpf_fx:tick: every hit's decoded arguments, in order (8 slots, wrapping). */
__u64 tick_calls;
__s64 tick_args[8][4];
__s64 tick_cnt[8];
__s64 tick_err[8];
__u64 tick_cookie;
char tick_label[16];

SEC("usdt")
int on_tick(struct pt_regs *ctx)
{
	__u64 slot = __sync_fetch_and_add(&tick_calls, 1) & 7;
	long v, err = 0;

	tick_cnt[slot] = usdt_arg_cnt(ctx);
	tick_cookie = usdt_cookie(ctx);
	for (int i = 0; i < 4; i++) {
		long e = usdt_arg(ctx, i, &v);
		if (e)
			err = e;
		tick_args[slot][i] = v;
	}
	tick_err[slot] = err;
	/* Site 1's fourth argument is a pointer to a string. */
	if (tick_cnt[slot] == 4 && usdt_arg(ctx, 3, &v) == 0 && v > 4096)
		bpf_probe_read_user_str(tick_label, sizeof(tick_label), (const void *)v);
	return 0;
}
