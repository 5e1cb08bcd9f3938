// Command bench runs the standard load-test suite against `relaymesh dev`
// processes it starts itself on 127.0.0.1, and writes the figures into
// docs/BENCHMARKS.md between the "bench:begin" and "bench:end" markers
// (the hand-written analysis around them is kept). scripts/bench.sh builds
// the binaries, runs the Go micro-benchmarks and then this program; `make
// bench` runs scripts/bench.sh.
//
// The suite (each step run --repeat times; the machine is shared, so the
// figures are noisy and every repetition is reported):
//
//   - connect: 15,000 idle sessions over 4 worker processes and source
//     addresses 127.0.0.1–127.0.0.8 on a fresh server; server RSS per
//     session with the pre-run baseline subtracted.
//   - pairs: 2,000 sessions (1,000 one-to-one conversations) at a
//     sustainable rate, then a rate sweep up to 10,000 msgs/s to find where
//     send→ack p99 crosses 10 ms and where throughput saturates.
//   - group: one conversation of 500 members, a rate sweep to find the
//     fan-out deliveries/s at saturation, then a run at half of it for the
//     delivery p99.
//   - chatroom: one chatroom of 5,000 members over 4 worker processes and
//     source addresses 127.0.0.1–127.0.0.8, 8 senders, priority mix
//     high=0.1,normal=0.6,low=0.3, offered beyond the fan-out saturation;
//     per priority delivered/expected, delivery latency and the edge's
//     dropped frames (about a minute with its drain).
//
// With --lab it runs the long soaks instead (make lab): a 10-minute pairs
// run and a 15k-session reconnect storm.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

type config struct {
	relaymesh, loadtest string
	doc, micro, workDir string
	repeat              int
	addr                string
	lab                 bool
}

