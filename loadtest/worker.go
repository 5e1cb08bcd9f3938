package loadtest

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/relaymesh/relaymesh/client"
)

// Report is what one worker measured; the coordinator merges them.
type Report struct {
	Worker         int             `json:"worker"`
	Sessions       int             `json:"sessions"` // logged in
	ConnectFailed  int             `json:"connect_failed"`
	Counts         Counts          `json:"counts"`
	Connect        *Hist           `json:"connect"`
	Ack            *Hist           `json:"ack"`
	Deliver        *Hist           `json:"deliver"`
	Recover        *Hist           `json:"recover"` // reconnect: drop → unread state back, per session
	AckSeries      map[int]*Hist   `json:"ack_series"`
	DeliverSeries  map[int]*Hist   `json:"deliver_series"`
	SendSeconds    float64         `json:"send_seconds"`
	SendErrors     int64           `json:"send_errors"`
	SendErrorCodes map[int32]int64 `json:"send_error_codes,omitempty"` // LeanCloud code → count
	Behind         int64           `json:"behind"`                     // sends skipped because too many were in flight
	Closed         int64           `json:"sessions_closed"`
	Reconnects     int64           `json:"reconnects"`
	Unrecovered    int64           `json:"unrecovered"` // reconnect: sessions whose unread state did not come back
	EventsDropped  int64           `json:"events_dropped"`
	// Config.Loss: datagrams through the sessions' QUIC sockets (both
	// ways) and dropped.
	LossWritten int64 `json:"loss_written,omitempty"`
	LossDropped int64 `json:"loss_dropped,omitempty"`
	// SendErrorKinds counts failed sends without a LeanCloud code:
	// "timeout", "connection lost", "session closed", "other".
	SendErrorKinds map[string]int64 `json:"send_error_kinds,omitempty"`
	// Sessions whose connection was lost at least once, and of them those
	// still reconnecting when the run ended; Down: connection lost →
	// session open again (client.Reconnected.Down), per reconnect.
	Disconnected int64        `json:"sessions_disconnected"`
	DownAtEnd    int64        `json:"sessions_down_at_end"`
	Down         *Hist        `json:"down"`
	Fault        *FaultReport `json:"fault,omitempty"`
	Errors       []string     `json:"errors,omitempty"`
	Chat         *ChatReport  `json:"chat,omitempty"` // chatroom scenario
	// Pairs: cross-region, per region pair "from->to" (crossregion.go).
	Pairs map[string]*PairReport `json:"pairs,omitempty"`
}

// Progress is a worker's state, reported every Config.Progress.
type Progress struct {
	Worker    int     `json:"worker"`
	Phase     string  `json:"phase"` // connecting, setup, ready (chatroom: waiting for the others), steady, draining, syncing (Config.FinalSync), closing, done
	Connected int     `json:"connected"`
	Sent      int     `json:"sent"`
	Acked     int     `json:"acked"`
	P99       float64 `json:"p99_ms"`
}

// worker runs the sessions of one slice of the run.
type worker struct {
	cfg    Config
	index  int
	first  int // global index of the first session
	n      int // sessions in this slice
	share  float64
	start  time.Time
	ledger *Ledger
	chat   *chatLedger // chatroom scenario; set by its setup
	dialer *netDialer
	http   *http.Client // dials through dialer; every session's HTTPClient
	cfAPI  *http.Client // Config.Peer centrifugo: the server API's client

	hashMu sync.Mutex
	hashes map[string][][]byte // guarded by hashMu; webtransport certificate hashes per target

	connectH, ackH, deliverH, recoverH, downH *Hist
	ackS, deliverS                            *Series

	sendErrors, behind, sessionsClosed, reconnects, unrecovered, eventsDropped atomic.Int64
	lossWritten, lossDropped                                                   atomic.Int64
	connected, connectFailed, disconnected                                     atomic.Int64

	mu      sync.Mutex
	phase   string           // guarded by mu
	errors  []string         // guarded by mu; first few errors
	codes   map[int32]int64  // guarded by mu; failed sends by LeanCloud code
	kinds   map[string]int64 // guarded by mu; failed sends without a code
	faultAt time.Time        // guarded by mu; when Config.Fault ran
	faultE  error            // guarded by mu; what it returned
	all     []*session       // guarded by mu; every session that logged in
	// downAtEnd: sessions still reconnecting after the drain (countDown).
	downAtEnd int64                 // guarded by mu
	pairs     map[string]*pairHists // guarded by mu; cross-region latencies by region pair
}

