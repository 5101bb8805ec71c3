/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/*
 * usdt.h: USDT argument access for tsbpf (attachUsdt in src/links/usdt.ts).
 *
 * A USDT probe site describes its arguments in its .note.stapsdt note ("-4@%edi 8@-16(%rbp) -4@$5"): where
 * each value is (a register, a constant, memory at register + displacement), its size and signedness. The
 * loader parses those strings and stores one `struct tsbpf_usdt_spec` per attached site in the map
 * `tsbpf_usdt_spec`, keyed by a spec id that it also passes as the uprobe's BPF cookie. The program finds its
 * site's spec through bpf_get_attach_cookie(), so one program can serve any number of sites, each with its
 * own argument layout.
 *
 *   SEC("usdt") int on_probe(struct pt_regs *ctx)
 *   {
 *           long v;
 *           if (usdt_arg(ctx, 0, &v) == 0) ...
 *           u64 c = usdt_cookie(ctx);          the cookie given to attachUsdt()
 *   }
 *
 * Include it after <bpf/bpf_helpers.h>. The struct layout is mirrored in src/links/usdt.ts: change both.
 * x86_64 is the only architecture the loader writes specs for.
 */
#ifndef TSBPF_USDT_H
#define TSBPF_USDT_H

#ifndef USDT_MAX_ARGS
#define USDT_MAX_ARGS 12
#endif
#ifndef USDT_MAX_SPECS
#define USDT_MAX_SPECS 1024
#endif

enum tsbpf_usdt_arg_kind {
	TSBPF_USDT_CONST = 0,   /* value = val_off */
	TSBPF_USDT_REG = 1,     /* value = register at reg_off in struct pt_regs */
	TSBPF_USDT_MEM = 2,     /* value = *(register + val_off), read from user memory */
};

/* 16 bytes */
struct tsbpf_usdt_arg {
	unsigned long long val_off;  /* constant, or displacement for TSBPF_USDT_MEM */
	unsigned int kind;           /* enum tsbpf_usdt_arg_kind */
	short reg_off;               /* offset of the register in struct pt_regs */
	unsigned char is_signed;     /* sign-extend from the argument's size */
	unsigned char shift;         /* 64 - 8 * size: the bits above the argument's size */
};

/* 208 bytes */
struct tsbpf_usdt_spec {
	struct tsbpf_usdt_arg args[USDT_MAX_ARGS];
	unsigned long long cookie;   /* the user's cookie for this attachment */
	unsigned short arg_cnt;
	unsigned short pad[3];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, USDT_MAX_SPECS);
	__type(key, unsigned int);
	__type(value, struct tsbpf_usdt_spec);
} tsbpf_usdt_spec SEC(".maps");

static __always_inline struct tsbpf_usdt_spec *usdt_spec(void *ctx)
{
	unsigned int id = (unsigned int)bpf_get_attach_cookie(ctx);

	return bpf_map_lookup_elem(&tsbpf_usdt_spec, &id);
}

/* Number of arguments of the site that fired, or a negative errno (-ESRCH: no spec for this attachment). */
static __always_inline long usdt_arg_cnt(void *ctx)
{
	struct tsbpf_usdt_spec *spec = usdt_spec(ctx);

	return spec ? spec->arg_cnt : -3;
}

/* The cookie passed to attachUsdt() (0 when none). */
static __always_inline unsigned long long usdt_cookie(void *ctx)
{
	struct tsbpf_usdt_spec *spec = usdt_spec(ctx);

	return spec ? spec->cookie : 0;
}

/*
 * Argument `n` (from 0) of the site that fired, sign- or zero-extended to 64 bits, in *res.
 * Returns 0, -ESRCH (no spec), -ENOENT (no such argument) or the error of the memory read.
 */
static __always_inline long usdt_arg(void *ctx, unsigned long long n, long *res)
{
	struct tsbpf_usdt_spec *spec = usdt_spec(ctx);
	struct tsbpf_usdt_arg *arg;
	unsigned long long v = 0, reg = 0;
	long err;

	*res = 0;
	if (!spec)
		return -3;
	if (n >= USDT_MAX_ARGS || n >= spec->arg_cnt)
		return -2;
	arg = &spec->args[n];
	switch (arg->kind) {
	case TSBPF_USDT_CONST:
		v = arg->val_off;
		break;
	case TSBPF_USDT_REG:
		err = bpf_probe_read_kernel(&v, sizeof(v), (char *)ctx + arg->reg_off);
		if (err)
			return err;
		break;
	case TSBPF_USDT_MEM:
		err = bpf_probe_read_kernel(&reg, sizeof(reg), (char *)ctx + arg->reg_off);
		if (err)
			return err;
		err = bpf_probe_read_user(&v, sizeof(v), (void *)(reg + arg->val_off));
		if (err)
			return err;
		break;
	default:
		return -22;
	}
	/* x86 is little-endian: the argument is in the low bytes; drop the rest, extending the sign. */
	v <<= arg->shift;
	if (arg->is_signed)
		v = (unsigned long long)((long long)v >> arg->shift);
	else
		v >>= arg->shift;
	*res = (long)v;
	return 0;
}

#endif /* TSBPF_USDT_H */
