package loadtest

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Summary is the result of a run: the JSON written by --out, and what the
// human summary and the HTML report show.
type Summary struct {
	Scenario          string   `json:"scenario"`
	Targets           []string `json:"targets"`
	Started           string   `json:"started"`
	ElapsedS          float64  `json:"elapsed_s"`
	Workers           int      `json:"workers"`
	SessionsRequested int      `json:"sessions_requested"`
	Sessions          int      `json:"sessions"` // logged in
	ConnectFailed     int      `json:"connect_failed"`
	Rate              float64  `json:"rate"`
	DurationS         float64  `json:"duration_s"`

	Counts // sent, acked, delivered, expected, lost, duplicates, ...

	LatencyMS         Quantiles  `json:"latency_ms"`          // send → ack
	DeliveryLatencyMS Quantiles  `json:"delivery_latency_ms"` // send → live copy at a recipient
	ConnectLatencyMS  Quantiles  `json:"connect_latency_ms"`  // dial → session/opened
	RecoverMS         *Quantiles `json:"recover_ms,omitempty"`
	// RecoverAllMS is the reconnect scenario's headline: from the network
	// coming back until every session had its unread state again.
	RecoverAllMS   float64 `json:"recover_all_ms,omitempty"`
	ThroughputPerS float64 `json:"throughput_per_s"` // acked messages per second of sending
	DeliveriesPerS float64 `json:"deliveries_per_s"`

	ServerRSSBytes           int64   `json:"server_rss_bytes,omitempty"`
	ServerRSSBaselineBytes   int64   `json:"server_rss_baseline_bytes,omitempty"`
	ServerRSSBytesPerSession float64 `json:"server_rss_bytes_per_session,omitempty"`
	RSSSource                string  `json:"rss_source,omitempty"`

	SendErrors     int64           `json:"send_errors"`
	SendErrorCodes map[int32]int64 `json:"send_error_codes,omitempty"` // LeanCloud code → count
	Behind         int64           `json:"behind"`
	SessionsClosed int64           `json:"sessions_closed"`
	Reconnects     int64           `json:"reconnects"`
	Unrecovered    int64           `json:"unrecovered"`
	EventsDropped  int64           `json:"events_dropped"`
	Transport      string          `json:"transport,omitempty"`
	Peer           string          `json:"peer,omitempty"`         // Config.Peer: "centrifugo" when not relaymesh
	LossWritten    int64           `json:"loss_written,omitempty"` // Config.Loss: datagrams through the lossy sockets, both ways
	LossDropped    int64           `json:"loss_dropped,omitempty"` // and dropped by them
	// SendErrorKinds: failed sends without a LeanCloud code, by kind
	// ("timeout", "connection lost", "session closed", "other").
	SendErrorKinds map[string]int64 `json:"send_error_kinds,omitempty"`
	// Sessions that lost their connection, those still reconnecting when
	// the run ended, and connection lost → session open again.
	SessionsDisconnected int64     `json:"sessions_disconnected"`
	SessionsDownAtEnd    int64     `json:"sessions_down_at_end"`
	DownMS               Quantiles `json:"down_ms"`
	// Fault: the sends settled around Config.Fault (--kill-pid).
	Fault *FaultSummary `json:"fault,omitempty"`

	Errors []string `json:"errors,omitempty"`
	Passed bool     `json:"passed"` // no acked message lost (chatroom: no acked HIGH copy lost)

	// Chatroom: per-priority delivery, shedding and dropped frames.
	Chatroom *ChatroomSummary `json:"chatroom,omitempty"`
	// RegionPairs: cross-region, the ledger and latencies per region pair
	// "from->to" (crossregion.go).
	RegionPairs map[string]*RegionPairSummary `json:"region_pairs,omitempty"`

	AckSeconds        SecondTail `json:"ack_seconds"` // AckSeries by second
	AckSeries         []Point    `json:"ack_series"`
	DeliverySeries    []Point    `json:"delivery_series"`
	AckHistogram      []Bucket   `json:"ack_histogram"` // µs buckets
	DeliveryHistogram []Bucket   `json:"delivery_histogram"`
}

