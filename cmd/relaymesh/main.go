// Command relaymesh runs relaymesh roles. It only parses flags and wires
// parts together (package cluster does the wiring).
//
//	relaymesh dev  [--data DIR] [--addr HOST:PORT] [--config FILE]   one region in one process
//	relaymesh core --config FILE [--check-config]                     a core node (shard replica)
//	relaymesh edge --config FILE [--check-config]                     an edge (client connections)
//	relaymesh pki  init|issue ...                                     cluster CA and node certificates (with roles)
//	relaymesh lab  --regions N --latency 80ms --dir DIR               N regions of separate processes on this machine
//	relaymesh import leancloud --conversations FILE ...               bring a LeanCloud app's conversations and history over
//	relaymesh admin status|shard|conversation ...                     operate a running cluster (admin certificate)
//	relaymesh version
package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/relaymesh/relaymesh/cluster"
	"github.com/relaymesh/relaymesh/core"
	"github.com/relaymesh/relaymesh/edge"
	"github.com/relaymesh/relaymesh/internal/gcfloor"
	"github.com/relaymesh/relaymesh/mesh"
	"github.com/relaymesh/relaymesh/rest"
)

var version = "0.1.0-dev"

// errStop ends a command that finished its work early with exit status 0
// (--check-config found nothing wrong).
var errStop = errors.New("stop")

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "dev", "core", "edge":
		if _, err = startGCFloor(); err != nil {
			fmt.Fprintln(os.Stderr, "relaymesh:", err)
			os.Exit(2)
		}
	}
	switch cmd, args := os.Args[1], os.Args[2:]; cmd {
	case "dev":
		err = runDev(args)
	case "core":
		err = runCore(args)
	case "edge":
		err = runEdge(args)
	case "pki":
		err = runPKI(args)
	case "lab":
		err = runLab(args)
	case "import":
		err = runImport(args)
	case "admin":
		err = runAdmin(args)
	case "version", "--version":
		fmt.Println("relaymesh", version)
	case "help", "-h", "--help":
		usage()
	default:
		fmt.Fprintf(os.Stderr, "relaymesh: unknown command %q\n\n", cmd)
		usage()
		os.Exit(2)
	}
	if errors.Is(err, flag.ErrHelp) || errors.Is(err, errStop) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "relaymesh:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprint(os.Stderr, `relaymesh: a self-hosted, LeanCloud-IM-compatible messaging service

