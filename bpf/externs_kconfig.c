/* SPDX-License-Identifier: GPL-2.0 */
/*
 * externs_kconfig.o: .kconfig externs of every supported C type, checked
 * against the fixture config that test/externs.test.ts writes (passed as the
 * loader's kconfigFile) plus one value the test overrides. Every extern is
 * strong, so loading without a config that sets them all must fail. The only
 * map is .kconfig. Returns 0, or the __LINE__ of the first failed check.
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <stdbool.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

#define CHECK(cond)                      \
	do {                             \
		if (!(cond))             \
			return __LINE__; \
	} while (0)

extern enum libbpf_tristate CONFIG_TSBPF_TRI_Y __kconfig; /* y */
extern enum libbpf_tristate CONFIG_TSBPF_TRI_M __kconfig; /* m */
extern enum libbpf_tristate CONFIG_TSBPF_TRI_N __kconfig; /* n */
extern bool CONFIG_TSBPF_BOOL_Y __kconfig;                /* y */
extern bool CONFIG_TSBPF_BOOL_N __kconfig;                /* n */
extern char CONFIG_TSBPF_CHAR_M __kconfig;                /* m */
extern char CONFIG_TSBPF_CHAR_NUM __kconfig;              /* 0x7f */
extern int CONFIG_TSBPF_INT __kconfig;                    /* 42 */
extern int CONFIG_TSBPF_NEG __kconfig;                    /* -5 */
extern short CONFIG_TSBPF_SHORT __kconfig;                /* 0777 (octal) */
extern unsigned long long CONFIG_TSBPF_U64 __kconfig;     /* 0xfedcba9876543210 */
extern char CONFIG_TSBPF_STR[16] __kconfig;               /* "hello tsbpf" */
extern char CONFIG_TSBPF_LONG[8] __kconfig;               /* truncated to 7 chars + NUL */
extern int CONFIG_TSBPF_OVERRIDDEN __kconfig;             /* 1 in the file, 7 from the test */
extern unsigned int LINUX_KERNEL_VERSION __kconfig;

static __always_inline int streq(const char *a, const char *b, int n)
{
	for (int i = 0; i < n; i++)
		if (a[i] != b[i])
			return 0;
	return 1;
}

SEC("syscall")
int kconfig_fixture(void *ctx)
{
	CHECK(CONFIG_TSBPF_TRI_Y == TRI_YES);
	CHECK(CONFIG_TSBPF_TRI_M == TRI_MODULE);
	CHECK(CONFIG_TSBPF_TRI_N == TRI_NO);
	CHECK(CONFIG_TSBPF_BOOL_Y);
	CHECK(!CONFIG_TSBPF_BOOL_N);
	CHECK(CONFIG_TSBPF_CHAR_M == 'm');
	CHECK(CONFIG_TSBPF_CHAR_NUM == 0x7f);
	CHECK(CONFIG_TSBPF_INT == 42);
	CHECK(CONFIG_TSBPF_NEG == -5);
	CHECK(CONFIG_TSBPF_SHORT == 0777);
	CHECK(CONFIG_TSBPF_U64 == 0xfedcba9876543210ULL);
	CHECK(streq(CONFIG_TSBPF_STR, "hello tsbpf", 12));
	CHECK(streq(CONFIG_TSBPF_LONG, "this is", 8));
	CHECK(CONFIG_TSBPF_OVERRIDDEN == 7);
	CHECK(LINUX_KERNEL_VERSION >= (5 << 16));
	return 0;
}
