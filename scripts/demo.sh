#!/usr/bin/env bash
# One step from a fresh clone to real output: installs what is missing, builds, creates a demo
# lab (two network namespaces joined by a veth pair, an nft drop rule, a stale neighbour),
# runs the drop tools while drops are induced, and removes the lab again.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
    echo "demo.sh: loading BPF programs needs root: run 'sudo scripts/demo.sh'" >&2
    exit 1
fi
bash scripts/setup.sh
cargo build --release --quiet
bin=target/release
A=np-demo-a-$$
B=np-demo-b-$$
log=$(mktemp)
cleanup() {
    ip netns del "$A" 2>/dev/null || true
    ip netns del "$B" 2>/dev/null || true
    rm -f "$log"
}
trap cleanup EXIT INT TERM

ip netns add "$A"
ip netns add "$B"
for ns in "$A" "$B"; do
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
    ip -n "$ns" link set lo up
done
ip -n "$A" link add va type veth peer name vb netns "$B"
ip -n "$A" addr add 198.18.0.1/24 dev va
ip -n "$B" addr add 198.18.0.2/24 dev vb
ip -n "$A" link set va up
ip -n "$B" link set vb up
ip -n "$A" neigh add 198.18.0.3 lladdr 02:00:00:00:00:33 dev va
ip netns exec "$B" nft -f - <<'NFT'
table inet npdemo {
  chain input {
    type filter hook input priority 0; policy accept;
    udp dport 7777 counter drop
  }
}
NFT

# Sends N UDP datagrams from namespace A with bash's /dev/udp.
send() { ip netns exec "$A" bash -c "for i in \$(seq $3); do echo netprobe > /dev/udp/$1/$2; done" 2>/dev/null || true; }
# Starts a tool in the background and waits for its readiness line.
start() {
    : > "$log"
    "$@" 2> "$log" &
    tool_pid=$!
    for _ in $(seq 200); do
        grep -q 'netprobe: ready' "$log" && return 0
        kill -0 "$tool_pid" 2>/dev/null || { cat "$log" >&2; exit 1; }
        sleep 0.05
    done
    echo "demo.sh: $1 did not become ready" >&2
    cat "$log" >&2
    exit 1
}

echo "### kernel_drop_stack_stats_summary --netns $B --group-by stack  (50 UDP to a closed port, 20 into an nft drop rule, 10 to another host's MAC)"
start "$bin/kernel_drop_stack_stats_summary" --netns "$B" -i 60 -t 5 --frames 4 --group-by stack
send 198.18.0.2 9 50
send 198.18.0.2 7777 20
send 198.18.0.3 4444 10
kill -INT "$tool_pid"; wait "$tool_pid" || true

echo
echo "### eth_drop --netns $B --verbose  (2 UDP datagrams to a closed port)"
start "$bin/eth_drop" --netns "$B" --verbose
send 198.18.0.2 53 2
kill -INT "$tool_pid"; wait "$tool_pid" || true

echo
echo "### trace_net_drop --netns $B  (5 + 3 drops)"
start "$bin/trace_net_drop" --netns "$B" -i 60
send 198.18.0.2 9 5
send 198.18.0.2 7777 3
kill -INT "$tool_pid"; wait "$tool_pid" || true

echo
echo "### latency tools (their own lab: a shaped uplink, a bridged tap read by the demo as a VM)"
cargo build --release --quiet -p netprobe-lab --example latency_demo
target/release/examples/latency_demo "$bin"

echo
echo "### virtualization tools (their own lab: a stalling two-queue tap reader, a KVM VM of the demo)"
cargo build --release --quiet -p netprobe-lab --example virt_demo
target/release/examples/virt_demo "$bin"
