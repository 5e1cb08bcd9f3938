// Command relaymesh runs relaymesh roles.
//
//	relaymesh dev [--data DIR] [--addr HOST:PORT]   one region in one process
//	relaymesh version
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/relaymesh/relaymesh/cluster"
	"github.com/relaymesh/relaymesh/edge"
)

var version = "0.1.0-dev"

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "dev":
		err = runDev(os.Args[2:])
	case "version", "--version":
		fmt.Println("relaymesh", version)
	case "help", "-h", "--help":
		usage()
	default:
		fmt.Fprintf(os.Stderr, "relaymesh: unknown command %q\n\n", os.Args[1])
		usage()
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "relaymesh:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprint(os.Stderr, `relaymesh: a self-hosted, LeanCloud-IM-compatible messaging service

Usage:
  relaymesh dev [--data DIR] [--addr HOST:PORT] [--log-level LEVEL] [limit flags, see relaymesh dev -h]
      Run one region (edge + core + single-node shard) in one process.
      Point the LeanCloud SDK at it: new Realtime({appId, appKey, RTMServers: 'ws://HOST:PORT/'})
  relaymesh version
`)
}

func runDev(args []string) error {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	data := fs.String("data", "data", "data directory")
	addr := fs.String("addr", "127.0.0.1:8080", "WebSocket/HTTP listen address (the core's QUIC mesh uses port+1/udp)")
	level := fs.String("log-level", "info", "log level: debug, info, warn, error")
	var lim edge.Limits
	fs.IntVar(&lim.SendsPerMinute, "sends-per-minute", 0, "per-session direct messages per minute (0: LeanCloud's 60, -1: unlimited)")
	fs.IntVar(&lim.LogsPerMinute, "logs-per-minute", 0, "per-session history queries per minute (0: LeanCloud's 120, -1: unlimited)")
	fs.IntVar(&lim.OpsPerMinute, "ops-per-minute", 0, "per-session other operations per minute (0: LeanCloud's 30, -1: unlimited)")
	fs.IntVar(&lim.MaxMessageBytes, "max-message-bytes", 0, "largest message content (0: LeanCloud's 5120)")
	drop := fs.Int64("test-drop-delivery", 0, "TEST HOOK: silently drop the Nth direct-message delivery at the edge (to prove the load tester's ledger catches losses)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lv}))
	d, err := cluster.StartDev(cluster.DevConfig{DataDir: *data, Addr: *addr, Logger: log, Limits: lim, DropDelivery: *drop})
	if err != nil {
		return err
	}
	fmt.Printf("relaymesh dev: serving on %s (data in %s)\n", d.Edge.URL, *data)
	fmt.Printf("  LeanCloud SDK:  new Realtime({ appId, appKey, RTMServers: '%s' })\n", d.Edge.URL)
	fmt.Printf("  router:         http://%s/v1/route   health: http://%s/healthz\n", *addr, *addr)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	fmt.Println("relaymesh dev: shutting down")
	return d.Close()
}