func main() {
	var c config
	flag.StringVar(&c.relaymesh, "relaymesh", "bin/relaymesh", "relaymesh binary")
	flag.StringVar(&c.loadtest, "loadtest", "bin/relaymesh-loadtest", "relaymesh-loadtest binary")
	flag.StringVar(&c.doc, "doc", "docs/BENCHMARKS.md", "document to write the results into")
	flag.StringVar(&c.micro, "micro", "", "file with the output of the Go micro-benchmarks, quoted in the document")
	flag.StringVar(&c.workDir, "work", "", "directory for data, logs and JSON/HTML reports (default: a temporary one)")
	flag.IntVar(&c.repeat, "repeat", 2, "runs of each measurement")
	flag.StringVar(&c.addr, "addr", "127.0.0.1:18180", "address of the dev server (must be 127.0.0.x; port+1/udp is used too)")
	flag.BoolVar(&c.lab, "lab", false, "run the long soaks (make lab) instead of the standard suite")
	flag.Parse()
	if err := run(c); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(c config) error {
	if !strings.HasPrefix(c.addr, "127.0.0.") {
		return fmt.Errorf("--addr %q: load runs only target 127.0.0.x", c.addr)
	}
	raiseNoFile()
	if c.workDir == "" {
		d, err := os.MkdirTemp("", "relaymesh-bench-")
		if err != nil {
			return err
		}
		c.workDir = d
	}
	if err := os.MkdirAll(c.workDir, 0o755); err != nil {
		return err
	}
	logf("work directory %s", c.workDir)
	b := &bench{cfg: c, started: time.Now()}
	if c.lab {
		return b.lab()
	}
	if err := b.suite(); err != nil {
		return err
	}
	return b.writeDoc()
}

// raiseNoFile lifts this process's open-file limit to the hard limit
// (20,000 here); the dev server and the workers inherit it.
func raiseNoFile() {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) == nil && l.Cur < l.Max {
		l.Cur = l.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}

// summary is the part of the load tester's JSON summary the suite reads.
type summary struct {
	Scenario          string  `json:"scenario"`
	Sessions          int     `json:"sessions"`
	ConnectFailed     int     `json:"connect_failed"`
	Rate              float64 `json:"rate"`
	Sent              int64   `json:"sent"`
	Acked             int64   `json:"acked"`
	Delivered         int64   `json:"delivered"`
	Expected          int64   `json:"expected"`
	Lost              int64   `json:"lost"`
	Duplicates        int64   `json:"duplicates"`
	LatencyMS         quant   `json:"latency_ms"`
	DeliveryLatencyMS quant   `json:"delivery_latency_ms"`
	ConnectLatencyMS  quant   `json:"connect_latency_ms"`
	RecoverAllMS      float64 `json:"recover_all_ms"`
	ThroughputPerS    float64 `json:"throughput_per_s"`
	DeliveriesPerS    float64 `json:"deliveries_per_s"`
	RSS               int64   `json:"server_rss_bytes"`
	RSSBaseline       int64   `json:"server_rss_baseline_bytes"`
	RSSPerSession     float64 `json:"server_rss_bytes_per_session"`
	SendErrors        int64   `json:"send_errors"`
	Behind            int64   `json:"behind"`
	Passed            bool    `json:"passed"`
	Chatroom          *struct {
		Members    []int   `json:"members"`
		FanoutPerS float64 `json:"fanout_deliveries_per_s"`
		Priorities map[string]*struct {
			Sent              int64   `json:"sent"`
			Acked             int64   `json:"acked"`
			Expected          int64   `json:"expected"`
			Delivered         int64   `json:"delivered"`
			Missing           int64   `json:"missing"`
			DeliveredRatio    float64 `json:"delivered_ratio"`
			DeliveriesPerS    float64 `json:"deliveries_per_s"`
			DeliveryLatencyMS quant   `json:"delivery_latency_ms"`
			DroppedFrames     int64   `json:"dropped_frames"`
		} `json:"priorities"`
	} `json:"chatroom"`

	cmd  string // the load tester's command line
	file string // the JSON file
}

type quant struct {
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

type bench struct {
	cfg     config
	started time.Time
	n       int // runs so far, for file names

	devCmd   string
	connect  []*summary
	pairs    []*summary   // sustainable rate
	sweeps   [][]*summary // pairs rate sweep, per repetition
	groupSat [][]*summary // group rate sweep, per repetition
	groupMid []*summary   // group at half the saturated deliveries/s
	chat     []*summary   // chatroom beyond saturation
	notes    []string
}

// dev is one running relaymesh dev.
type dev struct {
	cmd    *exec.Cmd
	exited chan struct{}
}

func (b *bench) startDev() (*dev, error) {
	data := filepath.Join(b.cfg.workDir, fmt.Sprintf("data-%d", b.n))
	args := []string{"dev", "--data", data, "--addr", b.cfg.addr, "--log-level", "warn",
		"--sends-per-minute", "-1", "--logs-per-minute", "-1", "--ops-per-minute", "-1",
		"--max-conns-per-ip", "-1"} // every load client comes from 127.0.0.1
	b.devCmd = b.cfg.relaymesh + " " + strings.Join(args, " ")
	cmd := exec.Command(b.cfg.relaymesh, args...)
	logFile, err := os.Create(filepath.Join(b.cfg.workDir, fmt.Sprintf("dev-%d.log", b.n)))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, err
	}
	d := &dev{cmd: cmd, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); logFile.Close(); close(d.exited) }()
	hc := &http.Client{Timeout: time.Second}
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		select {
		case <-d.exited:
			return nil, fmt.Errorf("relaymesh dev exited; see %s", logFile.Name())
		default:
		}
		resp, err := hc.Get("http://" + b.cfg.addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				time.Sleep(time.Second) // let start-up garbage settle before the RSS baseline
				return d, nil
			}
		}
	}
	d.stop()
	return nil, errors.New("relaymesh dev not healthy within 30s")
}

