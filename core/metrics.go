package core

import (
	"slices"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/relaymesh/relaymesh/core/query"
	"github.com/relaymesh/relaymesh/hooks"
	"github.com/relaymesh/relaymesh/metric"
	"github.com/relaymesh/relaymesh/push"
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
	// SendRounds counts rounds of a conversation's sends, each one raft
	// entry, and RoundSends the sends they proposed (sendgroup.go): their
	// ratio is the mean batch.
	SendRounds, RoundSends atomic.Uint64
	// RunSends counts the sends that came several to a request, a
	// session's run (batch.go).
	RunSends atomic.Uint64
	// SeenAsync counts first logins whose seen record went to raft in
	// the background (sysconv.go).
	SeenAsync atomic.Uint64
	// CursorWaits counts a peer's commands that waited for its queued
	// cursor moves to be applied, and CursorHeld the acks and reads held
	// until applied because many rounds were queued (cursors.go).
	CursorWaits, CursorHeld atomic.Uint64
}

// Collector returns the collector of the core's counters: the relay to
// the edges (relay.Relay.Collector), the fan-out replay (Stats), the
// sensitive-word filter, the after-send workers and offline push
// (IntegrationStats), and the hook counters (hooks.Client.Collector; all
// zero when no app has hooks). A core's admin listener serves it on
// /metrics and, in `relaymesh dev`, the edge's.
func (c *Core) Collector() prometheus.Collector { return Collector([]*Core{c}) }

// Collector returns the collector of a node's shard cores (router.go):
// what they share once, from cores[0] (the relay, the push providers, the
// hook client), and their own counters and push latency summed over them,
// so each series counts for the node as a whole.
func Collector(cores []*Core) prometheus.Collector {
	c0 := cores[0]
	hc := c0.hooks
	if hc == nil {
		hc = hooks.New(hooks.Config{}) // the series exist, at zero
	}
	own := metric.NewCollector(ownDescs, func(ch chan<- prometheus.Metric) {
		var sum metric.Sum
		for _, c := range cores {
			c.sampleOwn(&sum)
		}
		sum.To(metric.Chan(ch))
	})
	providers := metric.NewCollector(providerDescs, func(ch chan<- prometheus.Metric) {
		c0.sampleProviders(metric.Chan(ch)) // devices.go
	})
	latency := metric.NewCollector([]metric.Desc{descPushLatency, descPushAttempt}, func(ch chan<- prometheus.Metric) {
		samplePushLatency(ch, cores)
	})
	return metric.Collectors{c0.relay.Collector(), own, providers, latency, hc.Collector()}
}

var (
	descPushLatency = metric.Histogram("relaymesh_push_seconds", `Time the push queue's worker spent on one offline push request, from taking it to the providers' verdict, not the wait in the queue; outcome="sent" or "failed". The webhook provider answers after its retries; APNs and FCM queue the devices in their own queues at once (their sends: relaymesh_push_provider_attempt_seconds).`, "outcome")
	descPushAttempt = metric.Histogram("relaymesh_push_provider_attempt_seconds", "Time of one request to a push service (APNs, FCM) for one device, whatever its answer.", "provider")
)

// samplePushLatency sends the push queues' latency summed over cores,
// and the device providers' attempts (from cores[0], whose provider the
// cores share; zero without push).
func samplePushLatency(ch chan<- prometheus.Metric, cores []*Core) {
	var sent, failed metric.LatencySnapshot
	for _, c := range cores {
		if c.pushQ != nil {
			s := c.pushQ.Stats()
			sent.Add(s.SentLatency)
			failed.Add(s.FailedLatency)
		}
	}
	sent.Sample(ch, descPushLatency, "sent")
	failed.Sample(ch, descPushLatency, "failed")
	stats := map[string]push.ProviderStats{}
	if p, ok := cores[0].pushProvider.(interface {
		ProviderStats() map[string]push.ProviderStats
	}); ok {
		stats = p.ProviderStats()
	}
	for _, name := range []string{"apns", "fcm"} {
		a := stats[name].Attempts
		a.Sample(ch, descPushAttempt, name)
	}
}

