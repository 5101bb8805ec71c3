/* SPDX-License-Identifier: GPL-2.0 */
/*
 * externs_weak.o: only __weak CONFIG_* externs, so it loads even when there
 * is no kernel config at all; then every one of them reads as 0. The only
 * map is .kconfig. Returns 0 when all are 0, 1 when all have the values of
 * the fixture config of test/externs.test.ts, otherwise the __LINE__ of the first
 * inconsistent one.
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <stdbool.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

extern enum libbpf_tristate CONFIG_TSBPF_TRI_Y __kconfig __weak; /* y */
extern bool CONFIG_TSBPF_BOOL_Y __kconfig __weak;                /* y */
extern int CONFIG_TSBPF_INT __kconfig __weak;                    /* 42 */
extern char CONFIG_TSBPF_STR[16] __kconfig __weak;               /* "hello tsbpf" */
extern __u64 CONFIG_TSBPF_NOT_IN_ANY_CONFIG __kconfig __weak;
extern unsigned int LINUX_KERNEL_VERSION __kconfig;

SEC("syscall")
int kconfig_weak(void *ctx)
{
	if (CONFIG_TSBPF_NOT_IN_ANY_CONFIG != 0)
		return __LINE__;
	if (LINUX_KERNEL_VERSION == 0)
		return __LINE__;
	if (CONFIG_TSBPF_TRI_Y == TRI_NO && !CONFIG_TSBPF_BOOL_Y && CONFIG_TSBPF_INT == 0 && CONFIG_TSBPF_STR[0] == 0)
		return 0;
	if (CONFIG_TSBPF_TRI_Y == TRI_YES && CONFIG_TSBPF_BOOL_Y && CONFIG_TSBPF_INT == 42 && CONFIG_TSBPF_STR[0] == 'h')
		return 1;
	return __LINE__;
}
