/* SPDX-License-Identifier: GPL-2.0 */
/*
 * core_layout.h: the "target" layouts for core_self.o, shared by two objects.
 *
 * core_target.c includes it with LAYOUT(x) = x: its BTF is the target BTF
 * ("the kernel") the tests relocate core_self.o against. core_self.c includes
 * it with LAYOUT(x) = x##_real, to hold data laid out the target's way that
 * its programs read through differently declared local flavors
 * (`struct core_rec___v1`, ...). A relocation that went wrong reads the
 * wrong bytes and the program returns the __LINE__ of the failed check.
 */
#ifndef LAYOUT
#error "define LAYOUT(name) before including core_layout.h"
#endif

struct LAYOUT(core_inner) {
	__u32 a;
	__u64 b;
};

/* Packed: c straddles its 16-bit storage unit, so it is read with a 4-byte load. */
struct LAYOUT(core_packed) {
	unsigned char a: 5;
	unsigned char b: 6;
	unsigned short c: 12;
} __attribute__((packed));

struct LAYOUT(core_rec) {
	__u64 pad0;
	union {
		__u32 word;
		struct {
			__u16 lo;
			__u16 hi;
		};
	};
	int arr[6];
	/* bitfields: unsigned, signed, and one that straddles a 32-bit boundary */
	unsigned int flag_a: 3;
	int sbits: 5;
	unsigned int flag_b: 1;
	unsigned long long wide: 40;
	__u32 count;
	__s32 scount;
	void *ptr;
	struct LAYOUT(core_inner) inner;
	struct LAYOUT(core_packed) packed;
	enum LAYOUT(core_color) {
		LAYOUT(CORE_RED) = 7,
		LAYOUT(CORE_BLUE) = 100,
		LAYOUT(CORE_HIGH) = 0x80000000u,
	} color;
	int flex_len;
	int flex[];
};

enum LAYOUT(core_big) {
	LAYOUT(CORE_BIG_A) = 0x123456789ull,
	LAYOUT(CORE_BIG_NEG) = 0xfffffffffffffff0ull,
};

/* An unsigned 32-bit enumerator with the top bit set. */
enum LAYOUT(core_sign) {
	LAYOUT(CORE_SIGN_HIGH) = 0x80000000u,
};

typedef unsigned long long LAYOUT(core_u64_t);

/* Two flavors of one struct: field y at the same offset in both, field x not. */
struct LAYOUT(core_amb___a) {
	int y;
	int x;
};
struct LAYOUT(core_amb___b) {
	int y;
	long pad;
	int x;
};

/* Two flavors with disjoint fields: which one a later relocation may use depends on earlier ones. */
struct LAYOUT(core_prune___a) {
	int pad;
	int x;
};
struct LAYOUT(core_prune___b) {
	long pad;
	int y;
};
