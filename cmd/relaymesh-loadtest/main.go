// Command relaymesh-loadtest loads a relaymesh deployment with real SDK
// clients and checks, message by message, that nothing acked was lost.
// Run it with --help for the flags and scenarios; package loadtest has the
// ledger rules.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/relaymesh/relaymesh/loadtest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Exit statuses.
const (
	exitOK    = 0
	exitFail  = 1 // acked messages lost, or the run could not be carried out
	exitUsage = 2 // bad flags, or a scenario that is not available yet
)

type targets []string

func (t *targets) String() string     { return strings.Join(*t, ",") }
func (t *targets) Set(v string) error { *t = append(*t, v); return nil }

// defaultGOGC is --gogc's default. The load tester shares the machine
// with the server it measures, and its heap grows with the messages it
// tracks: at Go's default 100 its mark phases (35–100 ms every ~4 s at
// 5,000 messages/s) showed in the latencies it reported. At 400, six
// pairs of runs gave 0.66× the send p99 for twice the peak RSS
// (docs/BENCHMARKS.md, stop 39).
const defaultGOGC = 400

// flagSet reports whether the flag name was given.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// hidden flags are left out of --help: the coordinator passes them to the
// worker processes it starts.
var hidden = map[string]bool{"worker": true, "chatroom-ids": true}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("relaymesh-loadtest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg loadtest.Config
	var tg targets
	fs.Var(&tg, "target", "edge WebSocket URL, e.g. ws://127.0.0.1:8080/ (repeatable; sessions are spread round-robin)")
	var fb targets
	fs.Var(&fb, "fallback", "edge WebSocket URL no session starts on but every session reconnects to when its edges are lost (repeatable)")
	topology := fs.String("topology", "", "JSON file {\"regions\":[{\"name\":..,\"edges\":[\"ws://..\"],\"router\":..}]} (relaymesh lab's DIR/topology.json); its edges are added to --target, its regions are cross-region's")
	fs.StringVar(&cfg.Scenario, "scenario", "", "scenario to run (see below)")
	fs.StringVar(&cfg.Transport, "transport", "websocket", "websocket or webtransport (HTTP/3 on UDP at each target's host:port, path /wt; the certificate is trusted by the hash its /v1/webtransport answers)")
	fs.Float64Var(&cfg.Loss, "loss", 0, "webtransport: share of datagrams (0 ≤ F < 1) each session's QUIC socket drops, both ways (userspace, netem)")
	fs.StringVar(&cfg.Peer, "peer", "relaymesh", "the server: relaymesh, or centrifugo (a peer measured with the same harness: its JSON client protocol over WebSocket, --target ws://HOST:PORT/connection/websocket; connect and chatroom scenarios; chatroom messages published through its HTTP API)")
	fs.StringVar(&cfg.CentrifugoAPI, "centrifugo-api", "", "--peer centrifugo: the server API's base URL (default http://HOST:PORT/api of the first target)")
	fs.StringVar(&cfg.CentrifugoAPIKey, "centrifugo-api-key", "", "--peer centrifugo: the server API's key (X-API-Key)")
	fs.StringVar(&cfg.CentrifugoSecret, "centrifugo-hmac-secret", "", "--peer centrifugo: sign each session's HS256 connection token with this secret (client.token.hmac_secret_key); empty: no token (client.insecure)")
	fs.IntVar(&cfg.Sessions, "sessions", 100, "client sessions in total")
	fs.Float64Var(&cfg.Rate, "rate", 100, "messages per second in total (pairs, group, chatroom); the edge allows a session 60 sends/min, so keep rate ≤ senders × 1/s for runs over a minute")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "how long to send (pairs, group, chatroom) or stay idle (connect); capped at 24h")
	fs.IntVar(&cfg.MaxMessages, "max-messages", 0, "cap on messages sent in total (0 = 1.1 × rate × duration)")
	out := fs.String("out", "", "write the JSON summary to FILE and the HTML report to FILE with .html")
	fs.IntVar(&cfg.Workers, "workers", 1, "worker processes (this program re-executes itself); one process holds at most ~20,000 sessions")
	fs.StringVar(&cfg.AppID, "app", "loadtest", "LeanCloud appId the sessions log in to")
	fs.Float64Var(&cfg.ConnectRate, "connect-rate", 0, "session logins per second in total (0 = as fast as --concurrency allows)")
	fs.IntVar(&cfg.Concurrency, "concurrency", 200, "logins, conversation creations and closes in flight per worker")
	fs.IntVar(&cfg.GroupSize, "group-size", 500, "group: members per conversation")
	fs.IntVar(&cfg.Senders, "senders", 1, "group: members of each conversation that send; chatroom: members of each room that send, spread over the workers (at least one per worker and room)")
	fs.IntVar(&cfg.Rooms, "rooms", 1, "chatroom: chatrooms; session i joins room i mod rooms")
	mix := fs.String("priority-mix", "normal=1", "chatroom: share of sends per priority, e.g. high=0.1,normal=0.6,low=0.3 (normalised)")
	fs.Float64Var(&cfg.SlowReaders, "slow-readers", 0, "chatroom: share of members (0 ≤ F < 1) that read their WebSocket slowly, so the edge's per-connection queue fills and sheds LOW, then NORMAL; they never send; reported apart from the others")
	fs.DurationVar(&cfg.AckInterval, "ack-interval", 0, "how often at most each session acks the messages it received, batched per conversation (0 = the SDK's 1s, as the JS SDK; <0 = whenever its writer is idle, about one ack a message)")
	fs.DurationVar(&cfg.SlowReadDelay, "slow-read-delay", 0, "chatroom: a slow reader's pause after each push (0 = 10ms, about 100 frames/s)")
	fs.IntVar(&cfg.PayloadBytes, "payload-bytes", 0, "chatroom: pad each message's text to about N bytes (0 = no padding, ~50 bytes; at most 4096), so fewer frames fill a slow reader's socket buffers")
	roomIDs := fs.String("chatroom-ids", "", "hidden: the chatrooms the coordinator created, comma-separated")
	sourceIPs := fs.String("source-ips", "", "spread client source addresses, e.g. 127.0.0.1-127.0.0.8 or 10.0.0.1,10.0.0.2")
	fs.IntVar(&cfg.ServerPID, "server-pid", 0, "read the server's RSS from /proc/PID/status when /metrics has no process_resident_memory_bytes")
	fs.DurationVar(&cfg.Drain, "drain", 5*time.Second, "after sending stops, wait up to this long for outstanding deliveries")
	fs.BoolVar(&cfg.FinalSync, "final-sync", false, "after the drain, every open session reads the history of its conversations: copies found there count as late (via sync), so lost counts only acked messages that are nowhere")
	fs.DurationVar(&cfg.Progress, "progress", 3*time.Second, "progress line interval on stderr (negative: none)")
	fs.StringVar(&cfg.RunID, "run-id", "", "prefix of client ids (default: from the clock; set by the coordinator for workers)")
	worker := fs.String("worker", "", "hidden: run as worker i/n of a coordinator and report JSON lines on stdout")
	killPID := fs.Int("kill-pid", 0, "kill -9 this process --kill-after into the sending (e.g. a core or an edge) and report the sends around it; needs --workers 1")
	fs.DurationVar(&cfg.FaultAfter, "kill-after", 7*time.Second, "with --kill-pid: when, from the start of the sending")
	gogc := fs.Int("gogc", defaultGOGC, "the load tester's own garbage-collection percent (as GOGC; the GOGC environment variable wins unless this flag is given): its collections stall the reads whose latency it measures, so it collects less often than Go's 100, for about twice the memory")
	fs.Usage = func() { usage(fs) }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if flagSet(fs, "gogc") || os.Getenv("GOGC") == "" {
		debug.SetGCPercent(*gogc)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "relaymesh-loadtest: unexpected arguments %q\n", fs.Args())
		return exitUsage
	}
	cfg.Targets = tg
	cfg.Fallbacks = fb
	if *killPID > 0 {
		cfg.Fault = loadtest.KillPID(*killPID)
	}
	if *topology != "" {
		top, err := loadtest.ReadTopology(*topology)
		if err != nil {
			fmt.Fprintln(stderr, "relaymesh-loadtest:", err)
			return exitUsage
		}
		for _, r := range top.Regions {
			cfg.Targets = append(cfg.Targets, r.Edges...)
		}
		cfg.Regions = top.Regions
	}
	pm, err := loadtest.ParsePriorityMix(*mix)
	if err != nil {
		fmt.Fprintln(stderr, "relaymesh-loadtest:", err)
		return exitUsage
	}
	cfg.PriorityMix = pm
	if *roomIDs != "" {
		cfg.ChatRoomIDs = strings.Split(*roomIDs, ",")
	}
	if *sourceIPs != "" {
		ips, err := loadtest.ParseSourceIPs(*sourceIPs)
		if err != nil {
			fmt.Fprintln(stderr, "relaymesh-loadtest:", err)
			return exitUsage
		}
		cfg.SourceIPs = ips
	}
	if err := cfg.Validate(); err != nil {
		if errors.Is(err, loadtest.ErrNotAvailable) {
			fmt.Fprintf(stderr, "relaymesh-loadtest: %s: not available yet: %v\n", cfg.Scenario, err)
		} else {
			fmt.Fprintln(stderr, "relaymesh-loadtest:", err)
		}
		return exitUsage
	}

	if w := loadtest.PortWarning(cfg); w != "" && *worker == "" { // the coordinator warns once
		fmt.Fprintln(stderr, "relaymesh-loadtest: warning:", w)
	}
	if per := cfg.Sessions / max(cfg.Workers, 1); per > 19000 {
		fmt.Fprintf(stderr, "relaymesh-loadtest: warning: %d sessions per process; one process may hold at most ~20,000 fds — raise --workers\n", per)
	}

	if *worker != "" {
		i, n, err := loadtest.ParseWorkerArg(*worker)
		if err != nil {
			fmt.Fprintln(stderr, "relaymesh-loadtest:", err)
			return exitUsage
		}
		defer cpuProfile(fmt.Sprintf(".worker%d", i), stderr)()
		cfg.Workers = n
		if cfg.Scenario == loadtest.ScenarioChatroom {
			cfg.Gate = os.Stdin // the coordinator starts every worker's sends at once
		}
		if err := loadtest.WorkerMain(ctx, cfg, i, n, stdout); err != nil {
			fmt.Fprintln(stderr, "relaymesh-loadtest: worker:", err)
			return exitFail
		}
		return exitOK
	}

	if cfg.Workers > 1 {
		exe, err := os.Executable()
		if err != nil {
			fmt.Fprintln(stderr, "relaymesh-loadtest: workers:", err)
			return exitFail
		}
		cfg.WorkerCommand = append([]string{exe}, args...)
	}
	if cfg.Workers <= 1 {
		defer cpuProfile("", stderr)()
	}
	s, err := loadtest.Run(ctx, cfg, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "relaymesh-loadtest:", err)
		return exitFail
	}
	s.WriteText(stdout)
	if *out != "" {
		h, err := s.WriteFiles(*out)
		if err != nil {
			fmt.Fprintln(stderr, "relaymesh-loadtest:", err)
			return exitFail
		}
		fmt.Fprintf(stdout, "summary: %s  report: %s\n", *out, h)
	}
	if !s.Passed {
		return exitFail
	}
	return exitOK
}

