/* SPDX-License-Identifier: GPL-2.0 */
/*
 * core_self.o: CO-RE relocations against a BTF we control, core_target.o's
 * (see core_layout.h), so that every corner of the algorithm can be given a
 * known answer: flavors, anonymous members, arrays and flexible arrays,
 * bitfields (signed, 64-bit storage, a packed one that needs a wider load),
 * loads and stores whose size changes, enum and enum64 values, type
 * existence / size / ids / matches, ambiguity and candidate pruning.
 *
 * `rec_data` below is laid out the target's way (core_layout.h with _real
 * names); the programs read and write it through `struct core_rec___v1`,
 * declared in another order with other sizes. Programs return 0, or the
 * __LINE__ of the first failed check. `?syscall` programs are not loaded by
 * default: they exist to fail in a specific way (ambiguity, a poisoned load
 * that is reached, libbpf's enum sign quirk).
 */
#include <linux/types.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

#define LAYOUT(x) x##_real
#include "core_layout.h"

char LICENSE[] SEC("license") = "GPL";

#define CHECK(cond)                  \
	do {                         \
		if (!(cond))         \
			return __LINE__; \
	} while (0)

#define PAI __attribute__((preserve_access_index))
/* Forget what the compiler knows about v (e.g. that a 2-byte load is below 0x10000). */
#define opaque(v) ({ __u64 __v = (v); asm volatile("" : "+r"(__v)); __v; })
#define core_field_signed(field...) \
	__builtin_preserve_field_info(___bpf_field_ref(field), BPF_FIELD_SIGNED)

/* Set by the test before load: the id of struct core_rec in core_target.o's BTF. */
const volatile __u32 target_rec_id = 0;

struct core_rec_real rec_data = {
	.pad0 = 0x1111111111111111ull,
	.lo = 0x2222,
	.hi = 0x3333,
	.arr = { 10, 11, 12, 13, 14, 15 },
	.flag_a = 5,
	.sbits = -3,
	.flag_b = 1,
	.wide = 0xabcdef1234ull,
	.count = 0x44444444,
	.scount = -5,
	.ptr = 0,
	.inner = { .a = 0x55, .b = 0x6666666666666666ull },
	.packed = { .a = 17, .b = 45, .c = 0xabc },
	.color = CORE_BLUE_real,
	.flex_len = 3,
	.flex = { 21, 22, 23 },
};

struct core_inner___v1 {
	__u64 b;
	__u32 a;
} PAI;

/* Not packed here (clang cannot relocate bitfields of a packed local struct). */
struct core_packed___v1 {
	unsigned int c: 12;
	unsigned int b: 6;
	unsigned int a: 5;
} PAI;

enum core_color___v1 {
	CORE_RED___v1 = 0,
	CORE_BLUE___v1 = 1,
	CORE_HIGH___v1 = 2,
	CORE_GREEN___v1 = 3, /* not in the target */
};

struct core_rec___v1 {
	__u16 hi;		/* target: in an anonymous struct in an anonymous union */
	__u16 lo;
	__u32 word;
	int arr[3];		/* target: int arr[6] */
	unsigned int flag_b: 1;	/* bitfields in another order */
	int sbits: 5;
	unsigned int flag_a: 3;
	unsigned long long wide: 40;
	__u16 count;		/* target: __u32 */
	__s16 scount;		/* target: __s32 (signed: cannot be resized) */
	struct core_inner___v1 inner;
	struct core_packed___v1 packed;
	enum core_color___v1 color;
	void *ptr;
	int missing;		/* not in the target */
	int flex_len;
	int flex[];
} PAI;

SEC("syscall")
int self_fields(void *ctx)
{
	struct core_rec___v1 *r = (void *)&rec_data;

	/* Direct loads (LDX offsets), through anonymous members and arrays. */
	CHECK(r->hi == 0x3333);
	CHECK(r->lo == 0x2222);
	CHECK(r->word == 0x33332222);
	CHECK(r->arr[2] == 12);
	CHECK(r->arr[0] == 10);
	CHECK(r->inner.a == 0x55);
	CHECK(r->inner.b == 0x6666666666666666ull);
	CHECK(r->ptr == 0);
	CHECK(r->flex_len == 3);
	CHECK(r->flex[2] == 23);
	/* 2-byte local load of a 4-byte unsigned target field: widened. */
	CHECK(opaque(r->count) == 0x44444444);
	CHECK(bpf_core_field_size(r->count) == 4);
	CHECK(bpf_core_field_size(r->arr) == 24);
	CHECK(bpf_core_field_size(r->arr[1]) == 4);
	CHECK(bpf_core_field_offset(r->arr[1]) == 16);
	CHECK(bpf_core_field_offset(r->hi) == 10);
	CHECK(bpf_core_field_offset(r->flex[1]) == bpf_core_field_offset(r->flex) + 4);
	CHECK(core_field_signed(r->scount) == 1);
	CHECK(core_field_signed(r->count) == 0);
	CHECK(core_field_signed(r->color) == 0);

	/* Stores: ST (immediate) widened from 2 to 4 bytes, STX at a relocated offset. */
	r->count = 0x1234;
	r->inner.b = bpf_core_field_offset(r->inner.b);
	CHECK(opaque(r->count) == 0x1234);
	return 0;
}

