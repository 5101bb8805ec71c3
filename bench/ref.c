// SPDX-License-Identifier: Apache-2.0
/*
 * bench/ref.c: the libbpf reference that bench/run.ts measures tsbpf against.
 *
 * Compiled by bench/run.ts into a temporary directory at bench time:
 *   gcc -O2 bench/ref.c -lbpf -lelf -lz -o <tmp>/ref
 * Never committed as a binary; never used by src/.
 *
 * Usage: ref OBJECT MAP PROGRAM LOAD_ITERS OP_ITERS RUN_ITERS ROUNDS WARMUP_ROUNDS
 *
 * For each measurement, runs WARMUP_ROUNDS unrecorded rounds then ROUNDS recorded
 * ones, and reports the median round in nanoseconds per operation:
 *   open_load_close  bpf_object__open_file + bpf_object__load + bpf_object__close of OBJECT
 *   lookup           bpf_map_lookup_elem on MAP (u32 key -> u64 value, keys 0..7)
 *   update           bpf_map_update_elem on MAP (BPF_ANY)
 *   test_run         bpf_prog_test_run_opts of PROGRAM with a 64-byte packet (XDP)
 * Prints one JSON object on stdout; errors go to stderr with exit status 1.
 */
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define REF_NAME "ref"
#include "ref_common.h"

#define PKT_SIZE 64
/* tsbpf's Program.run() asks for data length + 256 bytes of data out by default. */
#define PKT_OUT_SIZE (PKT_SIZE + 256)
#define MAX_ROUNDS 1000

static volatile uint64_t sink; /* keeps results observable */