func usage(fs *flag.FlagSet) {
	w := fs.Output()
	fmt.Fprint(w, `relaymesh-loadtest: load a relaymesh deployment with real LeanCloud-protocol clients
(the Go SDK over WebSocket lc.protobuf2.3) and check that no acked message was lost.

Usage:
  relaymesh-loadtest --target ws://127.0.0.1:8080/ --scenario pairs --sessions 1000 --rate 500 --duration 30s --out run.json
  relaymesh-loadtest --target ws://127.0.0.1:8080/ --scenario chatroom --sessions 10000 --workers 4 \
      --source-ips 127.0.0.1-127.0.0.8 --rooms 1 --senders 8 --rate 20 --priority-mix high=0.1,normal=0.6,low=0.3

Flags:
`)
	fs.VisitAll(func(f *flag.Flag) {
		if hidden[f.Name] {
			return
		}
		name, u := flag.UnquoteUsage(f)
		fmt.Fprintf(w, "  --%s %s\n    \t%s", f.Name, name, u)
		if f.DefValue != "" && f.DefValue != "0" && f.DefValue != "0s" {
			fmt.Fprintf(w, " (default %s)", f.DefValue)
		}
		fmt.Fprintln(w)
	})
	fmt.Fprint(w, "\nScenarios:\n")
	for _, s := range loadtest.Scenarios {
		fmt.Fprintf(w, "  %-13s %s\n", s.Name, s.Help)
	}
	fmt.Fprint(w, `
Ledger: every message carries "lt:<worker>:<seq>" in its text; each acked message must reach
every other member of its conversation exactly once. Copies that only arrive by sync after a
reconnect count as late, not lost; duplicates are counted before and after dedup by message id.

Chatroom ledger (transient delivery): each acked message is expected at every session that joined
its room, except the sender. The edge may shed NORMAL and LOW copies under pressure: they are
reported per priority as delivered/expected and missing, next to the growth of the edge's
relaymesh_edge_dropped_frames_total{priority} read from http://HOST/metrics of each --target
before and after the run. A missing HIGH copy is lost and fails the run. Delivery latency
(send start → copy) is measured per priority from a send time carried in the text, so worker
processes must share one clock (one machine).

Acks (--ack-interval D): each session acks the messages it received as the JS SDK does, one batch
per second at most (one ack per conversation); --ack-interval sets the interval, and a negative
one acks whenever the client's writer is idle, about one ack a message, as the native SDKs do.

Slow readers (--slow-readers F): a share F of the members pause --slow-read-delay after each push
and have a 4 KiB socket receive buffer, so their TCP window fills and the edge's per-connection
queue (relaymesh dev --queue-len) fills behind it: the edge sheds LOW first, then NORMAL, and
closes the connection when a HIGH does not fit. Copies are reported per priority at slow and at
normal readers. A slow reader the server disconnected is counted as such and nothing is expected
at it; a HIGH copy missing at a slow reader still connected is lost and fails the run. Give
--drain time for the slow readers' backlog (queue length × read delay, plus a few hundred frames).

Output: a progress line on stderr every --progress; a summary on stdout; with --out, JSON
(scenario, sessions, sent, acked, delivered, expected, lost, duplicates, latency_ms,
delivery_latency_ms, throughput_per_s, deliveries_per_s, server_rss_bytes_per_session, ...;
chatroom: chatroom.priorities.{high,normal,low}.{sent,acked,expected,delivered,missing,
delivered_ratio,deliveries_per_s,delivery_latency_ms,dropped_frames}, chatroom.high_lost,
chatroom.edge_overflow_closes; with slow readers chatroom.slow_readers.{members,disconnected,
slow,normal}, slow and normal per priority {expected,delivered,missing,delivered_ratio}) and an
HTML report.

Fault (--kill-pid PID --kill-after D, one worker): kill -9 of PID D into the sending; the summary
adds the sends around it (fault.first_ack_after_ms: when sends succeed again; failed_after,
failed_after_grace: failed sends started after it, or 2 s or more after it), and every run reports
sessions_disconnected, sessions_down_at_end and down_ms (connection lost → session open again).

Cross-region (--topology FILE --scenario cross-region): pairs whose two members log in at edges of
two different regions (region i with i+1, in topology order); every message is labelled with its
region pair "from->to" and the summary adds, per pair, the ledger (sent, acked, delivered/expected,
late, lost) and send→ack and send→delivery percentiles (JSON region_pairs). A conversation is homed in
its creator's region and reached from the other through the mesh (docs/ARCHITECTURE.md "Regions").

Centrifugo (--peer centrifugo --target ws://HOST:PORT/connection/websocket --centrifugo-api-key K
[--centrifugo-hmac-secret S]): the connect and chatroom scenarios against a Centrifugo server, to
compare with relaymesh under the same harness: sessions speak its JSON protocol over WebSocket
(connect with an HS256 token signed with S, or none; subscribe to the room's channel; pings
answered); chatroom messages are published through its HTTP API (POST /api/publish, X-API-Key),
with the same text, padding and send time; the sending member ignores its own copy, so the same
(members − 1) copies are expected. The ack is the API's answer. See scripts/bench-peers.sh.

Exit status: 0 no acked message lost (chatroom: no acked HIGH copy lost); 1 acked messages lost
or the run failed; 2 bad flags.
`)
}

// cpuProfile writes this process's CPU profile to
// $RELAYMESH_LOADTEST_CPUPROFILE+suffix+".pprof" until the returned stop
// is called, when that variable is set: the load generator shares the
// machine with the server, and its own cost per copy is part of every
// figure (docs/BENCHMARKS.md).
func cpuProfile(suffix string, stderr io.Writer) (stop func()) {
	prefix := os.Getenv("RELAYMESH_LOADTEST_CPUPROFILE")
	if prefix == "" {
		return func() {}
	}
	f, err := os.Create(prefix + suffix + ".pprof")
	if err == nil {
		err = pprof.StartCPUProfile(f)
	}
	if err != nil {
		fmt.Fprintln(stderr, "relaymesh-loadtest: cpu profile:", err)
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}