func (d *dev) stop() {
	_ = d.cmd.Process.Signal(os.Interrupt)
	select {
	case <-d.exited:
	case <-time.After(20 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.exited
	}
}

// load runs the load tester with args (plus target and output) and reads
// its summary. A run that lost acked messages is reported, not fatal.
func (b *bench) load(d *dev, name string, args ...string) (*summary, error) {
	b.n++
	out := filepath.Join(b.cfg.workDir, fmt.Sprintf("%02d-%s.json", b.n, name))
	full := append([]string{"--target", "ws://" + b.cfg.addr + "/", "--progress", "-1s",
		"--server-pid", fmt.Sprint(d.cmd.Process.Pid), "--out", out}, args...)
	cmdline := "relaymesh-loadtest " + strings.Join(full, " ")
	logf("run %d: %s", b.n, cmdline)
	cmd := exec.Command(b.cfg.loadtest, full...)
	var stdout bytes.Buffer
	cmd.Stdout = io.MultiWriter(&stdout, os.Stderr)
	cmd.Stderr = os.Stderr
	t0 := time.Now()
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	raw, rerr := os.ReadFile(out)
	if rerr != nil {
		return nil, fmt.Errorf("%s: no summary (%v): %w", name, err, rerr)
	}
	var s summary
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, fmt.Errorf("%s: %s: %w", name, out, err)
	}
	s.cmd, s.file = strings.Replace(cmdline, fmt.Sprint(d.cmd.Process.Pid), "PID", 1), out
	if !s.Passed || s.Lost > 0 {
		what := "acked message copies"
		if s.Chatroom != nil {
			what = "acked HIGH chatroom copies (undelivered when the drain ended)"
		}
		b.notes = append(b.notes, fmt.Sprintf("run %d (%s) lost %d %s", b.n, name, s.Lost, what))
	}
	logf("run %d done in %.0fs: ack p99 %.2f ms, %.0f acked/s, %.0f deliveries/s, delivery p99 %.2f ms",
		b.n, time.Since(t0).Seconds(), s.LatencyMS.P99, s.ThroughputPerS, s.DeliveriesPerS, s.DeliveryLatencyMS.P99)
	return &s, nil
}

// Suite sizes. They fit 2 cores and the whole of `make bench` in about
// 15 minutes.
const (
	idleSessions  = 15000
	idleWorkers   = 4
	sourceIPs     = "127.0.0.1-127.0.0.8"
	pairsSessions = 2000
	pairsRate     = 1000 // the sustainable rate reported on its own
	groupSize     = 500
	chatMembers   = 5000
	chatRate      = 8 // msgs/s into the room: 40k deliveries/s offered, past the ~30k/s fan-out saturation
	chatMix       = "high=0.1,normal=0.6,low=0.3"
	groupSenders  = 10
	p99Target     = 10.0 // ms
)

var (
	sweepRates = []float64{1000, 2500, 5000, 7500, 10000}
	groupRates = []float64{5, 10, 20, 50} // msgs/s into the group; ×499 deliveries
)

