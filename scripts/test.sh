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
cargo test --workspace --all-targets
cargo test --workspace --doc
