// Command devprof runs the same region as `relaymesh dev` (cluster.StartDev:
// edge, core and a single-node shard in one process) with net/http/pprof on
// a second, loopback-only address, so a load run can be profiled without
// adding a profiling endpoint to cmd/relaymesh. It is a measuring tool for
// scripts/bench.sh and docs/BENCHMARKS.md, not a way to run relaymesh.
//
//	go run ./scripts/devprof --addr 127.0.0.1:18080 --pprof 127.0.0.1:18090 --data /tmp/d
//	go tool pprof -top http://127.0.0.1:18090/debug/pprof/heap
//	go tool pprof -top 'http://127.0.0.1:18090/debug/pprof/profile?seconds=20'
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/relaymesh/relaymesh/cluster"
	"github.com/relaymesh/relaymesh/edge"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "devprof:", err)
		os.Exit(1)
	}
}

func run() error {
	data := flag.String("data", "", "data directory (required; use a fresh temporary one)")
	addr := flag.String("addr", "127.0.0.1:18080", "WebSocket/HTTP listen address (the mesh uses port+1/udp)")
	pp := flag.String("pprof", "127.0.0.1:18090", "pprof listen address (loopback only)")
	unlimited := flag.Bool("unlimited", true, "lift the per-session send/logs/ops limits and the per-IP connection cap, like --sends-per-minute -1 … --max-conns-per-ip -1")
	mutex := flag.Int("mutex-fraction", 0, "runtime.SetMutexProfileFraction (0 = off)")
	block := flag.Int("block-rate", 0, "runtime.SetBlockProfileRate in ns (0 = off)")
	overQUIC := flag.Bool("mesh-over-quic", false, "core and edge talk over QUIC on loopback, as before stop 23 (default: in memory, as relaymesh dev)")
	flag.Parse()
	if *data == "" {
		return errors.New("--data is required")
	}
	host, _, err := net.SplitHostPort(*pp)
	if err != nil {
		return fmt.Errorf("--pprof: %w", err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("--pprof %q: must be a loopback address", *pp)
	}
	runtime.SetMutexProfileFraction(*mutex)
	runtime.SetBlockProfileRate(*block)

	var lim edge.Limits
	if *unlimited {
		lim.SendsPerMinute, lim.LogsPerMinute, lim.OpsPerMinute = -1, -1, -1
		lim.MaxConnsPerIP = -1
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	d, err := cluster.StartDev(cluster.DevConfig{DataDir: *data, Addr: *addr, Limits: lim, Logger: log, MeshOverQUIC: *overQUIC})
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	// /debug/gc forces a collection and returns freed memory to the OS, so
	// an RSS sample after it shows live memory rather than GC headroom.
	mux.HandleFunc("/debug/gc", func(w http.ResponseWriter, r *http.Request) {
		runtime.GC()
		debug.FreeOSMemory()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		fmt.Fprintf(w, "heap_inuse %d\nheap_alloc %d\nstack_inuse %d\nsys %d\ngoroutines %d\n",
			ms.HeapInuse, ms.HeapAlloc, ms.StackInuse, ms.Sys, runtime.NumGoroutine())
	})
	ps := &http.Server{Addr: *pp, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = ps.ListenAndServe() }()
	fmt.Printf("devprof: serving on %s, pprof on http://%s/debug/pprof/ (pid %d)\n", d.Edge.URL, *pp, os.Getpid())

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	_ = ps.Close()
	return d.Close()
}
