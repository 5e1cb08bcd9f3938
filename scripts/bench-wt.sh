#!/usr/bin/env bash
# make bench-wt: WebTransport vs WebSocket side by side (issue 10), each
# measurement against a fresh `relaymesh dev` on 127.0.0.1; prints the
# table of docs/BENCHMARKS.md "WebTransport vs WebSocket (issue 10)".
# About 2 minutes on 2 cores. Not part of make test.
#
#   scripts/bench-wt.sh                       # the defaults below
#   CONNECT_SESSIONS=5000 scripts/bench-wt.sh
#
# Loss is injected in userspace on each load-test session's QUIC socket
# (--loss: netem under quic-go, both ways). WebSocket has no loss rows:
# TCP segments cannot be dropped from userspace here (no tc, iptables or
# nft on this machine; a userspace TCP proxy sees a byte stream, not
# packets) — see docs/BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
CONNECT_SESSIONS=${CONNECT_SESSIONS:-2000}
CONNECT_RATE=${CONNECT_RATE:-400}
PAIRS_SESSIONS=${PAIRS_SESSIONS:-100}
PAIRS_RATE=${PAIRS_RATE:-100}
PAIRS_DURATION=${PAIRS_DURATION:-10s}
LOSSES=${LOSSES:-"0.01 0.05"}

ulimit -n "$(ulimit -Hn)"
work=$(mktemp -d "${TMPDIR:-/tmp}/relaymesh-bench-wt.XXXXXX")
echo "bench-wt: work directory $work" >&2
$GO build -o "$work/relaymesh" ./cmd/relaymesh
$GO build -o "$work/relaymesh-loadtest" ./cmd/relaymesh-loadtest

# free_port: a TCP and UDP port p with UDP p+1 free (dev's HTTP, WebTransport, mesh).
free_port() {
	python3 - <<'PY'
import random, socket
for _ in range(200):
    p = random.randint(20000, 50000)
    socks = []
    try:
        for kind, port in ((socket.SOCK_STREAM, p), (socket.SOCK_DGRAM, p), (socket.SOCK_DGRAM, p + 1)):
            s = socket.socket(socket.AF_INET, kind); socks.append(s); s.bind(("127.0.0.1", port))
        print(p); break
    except OSError:
        pass
    finally:
        for s in socks: s.close()
PY
}

dev_pid=
stop_dev() {
	if [[ -n "$dev_pid" ]]; then
		kill "$dev_pid" 2>/dev/null || true
		wait "$dev_pid" 2>/dev/null || true
		dev_pid=
	fi
}
trap stop_dev EXIT

# run NAME LOADTEST-ARGS...: a fresh dev, one load run, its summary in $work/NAME.json.
run() {
	local name=$1; shift
	local port; port=$(free_port)
	"$work/relaymesh" dev --addr "127.0.0.1:$port" --data "$work/data-$name" --log-level warn \
		--max-conns-per-ip -1 >"$work/dev-$name.log" 2>&1 &
	dev_pid=$!
	for _ in $(seq 100); do
		curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
		sleep 0.1
	done
	sleep 1 # the region's core becomes ready
	echo "bench-wt: $name: relaymesh-loadtest $*" >&2
	"$work/relaymesh-loadtest" --target "ws://127.0.0.1:$port/" --server-pid "$dev_pid" \
		--out "$work/$name.json" --progress -1s "$@" >"$work/$name.txt" 2>&1 || true
	cat "$work/$name.txt" >&2
	stop_dev
}

for tr in websocket webtransport; do
	run "connect-$tr" --transport "$tr" --scenario connect --sessions "$CONNECT_SESSIONS" \
		--connect-rate "$CONNECT_RATE" --concurrency 100 --duration 5s
	run "pairs-$tr" --transport "$tr" --scenario pairs --sessions "$PAIRS_SESSIONS" \
		--rate "$PAIRS_RATE" --duration "$PAIRS_DURATION"
	run "reconnect-$tr" --transport "$tr" --scenario reconnect --sessions "$PAIRS_SESSIONS" --duration 2s
done
for l in $LOSSES; do
	run "loss-$l" --transport webtransport --loss "$l" --scenario pairs --sessions "$PAIRS_SESSIONS" \
		--rate "$PAIRS_RATE" --duration "$PAIRS_DURATION"
done

j() { jq -r "$2" "$work/$1.json" 2>/dev/null || echo "?"; }
ratio() { python3 -c "import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); print(f'{a/b:.2f}×' if b else '–')" "$1" "$2" 2>/dev/null || echo "–"; }
ws_c50=$(j connect-websocket .connect_latency_ms.p50); wt_c50=$(j connect-webtransport .connect_latency_ms.p50)
ws_c99=$(j connect-websocket .connect_latency_ms.p99); wt_c99=$(j connect-webtransport .connect_latency_ms.p99)
ws_rss=$(j connect-websocket '.server_rss_bytes_per_session|floor'); wt_rss=$(j connect-webtransport '.server_rss_bytes_per_session|floor')
ws_d50=$(j pairs-websocket .delivery_latency_ms.p50); wt_d50=$(j pairs-webtransport .delivery_latency_ms.p50)
ws_d99=$(j pairs-websocket .delivery_latency_ms.p99); wt_d99=$(j pairs-webtransport .delivery_latency_ms.p99)
{
	echo "| measurement | WebSocket | WebTransport | WT / WS |"
	echo "| --- | ---: | ---: | ---: |"
	echo "| login p50 ($CONNECT_SESSIONS sessions at $CONNECT_RATE/s), ms | $ws_c50 | $wt_c50 | $(ratio "$wt_c50" "$ws_c50") |"
	echo "| login p99, ms | $ws_c99 | $wt_c99 | $(ratio "$wt_c99" "$ws_c99") |"
	echo "| server RSS per idle session, bytes | $ws_rss | $wt_rss | $(ratio "$wt_rss" "$ws_rss") |"
	echo "| delivery p50, pairs $PAIRS_SESSIONS sessions $PAIRS_RATE msg/s, ms | $ws_d50 | $wt_d50 | $(ratio "$wt_d50" "$ws_d50") |"
	echo "| delivery p99, ms | $ws_d99 | $wt_d99 | $(ratio "$wt_d99" "$ws_d99") |"
	ws_r=$(j reconnect-websocket .recover_ms.p99); wt_r=$(j reconnect-webtransport .recover_ms.p99)
	echo "| reconnect → unread state p99, $PAIRS_SESSIONS sessions dropped at once, ms | $ws_r | $wt_r | $(ratio "$wt_r" "$ws_r") |"
	for l in $LOSSES; do
		pct=$(python3 -c "print(f'{float(\"$l\")*100:g}')")
		d50=$(j "loss-$l" .delivery_latency_ms.p50); d99=$(j "loss-$l" .delivery_latency_ms.p99)
		got=$(j "loss-$l" '"\(.loss_dropped)/\(.loss_written)"')
		echo "| delivery p50 / p99 under $pct % loss (dropped $got datagrams), ms | not measurable | $d50 / $d99 | p99 $(ratio "$d99" "$wt_d99") of lossless WT |"
	done
	echo
	echo "Ledger: $(for f in "$work"/pairs-*.json "$work"/loss-*.json; do jq -r '"\(input_filename|split("/")|last): sessions \(.sessions), acked \(.acked), delivered \(.delivered), lost \(.lost), passed \(.passed)"' "$f"; done | paste -sd ';' | sed 's/;/; /g')"
} | tee "$work/table.md"
