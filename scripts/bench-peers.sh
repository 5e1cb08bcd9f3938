#!/usr/bin/env bash
# make bench-peers: relaymesh vs Centrifugo side by side (issue 11). The
# same load tester (relaymesh-loadtest; --peer centrifugo speaks
# Centrifugo's JSON protocol over WebSocket and publishes through its HTTP
# API) runs the same scenarios, payloads and sizes against both servers,
# each measurement against a fresh server on 127.0.0.1:
#
#   - idle sessions: RSS per session at IDLE_SESSIONS (worker processes of
#     at most 10,000 sessions each: one process may hold ~20,000 fds);
#   - a SMALL_ROOM-member chatroom at SMALL_RATE msg/s;
#   - a BIG_ROOM-member chatroom at each of BIG_RATES msg/s:
#     deliveries/s, delivery p50/p99, share delivered by DRAIN after the
#     last send.
#
# Centrifugo (CENTRIFUGO_VERSION, default v6.9.1) is built with `go install`
# outside this module into a scratch directory (CENTRIFUGO_DIR, kept
# between runs): a peer to measure against, never a dependency of ours.
# It runs with a generated config: memory engine, no history, HS256
# connection tokens the load tester signs, an HTTP API key.
# relaymesh runs as `relaymesh dev` (history persisted) with the limits
# per session lifted as in make bench.
#
#   scripts/bench-peers.sh             # the full run, ~8 minutes on 2 cores
#   scripts/bench-peers.sh --quick     # an ~80-second smoke at small sizes
#   BIG_RATES="2 20" DURATION=30s scripts/bench-peers.sh
#   TABLE_ONLY=/tmp/relaymesh-bench-peers.XXXXXX scripts/bench-peers.sh  # reprint a run's table
#   DOC=docs/BENCHMARKS.md scripts/bench-peers.sh   # also replace the table
#       between <!-- bench-peers:begin --> and <!-- bench-peers:end --> there
#
# Prints the table (both servers and the ratios) and leaves it, every
# summary and every server log in the work directory it names. Not part
# of make test.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
CENTRIFUGO_VERSION=${CENTRIFUGO_VERSION:-v6.9.1}
CENTRIFUGO_DIR=${CENTRIFUGO_DIR:-${TMPDIR:-/tmp}/relaymesh-peers/centrifugo-$CENTRIFUGO_VERSION}

quick=0
if [[ "${1:-}" == "--quick" ]]; then
	quick=1
elif [[ -n "${1:-}" ]]; then
	echo "usage: $0 [--quick]" >&2
	exit 2
fi
if ((quick)); then
	: "${IDLE_SESSIONS:=2000}" "${SMALL_ROOM:=200}" "${SMALL_RATE:=20}" "${BIG_ROOM:=1000}" "${BIG_RATES:=2 20}"
	: "${DURATION:=5s}" "${DRAIN:=5s}" "${IDLE_DURATION:=3s}"
else
	: "${IDLE_SESSIONS:=15000}" "${SMALL_ROOM:=1000}" "${SMALL_RATE:=20}" "${BIG_ROOM:=10000}" "${BIG_RATES:=1 2 5 20 40}"
	: "${DURATION:=10s}" "${DRAIN:=30s}" "${IDLE_DURATION:=10s}"
fi
PAYLOAD=${PAYLOAD:-256}         # bytes of text per chatroom message (ledger id, send time, padding)
SENDERS=${SENDERS:-20}          # members per room that send (relaymesh: each send is that member's)
CONNECT_RATE=${CONNECT_RATE:-1000}
SOURCE_IPS=${SOURCE_IPS:-127.0.0.1-127.0.0.8}
PEERS=${PEERS:-"centrifugo relaymesh"}

ulimit -n "$(ulimit -Hn)"
idle_workers=$(((IDLE_SESSIONS + 9999) / 10000))
big_workers=$(((BIG_ROOM + 9999) / 10000))
work=${TABLE_ONLY:-}
# The measurements, unless TABLE_ONLY names the work directory of an
# earlier run whose table is printed again (down to the matching fi).
if [[ -z "$work" ]]; then
work=$(mktemp -d "${TMPDIR:-/tmp}/relaymesh-bench-peers.XXXXXX")
echo "bench-peers: work directory $work" >&2
$GO build -o "$work/relaymesh" ./cmd/relaymesh
$GO build -o "$work/relaymesh-loadtest" ./cmd/relaymesh-loadtest

