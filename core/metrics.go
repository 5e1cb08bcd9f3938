package core

import (
	"bytes"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/relaymesh/relaymesh/hooks"
)

// Stats are the core's fan-out counters; the relay's (deliveries, drops)
// are relay.Stats (Core.Relay().Stats()).
type Stats struct {
	// Replayed counts messages a new leader pushed again because the
	// fan-out tail said they might not have been (fanout.go).
	Replayed atomic.Uint64
	// Halted counts messages held by the test hook
	// Config.HaltBeforeFanout (failover.go).
	Halted atomic.Uint64
}

// WriteMetrics writes the core's counters in the Prometheus text exposition
// format: the relay to the edges (relay.Relay.WriteMetrics), the fan-out
// replay (Stats), the sensitive-word filter, the after-send workers and
// offline push (IntegrationStats), and the hook
// counters (hooks.Client.WriteText; all zero when no app has hooks). It is
// what /metrics serves on a core's metrics listener and, in `relaymesh dev`,
// after the edge's own series.
func (c *Core) WriteMetrics(w io.Writer) error { return WriteMetrics(w, []*Core{c}) }

// WriteMetrics writes the series of a node's shard cores (router.go):
// what they share once, from cores[0] (the relay, the push providers, the
// hook client), and their own counters summed over them, so each series
// counts for the node as a whole.
func WriteMetrics(w io.Writer, cores []*Core) error {
	c0 := cores[0]
	if err := c0.relay.WriteMetrics(w); err != nil {
		return err
	}
	if len(cores) == 1 {
		if err := c0.writeOwnMetrics(w); err != nil {
			return err
		}
	} else {
		bufs := make([][]byte, len(cores))
		for i, c := range cores {
			var b bytes.Buffer
			if err := c.writeOwnMetrics(&b); err != nil {
				return err
			}
			bufs[i] = b.Bytes()
		}
		if err := sumMetrics(w, bufs); err != nil {
			return err
		}
	}
	if err := c0.writeProviderMetrics(w); err != nil { // devices.go
		return err
	}
	hc := c0.hooks
	if hc == nil {
		hc = hooks.New(hooks.Config{}) // the series exist, at zero
	}
	return hc.WriteText(w)
}