// FaultSummary is the fault of a run and the sends around it.
type FaultSummary struct {
	AfterS float64 `json:"after_s"` // seconds into the sending
	Err    string  `json:"error,omitempty"`
	FaultCounts
}

// buildSummary merges the workers' reports.
func buildSummary(cfg Config, workers int, reports []*Report, elapsed time.Duration) *Summary {
	s := &Summary{
		Scenario: cfg.Scenario, Targets: cfg.Targets, Transport: cfg.Transport, Peer: cfg.Peer, ElapsedS: elapsed.Seconds(), Workers: workers,
		SessionsRequested: cfg.Sessions, Rate: cfg.Rate, DurationS: cfg.Duration.Seconds(),
	}
	conn, ack, del, rec, down := NewHist(), NewHist(), NewHist(), NewHist(), NewHist()
	ackW, delW := map[int]*Hist{}, map[int]*Hist{}
	var sendSec float64
	for _, r := range reports {
		s.Sessions += r.Sessions
		s.ConnectFailed += r.ConnectFailed
		s.Counts.Add(r.Counts)
		conn.Merge(r.Connect)
		ack.Merge(r.Ack)
		del.Merge(r.Deliver)
		rec.Merge(r.Recover)
		mergeWindows(ackW, r.AckSeries)
		mergeWindows(delW, r.DeliverSeries)
		sendSec = max(sendSec, r.SendSeconds)
		s.SendErrors += r.SendErrors
		for c, n := range r.SendErrorCodes {
			if s.SendErrorCodes == nil {
				s.SendErrorCodes = make(map[int32]int64)
			}
			s.SendErrorCodes[c] += n
		}
		s.Behind += r.Behind
		s.SessionsClosed += r.Closed
		s.Reconnects += r.Reconnects
		s.Unrecovered += r.Unrecovered
		s.EventsDropped += r.EventsDropped
		s.LossWritten += r.LossWritten
		s.LossDropped += r.LossDropped
		for k, n := range r.SendErrorKinds {
			if s.SendErrorKinds == nil {
				s.SendErrorKinds = make(map[string]int64)
			}
			s.SendErrorKinds[k] += n
		}
		s.SessionsDisconnected += r.Disconnected
		s.SessionsDownAtEnd += r.DownAtEnd
		down.Merge(r.Down)
		if f := r.Fault; f != nil {
			if s.Fault == nil {
				s.Fault = &FaultSummary{AfterS: f.AfterS, Err: f.Err, FaultCounts: FaultCounts{FirstAckAfterMS: -1}}
			}
			s.Fault.merge(f.Counts)
		}
		for _, e := range r.Errors {
			if len(s.Errors) < 3*maxErrors {
				s.Errors = append(s.Errors, fmt.Sprintf("worker %d: %s", r.Worker, e))
			}
		}
	}
	s.LatencyMS, s.DeliveryLatencyMS, s.ConnectLatencyMS = ack.Quantiles(), del.Quantiles(), conn.Quantiles()
	s.DownMS = down.Quantiles()
	if rec.Count() > 0 {
		q := rec.Quantiles()
		s.RecoverMS, s.RecoverAllMS = &q, q.Max
	}
	if sendSec > 0 {
		s.ThroughputPerS = float64(s.Acked) / sendSec
		s.DeliveriesPerS = float64(s.Delivered) / sendSec
	}
	if cfg.Scenario == ScenarioChatroom {
		s.mergeChat(cfg, reports, sendSec)
		if sendSec > 0 {
			s.DeliveriesPerS = float64(s.Delivered) / sendSec
		}
	}
	s.mergePairs(reports)
	s.AckSeries, s.DeliverySeries = Points(ackW), Points(delW)
	s.AckSeconds = SecondsSummary(s.AckSeries)
	s.AckHistogram, s.DeliveryHistogram = ack.Buckets(), del.Buckets()
	s.Passed = s.Lost == 0 && len(reports) > 0 && s.Sessions > 0
	return s
}