// countKind counts a failed send without a LeanCloud code.
func (w *worker) countKind(kind string) {
	w.mu.Lock()
	if w.kinds == nil {
		w.kinds = make(map[string]int64)
	}
	w.kinds[kind]++
	w.mu.Unlock()
}

func (w *worker) countCode(code int32) {
	w.mu.Lock()
	if w.codes == nil {
		w.codes = make(map[int32]int64)
	}
	w.codes[code]++
	w.mu.Unlock()
}

const maxErrors = 10

func (w *worker) noteErr(format string, a ...any) {
	w.mu.Lock()
	if len(w.errors) < maxErrors {
		w.errors = append(w.errors, fmt.Sprintf(format, a...))
	}
	w.mu.Unlock()
}

func (w *worker) setPhase(p string) {
	w.mu.Lock()
	w.phase = p
	w.mu.Unlock()
}

func (w *worker) progress() Progress {
	w.mu.Lock()
	phase := w.phase
	w.mu.Unlock()
	sent, acked := w.ledger.Progress()
	return Progress{Worker: w.index, Phase: phase, Connected: int(w.connected.Load()),
		Sent: sent, Acked: acked, P99: w.ackH.Quantiles().P99}
}

// slice returns the first session and the count of worker i of n for
// total sessions.
func slice(total, i, n int) (first, count int) {
	first = total * i / n
	return first, total*(i+1)/n - first
}

// RunWorker runs worker index of workers in this process and returns its
// report. onProgress is called twice a second and on phase changes.
func RunWorker(ctx context.Context, cfg Config, index, workers int, onProgress func(Progress)) (*Report, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	workers = max(workers, 1)
	first, n := slice(cfg.Sessions, index, workers)
	w := &worker{
		cfg: cfg, index: index, first: first, n: n, share: float64(n) / float64(cfg.Sessions),
		start: time.Now(), dialer: newNetDialer(cfg.SourceIPs),
		connectH: NewHist(), ackH: NewHist(), deliverH: NewHist(), recoverH: NewHist(), downH: NewHist(),
		phase: "connecting",
	}
	w.ackS, w.deliverS = NewSeries(w.start), NewSeries(w.start)
	w.ledger = NewLedger(index, func(d Duration) {
		w.deliverH.Record(d)
		w.deliverS.Record(time.Now(), d)
	})
	w.http = w.dialer.client()
	if cfg.Peer == PeerCentrifugo {
		w.cfAPI = cfAPIClient()
		defer w.cfAPI.CloseIdleConnections()
	}

	ctx, cancel := context.WithTimeout(ctx, w.budget())
	defer cancel()

	stopProgress := w.reportProgress(onProgress)
	rep, err := w.run(ctx)
	stopProgress()
	return rep, err
}

// budget bounds the whole run: logins, setup, duration, drain and teardown.
func (w *worker) budget() time.Duration {
	login := 60*time.Second + time.Duration(w.n/200)*time.Second
	if w.cfg.ConnectRate > 0 {
		login += time.Duration(float64(w.n) / (w.cfg.ConnectRate * w.share) * float64(time.Second))
	}
	return login + 2*w.cfg.Duration + w.cfg.Drain + 60*time.Second
}

