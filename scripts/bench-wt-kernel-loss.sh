#!/usr/bin/env bash
# WebSocket vs WebTransport under packet loss dropped by the kernel (issue 10):
# relaymesh dev runs in a network namespace behind a veth pair, and iptables'
# statistic match drops the given share of packets on the veth both ways,
# TCP and UDP alike (tc netem is absent here; `apt-get install iptables`).
# Needs root. Not part of make test or make bench: run by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-$(mktemp -d)}
go build -o "$BIN/relaymesh" ./cmd/relaymesh
go build -o "$BIN/relaymesh-loadtest" ./cmd/relaymesh-loadtest
NS=rmloss
ip netns add $NS
trap 'ip netns del $NS 2>/dev/null; ip link del rml0 2>/dev/null || true' EXIT
ip link add rml0 type veth peer name rml1
ip link set rml1 netns $NS
ip addr add 10.78.0.1/24 dev rml0 && ip link set rml0 up
ip netns exec $NS ip addr add 10.78.0.2/24 dev rml1
ip netns exec $NS ip link set rml1 up
ip netns exec $NS ip link set lo up
for loss in 0 0.01 0.05; do
  ip netns exec $NS iptables -F INPUT; ip netns exec $NS iptables -F OUTPUT
  if [ "$loss" != 0 ]; then
    ip netns exec $NS iptables -A INPUT -i rml1 -m statistic --mode random --probability "$loss" -j DROP
    ip netns exec $NS iptables -A OUTPUT -o rml1 -m statistic --mode random --probability "$loss" -j DROP
  fi
  for tr in websocket webtransport; do
    data=$(mktemp -d)
    ip netns exec $NS "$BIN/relaymesh" dev --data "$data" --addr 10.78.0.2:18900 --max-conns-per-ip -1 \
      --sends-per-minute -1 --log-level error >/dev/null 2>&1 &
    pid=$!
    sleep 4
    out=$("$BIN/relaymesh-loadtest" --target ws://10.78.0.2:18900/ --transport $tr --scenario pairs \
      --sessions 100 --rate 100 --duration 15s --progress -1s 2>&1 || true)
    kill $pid; wait $pid 2>/dev/null || true
    rm -rf "$data"
    echo "loss=$loss $tr:"
    echo "$out" | grep -E 'messages:|copies:|send→delivery' | head -3
  done
done