# Centrifugo: go install outside any module (GOFLAGS=-mod=mod, GOWORK=off),
# into the scratch directory; the module version is checked, not trusted.
cf="$CENTRIFUGO_DIR/centrifugo"
if ! "$GO" version -m "$cf" 2>/dev/null | grep -q "mod[[:space:]]*github.com/centrifugal/centrifugo/v6[[:space:]]*$CENTRIFUGO_VERSION"; then
	echo "bench-peers: go install github.com/centrifugal/centrifugo/v6@$CENTRIFUGO_VERSION into $CENTRIFUGO_DIR" >&2
	mkdir -p "$CENTRIFUGO_DIR"
	(cd "$(mktemp -d)" && GOWORK=off GOFLAGS=-mod=mod GOBIN="$CENTRIFUGO_DIR" \
		"$GO" install "github.com/centrifugal/centrifugo/v6@$CENTRIFUGO_VERSION")
fi
"$GO" version -m "$cf" | grep -m1 "mod[[:space:]]*github.com/centrifugal/centrifugo" >&2

# free_port: a TCP port p with UDP p and p+1 free (dev's HTTP, WebTransport, mesh).
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
secret() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }

srv_pid=
stop_server() {
	if [[ -n "$srv_pid" ]]; then
		kill "$srv_pid" 2>/dev/null || true
		wait "$srv_pid" 2>/dev/null || true
		srv_pid=
	fi
}
trap stop_server EXIT

# start PEER NAME: a fresh server; sets srv_pid, target and peer_args.
start() {
	local peer=$1 name=$2 port health
	port=$(free_port)
	if [[ $peer == centrifugo ]]; then
		local dir="$work/cf-$name" hmac key
		hmac=$(secret) key=$(secret)
		mkdir -p "$dir"
		# Memory engine, no history (no history_size/ttl on any channel),
		# presence and join/leave off, the admin UI off.
		cat >"$dir/config.json" <<EOF
{
  "http_server": {"address": "127.0.0.1", "port": $port},
  "log": {"level": "error"},
  "engine": {"type": "memory"},
  "client": {"token": {"hmac_secret_key": "$hmac"}, "allowed_origins": ["*"]},
  "http_api": {"key": "$key"},
  "channel": {"without_namespace": {"allow_subscribe_for_client": true}},
  "health": {"enabled": true}
}
EOF
		(cd "$dir" && exec "$cf" -c config.json >"$dir/centrifugo.log" 2>&1) &
		srv_pid=$!
		health="http://127.0.0.1:$port/health"
		target="ws://127.0.0.1:$port/connection/websocket"
		peer_args=(--peer centrifugo --centrifugo-api "http://127.0.0.1:$port/api"
			--centrifugo-api-key "$key" --centrifugo-hmac-secret "$hmac")
	else
		"$work/relaymesh" dev --addr "127.0.0.1:$port" --data "$work/data-$name" --log-level warn \
			--sends-per-minute -1 --logs-per-minute -1 --ops-per-minute -1 \
			--max-conns-per-ip -1 >"$work/dev-$name.log" 2>&1 &
		srv_pid=$!
		health="http://127.0.0.1:$port/healthz"
		target="ws://127.0.0.1:$port/"
		peer_args=(--peer relaymesh)
	fi
	for _ in $(seq 100); do
		curl -fs "$health" >/dev/null 2>&1 && break
		sleep 0.1
	done
	sleep 1 # relaymesh: the region's core becomes ready
}

# run PEER NAME LOADTEST-ARGS...: a fresh server, one load run, its
# summary in $work/PEER-NAME.json.
run() {
	local peer=$1 name=$2; shift 2
	start "$peer" "$name"
	echo "bench-peers: $peer $name: relaymesh-loadtest $*" >&2
	"$work/relaymesh-loadtest" "${peer_args[@]}" --target "$target" --server-pid "$srv_pid" \
		--source-ips "$SOURCE_IPS" --out "$work/$peer-$name.json" --progress 5s "$@" \
		>"$work/$peer-$name.txt" 2>&1 || true
	grep -v '^\[' "$work/$peer-$name.txt" >&2 || true
	stop_server
}

