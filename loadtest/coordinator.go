package loadtest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

// workerLine is one line a worker process writes on stdout.
type workerLine struct {
	Progress *Progress `json:"progress,omitempty"`
	Report   *Report   `json:"report,omitempty"`
	Error    string    `json:"error,omitempty"`
}

// WorkerMain runs worker index of workers and writes its progress and
// final report to out as JSON lines, for the coordinator.
func WorkerMain(ctx context.Context, cfg Config, index, workers int, out io.Writer) error {
	var mu sync.Mutex
	enc := json.NewEncoder(out)
	write := func(l workerLine) {
		mu.Lock()
		_ = enc.Encode(l)
		mu.Unlock()
	}
	rep, err := RunWorker(ctx, cfg, index, workers, func(p Progress) { write(workerLine{Progress: &p}) })
	if err != nil {
		write(workerLine{Error: err.Error()})
		return err
	}
	write(workerLine{Report: rep})
	return nil
}

// Run runs the load test: in this process, or with cfg.Workers > 1 in
// that many worker processes. It prints progress lines to progress and
// returns the merged summary.
func Run(ctx context.Context, cfg Config, progress io.Writer) (*Summary, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if progress == nil {
		progress = io.Discard
	}
	workers := max(cfg.Workers, 1)
	probe := newRSSProbe(cfg.Targets, cfg.ServerPID)
	var countersBefore edgeCounters
	countersOK := false
	if cfg.Scenario == ScenarioChatroom {
		if len(cfg.ChatRoomIDs) == 0 {
			ids, err := createChatRooms(ctx, cfg)
			if err != nil {
				return nil, err
			}
			cfg.ChatRoomIDs = ids
		}
		countersBefore, countersOK = probe.edgeCounters()
	}
	m := newMonitor(cfg, workers, progress, probe)
	start := time.Now()

	var reports []*Report
	var err error
	if workers == 1 {
		var r *Report
		r, err = RunWorker(ctx, cfg, 0, 1, m.update)
		if r != nil {
			reports = append(reports, r)
		}
	} else {
		reports, err = runWorkers(ctx, cfg, workers, m.update)
	}
	m.stop()
	if err != nil && len(reports) == 0 {
		return nil, err
	}
	s := buildSummary(cfg, workers, reports, time.Since(start))
	s.Started = start.UTC().Format(time.RFC3339)
	m.rss(s)
	if c := s.Chatroom; c != nil && countersOK {
		if after, ok := probe.edgeCounters(); ok {
			d := after.sub(countersBefore)
			c.MetricsSource = strings.Join(probe.metrics, ",")
			for i, name := range prioNames {
				c.Priorities[name].DroppedFrames = d.dropped[i]
			}
			c.EdgeOverflowCloses = d.overflowCloses
		}
	}
	if err != nil {
		s.Errors = append(s.Errors, err.Error())
	}
	return s, nil
}

// runWorkers starts the worker processes and collects their reports.
func runWorkers(ctx context.Context, cfg Config, n int, onProgress func(Progress)) ([]*Report, error) {
	argv := cfg.WorkerCommand
	if len(argv) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("loadtest: find own executable for workers: %w", err)
		}
		argv = append([]string{exe}, os.Args[1:]...)
	}
	reports := make([]*Report, n)
	errs := make([]error, n)
	var g *gate
	if cfg.Scenario == ScenarioChatroom {
		g = newGate(n)
		defer g.releaseAll()
	}
	var wg sync.WaitGroup
	for i := range n {
		args := append(append([]string(nil), argv[1:]...),
			"--run-id", cfg.RunID, "--worker", workerArg(i, n))
		if len(cfg.ChatRoomIDs) > 0 {
			args = append(args, "--chatroom-ids", strings.Join(cfg.ChatRoomIDs, ","))
		}
		cmd := exec.CommandContext(ctx, argv[0], args...)
		cmd.Stderr = os.Stderr
		if g != nil {
			in, err := cmd.StdinPipe()
			if err != nil {
				return nil, fmt.Errorf("loadtest: worker %d: %w", i, err)
			}
			g.stdin[i] = in
		}
		// On cancel ask the worker to stop (it still reports), then kill.
		cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
		cmd.WaitDelay = 30 * time.Second
		out, err := cmd.StdoutPipe()
		if err != nil {
			return nil, fmt.Errorf("loadtest: worker %d: %w", i, err)
		}
		if err := cmd.Start(); err != nil {
			return nil, fmt.Errorf("loadtest: start worker %d: %w", i, err)
		}
		wg.Go(func() {
			sc := bufio.NewScanner(out)
			sc.Buffer(make([]byte, 1<<20), 1<<30)
			for sc.Scan() {
				var l workerLine
				if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
					continue // not ours
				}
				switch {
				case l.Progress != nil:
					if g != nil && l.Progress.Phase != "connecting" && l.Progress.Phase != "setup" {
						g.ready(i)
					}
					onProgress(*l.Progress)
				case l.Report != nil:
					reports[i] = l.Report
				case l.Error != "":
					errs[i] = errors.New(l.Error)
				}
			}
			if g != nil {
				g.ready(i) // an exited worker holds nobody up
			}
			if err := cmd.Wait(); err != nil && errs[i] == nil && reports[i] == nil {
				errs[i] = fmt.Errorf("loadtest: worker %d: %w", i, err)
			}
		})
	}
	wg.Wait()
	var ok []*Report
	for _, r := range reports {
		if r != nil {
			ok = append(ok, r)
		}
	}
	return ok, errors.Join(errs...)
}

