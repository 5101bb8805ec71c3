/* SPDX-License-Identifier: GPL-2.0 */
/*
 * externs.o: .kconfig and .ksyms externs resolved against the running kernel.
 *
 * Both programs are SEC("syscall") and run with BPF_PROG_TEST_RUN; each
 * returns 0 when every check passed, otherwise the __LINE__ of the first
 * check that failed. Values that depend on the machine are compared with
 * .rodata expectations the test fills in before load (0 = don't check).
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <stdbool.h>
#include <bpf/bpf_helpers.h>

typedef __u32 u32;
typedef __s32 s32;
typedef __u64 u64;

/*
 * Kernel structs are only used through pointers here, so they need no
 * members the program reads; the loader checks only that the kind of type
 * matches the kernel's (struct for struct), as libbpf does. That keeps this
 * object free of kernel-specific field offsets.
 */
struct rq {
	int cpu;
};
struct task_struct {
	int pid;
};

char LICENSE[] SEC("license") = "GPL";

#define CHECK(cond)                      \
	do {                             \
		if (!(cond))             \
			return __LINE__; \
	} while (0)

/* Whether a __weak extern resolved: its address is not 0. */
#define resolved(addr) ((unsigned long)(addr) != 0)

/* ---- .kconfig -------------------------------------------------------- */

/* Virtual values computed by the loader. */
extern unsigned int LINUX_KERNEL_VERSION __kconfig;
extern bool LINUX_HAS_SYSCALL_WRAPPER __kconfig;
extern bool LINUX_HAS_BPF_COOKIE __kconfig __weak;
extern int LINUX_TSBPF_UNKNOWN_VIRTUAL __kconfig __weak;

/* From the kernel's config, one per C type the loader supports. */
extern enum libbpf_tristate CONFIG_BPF_SYSCALL __kconfig; /* y -> TRI_YES */
extern bool CONFIG_BPF_JIT __kconfig;                     /* y -> true */
extern char CONFIG_BPF __kconfig;                         /* y -> 'y' */
extern int CONFIG_HZ __kconfig;                           /* integer */
extern char CONFIG_LOCALVERSION[32] __kconfig __weak;     /* string */
extern enum libbpf_tristate CONFIG_TSBPF_NO_SUCH_OPTION __kconfig __weak;
extern u64 CONFIG_TSBPF_NO_SUCH_NUMBER __kconfig __weak;

const volatile u32 want_kernel_version = 0;
const volatile u32 want_hz = 0;
const volatile u32 want_syscall_wrapper = 2; /* 0 or 1; 2 = don't check */

/* What the program saw, for the test to compare with its own reading. */
u32 seen_kernel_version;
char seen_localversion[32];

SEC("syscall")
int kconfig_system(void *ctx)
{
	CHECK(LINUX_KERNEL_VERSION >= (5 << 16));
	if (want_kernel_version)
		CHECK(LINUX_KERNEL_VERSION == want_kernel_version);
	if (want_syscall_wrapper != 2)
		CHECK(LINUX_HAS_SYSCALL_WRAPPER == want_syscall_wrapper);
	CHECK(LINUX_HAS_BPF_COOKIE); /* bpf_get_attach_cookie exists since 5.15 */
	CHECK(LINUX_TSBPF_UNKNOWN_VIRTUAL == 0);

	CHECK(CONFIG_BPF_SYSCALL == TRI_YES); /* we are running BPF programs */
	CHECK(CONFIG_BPF_JIT);
	CHECK(CONFIG_BPF == 'y');
	CHECK(CONFIG_HZ >= 100);
	if (want_hz)
		CHECK(CONFIG_HZ == want_hz);
	CHECK(CONFIG_TSBPF_NO_SUCH_OPTION == TRI_NO);
	CHECK(CONFIG_TSBPF_NO_SUCH_NUMBER == 0);

	seen_kernel_version = LINUX_KERNEL_VERSION;
	__builtin_memcpy(seen_localversion, CONFIG_LOCALVERSION, sizeof(seen_localversion));
	return 0;
}

/* ---- .ksyms ---------------------------------------------------------- */

/*
 * Typed variables found in kernel BTF (per-CPU ones). __weak because the
 * verifier also needs them in kallsyms, which lacks data symbols unless the
 * kernel has CONFIG_KALLSYMS_ALL: then they read as NULL (externs_typed.o
 * has the strong version).
 */
extern const struct rq runqueues __ksym __weak;
extern const int cpu_number __ksym __weak;
/* Typeless symbol found in /proc/kallsyms. */
extern const void _stext __ksym;
/* Missing weak ones: their address is 0. */
extern const int tsbpf_no_such_variable __ksym __weak;
extern const void tsbpf_no_such_symbol __ksym __weak;

/* kfuncs of vmlinux. */
extern struct task_struct *bpf_task_from_pid(s32 pid) __ksym;
extern void bpf_task_release(struct task_struct *p) __ksym;
extern void bpf_rcu_read_lock(void) __ksym;
extern void bpf_rcu_read_unlock(void) __ksym;
/* A weak kfunc the kernel has, and one it doesn't. */
extern struct task_struct *bpf_task_acquire(struct task_struct *p) __ksym __weak;
extern int bpf_tsbpf_no_such_kfunc(int x) __ksym __weak;

u64 seen_stext;
/* 1 when the typed per-CPU variables resolved (and were checked). */
u32 seen_typed;

SEC("syscall")
int ksyms(void *ctx)
{
	u32 cpu = bpf_get_smp_processor_id();
	struct task_struct *t;

	CHECK(resolved(&runqueues) == resolved(&cpu_number));
	if (resolved(&runqueues)) {
		struct rq *rq = bpf_per_cpu_ptr(&runqueues, cpu);
		const int *n;

		CHECK(rq);
		CHECK(rq == bpf_this_cpu_ptr(&runqueues));
		n = bpf_per_cpu_ptr(&cpu_number, cpu);
		CHECK(n);
		CHECK(*n == cpu);
		n = bpf_this_cpu_ptr(&cpu_number);
		CHECK(*n == cpu);
		seen_typed = 1;
	}

	CHECK(resolved(&_stext));
	seen_stext = (u64)&_stext;
	CHECK(!resolved(&tsbpf_no_such_variable));
	CHECK(!resolved(&tsbpf_no_such_symbol));

	CHECK(resolved(bpf_task_acquire));
	/*
	 * The call is dead code for the verifier: the loader turns it into a
	 * call of an invalid helper, which is only an error where reachable.
	 */
	if (resolved(bpf_tsbpf_no_such_kfunc)) {
		bpf_tsbpf_no_such_kfunc(1);
		return __LINE__;
	}

	/* The process running BPF_PROG_TEST_RUN (the test itself). */
	t = bpf_task_from_pid(bpf_get_current_pid_tgid() >> 32);
	CHECK(t);
	bpf_task_release(t);
	t = bpf_task_from_pid(0x7ffffff0); /* above PID_MAX_LIMIT: no such task */
	if (t) {
		bpf_task_release(t);
		return __LINE__;
	}

	bpf_rcu_read_lock();
	bpf_rcu_read_unlock();
	return 0;
}