func (w *worker) reportProgress(onProgress func(Progress)) (stop func()) {
	if onProgress == nil {
		return func() {}
	}
	// Report more often than the coordinator prints, so its line is fresh
	// and it can sample server RSS while every worker is steady.
	every := 500 * time.Millisecond
	if w.cfg.Progress > 0 {
		every = min(w.cfg.Progress, every)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		last := ""
		poll := time.NewTicker(100 * time.Millisecond)
		defer poll.Stop()
		for {
			select {
			case <-done:
				p := w.progress()
				p.Phase = "done"
				onProgress(p)
				return
			case <-t.C:
				p := w.progress()
				last = p.Phase
				onProgress(p)
			case <-poll.C:
				if p := w.progress(); p.Phase != last {
					last = p.Phase
					onProgress(p)
				}
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

func (w *worker) run(ctx context.Context) (*Report, error) {
	var sc scenario
	switch w.cfg.Scenario {
	case ScenarioConnect:
		sc = &connectScenario{w: w}
	case ScenarioPairs:
		sc = &pairsScenario{w: w}
	case ScenarioGroup:
		sc = &groupScenario{w: w}
	case ScenarioReconnect:
		sc = &reconnectScenario{w: w}
	case ScenarioChatroom:
		sc = &chatroomScenario{w: w}
	case ScenarioCrossRegion:
		sc = &crossRegionScenario{w: w}
	}
	var sendStart, sendEnd time.Time
	func() {
		defer func() {
			w.setPhase("closing")
			sc.teardown()
		}()
		if err := sc.setup(ctx); err != nil {
			w.noteErr("setup: %v", err)
			return
		}
		w.setPhase("steady")
		sendStart = time.Now()
		stopFault := w.scheduleFault()
		sc.steady(ctx)
		sendEnd = time.Now()
		w.setPhase("draining")
		w.drain(ctx)
		stopFault()
		if w.cfg.FinalSync {
			w.setPhase("syncing")
			w.finalSync(ctx)
		}
		w.countDown()
	}()
	rep := &Report{
		Worker: w.index, Sessions: int(w.connected.Load()), ConnectFailed: int(w.connectFailed.Load()),
		Counts: w.ledger.Settle(), Connect: w.connectH, Ack: w.ackH, Deliver: w.deliverH, Recover: w.recoverH,
		AckSeries: w.ackS.Windows(), DeliverSeries: w.deliverS.Windows(),
		SendErrors: w.sendErrors.Load(), Behind: w.behind.Load(), Closed: w.sessionsClosed.Load(),
		Reconnects: w.reconnects.Load(), Unrecovered: w.unrecovered.Load(), EventsDropped: w.eventsDropped.Load(),
		Disconnected: w.disconnected.Load(), Down: w.downH,
		LossWritten: w.lossWritten.Load(), LossDropped: w.lossDropped.Load(),
	}
	if !sendStart.IsZero() {
		rep.SendSeconds = sendEnd.Sub(sendStart).Seconds()
	}
	rep.Pairs = w.pairReports()
	if c, ok := sc.(*chatroomScenario); ok && w.chat != nil {
		rep.Chat = w.chat.report(int(rep.Counts.Sent), c.joined, c.joinFailed, c.snap)
		rep.Chat.DeliverSpanS = w.chat.deliverSpan(sendStart)
	}
	w.mu.Lock()
	rep.Errors = append(rep.Errors, w.errors...)
	rep.SendErrorCodes = w.codes
	rep.SendErrorKinds = w.kinds
	rep.DownAtEnd = w.downAtEnd
	if !w.faultAt.IsZero() {
		rep.Fault = &FaultReport{AtUnixMS: w.faultAt.UnixMilli(), AfterS: w.faultAt.Sub(sendStart).Seconds(),
			Counts: w.ledger.SettleFault(w.faultAt)}
		if w.faultE != nil {
			rep.Fault.Err = w.faultE.Error()
		}
	}
	w.mu.Unlock()
	return rep, nil
}

// scheduleFault runs Config.Fault FaultAfter from now, once, unless stop
// is called first; stop waits for a Fault that is running.
func (w *worker) scheduleFault() (stop func()) {
	if w.cfg.Fault == nil {
		return func() {}
	}
	done := make(chan struct{})
	t := time.AfterFunc(w.cfg.FaultAfter, func() {
		defer close(done)
		err := w.cfg.Fault()
		at := time.Now()
		w.mu.Lock()
		w.faultAt, w.faultE = at, err
		w.mu.Unlock()
	})
	return func() {
		if t.Stop() {
			return
		}
		<-done
	}
}

// countDown counts the sessions still reconnecting now (after the drain).
func (w *worker) countDown() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, s := range w.all {
		if s.down.Load() && !s.closed.Load() {
			w.downAtEnd++
		}
	}
}

// drain waits after sending stopped until every expected copy arrived, no
// copy arrived for a second, or cfg.Drain passed (chatroom: chatLedger.drain).
func (w *worker) drain(ctx context.Context) {
	if w.chat != nil {
		w.chat.drain(ctx, w)
		return
	}
	deadline := time.Now().Add(w.cfg.Drain)
	last, lastChange := w.ledger.Received(), time.Now()
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if w.ledger.Outstanding() == 0 {
			return
		}
		time.Sleep(100 * time.Millisecond)
		if r := w.ledger.Received(); r != last {
			last, lastChange = r, time.Now()
		} else if time.Since(lastChange) > time.Second {
			return
		}
	}
}

// scenario is one way of loading the server.
type scenario interface {
	setup(ctx context.Context) error // log in, create conversations
	steady(ctx context.Context)      // send or idle for cfg.Duration
	teardown()                       // close every session
}

// certHashes returns target's WebTransport certificate hashes, fetched
// once; nil (each client fetches its own) when that failed.
func (w *worker) certHashes(target string) [][]byte {
	w.hashMu.Lock()
	defer w.hashMu.Unlock()
	if h, ok := w.hashes[target]; ok {
		return h
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h, err := client.WebTransportCertHashes(ctx, w.http, target)
	if err != nil {
		w.noteErr("webtransport certificate hash of %s: %v", target, err)
	}
	if w.hashes == nil {
		w.hashes = make(map[string][][]byte)
	}
	w.hashes[target] = h
	return h
}

// options are the client options of session s; a chatroom slow reader
// pauses Config.SlowReadDelay after each push.
func (w *worker) options(s *session) client.Options {
	o := client.Options{
		AppID: w.cfg.AppID, ClientID: s.id,
		EventBuffer:  1024,
		ReconnectMin: 200 * time.Millisecond, ReconnectMax: 2 * time.Second,
		RequestTimeout: 20 * time.Second,
		AckInterval:    w.cfg.AckInterval,
		HTTPClient:     w.http,
		Servers:        s.servers,
		Router:         s.router,
		// A session that reconnects reads what it missed (late copies in
		// the ledger); the reconnect scenario measures its own recovery.
		Resync: w.cfg.Scenario != ScenarioReconnect,
	}
	if os.Getenv("RELAYMESH_LOADTEST_CLIENT_LOG") != "" {
		// Debugging a run: every session's client log (Info and up) on
		// stderr, named by its clientId.
		o.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("session", s.id)
	}
	if s.slow {
		o.ReadDelay = w.cfg.SlowReadDelay
	}
	o.Transport = w.cfg.Transport
	if o.Transport == TransportWebTransport {
		// As a page does: the certificate hash is fetched once (per
		// target), not on every login, so connect latency is the
		// transport's.
		o.CertHashes = w.certHashes(s.target)
	}
	return o
}

// newSessions makes n sessions named prefix-<global index>, spread over
// the targets, with network group grp.
func (w *worker) newSessions(prefix string, first, n int, grp string) []*session {
	out := make([]*session, n)
	for i := range out {
		g := first + i
		t := w.cfg.Targets[g%len(w.cfg.Targets)]
		s := &session{id: fmt.Sprintf("lt-%s-%s%d", w.cfg.RunID, prefix, g), target: withGroup(t, grp), w: w}
		// The other targets, in turn after this one: where the session
		// goes when its edge is lost.
		for k := 1; k < len(w.cfg.Targets); k++ {
			s.servers = append(s.servers, withGroup(w.cfg.Targets[(g+k)%len(w.cfg.Targets)], grp))
		}
		for _, f := range w.cfg.Fallbacks {
			s.servers = append(s.servers, withGroup(f, grp))
		}
		out[i] = s
	}
	return out
}

// loginAll logs in every session at the worker's share of the connect
// rate, cfg.Concurrency at a time; it returns the sessions that made it.
func (w *worker) loginAll(ctx context.Context, ss []*session) []*session {
	rate := w.cfg.ConnectRate * w.share
	sem := make(chan struct{}, w.cfg.Concurrency)
	var wg sync.WaitGroup
	ok := make([]bool, len(ss))
	start := time.Now()
	for i, s := range ss {
		if rate > 0 {
			due := start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				select {
				case <-time.After(d):
				case <-ctx.Done():
				}
			}
		}
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			t0 := time.Now()
			if err := s.login(ctx, w.options(s)); err != nil {
				w.connectFailed.Add(1)
				w.noteErr("login %s: %v", s.id, err)
				return
			}
			w.connectH.Record(time.Since(t0))
			w.connected.Add(1)
			w.mu.Lock()
			w.all = append(w.all, s)
			w.mu.Unlock()
			ok[i] = true
		})
	}
	wg.Wait()
	var out []*session
	for i, s := range ss {
		if ok[i] {
			out = append(out, s)
		}
	}
	return out
}

// closeAll closes sessions, cfg.Concurrency at a time.
func (w *worker) closeAll(ss []*session) {
	sem := make(chan struct{}, w.cfg.Concurrency)
	var wg sync.WaitGroup
	for _, s := range ss {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			s.close()
		})
	}
	wg.Wait()
}

// parallel runs f for each i in [0,n), cfg.Concurrency at a time.
func (w *worker) parallel(ctx context.Context, n int, f func(i int)) {
	sem := make(chan struct{}, w.cfg.Concurrency)
	var wg sync.WaitGroup
	for i := range n {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			f(i)
		})
	}
	wg.Wait()
}
