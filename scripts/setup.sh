#!/usr/bin/env bash
# Installs what building and testing netprobe needs on Debian/Ubuntu, if it is missing.
set -euo pipefail
need=()
have_cmd() { command -v "$1" >/dev/null 2>&1; }
have_pkg() { dpkg -s "$1" >/dev/null 2>&1; }
have_cmd clang || need+=(clang)
have_cmd make || need+=(make)
have_cmd pkg-config || need+=(pkg-config)
have_pkg libelf-dev || need+=(libelf-dev)
have_pkg zlib1g-dev || need+=(zlib1g-dev)
have_cmd ip || need+=(iproute2)
have_cmd nft || need+=(nftables)
have_cmd ping || need+=(iputils-ping)
have_cmd bpftool || need+=(bpftool)
# The Go target of the uprobe tests (tests/targets/go_calls.go).
have_cmd go || need+=(golang-go)
if [ "${#need[@]}" -gt 0 ]; then
    echo "setup: installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if ! have_cmd cargo; then
    echo "setup: cargo not found: install Rust (rustup) first" >&2
    exit 1
fi
if have_cmd rustup; then
    rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt clippy
fi
if [ ! -d /sys/kernel/tracing/events ] && [ ! -d /sys/kernel/debug/tracing/events ]; then
    mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null || true
fi
