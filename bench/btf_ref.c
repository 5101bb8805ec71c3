// SPDX-License-Identifier: Apache-2.0
/*
 * bench/btf_ref.c: the libbpf reference that bench/btf.ts measures tsbpf's BTF parsing against.
 *
 * Compiled by bench/btf.ts into a temporary directory at bench time:
 *   gcc -O2 bench/btf_ref.c -lbpf -lelf -lz -o <tmp>/btf_ref
 * Never committed as a binary; never used by src/.
 *
 * Usage:
 *   btf_ref cold PATH                 one parse + lookups in this (fresh) process, with peak RSS
 *   btf_ref warm PATH ITERS WARMUP    WARMUP unrecorded, then ITERS recorded parse + lookups
 *                                     (+ btf__free), each followed by the same lookups again on
 *                                     the same parsed BTF, timed apart ("relookup")
 *
 * One iteration is what a tracing tool does with the kernel's BTF before loading anything:
 *   btf__parse(PATH, NULL)                       read and parse /sys/kernel/btf/vmlinux
 *   btf__find_by_name_kind() for task_struct, trace_event_raw_sched_switch, rq (structs),
 *     btf_trace_sched_switch (typedef) and bpf_map_type (enum)
 *   member walks: bit offsets of a few members of each struct (looking into anonymous
 *     struct/union members), the typedef's func proto parameters (each resolved through
 *     typedefs and modifiers, and a pointer's target too), a few enumerator values.
 * bench/btf.ts does exactly the same through tsbpf and checks that both find the same ids,
 * sizes, offsets and values (the "result" object below).
 *
 * Prints one JSON object on stdout; errors go to stderr with exit status 1.
 */
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define REF_NAME "btf_ref"
#include "ref_common.h"

#define MAX_ITERS 100000
#define MAX_HOPS 64

/* What is looked up: the same lists as bench/btf.ts (the results are compared). */
static const char *const task_members[] = { "__state", "flags", "pid", "tgid", "real_parent", "mm", "cred", "comm" };
static const char *const switch_members[] = { "prev_comm", "prev_pid", "prev_prio", "prev_state",
					      "next_comm", "next_pid", "next_prio" };
static const char *const rq_members[] = { "nr_running", "cpu", "curr", "clock" };
static const char *const map_type_values[] = { "BPF_MAP_TYPE_HASH", "BPF_MAP_TYPE_RINGBUF", "BPF_MAP_TYPE_ARENA" };

#define N(a) (sizeof(a) / sizeof((a)[0]))
#define MAX_PARAMS 16

struct struct_result {
	int id;
	unsigned int size;
	long long members[16]; /* bit offsets; -1 when absent */
};

struct result {
	struct struct_result task, sched_switch, rq;
	int tp_id, tp_proto, tp_ret, tp_nparams;
	int tp_param_type[MAX_PARAMS], tp_param_target[MAX_PARAMS]; /* target -1: not a pointer */
	int map_type_id;
	unsigned int map_type_size, map_type_count;
	long long map_type_values[8]; /* LLONG_MIN when absent */
};

static volatile uint64_t sink; /* keeps results observable */

static void die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "btf_ref: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

/* Follows typedefs and modifiers (const, volatile, restrict, type tags) to the underlying type. */
static int skip_aliases(const struct btf *btf, int id)
{
	for (int hops = 0; hops < MAX_HOPS; hops++) {
		const struct btf_type *t = btf__type_by_id(btf, id);

		if (!t)
			die("type id %d is out of range", id);
		switch (btf_kind(t)) {
		case BTF_KIND_TYPEDEF:
		case BTF_KIND_VOLATILE:
		case BTF_KIND_CONST:
		case BTF_KIND_RESTRICT:
		case BTF_KIND_TYPE_TAG:
			id = t->type;
			break;
		default:
			return id;
		}
	}
	die("type chain too long");
	return -1;
}

static int find(const struct btf *btf, const char *name, __u32 kind)
{
	int id = btf__find_by_name_kind(btf, name, kind);

	if (id < 0)
		die("btf__find_by_name_kind(%s, kind %u): %s", name, kind, strerror(-id));
	return id;
}

/* Bit offset of member `name` of struct/union `id`, looking into anonymous members; -1 if none. */
static long long member_bit_offset(const struct btf *btf, int id, const char *name, int depth)
{
	const struct btf_type *t = btf__type_by_id(btf, id);
	const struct btf_member *m = btf_members(t);
	int vlen = btf_vlen(t);

	if (depth > MAX_HOPS)
		die("struct nesting too deep");
	for (int i = 0; i < vlen; i++, m++) {
		const char *mname = btf__name_by_offset(btf, m->name_off);

		if (mname && strcmp(mname, name) == 0)
			return btf_member_bit_offset(t, i);
		if (!mname || mname[0] == '\0') {
			int inner = skip_aliases(btf, m->type);

			if (btf_is_composite(btf__type_by_id(btf, inner))) {
				long long off = member_bit_offset(btf, inner, name, depth + 1);

				if (off >= 0)
					return btf_member_bit_offset(t, i) + off;
			}
		}
	}
	return -1;
}

static void lookup_struct(const struct btf *btf, const char *name, const char *const *members, int n,
			  struct struct_result *out)
{
	out->id = find(btf, name, BTF_KIND_STRUCT);
	out->size = btf__type_by_id(btf, out->id)->size;
	for (int i = 0; i < n; i++)
		out->members[i] = member_bit_offset(btf, out->id, members[i], 0);
}

/* The lookups of one iteration. */
static void lookups(const struct btf *btf, struct result *r)
{
	const struct btf_type *t;

	lookup_struct(btf, "task_struct", task_members, N(task_members), &r->task);
	lookup_struct(btf, "trace_event_raw_sched_switch", switch_members, N(switch_members), &r->sched_switch);

	/* typedef void (*btf_trace_sched_switch)(void *, bool, struct task_struct *, ...) */
	r->tp_id = find(btf, "btf_trace_sched_switch", BTF_KIND_TYPEDEF);
	t = btf__type_by_id(btf, skip_aliases(btf, btf__type_by_id(btf, r->tp_id)->type));
	if (!btf_is_ptr(t))
		die("btf_trace_sched_switch is not a typedef of a pointer");
	r->tp_proto = skip_aliases(btf, t->type);
	t = btf__type_by_id(btf, r->tp_proto);
	if (!btf_is_func_proto(t))
		die("btf_trace_sched_switch is not a typedef of a function pointer");
	r->tp_ret = skip_aliases(btf, t->type);
	r->tp_nparams = btf_vlen(t);
	if (r->tp_nparams > MAX_PARAMS)
		die("btf_trace_sched_switch has %d parameters", r->tp_nparams);
	for (int i = 0; i < r->tp_nparams; i++) {
		int type = skip_aliases(btf, btf_params(t)[i].type);
		const struct btf_type *pt = btf__type_by_id(btf, type);

		r->tp_param_type[i] = type;
		r->tp_param_target[i] = btf_is_ptr(pt) ? skip_aliases(btf, pt->type) : -1;
	}

	lookup_struct(btf, "rq", rq_members, N(rq_members), &r->rq);

	r->map_type_id = find(btf, "bpf_map_type", BTF_KIND_ENUM);
	t = btf__type_by_id(btf, r->map_type_id);
	r->map_type_size = t->size;
	r->map_type_count = btf_vlen(t);
	for (size_t k = 0; k < N(map_type_values); k++) {
		const struct btf_enum *e = btf_enum(t);

		r->map_type_values[k] = INT64_MIN;
		for (unsigned int i = 0; i < r->map_type_count; i++, e++) {
			if (strcmp(btf__name_by_offset(btf, e->name_off), map_type_values[k]) == 0) {
				r->map_type_values[k] = btf_kflag(t) ? (long long)e->val : (long long)(__u32)e->val;
				break;
			}
		}
	}
	sink += r->task.members[0] + r->tp_nparams + r->map_type_count;
}

static struct btf *parse(const char *path)
{
	struct btf *btf = btf__parse(path, NULL);

	if (!btf)
		die("btf__parse(%s): %s", path, strerror(errno));
	return btf;
}

/* ---- output ---- */

static void print_offsets(const char *name, const struct struct_result *s, const char *const *members, int n)
{
	printf("    \"%s\": {\"id\": %d, \"size\": %u, \"members\": {", name, s->id, s->size);
	for (int i = 0; i < n; i++) {
		printf("%s\"%s\": ", i ? ", " : "", members[i]);
		if (s->members[i] < 0)
			printf("null");
		else
			printf("%lld", s->members[i]);
	}
	printf("}},\n");
}

static void print_result(const struct result *r)
{
	printf("  \"result\": {\n");
	print_offsets("task_struct", &r->task, task_members, N(task_members));
	print_offsets("trace_event_raw_sched_switch", &r->sched_switch, switch_members, N(switch_members));
	printf("    \"btf_trace_sched_switch\": {\"id\": %d, \"proto\": %d, \"returns\": %d, \"params\": [",
	       r->tp_id, r->tp_proto, r->tp_ret);
	for (int i = 0; i < r->tp_nparams; i++) {
		printf("%s{\"type\": %d, \"target\": ", i ? ", " : "", r->tp_param_type[i]);
		if (r->tp_param_target[i] < 0)
			printf("null}");
		else
			printf("%d}", r->tp_param_target[i]);
	}
	printf("]},\n");
	print_offsets("rq", &r->rq, rq_members, N(rq_members));
	printf("    \"bpf_map_type\": {\"id\": %d, \"size\": %u, \"count\": %u, \"values\": {", r->map_type_id,
	       r->map_type_size, r->map_type_count);
	for (size_t k = 0; k < N(map_type_values); k++) {
		printf("%s\"%s\": ", k ? ", " : "", map_type_values[k]);
		if (r->map_type_values[k] == INT64_MIN)
			printf("null");
		else
			printf("%lld", r->map_type_values[k]);
	}
	printf("}}\n  }");
}

static void print_samples(const char *name, const double *v, long n, int last)
{
	printf("    \"%s\": [", name);
	for (long i = 0; i < n; i++)
		printf("%s%.0f", i ? ", " : "", v[i]);
	printf("]%s\n", last ? "" : ",");
}

/* ---- memory ---- */

/* Resets the process's peak RSS (VmHWM) to its current RSS (Linux >= 4.0); 0 on success. */
static int reset_peak_rss(void)
{
	FILE *f = fopen("/proc/self/clear_refs", "w");
	int ok;

	if (!f)
		return -1;
	ok = fputs("5", f) >= 0;
	return fclose(f) == 0 && ok ? 0 : -1;
}

/* VmRSS and VmHWM of this process, in KiB. */
static void read_rss(long *rss_kb, long *hwm_kb)
{
	char line[256];
	FILE *f = fopen("/proc/self/status", "r");

	if (!f)
		die("cannot open /proc/self/status: %s", strerror(errno));
	*rss_kb = *hwm_kb = -1;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, "VmRSS:", 6) == 0)
			*rss_kb = strtol(line + 6, NULL, 10);
		else if (strncmp(line, "VmHWM:", 6) == 0)
			*hwm_kb = strtol(line + 6, NULL, 10);
	}
	fclose(f);
	if (*rss_kb < 0 || *hwm_kb < 0)
		die("no VmRSS/VmHWM in /proc/self/status");
}

/* ---- modes ---- */

static int run_cold(const char *path)
{
	static struct result r;
	long rss0, hwm0, rss1, hwm1;
	int reset = reset_peak_rss() == 0;
	uint64_t t0, t1, t2;
	struct btf *btf;

	read_rss(&rss0, &hwm0);
	t0 = now_ns();
	btf = parse(path);
	t1 = now_ns();
	lookups(btf, &r);
	t2 = now_ns();
	read_rss(&rss1, &hwm1); /* while the parsed BTF is still alive */

	printf("{\n");
	printf("  \"reference\": \"libbpf %s\",\n", libbpf_version_string());
	printf("  \"types\": %u,\n", btf__type_cnt(btf));
	printf("  \"parse_ns\": %llu,\n", (unsigned long long)(t1 - t0));
	printf("  \"lookup_ns\": %llu,\n", (unsigned long long)(t2 - t1));
	printf("  \"total_ns\": %llu,\n", (unsigned long long)(t2 - t0));
	printf("  \"rss\": {\"peak_reset\": %s, \"before_kb\": %ld, \"peak_before_kb\": %ld, \"after_kb\": %ld, "
	       "\"peak_kb\": %ld},\n",
	       reset ? "true" : "false", rss0, hwm0, rss1, hwm1);
	print_result(&r);
	printf("\n}\n");
	btf__free(btf);
	return 0;
}

static int run_warm(const char *path, long iters, long warmup)
{
	static double s_parse[MAX_ITERS], s_lookup[MAX_ITERS], s_relookup[MAX_ITERS], s_total[MAX_ITERS];
	static struct result r, again;

	for (long i = -warmup; i < iters; i++) {
		uint64_t t0 = now_ns(), t1, t2, t3, t4;
		struct btf *btf = parse(path);

		t1 = now_ns();
		lookups(btf, &r);
		t2 = now_ns();
		lookups(btf, &again); /* the same again, on the same parsed BTF: not part of the total */
		t3 = now_ns();
		/* tsbpf's iterations pay for the garbage collection of earlier ones: pay for the free here. */
		btf__free(btf);
		t4 = now_ns();
		if (memcmp(&r, &again, sizeof(r)) != 0)
			die("the same lookups on the same BTF found different results");
		if (i >= 0) {
			s_parse[i] = (double)(t1 - t0);
			s_lookup[i] = (double)(t2 - t1);
			s_relookup[i] = (double)(t3 - t2);
			s_total[i] = (double)((t2 - t0) + (t4 - t3));
		}
	}

	printf("{\n");
	printf("  \"reference\": \"libbpf %s\",\n", libbpf_version_string());
	printf("  \"samples\": {\n");
	print_samples("parse", s_parse, iters, 0);
	print_samples("lookup", s_lookup, iters, 0);
	print_samples("relookup", s_relookup, iters, 0);
	print_samples("total", s_total, iters, 1);
	printf("  },\n");
	print_result(&r);
	printf("\n}\n");
	return 0;
}

static long parse_count_min(const char *s, const char *name, long min)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || *end || v < min || v > MAX_ITERS)
		die("%s must be an integer in %ld..%d, got \"%s\"", name, min, MAX_ITERS, s);
	return v;
}

int main(int argc, char **argv)
{
	libbpf_set_print(warn_only);
	if (argc == 3 && strcmp(argv[1], "cold") == 0)
		return run_cold(argv[2]);
	if (argc == 5 && strcmp(argv[1], "warm") == 0)
		return run_warm(argv[2], parse_count_min(argv[3], "ITERS", 1), parse_count_min(argv[4], "WARMUP", 0));
	fprintf(stderr, "usage: %s cold PATH\n       %s warm PATH ITERS WARMUP\n", argv[0], argv[0]);
	return 1;
}