func (b *bench) suite() error {
	for i := range b.cfg.repeat {
		// Idle sessions, each on a fresh server so the baseline is clean.
		d, err := b.startDev()
		if err != nil {
			return err
		}
		s, err := b.load(d, "connect", "--scenario", "connect", "--sessions", fmt.Sprint(idleSessions),
			"--workers", fmt.Sprint(idleWorkers), "--source-ips", sourceIPs, "--duration", "20s")
		d.stop()
		if err != nil {
			return err
		}
		b.connect = append(b.connect, s)

		d, err = b.startDev()
		if err != nil {
			return err
		}
		s, err = b.load(d, "pairs", "--scenario", "pairs", "--sessions", fmt.Sprint(pairsSessions),
			"--rate", fmt.Sprint(pairsRate), "--duration", "15s", "--workers", "2", "--source-ips", sourceIPs)
		if err != nil {
			d.stop()
			return err
		}
		b.pairs = append(b.pairs, s)
		var sweep []*summary
		for _, r := range sweepRates {
			s, err := b.load(d, fmt.Sprintf("pairs-%g", r), "--scenario", "pairs", "--sessions", fmt.Sprint(pairsSessions),
				"--rate", fmt.Sprint(r), "--duration", "8s", "--workers", "2", "--source-ips", sourceIPs)
			if err != nil {
				d.stop()
				return err
			}
			sweep = append(sweep, s)
			if saturated(s) {
				break // higher rates only queue up more
			}
		}
		b.sweeps = append(b.sweeps, sweep)
		d.stop()

		d, err = b.startDev()
		if err != nil {
			return err
		}
		var gs []*summary
		for _, r := range groupRates {
			s, err := b.load(d, fmt.Sprintf("group-%g", r), "--scenario", "group", "--sessions", fmt.Sprint(groupSize),
				"--group-size", fmt.Sprint(groupSize), "--senders", fmt.Sprint(groupSenders), "--rate", fmt.Sprint(r),
				"--duration", "8s", "--drain", "10s")
			if err != nil {
				d.stop()
				return err
			}
			gs = append(gs, s)
			if s.DeliveriesPerS < 0.9*r*(groupSize-1) {
				break
			}
		}
		b.groupSat = append(b.groupSat, gs)
		best := 0.0
		for _, s := range gs {
			best = max(best, s.DeliveriesPerS)
		}
		half := max(1, best/2/(groupSize-1))
		s, err = b.load(d, "group-half", "--scenario", "group", "--sessions", fmt.Sprint(groupSize),
			"--group-size", fmt.Sprint(groupSize), "--senders", fmt.Sprint(groupSenders), "--rate", fmt.Sprintf("%.1f", half),
			"--duration", "10s", "--drain", "10s")
		d.stop()
		if err != nil {
			return err
		}
		b.groupMid = append(b.groupMid, s)

		d, err = b.startDev()
		if err != nil {
			return err
		}
		s, err = b.load(d, "chatroom", "--scenario", "chatroom", "--sessions", fmt.Sprint(chatMembers),
			"--workers", fmt.Sprint(idleWorkers), "--source-ips", sourceIPs, "--rooms", "1", "--senders", "8",
			"--rate", fmt.Sprint(chatRate), "--priority-mix", chatMix, "--duration", "10s", "--drain", "30s")
		d.stop()
		if err != nil {
			return err
		}
		b.chat = append(b.chat, s)
		logf("repetition %d of %d done after %.0fs", i+1, b.cfg.repeat, time.Since(b.started).Seconds())
	}
	return nil
}

// saturated: the server no longer keeps up with the offered rate.
func saturated(s *summary) bool {
	return s.ThroughputPerS < 0.9*s.Rate || s.Behind > 0 || s.SendErrors > 0
}

// lab runs the long soaks: a 10-minute pairs run and a reconnect storm of
// 15,000 sessions. Results go to the work directory and stderr only.
func (b *bench) lab() error {
	d, err := b.startDev()
	if err != nil {
		return err
	}
	_, err = b.load(d, "soak-pairs", "--scenario", "pairs", "--sessions", "4000", "--rate", "1000",
		"--duration", "10m", "--workers", "2", "--source-ips", sourceIPs, "--progress", "30s")
	d.stop()
	if err != nil {
		return err
	}
	d, err = b.startDev()
	if err != nil {
		return err
	}
	_, err = b.load(d, "soak-reconnect", "--scenario", "reconnect", "--sessions", fmt.Sprint(idleSessions),
		"--workers", fmt.Sprint(idleWorkers), "--source-ips", sourceIPs, "--duration", "60s", "--drain", "60s")
	d.stop()
	if err != nil {
		return err
	}
	for _, n := range b.notes {
		logf("FAIL: %s", n)
	}
	if len(b.notes) > 0 {
		return errors.New("acked messages were lost")
	}
	logf("lab done in %s; reports in %s", time.Since(b.started).Round(time.Second), b.cfg.workDir)
	return nil
}
