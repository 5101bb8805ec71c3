// SPDX-License-Identifier: Apache-2.0
/*
 * bench/rings_ref.c: the libbpf reference that bench/rings.ts measures tsbpf's
 * ring buffer and perf buffer readers against.
 *
 * Compiled by bench/rings.ts into a temporary directory at bench time:
 *   gcc -O2 bench/rings_ref.c -lbpf -lelf -lz -o <tmp>/rings_ref
 * Never committed as a binary; never used by src/.
 *
 * Usage: rings_ref OBJECT PERF_CPU PAGES_PER_CPU ROUNDS SIZE:COUNT...
 *
 * Opens and loads OBJECT (bpf/bench_rings.o) and, for each SIZE:COUNT, first
 * one unrecorded warm-up round then ROUNDS recorded rounds of:
 *   ringbuf  fill_rb (BPF_PROG_TEST_RUN) writes COUNT records of SIZE bytes
 *            into `rb`; then ring_buffer__consume() is timed
 *   perf     fill_perf (BPF_PROG_TEST_RUN on PERF_CPU, BPF_F_TEST_RUN_ON_CPU)
 *            writes COUNT samples of SIZE bytes into `events`; then
 *            perf_buffer__consume() is timed (perf_buffer__new with
 *            PAGES_PER_CPU pages per CPU)
 * The callbacks read each record's u64 sequence number (first 8 bytes) and
 * check that it is the previous one + 1; a round must deliver COUNT records.
 * Figures are nanoseconds per record, of wall-clock time and of the process's
 * CPU time (CLOCK_PROCESS_CPUTIME_ID). Samples the kernel reports lost are
 * counted (and make the round fail the count check).
 * Prints one JSON object on stdout; errors go to stderr with exit status 1.
 */
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define REF_NAME "rings_ref"
#include "ref_common.h"

#define MAX_ROUNDS 100
#define MAX_SIZES 16

static void die(const char *what, int err)
{
	fprintf(stderr, "rings_ref: %s failed: %s (errno %d)\n", what, strerror(err), err);
	exit(1);
}

/* What the callbacks check and count. */
struct drain_state {
	uint64_t next_seq;
	long seen;
	long bad;
	uint64_t lost;
};

static int on_record(void *ctx, void *data, size_t size)
{
	struct drain_state *st = ctx;
	uint64_t seq;

	if (size < 8) {
		st->bad++;
		return 0;
	}
	memcpy(&seq, data, 8);
	if (seq != st->next_seq)
		st->bad++;
	st->next_seq = seq + 1;
	st->seen++;
	return 0;
}

static void on_sample(void *ctx, int cpu, void *data, __u32 size)
{
	(void)cpu;
	on_record(ctx, data, size);
}

static void on_lost(void *ctx, int cpu, __u64 cnt)
{
	struct drain_state *st = ctx;

	(void)cpu;
	st->lost += cnt;
}

static uint64_t seq_base;

static void fill_rb(int prog_fd, long size, long count)
{
	struct {
		uint32_t n;
		uint32_t size;
		uint64_t base;
	} args = { (uint32_t)count, (uint32_t)size, seq_base };
	LIBBPF_OPTS(bpf_test_run_opts, opts, .ctx_in = &args, .ctx_size_in = sizeof(args));

	if (bpf_prog_test_run_opts(prog_fd, &opts))
		die("bpf_prog_test_run_opts(fill_rb)", errno);
	if (opts.retval != 0)
		die("fill_rb (bad size)", EINVAL);
}

static void fill_perf(int prog_fd, long size, long count, int cpu)
{
	uint64_t args[3] = { (uint64_t)count, (uint64_t)size, seq_base };
	LIBBPF_OPTS(bpf_test_run_opts, opts, .ctx_in = args, .ctx_size_in = sizeof(args),
		    .flags = BPF_F_TEST_RUN_ON_CPU, .cpu = (uint32_t)cpu);

	if (bpf_prog_test_run_opts(prog_fd, &opts))
		die("bpf_prog_test_run_opts(fill_perf)", errno);
	if (opts.retval != 0)
		die("fill_perf (bad size)", EINVAL);
}

static void check_round(const char *kind, struct drain_state *st, long count)
{
	if (st->seen != count || st->bad || st->lost) {
		fprintf(stderr, "rings_ref: %s: %ld records (expected %ld), %ld out of sequence, %llu lost\n", kind,
			st->seen, count, st->bad, (unsigned long long)st->lost);
		exit(1);
	}
}