started=$(date +%s)
cut -d' ' -f1-3 /proc/loadavg >"$work/load-before"
# Each measurement on every server in turn, so both see about the same
# load from whatever else runs on the machine.
each() { local p; for p in $PEERS; do run "$p" "$@"; done; }
each idle --scenario connect --sessions "$IDLE_SESSIONS" --workers "$idle_workers" \
	--connect-rate "$CONNECT_RATE" --concurrency 100 --duration "$IDLE_DURATION"
each "room$SMALL_ROOM-r$SMALL_RATE" --scenario chatroom --sessions "$SMALL_ROOM" --rooms 1 \
	--senders "$SENDERS" --rate "$SMALL_RATE" --payload-bytes "$PAYLOAD" --duration "$DURATION" --drain "$DRAIN" \
	--connect-rate "$CONNECT_RATE"
for r in $BIG_RATES; do
	each "room$BIG_ROOM-r$r" --scenario chatroom --sessions "$BIG_ROOM" --rooms 1 --workers "$big_workers" \
		--senders "$SENDERS" --rate "$r" --payload-bytes "$PAYLOAD" --duration "$DURATION" --drain "$DRAIN" \
		--connect-rate "$CONNECT_RATE"
done
echo "$(($(date +%s) - started))" >"$work/seconds"
cut -d' ' -f1-3 /proc/loadavg >"$work/load-after"
fi # measurements

