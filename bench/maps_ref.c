// SPDX-License-Identifier: Apache-2.0
/*
 * bench/maps_ref.c: the libbpf reference that bench/maps.ts measures tsbpf's
 * map operations against, on a large hash map.
 *
 * Compiled by bench/maps.ts into a temporary directory at bench time:
 *   gcc -O2 bench/maps_ref.c -lbpf -lelf -lz -o <tmp>/maps_ref
 * Never committed as a binary; never used by src/.
 *
 * Usage: maps_ref ENTRIES BATCH_SIZE ROUNDS
 *
 * Creates a HASH map (u32 key -> u64 value, ENTRIES max entries) and, in each
 * of ROUNDS rounds, measures (nanoseconds per element, all ENTRIES elements):
 *   update_per_key   bpf_map_update_elem for keys 0..ENTRIES-1 (BPF_ANY)
 *   update_batch     bpf_map_update_batch of all of them in one call
 *   lookup_per_key   bpf_map_lookup_elem of every key
 *   iterate_per_key  bpf_map_get_next_key + bpf_map_lookup_elem over the map
 *   iterate_batch    bpf_map_lookup_batch in calls of BATCH_SIZE elements
 *   lookup_batch_all bpf_map_lookup_batch of the whole map in one call
 * Every lookup's value is summed (and checked: value = key * 3 + 1).
 * Before the first round, one unrecorded warm-up round of each.
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

#define REF_NAME "maps_ref"
#include "ref_common.h"

#define MAX_ROUNDS 100
#define N_OPS 6

static const char *const op_names[N_OPS] = {
	"update_per_key", "update_batch", "lookup_per_key", "iterate_per_key", "iterate_batch", "lookup_batch_all",
};

static volatile uint64_t sink; /* keeps results observable */

static void die(const char *what, int err)
{
	fprintf(stderr, "maps_ref: %s failed: %s (errno %d)\n", what, strerror(err), err);
	exit(1);
}

static long entries, batch_size;
static uint32_t *keys, *out_keys;
static uint64_t *values, *out_values;

static void check(uint32_t key, uint64_t val)
{
	if (val != (uint64_t)key * 3 + 1) {
		fprintf(stderr, "maps_ref: key %u has value %llu, expected %llu\n", key, (unsigned long long)val,
			(unsigned long long)key * 3 + 1);
		exit(1);
	}
}

static void update_per_key(int fd)
{
	for (long i = 0; i < entries; i++)
		if (bpf_map_update_elem(fd, &keys[i], &values[i], BPF_ANY))
			die("bpf_map_update_elem", errno);
}

static void update_batch(int fd)
{
	LIBBPF_OPTS(bpf_map_batch_opts, opts);
	uint32_t count = (uint32_t)entries;

	if (bpf_map_update_batch(fd, keys, values, &count, &opts))
		die("bpf_map_update_batch", errno);
	if (count != (uint32_t)entries)
		die("bpf_map_update_batch (short count)", EIO);
}

static void lookup_per_key(int fd)
{
	uint64_t acc = 0, val;

	for (long i = 0; i < entries; i++) {
		if (bpf_map_lookup_elem(fd, &keys[i], &val))
			die("bpf_map_lookup_elem", errno);
		check(keys[i], val);
		acc += val;
	}
	sink += acc;
}

static void iterate_per_key(int fd)
{
	uint32_t key, next;
	uint64_t acc = 0, val;
	long n = 0;
	void *prev = NULL;

	while (bpf_map_get_next_key(fd, prev, &next) == 0) {
		if (bpf_map_lookup_elem(fd, &next, &val) == 0) {
			check(next, val);
			acc += val;
			n++;
		}
		key = next;
		prev = &key;
	}
	if (errno != ENOENT)
		die("bpf_map_get_next_key", errno);
	if (n != entries)
		die("iterate_per_key (wrong element count)", EIO);
	sink += acc;
}

/* Batched reads of `chunk` elements per call until ENOENT; returns the element count. */
static long read_batches(int fd, long chunk)
{
	LIBBPF_OPTS(bpf_map_batch_opts, opts);
	uint32_t token = 0;
	uint64_t acc = 0;
	long n = 0;
	int first = 1;

	for (;;) {
		uint32_t count = (uint32_t)chunk;
		int err = bpf_map_lookup_batch(fd, first ? NULL : &token, &token, out_keys, out_values, &count, &opts);

		if (err && errno != ENOENT)
			die("bpf_map_lookup_batch", errno);
		for (uint32_t i = 0; i < count; i++) {
			check(out_keys[i], out_values[i]);
			acc += out_values[i];
		}
		n += count;
		first = 0;
		if (err)
			break;
	}
	sink += acc;
	return n;
}

static void iterate_batch(int fd)
{
	if (read_batches(fd, batch_size) != entries)
		die("iterate_batch (wrong element count)", EIO);
}

static void lookup_batch_all(int fd)
{
	/* One more than the map holds, like tsbpf's readAll(): the call ends with ENOENT. */
	if (read_batches(fd, entries + 1) != entries)
		die("lookup_batch_all (wrong element count)", EIO);
}

static void (*const ops[N_OPS])(int) = {
	update_per_key, update_batch, lookup_per_key, iterate_per_key, iterate_batch, lookup_batch_all,
};

int main(int argc, char **argv)
{
	static double samples[N_OPS][MAX_ROUNDS];
	long rounds;
	int fd;

	if (argc != 4) {
		fprintf(stderr, "usage: %s ENTRIES BATCH_SIZE ROUNDS\n", argv[0]);
		return 1;
	}
	entries = parse_count(argv[1], "ENTRIES");
	batch_size = parse_count(argv[2], "BATCH_SIZE");
	rounds = parse_count(argv[3], "ROUNDS");
	if (rounds > MAX_ROUNDS) {
		fprintf(stderr, "maps_ref: at most %d rounds\n", MAX_ROUNDS);
		return 1;
	}
	keys = calloc(entries, sizeof(*keys));
	values = calloc(entries, sizeof(*values));
	out_keys = calloc(entries + 1, sizeof(*out_keys));
	out_values = calloc(entries + 1, sizeof(*out_values));
	if (!keys || !values || !out_keys || !out_values)
		die("calloc", ENOMEM);
	for (long i = 0; i < entries; i++) {
		keys[i] = (uint32_t)i;
		values[i] = (uint64_t)i * 3 + 1;
	}
	fd = bpf_map_create(BPF_MAP_TYPE_HASH, "bench_hash", sizeof(uint32_t), sizeof(uint64_t), (uint32_t)entries, NULL);
	if (fd < 0)
		die("bpf_map_create", errno);

	for (int op = 0; op < N_OPS; op++)
		ops[op](fd); /* warm-up */
	for (long r = 0; r < rounds; r++) {
		for (int op = 0; op < N_OPS; op++) {
			uint64_t t0 = now_ns();

			ops[op](fd);
			samples[op][r] = (double)(now_ns() - t0) / entries;
		}
	}
	close(fd);

	printf("{\n  \"reference\": \"libbpf %u.%u\",\n  \"samples\": {\n", libbpf_major_version(), libbpf_minor_version());
	for (int op = 0; op < N_OPS; op++) {
		printf("    \"%s\": [", op_names[op]);
		for (long r = 0; r < rounds; r++)
			printf("%s%.1f", r ? ", " : "", samples[op][r]);
		printf("]%s\n", op + 1 < N_OPS ? "," : "");
	}
	printf("  }\n}\n");
	return 0;
}
