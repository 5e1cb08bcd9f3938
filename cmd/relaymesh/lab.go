package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/relaymesh/relaymesh/lab"
)

// runLab starts a multi-region lab (package lab) and runs it until SIGINT
// or SIGTERM.
func runLab(args []string) error {
	fs := flag.NewFlagSet("lab", flag.ContinueOnError)
	var cfg lab.Config
	fs.StringVar(&cfg.Dir, "dir", "", "directory for the lab's PKI, configs, data, logs and topology.json (required; must not exist or be empty)")
	fs.IntVar(&cfg.Regions, "regions", lab.DefaultRegions, "regions")
	names := fs.String("names", "", "region names, comma-separated (default r1,r2,…)")
	fs.IntVar(&cfg.Cores, "cores", lab.DefaultCores, "core processes per region (3 = 3 voters per shard)")
	fs.IntVar(&cfg.Shards, "shards", 1, "shards (raft groups) per region, each on every core of the region")
	fs.IntVar(&cfg.Edges, "edges", lab.DefaultEdges, "edge processes per region")
	fs.DurationVar(&cfg.Latency, "latency", lab.DefaultLatency, "one-way latency between every two regions (a round trip costs twice this)")
	fs.DurationVar(&cfg.Jitter, "jitter", 0, "jitter of each datagram's delay: uniform in latency ± jitter")
	fs.Float64Var(&cfg.Loss, "loss", 0, "share of datagrams lost between regions, 0..1")
	var links multiFlag
	fs.Var(&links, "link", "override one region pair, both ways: A:B=latency=120ms,jitter=5ms,loss=0.01 (repeatable)")
	control := fs.String("control", "127.0.0.1:0", "address of the HTTP control endpoint (loopback; \"\" for none); its URL goes to DIR/lab.json")
	fs.StringVar(&cfg.LogLevel, "node-log-level", "warn", "the nodes' --log-level (their output goes to DIR/logs/NODE.log)")
	level := fs.String("log-level", "info", "the lab's own log level")
	fs.DurationVar(&cfg.StartTimeout, "start-timeout", lab.DefaultStartTimeout, "give up when the regions are not ready by then")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if cfg.Dir == "" {
		return errors.New("lab: --dir is required")
	}
	if *names != "" {
		cfg.Names = strings.Split(*names, ",")
		if cfg.Regions == lab.DefaultRegions {
			cfg.Regions = len(cfg.Names)
		}
	}
	for _, s := range links {
		pl, err := lab.ParsePairLink(s)
		if err != nil {
			return err
		}
		cfg.Links = append(cfg.Links, pl)
	}
	log, err := logger(*level, "text")
	if err != nil {
		return err
	}
	cfg.Logger = log
	if cfg.Latency == 0 {
		cfg.Latency = -1 // --latency 0: none (the Config's zero means the default)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	t0 := time.Now()
	l, err := lab.Start(ctx, cfg)
	if err != nil {
		return err
	}
	ctrl := ""
	if *control != "" {
		if ctrl, err = l.Serve(*control); err != nil {
			return errors.Join(err, l.Close())
		}
	}
	fmt.Printf("relaymesh lab: %d regions ready in %v; %s\n", len(l.Regions()), time.Since(t0).Round(time.Millisecond),
		filepath.Join(l.Dir(), "topology.json"))
	for _, r := range l.Regions() {
		fmt.Printf("  %-6s %s  router %s  edges %s\n", r.Name, r.CIDR, r.Router, strings.Join(r.EdgeURLs(), " "))
	}
	fmt.Printf("  app %s (key %s, master key %s); between regions %v ± %v, loss %g one way\n",
		l.AppID(), l.AppKey(), l.MasterKey(), max(cfg.Latency, 0), cfg.Jitter, cfg.Loss)
	if ctrl != "" {
		fmt.Printf("  control %s (GET /lab, POST /partition?a=&b=, /heal, /link, /kill?node=, /stop, /start, GET /probe?from=&to=)\n", ctrl)
	}
	<-ctx.Done()
	fmt.Println("relaymesh lab: stopping")
	return l.Close()
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, " ") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }
