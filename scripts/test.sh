#!/usr/bin/env bash
# The whole test suite: unit tests, then integration tests that load BPF into this kernel and
# build their own network namespaces. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
    echo "test.sh: the integration tests load BPF programs and create namespaces: run as root" >&2
    exit 1
fi
bash scripts/setup.sh
# Unit, integration and doc tests; examples are built too (a test runs one).
cargo test --workspace
# The same integration tests on stock Debian kernels (5.10, 6.1, 6.12, 7.2) in QEMU: kprobes,
# fentry, openvswitch and vhost-net exist there, and reason enums differ (5.10 has none).
# NETPROBE_SKIP_VM=1 skips it.
if [ "${NETPROBE_SKIP_VM:-0}" != 1 ]; then
    bash tests/vm/run.sh
fi
