/* SPDX-License-Identifier: GPL-2.0 */
/*
 * core_kernel.o: CO-RE relocations against the running kernel's BTF.
 *
 * Every program is a `syscall` program run with BPF_PROG_TEST_RUN from the
 * test process, so "current" is the test's own thread. A program returns 0
 * when every check holds, or the __LINE__ of the first check that failed.
 * Expected values the BPF side cannot know (the parent's pid, the bound port
 * of a socket, entries of /proc/self/auxv, BTF ids) are set in .rodata by the
 * test before load.
 *
 * The local ("___mine") flavors declare kernel structs with other member
 * orders, sizes and nesting than the kernel's, so every access only works if
 * it is relocated: a field read at the local offset would read something
 * else. No program has a subprogram, so the instruction indexes of the linked
 * program are the section's, and our relocations can be compared one to one
 * with libbpf's.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

#define CHECK(cond)                  \
	do {                         \
		if (!(cond))         \
			return __LINE__; \
	} while (0)

/* Forget what the compiler knows about v (e.g. that a 4-byte load is below 2^32). */
#define opaque(v) ({ __u64 __v = (v); asm volatile("" : "+r"(__v)); __v; })

#define core_field_signed(field...) \
	__builtin_preserve_field_info(___bpf_field_ref(field), BPF_FIELD_SIGNED)

/* Set by the test before load. */
const volatile __u32 expected_ppid = 0;
const volatile __u64 expected_arg_start = 0;
const volatile __u64 expected_env_end = 0;
const volatile __u64 expected_auxv3 = 0;
const volatile __u32 sock_fd = 0;
const volatile __u32 sock_port = 0;
const volatile __u32 task_struct_kernel_id = 0;
const volatile __u32 task_struct_kernel_size = 0;
const volatile __u32 mine_local_id = 0;

struct mm_struct___mine {
	unsigned long env_end;
	unsigned int arg_start;		/* kernel: unsigned long; loads get widened */
	unsigned long saved_auxv[4];	/* kernel: [56], inside an anonymous struct */
} __attribute__((preserve_access_index));

struct task_struct___mine {
	char comm[8];			/* kernel: char comm[16] */
	int tgid;
	int pid;
	struct task_struct___mine *real_parent;
	unsigned short __state;		/* kernel: unsigned int */
	struct mm_struct___mine *mm;
	struct files_struct___mine *files;
} __attribute__((preserve_access_index));

/* The path from a task to one of its sockets: files->fdt->fd[n]->private_data->sk. */
struct file___mine {
	void *private_data;
} __attribute__((preserve_access_index));

struct fdtable___mine {
	struct file___mine **fd;
} __attribute__((preserve_access_index));

struct files_struct___mine {
	struct fdtable___mine *fdt;
} __attribute__((preserve_access_index));

/* Kernel: skc_num is in an anonymous struct in an anonymous union; bitfields in another order. */
struct sock_common___mine {
	unsigned char skc_ipv6only: 1;
	unsigned char skc_net_refcnt: 1;
	unsigned char skc_reuse: 4;
	unsigned short skc_family;
	unsigned short skc_num;
} __attribute__((preserve_access_index));

struct sock___mine {
	struct sock_common___mine __sk_common;
} __attribute__((preserve_access_index));

struct socket___mine {
	struct sock___mine *sk;
} __attribute__((preserve_access_index));

/* Fields: offsets in ALU immediates (probe reads) and in LDX offsets (direct BTF loads). */
SEC("syscall")
int fields(void *ctx)
{
	struct task_struct___mine *t = (void *)bpf_get_current_task_btf();
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	char comm[16] = {}, want[16] = {};
	int pid = 0, tgid = 0, ppid = 0;

	/* Direct loads: LDX with relocated offsets. */
	CHECK(t->pid == (__u32)pid_tgid);
	CHECK(t->tgid == pid_tgid >> 32);
	/* Probe reads: offsets are ALU64 immediates. */
	CHECK(BPF_CORE_READ_INTO(&pid, t, pid) == 0 && pid == (__u32)pid_tgid);
	CHECK(BPF_CORE_READ_INTO(&tgid, t, tgid) == 0 && tgid == pid_tgid >> 32);
	CHECK(BPF_CORE_READ_INTO(&ppid, t, real_parent, tgid) == 0 && ppid == expected_ppid);
	CHECK(bpf_core_read_str(comm, sizeof(comm), &t->comm) > 0);
	bpf_get_current_comm(want, sizeof(want));
	for (int i = 0; i < 16; i++)
		CHECK(comm[i] == want[i]);

	CHECK(bpf_core_field_size(t->comm) == 16);
	CHECK(bpf_core_field_size(t->__state) == 4);
	CHECK(bpf_core_field_size(struct task_struct___mine, mm) == 8);
	CHECK(core_field_signed(t->pid) == 1);
	CHECK(core_field_signed(t->__state) == 0);
	/* A 2-byte local load of a 4-byte unsigned kernel field: widened to 4 bytes. */
	CHECK(t->__state == 0); /* TASK_RUNNING: we are running */
	return 0;
}

