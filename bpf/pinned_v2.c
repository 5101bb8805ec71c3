/* SPDX-License-Identifier: GPL-2.0 */
/* pinned_v2.o: pinned.c with a 4-byte value, an incompatible re-definition of the same pinned map. */
#define VALUE_T __u32
#include "pinned.c"
