package hooks

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/relaymesh/relaymesh/metric"
)

// Counts are one hook's counters.
type Counts struct {
	Calls    int64 // calls made (hooks not configured are not called)
	Failures int64 // failed calls, timeouts included
	Timeouts int64 // calls that ran out of time
	Drops    int64 // messages dropped or operations rejected, by the hook or by FailClosed
}

type counters struct {
	calls, failures, timeouts, drops atomic.Int64
	// latency times the HTTP exchanges (send), by outcome (outcomeOK,
	// outcomeFailed).
	latency [2]metric.Latency
}

// Outcomes of one HTTP exchange with a hook, for its latency.
const (
	outcomeOK     = iota // a 2xx reply, read in time
	outcomeFailed        // a transport error, a timeout, another status, a reply too big
)

var outcomeNames = [...]string{outcomeOK: "ok", outcomeFailed: "failed"}

// observe counts one exchange with hook that took d.
func (c *Client) observe(hook string, d time.Duration, status int, err error) {
	st := c.stats[hook]
	if st == nil {
		return
	}
	o := outcomeOK
	if err != nil || status < 200 || status > 299 {
		o = outcomeFailed
	}
	st.latency[o].Observe(d)
}

// Latency returns how long the HTTP exchanges with hook took, by
// outcome: "ok" (a 2xx reply, read in time) and "failed" (a transport
// error, a timeout, another status, a reply over MaxReplyBytes).
func (c *Client) Latency(hook string) map[string]metric.LatencySnapshot {
	st := c.stats[hook]
	if st == nil {
		return nil
	}
	out := make(map[string]metric.LatencySnapshot, len(outcomeNames))
	for o, name := range outcomeNames {
		out[name] = st.latency[o].Snapshot()
	}
	return out
}

// Stats returns the counters of every hook, by name.
func (c *Client) Stats() map[string]Counts {
	out := make(map[string]Counts, len(c.stats))
	for name, s := range c.stats {
		out[name] = Counts{
			Calls:    s.calls.Load(),
			Failures: s.failures.Load(),
			Timeouts: s.timeouts.Load(),
			Drops:    s.drops.Load(),
		}
	}
	return out
}

var (
	descCalls    = metric.Counter("relaymesh_hook_calls_total", "Hook calls made.", "hook")
	descFailures = metric.Counter("relaymesh_hook_failures_total", "Hook calls that failed, timeouts included.", "hook")
	descTimeouts = metric.Counter("relaymesh_hook_timeouts_total", "Hook calls that timed out.", "hook")
	descDrops    = metric.Counter("relaymesh_hook_drops_total", "Messages dropped or operations rejected by hooks.", "hook")
	descLatency  = metric.Histogram("relaymesh_hook_seconds", `Time of one HTTP exchange with a hook, from the request to the reply read; outcome="ok" for a 2xx reply in time, "failed" for a transport error, a timeout, another status or a reply too big.`, "hook", "outcome")
)

// Collector returns the collector of the counters and the latency
// histograms: one series per hook (and outcome), and hook="_userVerify"
// for the user-store calls (login.go).
func (c *Client) Collector() prometheus.Collector {
	return metric.NewCollector([]metric.Desc{descCalls, descFailures, descTimeouts, descDrops, descLatency}, func(ch chan<- prometheus.Metric) {
		stats := c.Stats()
		for _, m := range []struct {
			d   metric.Desc
			get func(Counts) int64
		}{
			{descCalls, func(c Counts) int64 { return c.Calls }},
			{descFailures, func(c Counts) int64 { return c.Failures }},
			{descTimeouts, func(c Counts) int64 { return c.Timeouts }},
			{descDrops, func(c Counts) int64 { return c.Drops }},
		} {
			for _, n := range statNames {
				metric.Chan(ch).Add(m.d, float64(m.get(stats[n])), n)
			}
		}
		for _, n := range statNames {
			for o, name := range outcomeNames {
				c.stats[n].latency[o].Sample(ch, descLatency, n, name)
			}
		}
	})
}
