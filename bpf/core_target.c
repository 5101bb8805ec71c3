/* SPDX-License-Identifier: GPL-2.0 */
/*
 * core_target.o: no programs, only BTF. Its types (core_layout.h with their
 * plain names) stand in for a kernel's BTF: the tests relocate core_self.o
 * against this object's .BTF, as libbpf does with btf_custom_path.
 */
#include <linux/types.h>
#include <bpf/bpf_helpers.h>

#define LAYOUT(x) x
#include "core_layout.h"

/* Globals so that every type is emitted into BTF. */
struct core_rec rec_target;
enum core_big big_target;
enum core_sign sign_target;
core_u64_t u64_target;
struct core_amb___a amb_a_target;
struct core_amb___b amb_b_target;
struct core_prune___a prune_a_target;
struct core_prune___b prune_b_target;

char LICENSE[] SEC("license") = "GPL";
