package core

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/relaymesh/relaymesh/hooks"
	"github.com/relaymesh/relaymesh/relay"
)

// Notification hooks: _clientOnline, _clientOffline, _conversationStarted,
// _conversationAdded and _conversationRemoved. LeanCloud calls them after
// the fact and ignores their reply, so the core never waits for them: the
// request goroutine queues a call and notifyWorkers goroutines the core
// owns make it. The queue holds notifyQueueLen calls; one arriving when it
// is full is dropped and counted (NotifyStats.Dropped, /metrics
// relaymesh_core_hook_notify_dropped_total). Calls still queued when the
// core closes are dropped; those in flight are cancelled.
//
// Who fires them: the core that handles the request, which is the shard
// leader (a follower answers not_leader and does nothing), so each event
// fires once. _clientOnline fires for every OPEN the leader accepts;
// _clientOffline when the leader forgets a session it knew — on the
// edge's CLOSE (closeCode 1 when the client sent session/close, 2 when the
// connection dropped), a tag kick (3) or a REST kick (4). A CLOSE for a
// session the leader no longer has (already kicked, or the edge's stream
// to a new leader not yet synced) fires nothing, so one session never
// yields two offlines. Sessions of an edge that dies without closing them
// fire no _clientOffline: the edge's presence stream cannot tell a dead
// edge from a passing stream failure (the clients' reconnects fire
// _clientOnline with reconnect 1). _clientOnline and _clientOffline are not
// ordered with each other, as on LeanCloud.

const (
	notifyQueueLen = 1024
	notifyWorkers  = 2
)

// notifyQueue runs notification hook calls off the request path.
type notifyQueue struct {
	jobs chan func(context.Context)
	wg   sync.WaitGroup
	ctx  context.Context // cancelled by close
	stop context.CancelFunc

	queued, dropped atomic.Int64
}

func (q *notifyQueue) start(workers, size int) {
	q.jobs = make(chan func(context.Context), size)
	q.ctx, q.stop = context.WithCancel(context.Background())
	for range workers {
		q.wg.Go(func() {
			for {
				select {
				case <-q.ctx.Done():
					return
				case j := <-q.jobs:
					j(q.ctx)
				}
			}
		})
	}
}

// close cancels calls in flight and waits for the workers.
func (q *notifyQueue) close() {
	if q.jobs == nil {
		return
	}
	q.stop()
	q.wg.Wait()
}

// enqueue hands j to the workers without blocking.
func (q *notifyQueue) enqueue(j func(context.Context)) {
	if q.jobs == nil {
		return
	}
	select {
	case q.jobs <- j:
		q.queued.Add(1)
	default:
		q.dropped.Add(1)
	}
}

// NotifyStats are the counters of the notification-hook queue.
type NotifyStats struct {
	Queued  int64 // calls queued
	Dropped int64 // calls dropped: queue full
}

// NotifyStats returns the notification-hook queue's counters.
func (c *Core) NotifyStats() NotifyStats {
	return NotifyStats{Queued: c.notify.queued.Load(), Dropped: c.notify.dropped.Load()}
}

// notifying reports whether app has hook, so callers build no event for
// nobody.
func (c *Core) notifying(app, hook string) bool {
	return c.hooks != nil && c.hooks.Enabled(app, hook)
}

// hookClientOnline queues _clientOnline for a login the leader accepted.
func (c *Core) hookClientOnline(app, peer, tag, ip string, reconnect bool) {
	if !c.notifying(app, hooks.HookClientOnline) {
		return
	}
	ev := hooks.ClientOnline{PeerID: peer, SourceIP: ip, Tag: tag}
	if reconnect {
		ev.Reconnect = 1
	}
	c.notify.enqueue(func(ctx context.Context) { _ = c.hooks.ClientOnline(ctx, app, ev) })
}

// offline is why a session ended, for _clientOffline.
type offline struct {
	code    int    // hooks.CloseLogout … hooks.CloseKicked
	msg     string // closeMsg
	errCode int32  // the edge's reason for a drop (4107), 0 for none
	errMsg  string
}

// hookClientOffline queues _clientOffline for session s. A dropped
// connection's event has no sourceIP (LeanCloud's rule).
func (c *Core) hookClientOffline(s *relay.Session, why offline) {
	if s == nil || !c.notifying(s.App, hooks.HookClientOffline) {
		return
	}
	ev := hooks.ClientOffline{PeerID: s.Peer, CloseCode: why.code, CloseMsg: why.msg, Tag: s.Tag,
		ErrorCode: why.errCode, ErrorMsg: why.errMsg}
	if why.code != hooks.CloseDropped {
		ev.SourceIP = s.IP
	}
	app := s.App
	c.notify.enqueue(func(ctx context.Context) { _ = c.hooks.ClientOffline(ctx, app, ev) })
}

// hookConvStarted queues _conversationStarted for a conversation created.
func (c *Core) hookConvStarted(app, cid string) {
	if !c.notifying(app, hooks.HookConversationStarted) {
		return
	}
	c.notify.enqueue(func(ctx context.Context) {
		_ = c.hooks.ConversationStarted(ctx, app, hooks.ConversationStarted{ConvID: cid})
	})
}

// hookConvChanged queues _conversationAdded (added) or
// _conversationRemoved for the members a join, invite, quit or kick
// actually changed.
func (c *Core) hookConvChanged(app, initBy, cid string, members []string, added bool) {
	hook := hooks.HookConversationRemoved
	if added {
		hook = hooks.HookConversationAdded
	}
	if len(members) == 0 || !c.notifying(app, hook) {
		return
	}
	ev := hooks.ConversationChanged{InitBy: initBy, ConvID: cid, Members: append([]string(nil), members...)}
	c.notify.enqueue(func(ctx context.Context) {
		if added {
			_ = c.hooks.ConversationAdded(ctx, app, ev)
		} else {
			_ = c.hooks.ConversationRemoved(ctx, app, ev)
		}
	})
}