Usage:
  relaymesh dev [--data DIR] [--addr HOST:PORT] [--config FILE] [flags]
      Run one region (edge + core + single-node shard) in one process; any
      appId works (no keys, no signatures) unless --config lists the apps.
      Binding a non-loopback --addr prints a warning. Point the SDK at it:
      new Realtime({appId, appKey, RTMServers: 'ws://HOST:PORT/'})
  relaymesh core --config FILE     run a core node ([core], [tls], [[apps]])
  relaymesh edge --config FILE     run an edge ([edge], [tls], [[apps]], session_token_key_file)
      Both log JSON lines to stderr (--log-format text for key=value);
      --check-config checks FILE as startup would and exits: "ok", or
      every problem and status 1, starting nothing.
  relaymesh pki init --dir DIR                      create the cluster CA and a session-token key
  relaymesh pki issue --dir DIR --name N [--role R] [--hosts H1,H2]   sign a node certificate (role core, edge or admin)
  relaymesh lab --regions N --latency 80ms --dir DIR
      Start N regions on this machine (per region 3 cores and 2 edges, each
      a process), with latency, jitter and loss between regions emulated in
      userspace; writes DIR/topology.json when ready; stops on SIGINT/SIGTERM.
  relaymesh import leancloud --conversations _Conversation.jsonl
        [--history DIR | --leancloud-server URL --leancloud-master-key K [--save DIR]]
        (--server http://HOST:PORT --app-id ID --master-key K | --dry-run)
      Import a LeanCloud app's conversations and message history, keeping
      their ids and timestamps; idempotent and resumable (--state FILE).
      See docs/MIGRATING-FROM-LEANCLOUD.md.
  relaymesh admin status | shard transfer-leader|add-replica|remove-replica | conversation show
      Operate a running cluster over the mesh with an admin certificate
      (relaymesh pki issue --role admin); relaymesh admin -h for more.
  relaymesh version

Each command takes -h for its flags. The config file format is documented in
docs/OPERATIONS.md.
`)
}

// logger is the process's logger on stderr: JSON lines (one object per
// record, with time, level and msg; what log shippers parse) or slog's
// text (key=value, for a terminal).
func logger(level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want json or text", format)
}

// logFlags adds --log-level and --log-format (default format def: json
// for the production roles, text for dev).
func logFlags(fs *flag.FlagSet, def string) (level, format *string) {
	level = fs.String("log-level", "info", "log level: debug, info, warn, error")
	format = fs.String("log-format", def, "log format on stderr: json (one object per line: time, level, msg, ...) or text")
	return level, format
}

// waitSignal blocks until SIGINT or SIGTERM.
func waitSignal() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
}

// waitCore blocks until SIGINT or SIGTERM, or until the core's shard
// replica stops after a fatal apply error (a storage failure, or a command
// newer than this binary: raftstore.FatalApplyError); then it returns that
// error, so the process exits non-zero and its supervisor sees it.
func waitCore(c *cluster.Core) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	select {
	case <-ctx.Done():
		return nil
	case <-c.Failed():
		return fmt.Errorf("shard replica stopped: %w", c.Err())
	}
}

func runDev(args []string) error {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	data := fs.String("data", "data", "data directory")
	addr := fs.String("addr", "127.0.0.1:8080", "WebSocket/HTTP listen address (the core's QUIC mesh uses port+1/udp)")
	cfgFile := fs.String("config", "", "optional config file: its [[apps]] (then only those are served), [edge.limits], [edge.rest] and [core.limits]")
	level, format := logFlags(fs, "text")
	var lim edge.Limits
	fs.IntVar(&lim.SendsPerMinute, "sends-per-minute", 0, "per-session direct messages per minute (0: LeanCloud's 60, -1: unlimited)")
	fs.IntVar(&lim.LogsPerMinute, "logs-per-minute", 0, "per-session history queries per minute (0: LeanCloud's 120, -1: unlimited)")
	fs.IntVar(&lim.OpsPerMinute, "ops-per-minute", 0, "per-session other operations per minute (0: LeanCloud's 30, -1: unlimited)")
	fs.IntVar(&lim.MaxMessageBytes, "max-message-bytes", 0, "largest message content (0: LeanCloud's 5120)")
	fs.IntVar(&lim.MaxConnsPerIP, "max-conns-per-ip", 0, "TCP connections and WebSockets one client IP may hold (0: 1000, -1: no cap)")
	fs.DurationVar(&lim.LoginTimeout, "login-timeout", 0, "close a WebSocket with 4108 when it has not logged in by then (0: 60s)")
	fs.IntVar(&lim.QueueLen, "queue-len", 0, "outbound frames queued per connection; when full the edge sheds LOW, then NORMAL, and closes on HIGH (0: 1024)")
	var restLim rest.Limits
	fs.Float64Var(&restLim.SendsPerSecond, "rest-sends-per-second", 0, "REST API message operations admitted per second per app (0: 50, -1: unlimited)")
	fs.IntVar(&restLim.SendQueue, "rest-send-queue", 0, "REST API message operations that may wait per app before 429 (0: 10000)")
	fs.IntVar(&restLim.BroadcastsPerDay, "rest-broadcasts-per-day", 0, "system-conversation broadcasts per app and UTC day before 429 (0: 30, -1: unlimited)")
	var coreLim core.Limits
	fs.IntVar(&coreLim.MaxMembers, "max-members", 0, "members of a normal conversation (0: LeanCloud's 500)")
	fs.IntVar(&coreLim.MaxOfflinePerConv, "max-offline-per-conv", 0, "newest offline messages a login gets per conversation (0: LeanCloud's 100)")
	fs.IntVar(&coreLim.MaxUnreadConvs, "max-unread-convs", 0, "conversations in a login's unread notification (0: LeanCloud's 50)")
	shards := fs.Int("shards", 1, "shards (raft groups) of the dev region; conversations are spread over them (may grow between runs, never shrink)")
	noWT := fs.Bool("no-webtransport", false, "do not serve WebTransport (HTTP/3 on the same port over UDP, path /wt)")
	useTLS := fs.Bool("tls", false, "serve the WebSocket/HTTP port over TLS too (wss://, https://) with the self-signed WebTransport certificate")
	adminAddr := fs.String("admin-addr", "127.0.0.1:0", "admin listener: /metrics, /healthz, /readyz, /debug/pprof/ (port 0 picks one, printed at start; \"\" for none; keep it on loopback)")
	pprofAddr := fs.String("pprof", "", "serve Go's profiler at http://ADDR/debug/pprof/ (keep it on loopback: it shows the process's internals)")
	overQUIC := fs.Bool("mesh-over-quic", false, "edge and core talk QUIC over loopback, as separate processes do (default: in memory, one process); for comparisons, and for the mesh's QUIC series on /metrics")
	drop := fs.Int64("test-drop-delivery", 0, "TEST HOOK: silently drop the Nth direct-message delivery at the edge (to prove the load tester's ledger catches losses)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log, err := logger(*level, *format)
	if err != nil {
		return err
	}
	if *useTLS && *noWT {
		return errors.New("--tls serves the WebTransport certificate: drop --no-webtransport")
	}
	if *shards < 1 || *shards > cluster.MaxShards {
		return fmt.Errorf("--shards %d: 1 to %d", *shards, cluster.MaxShards)
	}
	cfg := cluster.DevConfig{DataDir: *data, Addr: *addr, Logger: log, Limits: lim, REST: restLim, DropDelivery: *drop,
		CoreLimits: coreLim, Shards: *shards, NoWebTransport: *noWT, TLS: *useTLS, AdminAddr: *adminAddr,
		MeshOverQUIC: *overQUIC}
	if *cfgFile != "" {
		c, err := cluster.LoadConfig(*cfgFile)
		if err != nil {
			return err
		}
		// With a config file, dev serves exactly its apps, each with a
		// master key (LoadConfig checks): open apps exist only without one.
		if cfg.Apps, err = c.Registry(); err != nil {
			return err
		}
		if cfg.Integrations, err = c.Integrations(log); err != nil {
			return err
		}
		cfg.Limits = mergeLimits(c.Limits(), lim)
		cfg.TrustedProxies, _ = edge.ParseTrustedProxies(c.Edge.TrustedProxies) // checked by LoadConfig
		cfg.CoreLimits = mergeCoreLimits(c.CoreLimits(), coreLim)
		if restLim == (rest.Limits{}) {
			cfg.REST = c.RESTLimits()
		}
	}
	if w := cluster.DevExposureWarning(*addr, cfg.Apps == nil); w != "" {
		fmt.Fprint(os.Stderr, w)
	}
	if *pprofAddr != "" {
		if err := servePprof(*pprofAddr); err != nil {
			return err
		}
	}
	d, err := cluster.StartDev(cfg)
	if err != nil {
		return err
	}
	fmt.Printf("relaymesh dev: serving on %s (data in %s)\n", d.Edge.URL, *data)
	if *pprofAddr != "" {
		fmt.Printf("  profiler:       http://%s/debug/pprof/\n", *pprofAddr)
	}
	fmt.Printf("  LeanCloud SDK:  new Realtime({ appId, appKey, RTMServers: '%s' })\n", d.Edge.URL)
	web := "http"
	if *useTLS {
		web = "https"
	}
	fmt.Printf("  router:         %s://%s/v1/route   health: %s://%s/healthz   ready: %s://%s/readyz\n", web, *addr, web, *addr, web, *addr)
	if d.AdminURL != "" {
		fmt.Printf("  metrics:        %s/metrics   ready: %s/readyz   profiler: %s/debug/pprof/\n", d.AdminURL, d.AdminURL, d.AdminURL)
	}
	fmt.Printf("  REST API:       %s://%s/1.2/rtm/...  (X-LC-Id: <appId>, X-LC-Key: <any>,master; docs/REST.md)\n", web, *addr)
	fmt.Printf("  chat demo:      %s://%s/demo/  (a browser page on the official SDK, over WebTransport or WebSocket)\n", web, *addr)
	if d.WTCert != nil {
		h := d.WTCert.Hash()
		fmt.Printf("  WebTransport:   %s  (self-signed ECDSA P-256, valid until %s; docs/WEBTRANSPORT.md)\n", d.Edge.WTURL, d.WTCert.NotAfter().UTC().Format(time.RFC3339))
		fmt.Printf("    certificate SHA-256 (serverCertificateHashes): %s\n", base64.StdEncoding.EncodeToString(h[:]))
		fmt.Printf("    hex: %s   pages: %s://%s/v1/webtransport\n", hex.EncodeToString(h[:]), web, *addr)
	}
	ferr := waitCore(d.Core)
	fmt.Println("relaymesh dev: shutting down")
	return errors.Join(ferr, d.Close())
}

// startGCFloor keeps the collector's heap floor (internal/gcfloor) for
// the serving commands: RELAYMESH_GC_HEAP_FLOOR_MIB, 64 when unset, 0 for
// none, rising with the allocation rate up to
// RELAYMESH_GC_HEAP_FLOOR_MAX_MIB (256 when neither is set; the floor
// itself, a fixed floor, when only the floor is set). A GOGC in the
// environment turns it off.
func startGCFloor() (*gcfloor.Tuner, error) {
	floor, err := mibEnv("RELAYMESH_GC_HEAP_FLOOR_MIB", gcfloor.DefaultFloor)
	if err != nil {
		return nil, fmt.Errorf("%w (0: no floor)", err)
	}
	dflt := uint64(gcfloor.DefaultMaxFloor)
	if os.Getenv("RELAYMESH_GC_HEAP_FLOOR_MIB") != "" {
		dflt = floor
	}
	hi, err := mibEnv("RELAYMESH_GC_HEAP_FLOOR_MAX_MIB", dflt)
	if err != nil {
		return nil, err
	}
	if hi < floor {
		return nil, fmt.Errorf("RELAYMESH_GC_HEAP_FLOOR_MAX_MIB=%d is below the floor, %d MiB", hi>>20, floor>>20)
	}
	return gcfloor.Start(floor, hi), nil
}

// mibEnv reads a size in MiB from the environment variable name, dflt
// bytes when it is unset.
func mibEnv(name string, dflt uint64) (uint64, error) {
	v := os.Getenv(name)
	if v == "" {
		return dflt, nil
	}
	mib, err := strconv.ParseUint(v, 10, 20)
	if err != nil {
		return 0, fmt.Errorf("%s=%q: a whole number of MiB below 1048576", name, v)
	}
	return mib << 20, nil
}

// mergeLimits lets flags given on the command line win over the file.
func mergeLimits(file, flags edge.Limits) edge.Limits {
	if flags.SendsPerMinute != 0 {
		file.SendsPerMinute = flags.SendsPerMinute
	}
	if flags.LogsPerMinute != 0 {
		file.LogsPerMinute = flags.LogsPerMinute
	}
	if flags.OpsPerMinute != 0 {
		file.OpsPerMinute = flags.OpsPerMinute
	}
	if flags.MaxMessageBytes != 0 {
		file.MaxMessageBytes = flags.MaxMessageBytes
	}
	if flags.QueueLen != 0 {
		file.QueueLen = flags.QueueLen
	}
	if flags.MaxConnsPerIP != 0 {
		file.MaxConnsPerIP = flags.MaxConnsPerIP
	}
	if flags.LoginTimeout != 0 {
		file.LoginTimeout = flags.LoginTimeout
	}
	return file
}

// mergeCoreLimits lets flags given on the command line win over the file.
func mergeCoreLimits(file, flags core.Limits) core.Limits {
	if flags.MaxMembers != 0 {
		file.MaxMembers = flags.MaxMembers
	}
	if flags.MaxOfflinePerConv != 0 {
		file.MaxOfflinePerConv = flags.MaxOfflinePerConv
	}
	if flags.MaxUnreadConvs != 0 {
		file.MaxUnreadConvs = flags.MaxUnreadConvs
	}
	return file
}

// roleFlags parses the flags of a role; more, when set, adds the role's own.
func roleFlags(name string, args []string, more func(*flag.FlagSet)) (*cluster.Config, *slog.Logger, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	cfgFile := fs.String("config", "", "config file (required; see docs/OPERATIONS.md)")
	level, format := logFlags(fs, "json")
	check := fs.Bool("check-config", false, "check the config file as startup would (files readable, certificates and keys parse, addresses) and exit: \"ok\" and status 0, or every problem and status 1; starts nothing, writes nothing")
	if more != nil {
		more(fs)
	}
	if err := fs.Parse(args); err != nil {
		return nil, nil, err
	}
	if fs.NArg() > 0 {
		return nil, nil, fmt.Errorf("%s: unexpected arguments %q", name, fs.Args())
	}
	if *cfgFile == "" {
		return nil, nil, fmt.Errorf("%s: --config is required", name)
	}
	log, err := logger(*level, *format)
	if err != nil {
		return nil, nil, err
	}
	if *check {
		return nil, nil, checkConfig(name, *cfgFile)
	}
	c, err := cluster.LoadConfig(*cfgFile)
	return c, log, err
}

// checkConfig runs `relaymesh core|edge --check-config`: "ok" on stdout
// and errStop, or every problem on stderr, one a line, and an error.
func checkConfig(role, file string) error {
	problems := cluster.CheckConfig(file, role)
	if len(problems) == 0 {
		fmt.Println("ok")
		return errStop
	}
	for _, p := range problems {
		fmt.Fprintln(os.Stderr, p)
	}
	return fmt.Errorf("%s --check-config: %d problem(s) in %s", role, len(problems), file)
}

func runCore(args []string) error {
	var metricsAddr, halt, netemFile string
	c, log, err := roleFlags("core", args, func(fs *flag.FlagSet) {
		fs.StringVar(&metricsAddr, "metrics-addr", "", "admin listener: /metrics, /healthz, /readyz and /debug/pprof/ over HTTP here (overrides [core] metrics_addr)")
		fs.StringVar(&halt, "test-halt-before-fanout", "", "TEST HOOK: hold every message containing this text after its commit, before its ack and fan-out (to kill -9 a leader right there)")
		netemFlag(fs, &netemFile)
	})
	if err != nil {
		return err
	}
	cc, err := c.CoreConfig()
	if err != nil {
		return err
	}
	cc.Logger = log
	cc.HaltBeforeFanout = halt
	stopNetem, err := withNetem(netemFile, cc.NodeID, log, &cc.MeshOptions)
	if err != nil {
		return err
	}
	defer stopNetem()
	if metricsAddr != "" {
		cc.MetricsAddr = metricsAddr
	}
	core, err := cluster.StartCore(cc)
	if err != nil {
		return err
	}
	fmt.Printf("relaymesh core %s: mesh on %s/udp, data in %s\n", cc.NodeID, core.Node.Addr(), cc.DataDir)
	if core.MetricsURL != "" {
		fmt.Printf("relaymesh core %s: metrics on %s/metrics (admin listener: /readyz, /healthz, /debug/pprof/)\n", cc.NodeID, core.MetricsURL)
	}
	ferr := waitCore(core)
	if ferr == nil { // a signal: hand over before going (Close does too; this says so)
		fmt.Printf("relaymesh core %s: stopping; handing off leaderships\n", cc.NodeID)
		n := core.HandOff(10 * time.Second)
		fmt.Printf("relaymesh core %s: handed off the leadership of %d raft group(s)\n", cc.NodeID, n)
	}
	return errors.Join(ferr, core.Close())
}

func runEdge(args []string) error {
	var netemFile string
	c, log, err := roleFlags("edge", args, func(fs *flag.FlagSet) { netemFlag(fs, &netemFile) })
	if err != nil {
		return err
	}
	ec, err := c.EdgeConfig()
	if err != nil {
		return err
	}
	ec.Logger = log
	stopNetem, err := withNetem(netemFile, ec.EdgeID, log, &ec.MeshOptions)
	if err != nil {
		return err
	}
	defer stopNetem()
	ec.Hooks = c.Hooks() // app users' user stores and _rtmClientSign (issue 8)
	e, err := cluster.StartEdge(ec)
	if err != nil {
		return err
	}
	fmt.Printf("relaymesh edge %s: serving on %s\n", ec.EdgeID, e.URL)
	if e.AdminURL != "" {
		fmt.Printf("relaymesh edge %s: metrics on %s/metrics (admin listener: /readyz, /healthz, /debug/pprof/)\n", ec.EdgeID, e.AdminURL)
	}
	if e.WTURL != "" {
		fmt.Printf("relaymesh edge %s: WebTransport on %s (certificate valid until %s)\n", ec.EdgeID, e.WTURL, ec.WebTransport.NotAfter().UTC().Format(time.RFC3339))
	}
	waitSignal()
	fmt.Printf("relaymesh edge %s: draining (goaway to every session; up to %v for clients to leave)\n", ec.EdgeID, ec.DrainTimeout)
	forced, err := e.Drain(ec.DrainTimeout)
	fmt.Printf("relaymesh edge %s: drained (%d connections closed at the deadline)\n", ec.EdgeID, forced)
	return err
}

func runPKI(args []string) error {
	if len(args) == 0 {
		return errors.New("pki: want `init` or `issue`")
	}
	fs := flag.NewFlagSet("pki "+args[0], flag.ContinueOnError)
	dir := fs.String("dir", "pki", "directory of the cluster CA")
	name := fs.String("name", "", "node name (issue)")
	hosts := fs.String("hosts", "", "comma-separated IPs or DNS names the node is reached at (issue)")
	roleName := fs.String("role", "", "the node's role, core, edge or admin (issue; default from a name starting core, edge or admin)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	switch args[0] {
	case "init":
		if _, err := mesh.EnsureDevPKI(*dir); err != nil {
			return err
		}
		key := filepath.Join(*dir, "session-token.key")
		if _, err := os.Stat(key); errors.Is(err, os.ErrNotExist) {
			b := make([]byte, 32)
			if _, err := rand.Read(b); err != nil {
				return err
			}
			if err := os.WriteFile(key, b, 0o600); err != nil {
				return err
			}
		}
		fmt.Printf("cluster CA in %s (ca.crt, ca.key); session-token key %s: copy it to every edge\n", *dir, key)
		return nil
	case "issue":
		if *name == "" {
			return errors.New("pki issue: --name is required")
		}
		var hs []string
		if *hosts != "" {
			hs = strings.Split(*hosts, ",")
		}
		role := mesh.Role(*roleName)
		if role == "" {
			for _, r := range []mesh.Role{mesh.RoleCore, mesh.RoleEdge, mesh.RoleAdmin} {
				if strings.HasPrefix(*name, string(r)) {
					role = r
				}
			}
			if role == "" {
				return fmt.Errorf("pki issue: --role core|edge|admin is required for %q", *name)
			}
		}
		if _, err := mesh.IssueNodeRole(*dir, *name, role, hs); err != nil {
			return err
		}
		fmt.Printf("issued %s/%s.crt and %s.key (role %s)\n", *dir, *name, *name, role)
		return nil
	}
	return fmt.Errorf("pki: unknown subcommand %q", args[0])
}

// servePprof serves net/http/pprof on its own listener at addr.
func servePprof(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("--pprof: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	go func() { _ = http.Serve(ln, mux) }()
	return nil
}