SEC("syscall")
int self_bitfields(void *ctx)
{
	struct core_rec___v1 *r = (void *)&rec_data;

	CHECK(BPF_CORE_READ_BITFIELD(r, flag_a) == 5);
	CHECK(BPF_CORE_READ_BITFIELD(r, flag_b) == 1);
	CHECK((long long)BPF_CORE_READ_BITFIELD(r, sbits) == -3);
	CHECK(BPF_CORE_READ_BITFIELD(r, wide) == 0xabcdef1234ull);
	CHECK(BPF_CORE_READ_BITFIELD(r, packed.a) == 17);
	CHECK(BPF_CORE_READ_BITFIELD(r, packed.b) == 45);
	CHECK(BPF_CORE_READ_BITFIELD(r, packed.c) == 0xabc);
	CHECK(bpf_core_field_size(r->packed.c) == 4); /* straddles its u16: a 4-byte load */
	CHECK(bpf_core_field_size(r->wide) == 8);
	CHECK(BPF_CORE_READ_BITFIELD_PROBED(r, sbits) == (__u64)-3);
	CHECK(BPF_CORE_READ_BITFIELD_PROBED(r, wide) == 0xabcdef1234ull);
	CHECK(BPF_CORE_READ_BITFIELD_PROBED(r, packed.c) == 0xabc);
	return 0;
}

enum core_big___v1 {
	CORE_BIG_A___v1 = 0x100000000ull,	/* a local enum64: loaded with ld_imm64 */
	CORE_BIG_NEG___v1 = 0x200000000ull,
};

typedef unsigned int core_u64_t___v1; /* target: unsigned long long */

struct core_inner___match {
	__u64 b; /* members are matched by name, in any order */
	__u32 a;
} PAI;

struct core_inner___nomatch {
	__u32 b;
} PAI;

struct core_nothing {
	int x;
} PAI;

SEC("syscall")
int self_types_enums(void *ctx)
{
	struct core_rec___v1 *r = (void *)&rec_data;
	int missing;

	CHECK(bpf_core_enum_value(enum core_color___v1, CORE_BLUE___v1) == 100);
	CHECK(bpf_core_enum_value(enum core_color___v1, CORE_RED___v1) == 7);
	/* libbpf widens a 32-bit enumerator with its sign, whatever the enum's signedness */
	CHECK(bpf_core_enum_value(enum core_color___v1, CORE_HIGH___v1) == (long)(int)0x80000000u);
	CHECK(bpf_core_enum_value_exists(enum core_color___v1, CORE_GREEN___v1) == 0);
	CHECK(r->color == bpf_core_enum_value(enum core_color___v1, CORE_BLUE___v1));
	CHECK(bpf_core_enum_value(enum core_big___v1, CORE_BIG_A___v1) == 0x123456789ull);
	CHECK(bpf_core_enum_value(enum core_big___v1, CORE_BIG_NEG___v1) == 0xfffffffffffffff0ull);

	CHECK(bpf_core_type_size(core_u64_t___v1) == 8);
	CHECK(bpf_core_type_size(struct core_inner___v1) == 16);
	CHECK(bpf_core_type_exists(struct core_nothing) == 0);
	CHECK(bpf_core_type_matches(struct core_inner___match) == 1);
	CHECK(bpf_core_type_matches(struct core_inner___nomatch) == 0);
	CHECK(bpf_core_type_id_kernel(struct core_rec___v1) == target_rec_id);

	CHECK(bpf_core_field_exists(r->missing) == 0);
	CHECK(bpf_core_field_exists(r->flex) == 1);
	/* Dead code on this target: the poisoned load is never reached. */
	missing = 42;
	if (bpf_core_field_exists(r->missing))
		missing = r->missing;
	CHECK(missing == 42);
	return 0;
}

struct core_prune {
	int x;
	int y;
} PAI;

struct core_prune core_prune_data;

/*
 * The target has core_prune___a {x} and core_prune___b {y}. Relocating p->x
 * keeps only ___a as a candidate of struct core_prune, so the existence check
 * of y that follows finds nothing: libbpf narrows candidate lists this way.
 */
SEC("syscall")
int self_prune(void *ctx)
{
	struct core_prune *p = &core_prune_data;

	CHECK(bpf_core_field_offset(p->x) == 4);
	CHECK(bpf_core_field_exists(p->y) == 0);
	return 0;
}

struct core_amb {
	int x;
	int y;
} PAI;

struct core_amb core_amb_data;

/* y is at the same offset in both target flavors (fine), x is not: the object fails to load. */
SEC("?syscall")
int self_ambiguous(void *ctx)
{
	struct core_amb *a = &core_amb_data;

	CHECK(bpf_core_field_offset(a->y) == 0);
	return bpf_core_field_offset(a->x);
}

/* A 2-byte local load of a 4-byte signed target field cannot be widened: poisoned, and reached. */
SEC("?syscall")
int self_signed_resize(void *ctx)
{
	struct core_rec___v1 *r = (void *)&rec_data;

	return r->scount;
}

enum core_sign___v1 {
	CORE_SIGN_HIGH___v1 = 0x80000000u,
};

/*
 * The local value 0x80000000 is loaded with ld_imm64, but libbpf expects the
 * instruction to hold it sign-extended (0xffffffff80000000): the object fails
 * to load with libbpf, and so it does here.
 */
SEC("?syscall")
int self_enum_sign(void *ctx)
{
	return bpf_core_enum_value(enum core_sign___v1, CORE_SIGN_HIGH___v1) != 0;
}