/* Members of anonymous structs, array elements, and a load widened from 4 to 8 bytes. */
SEC("syscall")
int anon_array(void *ctx)
{
	struct task_struct___mine *t = (void *)bpf_get_current_task_btf();
	struct mm_struct___mine *mm = t->mm;
	unsigned long env_end = 0, auxv3 = 0;

	if (!mm)
		return __LINE__;
	/* Local unsigned int, kernel unsigned long: the LDX becomes a 64-bit load. */
	CHECK(opaque(mm->arg_start) == expected_arg_start);
	CHECK(BPF_CORE_READ_INTO(&env_end, t, mm, env_end) == 0 && env_end == expected_env_end);
	CHECK(BPF_CORE_READ_INTO(&auxv3, t, mm, saved_auxv[3]) == 0 && auxv3 == expected_auxv3);
	CHECK(bpf_core_field_size(mm->saved_auxv) == 56 * 8);
	CHECK(bpf_core_field_size(mm->saved_auxv[3]) == 8);
	CHECK(bpf_core_field_offset(mm->saved_auxv[3]) == bpf_core_field_offset(mm->saved_auxv) + 24);
	return 0;
}

/* Bitfields of struct sock_common, read from a socket the test opened (AF_INET6, SO_REUSEADDR, v6only). */
SEC("syscall")
int bitfields(void *ctx)
{
	struct task_struct___mine *t = (void *)bpf_get_current_task_btf();
	struct file___mine **fds = BPF_CORE_READ(t, files, fdt, fd);
	struct file___mine *file = NULL;
	struct socket___mine *sock;
	struct sock___mine *sk;

	CHECK(fds != NULL);
	CHECK(bpf_probe_read_kernel(&file, sizeof(file), &fds[sock_fd]) == 0 && file != NULL);
	sock = BPF_CORE_READ(file, private_data);
	CHECK(sock != NULL);
	sk = BPF_CORE_READ(sock, sk);
	CHECK(sk != NULL);

	CHECK(BPF_CORE_READ(sk, __sk_common.skc_num) == sock_port);
	CHECK(BPF_CORE_READ(sk, __sk_common.skc_family) == 10); /* AF_INET6 */
	CHECK(BPF_CORE_READ_BITFIELD_PROBED(sk, __sk_common.skc_reuse) == 1);
	CHECK(BPF_CORE_READ_BITFIELD_PROBED(sk, __sk_common.skc_ipv6only) == 1);
	CHECK(BPF_CORE_READ_BITFIELD_PROBED(sk, __sk_common.skc_net_refcnt) == 1);
	CHECK(bpf_core_field_size(sk->__sk_common.skc_reuse) == 1);
	CHECK(core_field_signed(sk->__sk_common.skc_reuse) == 0);
	/* The same through the kernel's own declaration (vmlinux.h). */
	CHECK(BPF_CORE_READ_BITFIELD_PROBED((struct sock *)sk, __sk_common.skc_reuse) == 1);
	CHECK(BPF_CORE_READ_BITFIELD_PROBED((struct sock *)sk, __sk_common.skc_ipv6only) == 1);
	return 0;
}

/* A field that only older kernels have (task_struct.state, before 5.14). */
struct task_struct___old {
	long state;
} __attribute__((preserve_access_index));

/* A struct no kernel has. */
struct tsbpf_no_such_struct {
	int x;
};

typedef int u64___mine; /* kernel u64 is 8 bytes */

enum bpf_map_type___mine {
	BPF_MAP_TYPE_RINGBUF___mine = 1,
	BPF_MAP_TYPE_TSBPF_NONE___mine = 2,
};