static void die(const char *what, int err)
{
	fprintf(stderr, "ref: %s failed: %s (errno %d)\n", what, strerror(err), err);
	exit(1);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double median(const double *v, int n)
{
	double tmp[MAX_ROUNDS];

	memcpy(tmp, v, sizeof(double) * n);
	qsort(tmp, n, sizeof(double), cmp_double);
	return n % 2 ? tmp[n / 2] : (tmp[n / 2 - 1] + tmp[n / 2]) / 2;
}

static struct bpf_object *open_and_load(const char *path)
{
	struct bpf_object *obj = bpf_object__open_file(path, NULL);
	int err;

	if (!obj)
		die("bpf_object__open_file", errno);
	err = bpf_object__load(obj);
	if (err)
		die("bpf_object__load", -err);
	return obj;
}

/* One round of each measurement; each returns nanoseconds per operation. */

static double round_open_load_close(const char *path, long n)
{
	uint64_t t0 = now_ns();

	for (long i = 0; i < n; i++)
		bpf_object__close(open_and_load(path));
	return (double)(now_ns() - t0) / n;
}

static double round_lookup(int map_fd, long n)
{
	uint64_t t0 = now_ns(), acc = 0;

	for (long i = 0; i < n; i++) {
		uint32_t key = (uint32_t)i & 7;
		uint64_t val;

		if (bpf_map_lookup_elem(map_fd, &key, &val))
			die("bpf_map_lookup_elem", errno);
		acc += val;
	}
	sink += acc;
	return (double)(now_ns() - t0) / n;
}

static double round_update(int map_fd, long n)
{
	uint64_t t0 = now_ns();

	for (long i = 0; i < n; i++) {
		uint32_t key = (uint32_t)i & 7;
		uint64_t val = (uint64_t)i;

		if (bpf_map_update_elem(map_fd, &key, &val, BPF_ANY))
			die("bpf_map_update_elem", errno);
	}
	return (double)(now_ns() - t0) / n;
}

static double round_test_run(int prog_fd, long n)
{
	unsigned char pkt[PKT_SIZE] = { 0 };
	unsigned char out[PKT_OUT_SIZE];
	uint64_t t0 = now_ns(), acc = 0;

	for (long i = 0; i < n; i++) {
		LIBBPF_OPTS(bpf_test_run_opts, opts,
			.data_in = pkt,
			.data_size_in = sizeof(pkt),
			.data_out = out,
			.data_size_out = sizeof(out),
		);

		if (bpf_prog_test_run_opts(prog_fd, &opts))
			die("bpf_prog_test_run_opts", errno);
		acc += opts.retval;
	}
	sink += acc;
	return (double)(now_ns() - t0) / n;
}

static void print_samples(const char *name, const double *v, int n, int last)
{
	printf("    \"%s\": [", name);
	for (int i = 0; i < n; i++)
		printf("%s%.1f", i ? ", " : "", v[i]);
	printf("]%s\n", last ? "" : ",");
}

int main(int argc, char **argv)
{
	static double s_load[MAX_ROUNDS], s_lookup[MAX_ROUNDS], s_update[MAX_ROUNDS], s_run[MAX_ROUNDS];
	const char *path, *map_name, *prog_name;
	long load_iters, op_iters, run_iters, rounds, warmup;
	struct bpf_object *obj;
	struct bpf_map *map;
	struct bpf_program *prog;
	int map_fd, prog_fd;

	if (argc != 9) {
		fprintf(stderr, "usage: %s OBJECT MAP PROGRAM LOAD_ITERS OP_ITERS RUN_ITERS ROUNDS WARMUP_ROUNDS\n", argv[0]);
		return 1;
	}
	path = argv[1];
	map_name = argv[2];
	prog_name = argv[3];
	load_iters = parse_count(argv[4], "LOAD_ITERS");
	op_iters = parse_count(argv[5], "OP_ITERS");
	run_iters = parse_count(argv[6], "RUN_ITERS");
	rounds = parse_count(argv[7], "ROUNDS");
	warmup = parse_count(argv[8], "WARMUP_ROUNDS");
	if (rounds > MAX_ROUNDS) {
		fprintf(stderr, "ref: at most %d rounds\n", MAX_ROUNDS);
		return 1;
	}
	libbpf_set_print(warn_only);

	for (long r = 0; r < warmup; r++)
		round_open_load_close(path, load_iters);
	for (long r = 0; r < rounds; r++)
		s_load[r] = round_open_load_close(path, load_iters);

	obj = open_and_load(path);
	map = bpf_object__find_map_by_name(obj, map_name);
	if (!map)
		die("finding the map", ENOENT);
	if (bpf_map__key_size(map) != 4 || bpf_map__value_size(map) != 8) {
		fprintf(stderr, "ref: map %s is not u32 -> u64\n", map_name);
		return 1;
	}
	prog = bpf_object__find_program_by_name(obj, prog_name);
	if (!prog)
		die("finding the program", ENOENT);
	map_fd = bpf_map__fd(map);
	prog_fd = bpf_program__fd(prog);

	for (long r = 0; r < warmup; r++)
		round_lookup(map_fd, op_iters);
	for (long r = 0; r < rounds; r++)
		s_lookup[r] = round_lookup(map_fd, op_iters);

	for (long r = 0; r < warmup; r++)
		round_update(map_fd, op_iters);
	for (long r = 0; r < rounds; r++)
		s_update[r] = round_update(map_fd, op_iters);

	for (long r = 0; r < warmup; r++)
		round_test_run(prog_fd, run_iters);
	for (long r = 0; r < rounds; r++)
		s_run[r] = round_test_run(prog_fd, run_iters);

	bpf_object__close(obj);

	printf("{\n");
	printf("  \"reference\": \"libbpf %s\",\n", libbpf_version_string());
	printf("  \"ns_per_op\": {\n");
	printf("    \"open_load_close\": %.1f,\n", median(s_load, rounds));
	printf("    \"lookup\": %.1f,\n", median(s_lookup, rounds));
	printf("    \"update\": %.1f,\n", median(s_update, rounds));
	printf("    \"test_run\": %.1f\n", median(s_run, rounds));
	printf("  },\n");
	printf("  \"samples\": {\n");
	print_samples("open_load_close", s_load, rounds, 0);
	print_samples("lookup", s_lookup, rounds, 0);
	print_samples("update", s_update, rounds, 0);
	print_samples("test_run", s_run, rounds, 1);
	printf("  }\n");
	printf("}\n");
	return 0;
}