int main(int argc, char **argv)
{
	static double rb_ns[MAX_SIZES][MAX_ROUNDS], pb_ns[MAX_SIZES][MAX_ROUNDS];
	static double rb_cpu[MAX_SIZES][MAX_ROUNDS], pb_cpu[MAX_SIZES][MAX_ROUNDS];
	long sizes[MAX_SIZES], counts[MAX_SIZES];
	struct drain_state st;
	struct bpf_object *obj;
	struct bpf_program *p_rb, *p_perf;
	struct bpf_map *m_rb, *m_ev;
	struct ring_buffer *rb;
	struct perf_buffer *pb;
	long rounds, pages, nsizes;
	uint64_t lost_total = 0;
	int cpu, err;

	if (argc < 6) {
		fprintf(stderr, "usage: %s OBJECT PERF_CPU PAGES_PER_CPU ROUNDS SIZE:COUNT...\n", argv[0]);
		return 1;
	}
	cpu = (int)strtol(argv[2], NULL, 10);
	pages = parse_count(argv[3], "PAGES_PER_CPU");
	rounds = parse_count(argv[4], "ROUNDS");
	nsizes = argc - 5;
	if (rounds > MAX_ROUNDS || nsizes > MAX_SIZES) {
		fprintf(stderr, "rings_ref: at most %d rounds and %d sizes\n", MAX_ROUNDS, MAX_SIZES);
		return 1;
	}
	for (long i = 0; i < nsizes; i++) {
		char *colon = strchr(argv[5 + i], ':');

		if (!colon) {
			fprintf(stderr, "rings_ref: expected SIZE:COUNT, got \"%s\"\n", argv[5 + i]);
			return 1;
		}
		*colon = '\0';
		sizes[i] = parse_count(argv[5 + i], "SIZE");
		counts[i] = parse_count(colon + 1, "COUNT");
	}

	libbpf_set_print(warn_only);
	obj = bpf_object__open_file(argv[1], NULL);
	if (!obj)
		die("bpf_object__open_file", errno);
	err = bpf_object__load(obj);
	if (err)
		die("bpf_object__load", -err);
	p_rb = bpf_object__find_program_by_name(obj, "fill_rb");
	p_perf = bpf_object__find_program_by_name(obj, "fill_perf");
	m_rb = bpf_object__find_map_by_name(obj, "rb");
	m_ev = bpf_object__find_map_by_name(obj, "events");
	if (!p_rb || !p_perf || !m_rb || !m_ev)
		die("finding fill_rb/fill_perf/rb/events in the object", ENOENT);

	rb = ring_buffer__new(bpf_map__fd(m_rb), on_record, &st, NULL);
	if (!rb)
		die("ring_buffer__new", errno);
	pb = perf_buffer__new(bpf_map__fd(m_ev), (size_t)pages, on_sample, on_lost, &st, NULL);
	if (!pb)
		die("perf_buffer__new", errno);

	for (long s = 0; s < nsizes; s++) {
		for (long r = -1; r < rounds; r++) { /* r = -1: warm-up */
			uint64_t t0, c0;
			int n;

			fill_rb(bpf_program__fd(p_rb), sizes[s], counts[s]);
			memset(&st, 0, sizeof(st));
			st.next_seq = seq_base;
			c0 = cpu_ns();
			t0 = now_ns();
			n = ring_buffer__consume(rb);
			if (r >= 0) {
				rb_ns[s][r] = (double)(now_ns() - t0) / counts[s];
				rb_cpu[s][r] = (double)(cpu_ns() - c0) / counts[s];
			}
			if (n < 0)
				die("ring_buffer__consume", -n);
			check_round("ringbuf", &st, counts[s]);
			seq_base += counts[s];

			fill_perf(bpf_program__fd(p_perf), sizes[s], counts[s], cpu);
			memset(&st, 0, sizeof(st));
			st.next_seq = seq_base;
			c0 = cpu_ns();
			t0 = now_ns();
			err = perf_buffer__consume(pb);
			if (r >= 0) {
				pb_ns[s][r] = (double)(now_ns() - t0) / counts[s];
				pb_cpu[s][r] = (double)(cpu_ns() - c0) / counts[s];
			}
			if (err < 0)
				die("perf_buffer__consume", -err);
			lost_total += st.lost;
			check_round("perf", &st, counts[s]);
			seq_base += counts[s];
		}
	}
	perf_buffer__free(pb);
	ring_buffer__free(rb);
	bpf_object__close(obj);

	printf("{\n  \"reference\": \"libbpf %u.%u\",\n  \"lost\": %llu,\n", libbpf_major_version(), libbpf_minor_version(),
	       (unsigned long long)lost_total);
	for (int kind = 0; kind < 4; kind++) {
		static const char *const names[4] = { "ringbuf", "perf", "ringbuf_cpu", "perf_cpu" };
		double(*const v)[MAX_ROUNDS] = kind == 0 ? rb_ns : kind == 1 ? pb_ns : kind == 2 ? rb_cpu : pb_cpu;

		printf("  \"%s\": {\n", names[kind]);
		for (long s = 0; s < nsizes; s++) {
			printf("    \"%ld\": [", sizes[s]);
			for (long r = 0; r < rounds; r++)
				printf("%s%.2f", r ? ", " : "", v[s][r]);
			printf("]%s\n", s + 1 < nsizes ? "," : "");
		}
		printf("  }%s\n", kind < 3 ? "," : "");
	}
	printf("}\n");
	return 0;
}
