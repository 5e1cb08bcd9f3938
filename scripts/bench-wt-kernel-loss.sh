#!/usr/bin/env bash
# WebSocket vs WebTransport under packet loss dropped by the kernel (issue 10):
# relaymesh dev runs in a network namespace behind a veth pair, and iptables'
# statistic match drops the given share of packets, TCP and UDP alike (tc
# netem is absent here; `apt-get install iptables`). Two ways:
#   wire:   dropped as they arrive, at each end of the veth (INPUT in the
#           namespace and on the host): what loss on a network looks like;
#   output: the server's packets dropped on OUTPUT, where iptables answers
#           the sender's sendmsg with EPERM (a local firewall), and the
#           client's on arrival. quic-go ends a connection on such an error,
#           unless its socket is wrapped by mesh.TolerateLocalDrops.
# Needs root. Not part of make test or make bench: run by hand.
# Usage: scripts/bench-wt-kernel-loss.sh [LOSSES...]   (default 0 0.01 0.05)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-$(mktemp -d)}
go build -o "$BIN/relaymesh" ./cmd/relaymesh
go build -o "$BIN/relaymesh-loadtest" ./cmd/relaymesh-loadtest
NS=rmloss
losses=("$@")
[ ${#losses[@]} -gt 0 ] || losses=(0 0.01 0.05)
cleanup() {
  ip netns del $NS 2>/dev/null || true
  ip link del rml0 2>/dev/null || true
  while iptables -D INPUT -i rml0 -m statistic --mode random --probability "${hostloss:-0}" -j DROP 2>/dev/null; do :; done
}
trap cleanup EXIT
cleanup
ip netns add $NS
ip link add rml0 type veth peer name rml1
ip link set rml1 netns $NS
ip addr add 10.78.0.1/24 dev rml0 && ip link set rml0 up
ip netns exec $NS ip addr add 10.78.0.2/24 dev rml1
ip netns exec $NS ip link set rml1 up
ip netns exec $NS ip link set lo up
for mode in wire output; do
  for loss in "${losses[@]}"; do
    [ "$mode" = output ] && [ "$loss" = 0 ] && continue
    ip netns exec $NS iptables -F INPUT; ip netns exec $NS iptables -F OUTPUT
    while iptables -D INPUT -i rml0 -m statistic --mode random --probability "${hostloss:-0}" -j DROP 2>/dev/null; do :; done
    hostloss=$loss
    if [ "$loss" != 0 ]; then
      ip netns exec $NS iptables -A INPUT -i rml1 -m statistic --mode random --probability "$loss" -j DROP
      if [ $mode = wire ]; then
        iptables -A INPUT -i rml0 -m statistic --mode random --probability "$loss" -j DROP
      else
        ip netns exec $NS iptables -A OUTPUT -o rml1 -m statistic --mode random --probability "$loss" -j DROP
      fi
    fi
    for tr in websocket webtransport; do
      data=$(mktemp -d)
      ip netns exec $NS "$BIN/relaymesh" dev --data "$data" --addr 10.78.0.2:18900 --max-conns-per-ip -1 \
        --sends-per-minute -1 --log-level error >/dev/null 2>&1 &
      pid=$!
      sleep 4
      out=$("$BIN/relaymesh-loadtest" --target ws://10.78.0.2:18900/ --transport $tr --scenario pairs \
        --sessions 100 --rate 100 --duration 15s --progress -1s 2>&1 || true)
      drops=$(ip netns exec $NS curl -s http://10.78.0.2:18900/metrics | awk '/^relaymesh_udp_local_drops_total/ {print $2}')
      kill $pid; wait $pid 2>/dev/null || true
      rm -rf "$data"
      echo "mode=$mode loss=$loss $tr: (server sends refused locally, counted as lost: ${drops:-?})"
      echo "$out" | grep -E 'logged in|messages:|copies:|send→delivery|sessions:' | head -5
    done
  done
done
