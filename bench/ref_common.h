/* Helpers shared by the libbpf reference programs of the benchmarks (our own code).
 * Define REF_NAME (the program's name, for messages) before including. */
#ifndef TSBPF_REF_COMMON_H
#define TSBPF_REF_COMMON_H

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <bpf/libbpf.h>

static inline uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* CPU time of the whole process (user + system), for figures that a busy machine's preemption does not inflate. */
static inline uint64_t cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline long parse_count(const char *s, const char *name)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || *end || v < 1) {
		fprintf(stderr, REF_NAME ": %s must be a positive integer, got \"%s\"\n", name, s);
		exit(1);
	}
	return v;
}

/* libbpf print callback: warnings only. */
static inline int warn_only(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	if (level != LIBBPF_WARN)
		return 0;
	return vfprintf(stderr, fmt, ap);
}

#endif
