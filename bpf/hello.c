/* SPDX-License-Identifier: GPL-2.0 */
/*
 * hello.o: the object users try first:
 *     npx tsbpf load bpf/hello.o --attach
 * then run anything that calls getpid(2). Three flavours of the same
 * counter, one per attach type: classic tracepoint, raw tracepoint and
 * BTF-typed raw tracepoint.
 */
#include "common.h"

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, u32);   /* tgid */
	__type(value, u64); /* number of getpid() calls */
	__uint(max_entries, 10240);
} calls SEC(".maps");

/* 0 = count every process, otherwise only this tgid */
const volatile u32 target_tgid = 0;

u64 total;     /* via tp/syscalls/sys_enter_getpid */
u64 raw_total; /* via raw_tp/sys_enter */
u64 btf_total; /* via tp_btf/sys_enter */

static __always_inline int wanted(u32 tgid)
{
	return target_tgid == 0 || tgid == target_tgid;
}

static __noinline void bump_total(u64 *counter)
{
	__sync_fetch_and_add(counter, 1);
}

/* this tracepoint fires only for getpid: ctx->syscall_nr need not be checked */
SEC("tp/syscalls/sys_enter_getpid")
int on_getpid(struct syscall_enter_ctx *ctx)
{
	u32 tgid = current_tgid();
	u64 one = 1, *val;

	if (!wanted(tgid))
		return 0;

	val = bpf_map_lookup_elem(&calls, &tgid);
	if (val)
		__sync_fetch_and_add(val, 1);
	else
		bpf_map_update_elem(&calls, &tgid, &one, BPF_NOEXIST);

	bump_total(&total);
	return 0;
}

/* raw_tp/sys_enter: args[0] = struct pt_regs *, args[1] = long id */
SEC("raw_tp/sys_enter")
int on_raw_sys_enter(struct bpf_raw_tracepoint_args *ctx)
{
	if (ctx->args[1] != TSBPF_NR_getpid)
		return 0;
	if (!wanted(current_tgid()))
		return 0;
	__sync_fetch_and_add(&raw_total, 1);
	return 0;
}

/* tp_btf/sys_enter: ctx[0] = struct pt_regs *, ctx[1] = long id */
SEC("tp_btf/sys_enter")
int on_btf_sys_enter(u64 *ctx)
{
	long id = (long)ctx[1];

	if (id != TSBPF_NR_getpid)
		return 0;
	if (!wanted(current_tgid()))
		return 0;
	__sync_fetch_and_add(&btf_total, 1);
	return 0;
}
