package core

import (
	"context"
	"slices"
	"sync/atomic"

	"github.com/relaymesh/relaymesh/core/shard"
	"github.com/relaymesh/relaymesh/hooks"
	"github.com/relaymesh/relaymesh/proto/lcpb"
	"github.com/relaymesh/relaymesh/push"
)

// PushConfig configures offline push: after a message's fan-out, the
// members with no online session (except those who muted the conversation,
// unless _receiversOffline forces it) get one push.Request, built by
// push.BuildPayload from _receiversOffline's pushMessage, then the
// message's pushData, then the app's template (LeanCloud's order).
// Chatrooms, system conversations and transient messages are never pushed.
type PushConfig struct {
	// Provider receives the requests through a push.Queue the core owns;
	// nil turns offline push off. A provider with a method
	// Enabled(appID string) bool is asked first, so apps without push cost
	// nothing.
	Provider  push.Provider
	Templates map[string]string // static template by appId
	Queue     push.QueueConfig
}

// IntegrationStats are the counters of the sensitive-word filter, the
// hooks and offline push.
type IntegrationStats struct {
	Filtered      int64                   // messages with at least one word replaced
	FilterHits    int64                   // words replaced
	AfterQueued   int64                   // after-send jobs queued (_messageSent, offline push)
	AfterOverflow int64                   // after-send jobs dropped: queue full
	PushRequests  int64                   // push requests handed to the queue
	PushSkipped   int64                   // offline receivers left unpushed: hook skip or no usable payload
	PushDevices   int64                   // devices in the push requests (devices.go)
	DevicesGone   int64                   // devices deleted because a push service called their token dead
	Hooks         map[string]hooks.Counts // nil without hooks
	Push          push.QueueStats
}

type integrationCounters struct {
	filtered, filterHits, afterQueued, afterOverflow, pushRequests, pushSkipped atomic.Int64
	pushDevices, devicesRemoved                                                 atomic.Int64
}

// IntegrationStats returns the filter, hook and push counters.
func (c *Core) IntegrationStats() IntegrationStats {
	s := IntegrationStats{
		Filtered: c.xstats.filtered.Load(), FilterHits: c.xstats.filterHits.Load(),
		AfterQueued: c.xstats.afterQueued.Load(), AfterOverflow: c.xstats.afterOverflow.Load(),
		PushRequests: c.xstats.pushRequests.Load(), PushSkipped: c.xstats.pushSkipped.Load(),
		PushDevices: c.xstats.pushDevices.Load(), DevicesGone: c.xstats.devicesRemoved.Load(),
	}
	if c.hooks != nil {
		s.Hooks = c.hooks.Stats()
	}
	if c.pushQ != nil {
		s.Push = c.pushQ.Stats()
	}
	return s
}

// sentJob is a fanned-out message for the after-send workers. Every field
// is owned by the job (nothing shared with the state machine's cache).
type sentJob struct {
	app, cid, from, msgID string
	t                     int64
	data                  string
	bin                   bool
	transient, system     bool
	receipt               bool
	mentionAll            bool
	mentions              []string
	pushData              string

	online, offline []string // members other than the sender
	mutedOffline    []string // offline members who muted the conversation

	sentHook, push bool
}

func (c *Core) pushEnabled(app string) bool {
	if c.pushQ == nil {
		return false
	}
	if e, ok := c.pushProvider.(interface{ Enabled(string) bool }); ok {
		return e.Enabled(app)
	}
	return true
}

