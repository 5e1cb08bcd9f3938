package hooks

import (
	"sync/atomic"

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
)

// Collector returns the collector of the counters: one series per hook,
// and hook="_userVerify" for the user-store calls (login.go).
func (c *Client) Collector() prometheus.Collector {
	return metric.NewCollector([]metric.Desc{descCalls, descFailures, descTimeouts, descDrops}, func(ch chan<- prometheus.Metric) {
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
	})
}
