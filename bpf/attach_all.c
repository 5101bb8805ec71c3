/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/*
 * attach_all.o: one program per auto-attach family, for `tsbpf load bpf/attach_all.o --attach --iface lo`
 * (test/cli-attach.test.ts): a tracepoint, a raw tracepoint, a BTF tracepoint, an fentry (refused on kernels
 * without trampolines), a uprobe on libc's getpid and an XDP program that lets every packet through.
 * Each counts its hits for target_tgid (XDP counts every packet).
 */
#include "common.h"

char LICENSE[] SEC("license") = "GPL";

const volatile u32 target_tgid = 0;

u64 hits_tp;
u64 hits_raw;
u64 hits_btf;
u64 hits_fentry;
u64 hits_uprobe;
u64 hits_xdp;

static __always_inline void count(u64 *c)
{
	if (current_tgid() == target_tgid)
		__sync_fetch_and_add(c, 1);
}

SEC("tp/syscalls/sys_enter_getpid")
int on_tp(void *ctx)
{
	count(&hits_tp);
	return 0;
}

SEC("raw_tp/sys_enter")
int on_raw(void *ctx)
{
	count(&hits_raw);
	return 0;
}

SEC("tp_btf/sys_enter")
int on_btf(u64 *ctx)
{
	count(&hits_btf);
	return 0;
}

SEC("fentry/__x64_sys_getpid")
int on_fentry(u64 *ctx)
{
	count(&hits_fentry);
	return 0;
}

SEC("uprobe/libc.so.6:getpid")
int on_uprobe(void *ctx)
{
	count(&hits_uprobe);
	return 0;
}

SEC("xdp")
int on_xdp(struct xdp_md *ctx)
{
	__sync_fetch_and_add(&hits_xdp, 1);
	return XDP_PASS;
}