// afterFanout queues _messageSent and offline push for a message delivered
// to members of conv; it never blocks.
func (c *Core) afterFanout(app, from, cid string, members []string, m *shard.Message, dm *lcpb.DirectCommand) {
	if (c.hooks == nil && c.pushQ == nil) || m == nil {
		return
	}
	conv, err := c.convView(app, cid)
	if err != nil || conv == nil {
		return
	}
	sentHook := c.hooks != nil && c.hooks.Enabled(app, hooks.HookMessageSent)
	wantPush := !conv.Transient && !conv.System && !dm.GetTransient() && c.pushEnabled(app)
	if !sentHook && !wantPush {
		return
	}
	j := sentJob{
		app: app, cid: conv.ID, from: from, msgID: m.ID, t: m.T, data: m.Data, bin: m.Bin,
		transient: dm.GetTransient(), system: conv.System, receipt: dm.GetR(),
		mentionAll: m.MentionAll, mentions: slices.Clone(m.MentionPids), pushData: dm.GetPushData(),
		sentHook: sentHook, push: wantPush,
	}
	others := make([]string, 0, len(members))
	for _, p := range members {
		if p != from {
			others = append(others, p)
		}
	}
	j.online, j.offline = c.splitOnline(app, others) // relay.go: any region
	for _, p := range j.offline {
		if _, muted := slices.BinarySearch(conv.Muted, p); muted {
			j.mutedOffline = append(j.mutedOffline, p)
		}
	}
	c.enqueueSent(j)
}

// runSent is one after-send job, on a worker.
func (c *Core) runSent(ctx context.Context, j sentJob) {
	if j.sentHook {
		_ = c.hooks.MessageSent(ctx, j.app, hooks.MessageSent{
			FromPeer: j.from, ConvID: j.cid, MsgID: j.msgID, OnlinePeers: j.online, OfflinePeers: j.offline,
			Transient: j.transient, System: j.system, Bin: j.bin, Content: j.data, Receipt: j.receipt, Timestamp: j.t,
		}) // reply ignored; failures are counted by the client
	}
	if j.push && len(j.offline) > 0 {
		c.offlinePush(ctx, j)
	}
}

// offlinePush builds and queues the push for j's offline members.
func (c *Core) offlinePush(ctx context.Context, j sentJob) {
	to := j.offline
	var v hooks.OfflineVerdict
	if c.hooks != nil && c.hooks.Enabled(j.app, hooks.HookReceiversOffline) {
		var mentioned []string
		if !j.mentionAll {
			for _, p := range j.offline {
				if slices.Contains(j.mentions, p) {
					mentioned = append(mentioned, p)
				}
			}
		}
		v, _ = c.hooks.ReceiversOffline(ctx, j.app, hooks.ReceiversOffline{
			FromPeer: j.from, ConvID: j.cid, OfflinePeers: j.offline, Content: j.data, Timestamp: j.t,
			MentionAll: j.mentionAll, MentionOfflinePeers: mentioned,
		}) // fails open: the zero verdict
		if v.Skip {
			c.xstats.pushSkipped.Add(1)
			return
		}
		if v.OfflinePeers != nil { // the hook may only narrow the receivers
			to = slices.DeleteFunc(slices.Clone(to), func(p string) bool { return !slices.Contains(v.OfflinePeers, p) })
		}
	}
	if !v.Force && len(j.mutedOffline) > 0 {
		to = slices.DeleteFunc(slices.Clone(to), func(p string) bool { return slices.Contains(j.mutedOffline, p) })
	}
	if len(to) == 0 {
		return
	}
	c.queuePush(ctx, j.app, j.cid, j.from, j.t, to,
		push.Sources{PushData: j.pushData, Template: c.pushTemplates[j.app], Hook: v.PushMessage})
}

// queuePush builds the payload of a message's push from src and queues it
// for to; without a usable payload the push is skipped (counted). The
// queue's worker adds the receivers' devices (devices.go, withDevices).
func (c *Core) queuePush(ctx context.Context, app, cid, from string, t int64, to []string, src push.Sources) {
	c.queuePushTo(ctx, app, push.Request{ConvID: cid, From: from, To: to, Timestamp: t}, src)
}

// queuePushTo is queuePush for a request whose receivers are set (To, or
// Everyone); the payload is built from src.
func (c *Core) queuePushTo(ctx context.Context, app string, r push.Request, src push.Sources) {
	payload, _ := push.BuildPayload(src, push.Vars{ConvID: r.ConvID, Timestamp: r.Timestamp, FromClientID: r.From})
	if payload == nil {
		c.xstats.pushSkipped.Add(1)
		return
	}
	r.AppID, r.Payload = app, payload
	if c.pushQ.Push(ctx, r) == nil {
		c.xstats.pushRequests.Add(1)
	}
}