# The table: Centrifugo, relaymesh, relaymesh / Centrifugo.
j() { jq -r "$2 // \"?\"" "$work/$1.json" 2>/dev/null || echo "?"; }
ratio() { python3 -c "import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); print(f'{a/b:.2f}×' if b else '–')" "$1" "$2" 2>/dev/null || echo "–"; }
kib() { python3 -c "import sys; print(f'{float(sys.argv[1])/1024:.1f}')" "$1" 2>/dev/null || echo "?"; }
pct() { python3 -c "import sys; print(f'{100*float(sys.argv[1]):.1f} %')" "$1" 2>/dev/null || echo "?"; }
num() { python3 -c "import sys; print(f'{float(sys.argv[1]):.0f}')" "$1" 2>/dev/null || echo "?"; }
row() { # label, centrifugo, relaymesh, ratio
	echo "| $1 | $2 | $3 | $4 |"
}
chat_rows() { # NAME LABEL
	local n=$1 l=$2 c=centrifugo-$1 m=relaymesh-$1
	local cf_d cf_50 cf_99 cf_r rm_d rm_50 rm_99 rm_r
	local fan='(.chatroom.fanout_all_deliveries_per_s // .chatroom.fanout_deliveries_per_s)'
	cf_d=$(j "$c" "$fan") rm_d=$(j "$m" "$fan")
	cf_50=$(j "$c" .chatroom.priorities.normal.delivery_latency_ms.p50) rm_50=$(j "$m" .chatroom.priorities.normal.delivery_latency_ms.p50)
	cf_99=$(j "$c" .chatroom.priorities.normal.delivery_latency_ms.p99) rm_99=$(j "$m" .chatroom.priorities.normal.delivery_latency_ms.p99)
	cf_r=$(j "$c" .chatroom.priorities.normal.delivered_ratio) rm_r=$(j "$m" .chatroom.priorities.normal.delivered_ratio)
	row "$l: deliveries/s, every copy received (sending start → last copy)" "$(num "$cf_d")" "$(num "$rm_d")" "$(ratio "$rm_d" "$cf_d")"
	row "$l: delivery p50 / p99, ms" "$cf_50 / $cf_99" "$rm_50 / $rm_99" "$(ratio "$rm_50" "$cf_50") / $(ratio "$rm_99" "$cf_99")"
	row "$l: delivered by $DRAIN after the last send" "$(pct "$cf_r")" "$(pct "$rm_r")" "$(ratio "$rm_r" "$cf_r")"
	local all='(.chatroom.delivered_all_sends / .chatroom.expected_all_sends)'
	row "$l: copies received of every send, acked or not" "$(pct "$(j "$c" "$all")")" "$(pct "$(j "$m" "$all")")" \
		"$(ratio "$(j "$m" "$all")" "$(j "$c" "$all")")"
	row "$l: send → ack p99 (Centrifugo: HTTP publish answered; relaymesh: committed), ms" \
		"$(j "$c" .latency_ms.p99)" "$(j "$m" .latency_ms.p99)" "$(ratio "$(j "$m" .latency_ms.p99)" "$(j "$c" .latency_ms.p99)")"
	row "$l: sends acked; sessions the server closed" \
		"$(j "$c" .acked)/$(j "$c" .sent); $(j "$c" .sessions_closed)" "$(j "$m" .acked)/$(j "$m" .sent); $(j "$m" .sessions_closed)" "–"
	row "$l: server peak RSS, MiB" "$(kib "$(kib "$(j "$c" .server_rss_bytes)")")" "$(kib "$(kib "$(j "$m" .server_rss_bytes)")")" \
		"$(ratio "$(j "$m" .server_rss_bytes)" "$(j "$c" .server_rss_bytes)")"
}
{
	echo "| same harness, fresh server per run | Centrifugo $CENTRIFUGO_VERSION (memory engine, no history) | relaymesh dev (history persisted) | relaymesh / Centrifugo |"
	echo "| --- | ---: | ---: | ---: |"
	cf_s=$(j centrifugo-idle .server_rss_bytes_per_session) rm_s=$(j relaymesh-idle .server_rss_bytes_per_session)
	row "idle RSS per session at $IDLE_SESSIONS sessions (RSS − baseline; logged in: Centrifugo $(j centrifugo-idle .sessions), relaymesh $(j relaymesh-idle .sessions)), KiB" \
		"$(kib "$cf_s")" "$(kib "$rm_s")" "$(ratio "$rm_s" "$cf_s")"
	row "login p50 / p99 at $CONNECT_RATE/s, ms" "$(j centrifugo-idle .connect_latency_ms.p50) / $(j centrifugo-idle .connect_latency_ms.p99)" \
		"$(j relaymesh-idle .connect_latency_ms.p50) / $(j relaymesh-idle .connect_latency_ms.p99)" \
		"$(ratio "$(j relaymesh-idle .connect_latency_ms.p99)" "$(j centrifugo-idle .connect_latency_ms.p99)") (p99)"
	chat_rows "room$SMALL_ROOM-r$SMALL_RATE" "$SMALL_ROOM members, $SMALL_RATE msg/s"
	for r in $BIG_RATES; do
		chat_rows "room$BIG_ROOM-r$r" "$BIG_ROOM members, $r msg/s ($((BIG_ROOM * r)) copies/s offered)"
	done
	echo
	echo "Sizes: idle $IDLE_SESSIONS sessions ($idle_workers worker process(es)), idle $IDLE_DURATION; rooms: $SENDERS senders, $PAYLOAD-byte texts, $DURATION of sending, drain $DRAIN (ends earlier after 2 s without a copy); logins at $CONNECT_RATE/s from $SOURCE_IPS; whole run $(cat "$work/seconds" 2>/dev/null || echo "?") s; load average (1, 5, 15 min) before $(cat "$work/load-before" 2>/dev/null || echo "?"), after $(cat "$work/load-after" 2>/dev/null || echo "?")."
	echo
	echo "Ledger: $(for f in "$work"/*-room*.json; do jq -r '"\(input_filename|split("/")|last|rtrimstr(".json")): \(.acked)/\(.sent) acked, \(.delivered)/\(.expected) copies, \(.sessions)/\(.sessions_requested) sessions, errors \(.errors|length // 0)"' "$f" 2>/dev/null; done | paste -sd ';' | sed 's/;/; /g')"
} | tee "$work/table.md"

if [[ -n "${DOC:-}" ]]; then
	python3 - "$DOC" "$work/table.md" <<'PY'
import sys
doc, table = sys.argv[1], open(sys.argv[2]).read().rstrip("\n")
text = open(doc).read()
b, e = "<!-- bench-peers:begin -->", "<!-- bench-peers:end -->"
i, k = text.find(b), text.find(e)
if i < 0 or k < i:
    sys.exit(f"bench-peers: {doc} has no {b} … {e} block; the table is in the work directory")
open(doc, "w").write(text[: i + len(b)] + "\n" + table + "\n" + text[k:])
print(f"bench-peers: table written into {doc}", file=sys.stderr)
PY
fi