// The counters that are each shard core's alone.
var (
	descReplayed      = metric.Counter("relaymesh_core_fanout_replayed_total", "Messages a new leader pushed again from the fan-out tail.")
	descUnsettled     = metric.Gauge("relaymesh_core_fanout_unsettled", "Fan-outs this core has not yet named done in the shard's fan-out tail (being proposed, queued, or named in a proposal in flight); a new leader would push their messages again.")
	descHalted        = metric.Counter("relaymesh_core_fanout_halted_total", "TEST HOOK: messages held before their fan-out (--test-halt-before-fanout).")
	descSendRounds    = metric.Counter("relaymesh_core_send_rounds_total", "Rounds of a conversation's sends, each proposed as one raft entry (group commit).")
	descRoundSends    = metric.Counter("relaymesh_core_send_round_sends_total", "Sends proposed in rounds of sends; over relaymesh_core_send_rounds_total, the mean sends per raft entry.")
	descRunSends      = metric.Counter("relaymesh_core_run_sends_total", "Sends that came several to a request: a session's run of sends into one conversation, which the edge read together and forwarded at once.")
	descSeenAsync     = metric.Counter("relaymesh_core_login_seen_async_total", "Logins that had no system message or broadcast due and whose seen record was proposed in the background rather than before the login's answer.")
	descCursorWaits   = metric.Counter("relaymesh_core_cursor_waits_total", "A client's commands (a query, a login) that waited for its acks and reads, answered once queued, to be applied first.")
	descCursorHeld    = metric.Counter("relaymesh_core_cursor_held_total", "Acks and reads answered only once applied, because the cursor rounds waiting were many (backpressure on the edges).")
	descFiltered      = metric.Counter("relaymesh_core_filtered_messages_total", "Messages with at least one sensitive word replaced.")
	descFilterHits    = metric.Counter("relaymesh_core_filter_hits_total", "Sensitive words replaced.")
	descAfterQueued   = metric.Counter("relaymesh_core_after_send_queued_total", "After-send jobs queued (_messageSent, _receiversOffline, push).")
	descAfterOverflow = metric.Counter("relaymesh_core_after_send_overflow_total", "After-send jobs dropped because the queue was full.")
	descPushRequests  = metric.Counter("relaymesh_core_push_requests_total", "Offline push requests handed to the push queue.")
	descPushSkipped   = metric.Counter("relaymesh_core_push_skipped_total", "Offline receivers left unpushed (hook skip or no payload).")
	descPushEnqueued  = metric.Counter("relaymesh_push_queue_enqueued_total", "Push requests accepted by the push queue.")
	descPushDropped   = metric.Counter("relaymesh_push_queue_dropped_total", "Push requests dropped (oldest first) because the queue was full.")
	descPushSent      = metric.Counter("relaymesh_push_sent_total", "Push requests the provider accepted.")
	descPushFailed    = metric.Counter("relaymesh_push_failed_total", "Push requests the provider failed.")
	descPushDiscarded = metric.Counter("relaymesh_push_discarded_total", "Push requests still waiting at shutdown.")
	descPushWaiting   = metric.Gauge("relaymesh_push_queue_waiting", "Push requests waiting now.")
	descPushDevices   = metric.Counter("relaymesh_core_push_devices_total", "Devices in the push requests handed to the providers.")
	descDevicesGone   = metric.Counter("relaymesh_core_push_devices_removed_total", "Devices deleted because a push service called their token dead.")
	descDevSyncSent   = metric.Counter("relaymesh_core_device_sync_sent_total", "Device changes (bind, unbind, save, delete) another region's system shard took from this core.")
	descDevSyncFailed = metric.Counter("relaymesh_core_device_sync_failed_total", "Device changes a region did not take within a minute of retries (it learns the device at its next change).")
	descDevSyncTaken  = metric.Counter("relaymesh_core_device_sync_taken_total", "Device changes of other regions this core's system shard took.")
	descSysEnqueued   = metric.Counter("relaymesh_sys_webhook_enqueued_total", "User messages to system conversations queued for the service webhook.")
	descSysDropped    = metric.Counter("relaymesh_sys_webhook_dropped_total", "Service-webhook messages refused: queue full or closed.")
	descSysSent       = metric.Counter("relaymesh_sys_webhook_sent_total", "Service-webhook messages delivered (2xx).")
	descSysRequests   = metric.Counter("relaymesh_sys_webhook_requests_total", "Service-webhook POST attempts.")
	descSysFailures   = metric.Counter("relaymesh_sys_webhook_failures_total", "Service-webhook attempts failed, timeouts included.")
	descSysTimeouts   = metric.Counter("relaymesh_sys_webhook_timeouts_total", "Service-webhook attempts that timed out.")
	descSysLost       = metric.Counter("relaymesh_sys_webhook_lost_total", "Service-webhook messages given up after the retries.")
	descSysWaiting    = metric.Gauge("relaymesh_sys_webhook_waiting", "Service-webhook messages waiting now.")

	ownDescs = slices.Concat([]metric.Desc{
		descReplayed, descUnsettled, descHalted, descSendRounds, descRoundSends, descRunSends, descSeenAsync, descCursorWaits, descCursorHeld, descFiltered, descFilterHits, descAfterQueued, descAfterOverflow,
		descPushRequests, descPushSkipped, descPushEnqueued, descPushDropped, descPushSent, descPushFailed,
		descPushDiscarded, descPushWaiting, descPushDevices, descDevicesGone,
		descDevSyncSent, descDevSyncFailed, descDevSyncTaken,
		descSysEnqueued, descSysDropped, descSysSent, descSysRequests, descSysFailures, descSysTimeouts,
		descSysLost, descSysWaiting,
	}, query.Descs, notifyDescs)
)