enum perf_callchain_context___mine {
	PERF_CONTEXT_KERNEL___mine = 5, /* kernel: an enum64, (__u64)-128 */
};

SEC("syscall")
int exists(void *ctx)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct task_struct___old *old = (void *)task;
	__u64 state;

	CHECK(bpf_core_field_exists(old->state) == 0);
	CHECK(bpf_core_field_exists(task->__state) == 1);
	/* The first branch is dead on this kernel: its relocations are poisoned and the verifier drops it. */
	if (bpf_core_field_exists(old->state))
		state = BPF_CORE_READ(old, state);
	else
		state = BPF_CORE_READ(task, __state);
	CHECK(state == 0);
	if (bpf_core_field_exists(old->state))
		state = old->state;
	CHECK(state == 0);

	CHECK(bpf_core_type_exists(struct task_struct) == 1);
	CHECK(bpf_core_type_exists(struct task_struct___mine) == 1);
	CHECK(bpf_core_type_exists(struct tsbpf_no_such_struct) == 0);
	CHECK(bpf_core_type_size(struct tsbpf_no_such_struct) == 0);
	CHECK(bpf_core_type_id_kernel(struct tsbpf_no_such_struct) == 0);
	CHECK(bpf_core_enum_value_exists(enum bpf_map_type___mine, BPF_MAP_TYPE_RINGBUF___mine) == 1);
	CHECK(bpf_core_enum_value_exists(enum bpf_map_type___mine, BPF_MAP_TYPE_TSBPF_NONE___mine) == 0);
	return 0;
}

struct task_struct___match {
	int pid;
	unsigned int __state;
	struct mm_struct *mm;
	struct task_struct *real_parent;
} __attribute__((preserve_access_index));

struct task_struct___nomatch_size {
	long pid; /* kernel: int */
} __attribute__((preserve_access_index));

struct task_struct___nomatch_member {
	int pid;
	int tsbpf_no_such_member;
} __attribute__((preserve_access_index));

SEC("syscall")
int types(void *ctx)
{
	CHECK(bpf_core_type_size(struct task_struct___mine) == task_struct_kernel_size);
	CHECK(bpf_core_type_size(struct task_struct) == task_struct_kernel_size);
	CHECK(bpf_core_type_size(u64___mine) == 8);
	CHECK(bpf_core_type_id_kernel(struct task_struct___mine) == task_struct_kernel_id);
	CHECK(bpf_core_type_id_kernel(struct task_struct) == task_struct_kernel_id);
	CHECK(bpf_core_type_id_local(struct task_struct___mine) == mine_local_id);
	CHECK(bpf_core_type_matches(struct task_struct___match) == 1);
	CHECK(bpf_core_type_matches(struct task_struct___nomatch_size) == 0);
	CHECK(bpf_core_type_matches(struct task_struct___nomatch_member) == 0);
	CHECK(bpf_core_type_matches(struct task_struct___mine) == 0); /* comm[8] vs comm[16] */
	return 0;
}

SEC("syscall")
int enums(void *ctx)
{
	/* uapi values: the same on every kernel that has them. */
	CHECK(bpf_core_enum_value(enum bpf_map_type___mine, BPF_MAP_TYPE_RINGBUF___mine) == 27);
	CHECK(bpf_core_enum_value(enum bpf_map_type, BPF_MAP_TYPE_RINGBUF) == 27);
	CHECK(bpf_core_enum_value(enum bpf_prog_type, BPF_PROG_TYPE_SYSCALL) == 31);
	CHECK((__u64)bpf_core_enum_value(enum perf_callchain_context___mine, PERF_CONTEXT_KERNEL___mine) == (__u64)-128);
	CHECK((__u64)bpf_core_enum_value(enum perf_callchain_context, PERF_CONTEXT_USER) == (__u64)-512);
	CHECK((__u64)bpf_core_enum_value(enum perf_callchain_context, PERF_CONTEXT_MAX) == (__u64)-4095);
	return 0;
}

/* Reaches a field the kernel lacks without a guard: must fail verification at the poisoned call. */
SEC("?syscall")
int unguarded(void *ctx)
{
	struct task_struct___old *old = (void *)bpf_get_current_task_btf();

	return BPF_CORE_READ(old, state) == 0 ? 0 : 1;
}
