#!/usr/bin/env bash
# make bench: the Go micro-benchmarks, then the standard load-test suite
# against `relaymesh dev` processes on 127.0.0.1 (scripts/bench), which
# writes the figures into docs/BENCHMARKS.md. About 12–15 minutes on 2 cores.
#
#   scripts/bench.sh          # everything
#   scripts/bench.sh --lab    # the long soaks instead (make lab; ~13 minutes, not run by CI)
#
# Every load run stops by itself and only targets 127.0.0.x.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}

# A process may hold at most 20,000 fds here: raise the soft limit to the hard one.
ulimit -n "$(ulimit -Hn)"

work=$(mktemp -d "${TMPDIR:-/tmp}/relaymesh-bench.XXXXXX")
echo "bench: work directory $work" >&2
$GO build -o "$work/relaymesh" ./cmd/relaymesh
$GO build -o "$work/relaymesh-loadtest" ./cmd/relaymesh-loadtest

if [[ "${1:-}" == "--lab" ]]; then
	exec $GO run ./scripts/bench --lab --relaymesh "$work/relaymesh" --loadtest "$work/relaymesh-loadtest" --work "$work"
fi

# (a) Go micro-benchmarks, each package bounded. The e2e and raftstore
# benchmarks start real regions and raft groups, so they get fixed counts.
micro="$work/micro.txt"
{
	$GO test -run '^$' -bench . -benchmem -benchtime 1s ./proto/... ./edge/... ./core/... ./moderation/... ./push/...
	$GO test -run '^$' -bench . -benchmem -benchtime 2s ./mesh/...
	$GO test -run '^$' -bench Propose -benchmem -benchtime 20000x -timeout 10m ./raftstore/...
	# Each op is a whole snapshot of a 64 or 256 MiB state DB.
	$GO test -run '^$' -bench SnapshotPersist -benchmem -benchtime 3x -timeout 10m ./raftstore/...
	$GO test -run '^$' -bench . -benchmem -benchtime 3000x -timeout 10m ./e2e/...
} 2>&1 | tee "$micro"

# (b) the load-test suite; it writes docs/BENCHMARKS.md.
$GO run ./scripts/bench --relaymesh "$work/relaymesh" --loadtest "$work/relaymesh-loadtest" \
	--work "$work" --micro "$micro" --doc docs/BENCHMARKS.md
