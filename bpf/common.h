/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/*
 * Shared definitions for the tsbpf test/example BPF objects.
 *
 * We deliberately avoid a multi-megabyte vmlinux.h: the few kernel
 * structures our programs need are written out by hand below, based on
 * the tracefs "format" files of this kernel.
 */
#ifndef TSBPF_COMMON_H
#define TSBPF_COMMON_H

#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

typedef __u8 u8;
typedef __u16 u16;
typedef __u32 u32;
typedef __u64 u64;
typedef __s32 s32;
typedef __s64 s64;

/* getpid(2) syscall number (x86_64 by default, the arch we build for). */
#if defined(__TARGET_ARCH_arm64)
#define TSBPF_NR_getpid 172
#else
#define TSBPF_NR_getpid 39
#endif

/*
 * Context of the "syscalls/sys_enter_*" tracepoints
 * (see /sys/kernel/tracing/events/syscalls/sys_enter_getpid/format).
 * Syscalls with arguments carry `unsigned long args[N]` at offset 16;
 * getpid has none, so its record ends after syscall_nr: never read past it.
 */
struct syscall_enter_ctx {
	u16 common_type;
	u8 common_flags;
	u8 common_preempt_count;
	s32 common_pid;
	s32 syscall_nr; /* offset 8 */
	u32 __pad;
	u64 args[6];    /* offset 16, only valid for syscalls with arguments */
};

/* Convenience: current thread-group id (the userspace "pid"). */
static __always_inline u32 current_tgid(void)
{
	return (u32)(bpf_get_current_pid_tgid() >> 32);
}

#endif /* TSBPF_COMMON_H */
