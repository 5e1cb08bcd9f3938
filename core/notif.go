package core

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/relaymesh/relaymesh/core/shard"
	"github.com/relaymesh/relaymesh/metric"
	"github.com/relaymesh/relaymesh/proto/lcpb"
	"github.com/relaymesh/relaymesh/proto/meshpb"
)

// Stored notifications (GET /1.1/rtm/notifications, core/shard/notif.go):
// every conversation event and receipt the core fans out (fanout,
// relay.go) is also recorded for each recipient, online or not, with
// the serverTs it was pushed with, so an SDK that missed it replays it.
//
// Recording never waits: fanout queues the event, and one goroutine the
// core owns proposes what is queued as one shard batch of OpNotif commands
// (one per app, at most shard.MaxNotifBatch events each); events queued
// while a proposal is in flight go into the next one. So an event is
// stored shortly after its push, not with the change itself: if the leader
// fails in between, that event is not stored (the change is, and the
// client sees it through conv/query). At most notifPendingMax events wait;
// one more is dropped and counted (NotifStats.Dropped), as are events of a
// proposal that fails (NotifStats.Failed). An event for more recipients
// than shard.MaxNotifFanout is queued in parts, and a proposal carries at
// most notifProposalRecords (event, recipient) records, so neither a raft
// entry nor its apply grows with a burst.

// notifPendingMax bounds the (event, recipient) records waiting to be
// proposed; notifProposalRecords those of one proposal.
const (
	notifPendingMax      = 1 << 16
	notifProposalRecords = 4 * shard.MaxNotifRecords
)

// notifProposeTimeout bounds one proposal.
const notifProposeTimeout = 10 * time.Second

// notifOps are the conversation pushes that are stored: every op of the
// Swift SDK's offline-event list (IMClient.swift NotificationOperation).
var notifOps = map[lcpb.OpType]bool{
	lcpb.OpType_joined: true, lcpb.OpType_left: true,
	lcpb.OpType_members_joined: true, lcpb.OpType_members_left: true,
	lcpb.OpType_updated: true, lcpb.OpType_member_info_changed: true,
	lcpb.OpType_blocked: true, lcpb.OpType_unblocked: true,
	lcpb.OpType_members_blocked: true, lcpb.OpType_members_unblocked: true,
	lcpb.OpType_shutuped: true, lcpb.OpType_unshutuped: true,
	lcpb.OpType_members_shutuped: true, lcpb.OpType_members_unshutuped: true,
}

type notifBatcher struct {
	mu      sync.Mutex
	pending map[string][]shard.NotifAppend // guarded by mu; by app
	n       int                            // guarded by mu; records pending
	running bool                           // guarded by mu; the goroutine is started
	wake    chan struct{}                  // capacity 1

	stored, dropped, failed atomic.Int64
}

// NotifStats are the counters of stored notifications.
type NotifStats struct {
	Stored  int64 // events proposed and applied (each for all its recipients)
	Dropped int64 // events dropped: too many waiting
	Failed  int64 // events whose proposal failed
}

// NotifStats returns the stored-notification counters.
func (c *Core) NotifStats() NotifStats {
	b := &c.notifs
	return NotifStats{Stored: b.stored.Load(), Dropped: b.dropped.Load(), Failed: b.failed.Load()}
}

// recordNotif queues cmd (a push stamped by pushEnvelope) for the
// notification logs of peers, if it is an event that is stored.
func (c *Core) recordNotif(app string, peers []string, cmd *lcpb.GenericCommand) {
	if len(peers) == 0 {
		return
	}
	var ev shard.Notif
	switch cmd.GetCmd() {
	case lcpb.CommandType_conv:
		if !notifOps[cmd.GetOp()] {
			return
		}
		cm := cmd.GetConvMessage()
		ev = shard.Notif{Cmd: "conv", Op: cmd.GetOp().String(), CID: cm.GetCid(), InitBy: cm.GetInitBy(),
			M: append([]string(nil), cm.GetM()...), Attr: cm.GetAttr().GetData(),
			AttrModified: cm.GetAttrModified().GetData(), Udate: cm.GetUdate()}
		if info := cm.GetInfo(); info != nil {
			ev.Pid, ev.Role = info.GetPid(), info.GetRole()
		}
	case lcpb.CommandType_rcp:
		rm := cmd.GetRcpMessage()
		ev = shard.Notif{Cmd: "rcp", CID: rm.GetCid(), ID: rm.GetId(), T: rm.GetT(), Read: rm.GetRead(), From: rm.GetFrom()}
	default:
		return
	}
	if ev.CID == "" {
		return
	}
	ev.TS = cmd.GetServerTs()
	for len(peers) > 0 {
		k := min(len(peers), shard.MaxNotifFanout)
		c.queueNotif(app, shard.NotifAppend{To: append([]string(nil), peers[:k]...), Event: ev})
		peers = peers[k:]
	}
}