// gate holds chatroom workers after their setup (Config.Gate is their
// stdin) until every worker has joined its sessions to the rooms or ended,
// so that every room is full before anyone sends.
type gate struct {
	stdin []io.WriteCloser // set before the workers start

	mu       sync.Mutex
	isReady  []bool // guarded by mu
	released bool   // guarded by mu
}

func newGate(n int) *gate { return &gate{stdin: make([]io.WriteCloser, n), isReady: make([]bool, n)} }

// ready marks worker i ready (or gone) and releases all when it was the last.
func (g *gate) ready(i int) {
	g.mu.Lock()
	g.isReady[i] = true
	for _, r := range g.isReady {
		if !r {
			g.mu.Unlock()
			return
		}
	}
	g.mu.Unlock()
	g.releaseAll()
}

// releaseAll lets every worker go: a line, then EOF, on each stdin.
func (g *gate) releaseAll() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.released {
		return
	}
	g.released = true
	for _, w := range g.stdin {
		if w != nil {
			_, _ = io.WriteString(w, "go\n")
			_ = w.Close()
		}
	}
}

// monitor aggregates worker progress, prints the live line and samples
// server RSS while every worker is steady.
type monitor struct {
	cfg      Config
	workers  int
	out      io.Writer
	probe    *rssProbe
	start    time.Time
	baseline int64
	done     chan struct{}
	wg       sync.WaitGroup

	mu         sync.Mutex
	latest     map[int]Progress // guarded by mu
	peakRSS    int64            // guarded by mu
	peakAt     int              // guarded by mu; sessions connected at peakRSS
	lastSample time.Time        // guarded by mu
	lastAcked  int              // guarded by mu
	lastTick   time.Time        // guarded by mu
}

func newMonitor(cfg Config, workers int, out io.Writer, probe *rssProbe) *monitor {
	m := &monitor{cfg: cfg, workers: workers, out: out, probe: probe, start: time.Now(),
		done: make(chan struct{}), latest: make(map[int]Progress)}
	m.baseline, _ = probe.sample()
	m.lastTick = m.start
	if cfg.Progress > 0 {
		m.wg.Go(m.loop)
	}
	return m
}

func (m *monitor) update(p Progress) {
	m.mu.Lock()
	m.latest[p.Worker] = p
	steady := len(m.latest) == m.workers
	conn := 0
	for _, q := range m.latest {
		steady = steady && q.Phase == "steady"
		conn += q.Connected
	}
	due := time.Since(m.lastSample) > 500*time.Millisecond
	if steady && due {
		m.lastSample = time.Now()
	}
	m.mu.Unlock()
	if !steady || !due {
		return
	}
	if rss, _ := m.probe.sample(); rss > 0 {
		m.mu.Lock()
		if rss > m.peakRSS {
			m.peakRSS, m.peakAt = rss, conn
		}
		m.mu.Unlock()
	}
}

func (m *monitor) loop() {
	t := time.NewTicker(m.cfg.Progress)
	defer t.Stop()
	for {
		select {
		case <-m.done:
			return
		case <-t.C:
			fmt.Fprintln(m.out, m.line())
		}
	}
}

// line is the live progress line.
func (m *monitor) line() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var conn, sent, acked int
	var p99 float64
	phase := ""
	for _, p := range m.latest {
		conn += p.Connected
		sent += p.Sent
		acked += p.Acked
		p99 = max(p99, p.P99)
		phase = p.Phase
	}
	now := time.Now()
	rate := float64(acked-m.lastAcked) / now.Sub(m.lastTick).Seconds()
	m.lastAcked, m.lastTick = acked, now
	return fmt.Sprintf("[%5.0fs] %-10s sessions %d/%d  sent %d  acked %d  %.0f msg/s  ack p99 %.1f ms",
		now.Sub(m.start).Seconds(), phase, conn, m.cfg.Sessions, sent, acked, rate, p99)
}

func (m *monitor) stop() {
	close(m.done)
	m.wg.Wait()
}

// rss fills the server memory figures of s.
func (m *monitor) rss(s *Summary) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s.RSSSource = m.probe.Source()
	if m.peakRSS <= 0 {
		return
	}
	s.ServerRSSBytes = m.peakRSS
	s.ServerRSSBaselineBytes = m.baseline
	if m.peakAt > 0 && m.baseline > 0 {
		s.ServerRSSBytesPerSession = float64(m.peakRSS-m.baseline) / float64(m.peakAt)
	}
}

// workerArg formats the hidden --worker flag value.
func workerArg(i, n int) string { return strconv.Itoa(i) + "/" + strconv.Itoa(n) }

// ParseWorkerArg parses the hidden --worker flag value "i/n".
func ParseWorkerArg(s string) (i, n int, err error) {
	if _, err := fmt.Sscanf(s, "%d/%d", &i, &n); err != nil || n < 1 || i < 0 || i >= n {
		return 0, 0, fmt.Errorf("loadtest: bad --worker %q, want i/n", s)
	}
	return i, n, nil
}