// sampleOwn gives s the counters that are this core's alone.
func (c *Core) sampleOwn(s metric.Sink) {
	x := c.IntegrationStats()
	p := x.Push
	sh := c.SysWebhookStats() // sysconv.go
	for _, r := range []struct {
		d metric.Desc
		v int64
	}{
		{descReplayed, int64(c.stats.Replayed.Load())},
		{descUnsettled, int64(c.fanouts.unsettled())},
		{descHalted, int64(c.stats.Halted.Load())},
		{descSendRounds, int64(c.stats.SendRounds.Load())},
		{descRoundSends, int64(c.stats.RoundSends.Load())},
		{descRunSends, int64(c.stats.RunSends.Load())},
		{descSeenAsync, int64(c.stats.SeenAsync.Load())},
		{descCursorWaits, int64(c.stats.CursorWaits.Load())},
		{descCursorHeld, int64(c.stats.CursorHeld.Load())},
		{descFiltered, x.Filtered},
		{descFilterHits, x.FilterHits},
		{descAfterQueued, x.AfterQueued},
		{descAfterOverflow, x.AfterOverflow},
		{descPushRequests, x.PushRequests},
		{descPushSkipped, x.PushSkipped},
		{descPushEnqueued, p.Enqueued},
		{descPushDropped, p.Dropped},
		{descPushSent, p.Sent},
		{descPushFailed, p.Failed},
		{descPushDiscarded, p.Discarded},
		{descPushWaiting, int64(p.Waiting)},
		{descPushDevices, x.PushDevices},
		{descDevicesGone, x.DevicesGone},
		{descDevSyncSent, int64(c.devSync.sent.Load())},
		{descDevSyncFailed, int64(c.devSync.failed.Load())},
		{descDevSyncTaken, int64(c.devSync.taken.Load())},
		{descSysEnqueued, sh.Enqueued},
		{descSysDropped, sh.Dropped},
		{descSysSent, sh.Sent},
		{descSysRequests, sh.Requests},
		{descSysFailures, sh.Failures},
		{descSysTimeouts, sh.Timeouts},
		{descSysLost, sh.Lost},
		{descSysWaiting, int64(sh.Waiting)},
	} {
		s.Add(r.d, float64(r.v))
	}
	c.queries.Sample(s) // query.go
	c.sampleNotify(s)   // notif.go
}