func (c *Core) queueNotif(app string, na shard.NotifAppend) {
	b := &c.notifs
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.n+len(na.To) > notifPendingMax {
		b.dropped.Add(1)
		return
	}
	if !b.running {
		c.mu.Lock()
		closed := c.closed
		if !closed {
			c.wg.Add(1)
		}
		c.mu.Unlock()
		if closed {
			return
		}
		b.running = true
		b.wake = make(chan struct{}, 1)
		go func() {
			defer c.wg.Done()
			c.notifLoop()
		}()
	}
	if b.pending == nil {
		b.pending = make(map[string][]shard.NotifAppend)
	}
	b.pending[app] = append(b.pending[app], na)
	b.n += len(na.To)
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// notifLoop proposes what is pending until the core closes.
func (c *Core) notifLoop() {
	b := &c.notifs
	for {
		b.mu.Lock()
		pending, n, wake := b.pending, b.n, b.wake
		b.pending, b.n = nil, 0
		b.mu.Unlock()
		if n > 0 {
			c.proposeNotifs(pending)
			continue
		}
		select {
		case <-wake:
		case <-c.quit:
			b.mu.Lock()
			for _, evs := range b.pending {
				b.dropped.Add(int64(len(evs)))
			}
			b.pending, b.n, b.running = nil, 0, false
			b.mu.Unlock()
			return
		}
	}
}

// proposeNotifs stores pending events: OpNotif commands per app of at
// most shard.MaxNotifBatch events and shard.MaxNotifRecords records,
// proposed in shard batches of at most notifProposalRecords records.
func (c *Core) proposeNotifs(pending map[string][]shard.NotifAppend) {
	apps := make([]string, 0, len(pending))
	for app := range pending {
		apps = append(apps, app)
	}
	sort.Strings(apps)
	now := c.nowMS()
	var batch []*shard.Command
	batchRecords := 0
	flush := func() {
		if len(batch) > 0 {
			c.proposeNotifBatch(batch)
		}
		batch, batchRecords = nil, 0
	}
	for _, app := range apps {
		evs := pending[app]
		for len(evs) > 0 {
			k, records := 0, 0
			for k < len(evs) && k < shard.MaxNotifBatch && records+len(evs[k].To) <= shard.MaxNotifRecords {
				records += len(evs[k].To)
				k++
			}
			if batchRecords+records > notifProposalRecords || len(batch) == shard.MaxBatch {
				flush()
			}
			batch = append(batch, &shard.Command{Op: shard.OpNotif, App: app, Now: now, Notifs: evs[:k]})
			batchRecords += records
			evs = evs[k:]
		}
	}
	flush()
}

func (c *Core) proposeNotifBatch(cmds []*shard.Command) {
	events := 0
	for _, cmd := range cmds {
		events += len(cmd.Notifs)
	}
	if c.isClosed() || c.replica == nil || !c.replica.IsLeader() {
		c.notifs.failed.Add(int64(events))
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), notifProposeTimeout)
	defer cancel()
	res, err := c.propose(ctx, &shard.Command{Op: shard.OpBatch, Batch: cmds})
	if err != nil {
		c.notifs.failed.Add(int64(events))
		c.log.Debug("notifications", "events", events, "err", err)
		return
	}
	for i, it := range res.Batch {
		n := int64(len(cmds[i].Notifs))
		if it.Err != nil {
			c.notifs.failed.Add(n)
			c.log.Debug("notifications", "app", cmds[i].App, "err", it.Err)
			continue
		}
		c.notifs.stored.Add(n)
	}
}

// adminNotifs answers NOTIFICATIONS: peer's stored events after
// notif_start_ts (AdminReply.notifs, notif_more).
func (c *Core) adminNotifs(app, peer string, a *meshpb.AdminRequest) (*meshpb.ClientReply, error) {
	if peer == "" {
		return nil, fmt.Errorf("%w: notifications without a clientId", errMalformed)
	}
	class := shard.NotifPermanent
	if a.GetNotifDroppable() {
		class = shard.NotifDroppable
	}
	max := shard.NotifKept(class) // a page may hold a whole log
	limit := int(a.GetNotifLimit())
	if limit <= 0 || limit > max {
		limit = max
	}
	evs, more, err := shard.Notifs(c.state(), app, peer, class, a.GetNotifStartTs(), c.nowMS(), limit)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errInternal, err)
	}
	out := &meshpb.AdminReply{NotifMore: more, Notifs: make([]*meshpb.NotifEvent, 0, len(evs))}
	for _, n := range evs {
		out.Notifs = append(out.Notifs, &meshpb.NotifEvent{
			Cmd: n.Cmd, Op: n.Op, Cid: n.CID, ServerTs: n.TS, InitBy: n.InitBy, M: n.M,
			Attr: n.Attr, AttrModified: n.AttrModified, Udate: n.Udate, InfoPid: n.Pid, InfoRole: n.Role,
			Id: n.ID, T: n.T, Read: n.Read, From: n.From,
		})
	}
	return &meshpb.ClientReply{Admin: out}, nil
}

var (
	descNotifyQueued  = metric.Counter("relaymesh_core_hook_notify_queued_total", "Notification hook calls queued (_clientOnline, _clientOffline, _conversationStarted/Added/Removed).")
	descNotifyDropped = metric.Counter("relaymesh_core_hook_notify_dropped_total", "Notification hook calls dropped because the queue was full.")
	descNotifsStored  = metric.Counter("relaymesh_core_notifications_stored_total", "Conversation events and receipts stored for GET /1.1/rtm/notifications.")
	descNotifsDropped = metric.Counter("relaymesh_core_notifications_dropped_total", "Events not stored because too many were waiting.")
	descNotifsFailed  = metric.Counter("relaymesh_core_notifications_failed_total", "Events not stored because their proposal failed.")
	notifyDescs       = []metric.Desc{descNotifyQueued, descNotifyDropped, descNotifsStored, descNotifsDropped, descNotifsFailed}
)

// sampleNotify gives s the counters of the notification-hook queue
// (notifyhooks.go) and of stored notifications.
func (c *Core) sampleNotify(s metric.Sink) {
	q, n := c.NotifyStats(), c.NotifStats()
	s.Add(descNotifyQueued, float64(q.Queued))
	s.Add(descNotifyDropped, float64(q.Dropped))
	s.Add(descNotifsStored, float64(n.Stored))
	s.Add(descNotifsDropped, float64(n.Dropped))
	s.Add(descNotifsFailed, float64(n.Failed))
}
