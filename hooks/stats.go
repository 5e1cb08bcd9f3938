package hooks

import (
	"fmt"
	"io"
	"sync/atomic"
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

// WriteText writes the counters in the Prometheus text exposition format:
// one series per hook, and hook="_userVerify" for the user-store calls
// (login.go).
func (c *Client) WriteText(w io.Writer) error {
	stats := c.Stats()
	for _, m := range []struct {
		name, help string
		get        func(Counts) int64
	}{
		{"relaymesh_hook_calls_total", "Hook calls made.", func(c Counts) int64 { return c.Calls }},
		{"relaymesh_hook_failures_total", "Hook calls that failed, timeouts included.", func(c Counts) int64 { return c.Failures }},
		{"relaymesh_hook_timeouts_total", "Hook calls that timed out.", func(c Counts) int64 { return c.Timeouts }},
		{"relaymesh_hook_drops_total", "Messages dropped or operations rejected by hooks.", func(c Counts) int64 { return c.Drops }},
	} {
		if _, err := fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n", m.name, m.help, m.name); err != nil {
			return err
		}
		for _, n := range statNames {
			if _, err := fmt.Fprintf(w, "%s{hook=%q} %d\n", m.name, n, m.get(stats[n])); err != nil {
				return err
			}
		}
	}
	return nil
}