// writeOwnMetrics writes the counters that are this core's alone.
func (c *Core) writeOwnMetrics(w io.Writer) error {
	x := c.IntegrationStats()
	p := x.Push
	sh := c.SysWebhookStats() // sysconv.go
	rows := []struct {
		name, help, typ string
		v               int64
	}{
		{"relaymesh_core_fanout_replayed_total", "Messages a new leader pushed again from the fan-out tail.", "counter", int64(c.stats.Replayed.Load())},
		{"relaymesh_core_fanout_halted_total", "TEST HOOK: messages held before their fan-out (--test-halt-before-fanout).", "counter", int64(c.stats.Halted.Load())},
		{"relaymesh_core_filtered_messages_total", "Messages with at least one sensitive word replaced.", "counter", x.Filtered},
		{"relaymesh_core_filter_hits_total", "Sensitive words replaced.", "counter", x.FilterHits},
		{"relaymesh_core_after_send_queued_total", "After-send jobs queued (_messageSent, _receiversOffline, push).", "counter", x.AfterQueued},
		{"relaymesh_core_after_send_overflow_total", "After-send jobs dropped because the queue was full.", "counter", x.AfterOverflow},
		{"relaymesh_core_push_requests_total", "Offline push requests handed to the push queue.", "counter", x.PushRequests},
		{"relaymesh_core_push_skipped_total", "Offline receivers left unpushed (hook skip or no payload).", "counter", x.PushSkipped},
		{"relaymesh_push_queue_enqueued_total", "Push requests accepted by the push queue.", "counter", p.Enqueued},
		{"relaymesh_push_queue_dropped_total", "Push requests dropped (oldest first) because the queue was full.", "counter", p.Dropped},
		{"relaymesh_push_sent_total", "Push requests the provider accepted.", "counter", p.Sent},
		{"relaymesh_push_failed_total", "Push requests the provider failed.", "counter", p.Failed},
		{"relaymesh_push_discarded_total", "Push requests still waiting at shutdown.", "counter", p.Discarded},
		{"relaymesh_push_queue_waiting", "Push requests waiting now.", "gauge", int64(p.Waiting)},
		{"relaymesh_core_push_devices_total", "Devices in the push requests handed to the providers.", "counter", x.PushDevices},
		{"relaymesh_core_push_devices_removed_total", "Devices deleted because a push service called their token dead.", "counter", x.DevicesGone},
		{"relaymesh_sys_webhook_enqueued_total", "User messages to system conversations queued for the service webhook.", "counter", sh.Enqueued},
		{"relaymesh_sys_webhook_dropped_total", "Service-webhook messages refused: queue full or closed.", "counter", sh.Dropped},
		{"relaymesh_sys_webhook_sent_total", "Service-webhook messages delivered (2xx).", "counter", sh.Sent},
		{"relaymesh_sys_webhook_requests_total", "Service-webhook POST attempts.", "counter", sh.Requests},
		{"relaymesh_sys_webhook_failures_total", "Service-webhook attempts failed, timeouts included.", "counter", sh.Failures},
		{"relaymesh_sys_webhook_timeouts_total", "Service-webhook attempts that timed out.", "counter", sh.Timeouts},
		{"relaymesh_sys_webhook_lost_total", "Service-webhook messages given up after the retries.", "counter", sh.Lost},
		{"relaymesh_sys_webhook_waiting", "Service-webhook messages waiting now.", "gauge", int64(sh.Waiting)},
	}
	for _, r := range rows {
		if _, err := fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n%s %d\n", r.name, r.help, r.name, r.typ, r.name, r.v); err != nil {
			return err
		}
	}
	if err := c.queries.WriteMetrics(w); err != nil { // query.go
		return err
	}
	return c.writeNotifyMetrics(w) // notif.go
}

// sumMetrics writes the Prometheus text of bufs as one: each family once
// (its HELP and TYPE from where it first appears), each series once with
// its values added up, in the order they first appear.
func sumMetrics(w io.Writer, bufs [][]byte) error {
	type family struct {
		comments []string
		keys     []string
		sum      map[string]float64
	}
	var order []string
	fams := map[string]*family{}
	get := func(name string) *family {
		f := fams[name]
		if f == nil {
			f = &family{sum: map[string]float64{}}
			fams[name] = f
			order = append(order, name)
		}
		return f
	}
	for _, b := range bufs {
		for _, line := range strings.Split(string(b), "\n") {
			if line == "" {
				continue
			}
			if strings.HasPrefix(line, "# ") {
				parts := strings.Fields(line)
				if len(parts) < 3 {
					continue
				}
				f := get(parts[2])
				if len(f.keys) == 0 && len(f.comments) < 2 && !slices.Contains(f.comments, line) {
					f.comments = append(f.comments, line)
				}
				continue
			}
			i := strings.LastIndexByte(line, ' ')
			if i < 0 {
				continue
			}
			key := line[:i]
			v, err := strconv.ParseFloat(line[i+1:], 64)
			if err != nil {
				continue
			}
			name := key
			if j := strings.IndexByte(key, '{'); j >= 0 {
				name = key[:j]
			}
			f := get(name)
			if _, ok := f.sum[key]; !ok {
				f.keys = append(f.keys, key)
			}
			f.sum[key] += v
		}
	}
	for _, name := range order {
		f := fams[name]
		for _, c := range f.comments {
			if _, err := fmt.Fprintln(w, c); err != nil {
				return err
			}
		}
		for _, k := range f.keys {
			if _, err := fmt.Fprintf(w, "%s %s\n", k, strconv.FormatFloat(f.sum[k], 'f', -1, 64)); err != nil {
				return err
			}
		}
	}
	return nil
}
