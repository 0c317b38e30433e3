// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* The kit's own types, so Rust gets them from one skeleton (libnetprobe::kit). No programs. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "np_common.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

NP_EXPORT_ENUM(np_stack_mode);
NP_EXPORT_ENUM(np_l3);
struct np_stats np_stats_type = {};