// WriteFiles writes the JSON summary to path and the HTML report next to
// it (path with its extension replaced by .html).
func (s *Summary) WriteFiles(path string) (htmlPath string, err error) {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return "", fmt.Errorf("loadtest: write summary: %w", err)
	}
	htmlPath = strings.TrimSuffix(path, filepath.Ext(path)) + ".html"
	f, err := os.Create(htmlPath)
	if err != nil {
		return "", fmt.Errorf("loadtest: write report: %w", err)
	}
	if err := WriteHTML(f, s); err != nil {
		f.Close()
		return "", err
	}
	return htmlPath, f.Close()
}

// WriteText writes the human summary.
func (s *Summary) WriteText(w io.Writer) {
	p := func(format string, a ...any) { fmt.Fprintf(w, format+"\n", a...) }
	q := func(name string, x Quantiles) {
		if x.Count > 0 {
			p("  %-18s p50 %.1f  p90 %.1f  p99 %.1f  max %.1f ms  (n=%d)", name, x.P50, x.P90, x.P99, x.Max, x.Count)
		}
	}
	p("relaymesh-loadtest: %s, %d/%d sessions logged in (%d failed), %d worker(s), %.1fs",
		s.Scenario, s.Sessions, s.SessionsRequested, s.ConnectFailed, s.Workers, s.ElapsedS)
	if s.Sent > 0 {
		p("  messages: sent %d, acked %d, failed %d; %.1f acked/s", s.Sent, s.Acked, s.Failed, s.ThroughputPerS)
		p("  copies:   expected %d, delivered %d, late (via sync) %d, lost %d (after dedup %d)",
			s.Expected, s.Delivered, s.Late, s.Lost, s.LostAfterDedup)
		p("            duplicates %d (after dedup by message id %d), resynced %d, unexpected %d",
			s.Duplicates, s.DuplicatesAfterDedup, s.Resynced, s.Unexpected)
	}
	if s.Transport != "" {
		p("  transport: %s", s.Transport)
	}
	if s.Peer != "" {
		p("  server: %s", s.Peer)
	}
	if s.LossWritten > 0 {
		p("  injected loss: %d of %d datagrams dropped (both ways) (%.2f %%)", s.LossDropped, s.LossWritten,
			100*float64(s.LossDropped)/float64(s.LossWritten))
	}
	q("connect", s.ConnectLatencyMS)
	q("send→ack", s.LatencyMS)
	if t := s.AckSeconds; t.Seconds > 1 {
		p("  send→ack by second: p99 median %.1f, worst %.1f ms; %d of %d seconds over %d ms",
			t.MedianP99, t.WorstP99, t.Slow, t.Seconds, SlowSecondMS)
	}
	q("send→delivery", s.DeliveryLatencyMS)
	if s.RecoverMS != nil {
		q("reconnect→unread", *s.RecoverMS)
		p("  every session had its unread state again after %.0f ms (%d unrecovered)", s.RecoverAllMS, s.Unrecovered)
	}
	if s.ServerRSSBytes > 0 {
		p("  server RSS: %.1f MiB (baseline %.1f MiB), %.0f bytes per session [%s]",
			float64(s.ServerRSSBytes)/(1<<20), float64(s.ServerRSSBaselineBytes)/(1<<20), s.ServerRSSBytesPerSession, s.RSSSource)
	}
	if s.SendErrors+s.Behind+s.SessionsClosed+s.EventsDropped > 0 {
		p("  send errors %d (by code %v, without code %v), skipped (behind) %d, sessions closed by server %d, events dropped %d",
			s.SendErrors, s.SendErrorCodes, s.SendErrorKinds, s.Behind, s.SessionsClosed, s.EventsDropped)
	}
	if s.SessionsDisconnected > 0 {
		p("  sessions: %d lost their connection, %d still down at the end", s.SessionsDisconnected, s.SessionsDownAtEnd)
		q("lost→back", s.DownMS)
	}
	if f := s.Fault; f != nil {
		p("  fault %.1fs into the sending%s: first ack of a send started after it at %+.0f ms; sends after it %d (acked %d, failed %d, failed ≥%v after %d); failed sends started %+.0f…%+.0f ms; slowest ack after it %.0f ms",
			f.AfterS, errSuffix(f.Err), f.FirstAckAfterMS, f.SentAfter, f.AckedAfter, f.FailedAfter, FaultGrace, f.FailedAfterGrace,
			f.FirstFailedStartMS, f.LastFailedStartMS, f.MaxAckAfterMS)
	}
	if c := s.Chatroom; c != nil {
		p("  chatroom: %d room(s), members %v (%d joins failed), mix %s; fan-out %.0f deliveries/s (send start → last copy; %.0f per second of sending)",
			c.Rooms, c.Members, c.JoinFailed, c.PriorityMix, c.FanoutPerS, s.DeliveriesPerS)
		for _, name := range prioNames {
			x := c.Priorities[name]
			if x == nil {
				continue
			}
			dropped := "n/a"
			if x.DroppedFrames >= 0 {
				dropped = fmt.Sprint(x.DroppedFrames)
			}
			p("  %-6s sent %d acked %d; delivered %d/%d (%.2f%%), missing %d; edge dropped frames %s",
				name, x.Sent, x.Acked, x.Delivered, x.Expected, 100*x.DeliveredRatio, x.Missing, dropped)
			q("  "+name+" delivery", x.DeliveryLatencyMS)
		}
		if sr := c.SlowReaders; sr != nil {
			overflow := "n/a"
			if c.EdgeOverflowCloses >= 0 {
				overflow = fmt.Sprint(c.EdgeOverflowCloses)
			}
			p("  slow readers: %d members (share %.2f, %.0f ms pause per push); %d disconnected by the server (nothing expected at them; edge overflow closes %s), %d other members disconnected",
				sr.Members, sr.Share, sr.ReadDelayMS, sr.Disconnected, overflow, sr.NormalDisconnected)
			for _, name := range prioNames {
				sl, no := sr.Slow[name], sr.Normal[name]
				p("  %-6s slow readers %d/%d (%.2f%%), missing %d; normal readers %d/%d (%.2f%%), missing %d",
					name, sl.Delivered, sl.Expected, 100*sl.DeliveredRatio, sl.Missing, no.Delivered, no.Expected, 100*no.DeliveredRatio, no.Missing)
			}
		}
	}
	labels := make([]string, 0, len(s.RegionPairs))
	for l := range s.RegionPairs {
		labels = append(labels, l)
	}
	sort.Strings(labels)
	for _, l := range labels {
		x := s.RegionPairs[l]
		p("  region pair %s: sent %d, acked %d, delivered %d/%d, late %d, lost %d, duplicates %d",
			l, x.Sent, x.Acked, x.Delivered, x.Expected, x.Late, x.Lost, x.Duplicates)
		q("  "+l+" send→ack", x.LatencyMS)
		q("  "+l+" delivery", x.DeliveryLatencyMS)
	}
	for _, l := range s.LostSamples {
		p("  lost: %s", l)
	}
	for _, e := range s.Errors {
		p("  error: %s", e)
	}
	switch {
	case s.Chatroom != nil && s.Passed:
		p("PASS: no acked HIGH message copy lost (NORMAL/LOW shedding is allowed and reported above)")
	case s.Chatroom != nil:
		p("FAIL: %d acked HIGH message copies lost", s.Lost)
	case s.Passed:
		p("PASS: no acked message lost")
	default:
		p("FAIL: %d acked message copies lost", s.Lost)
	}
}

func errSuffix(e string) string {
	if e == "" {
		return ""
	}
	return " (" + e + ")"
}
