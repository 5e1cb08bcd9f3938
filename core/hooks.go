package core

import (
	"context"
	"encoding/json"
	"sync"

	"github.com/relaymesh/relaymesh/hooks"
)

// Conversation hooks run before the corresponding proposal, on the request
// goroutine (they may block for the hook's timeout); a rejection is an
// appError wrapping errConvRejected (4305). _messageReceived is in
// filter.go; _messageSent and _receiversOffline run after fan-out on the
// after-send workers below.

// hookConvStart calls _conversationStart.
func (c *Core) hookConvStart(ctx context.Context, r *request, members []string, attr json.RawMessage) error {
	if c.hooks == nil || !c.hooks.Enabled(r.app, hooks.HookConversationStart) {
		return nil
	}
	v, _ := c.hooks.ConversationStart(ctx, r.app, hooks.ConversationStart{InitBy: r.peer, Members: members, Attr: attr})
	return convVerdict(v)
}

// hookConvMembers calls _conversationAdd (add, join) or _conversationRemove
// (kick; quitting is not an operation on others and is not hooked).
func (c *Core) hookConvMembers(ctx context.Context, r *request, cid string, pids []string, add bool) error {
	hook := hooks.HookConversationAdd
	if !add {
		if len(pids) == 1 && pids[0] == r.peer {
			return nil
		}
		hook = hooks.HookConversationRemove
	}
	if c.hooks == nil || !c.hooks.Enabled(r.app, hook) {
		return nil
	}
	ev := hooks.ConversationMembers{InitBy: r.peer, Members: pids, ConvID: cid}
	var v hooks.ConversationVerdict
	if add {
		v, _ = c.hooks.ConversationAdd(ctx, r.app, ev)
	} else {
		v, _ = c.hooks.ConversationRemove(ctx, r.app, ev)
	}
	return convVerdict(v)
}

// hookConvUpdate calls _conversationUpdate for an attribute change (attr)
// or a mute change (mute) and returns the replacement the hook gave, if any.
func (c *Core) hookConvUpdate(ctx context.Context, r *request, cid string, attr json.RawMessage, mute *bool) (hooks.UpdateVerdict, error) {
	if c.hooks == nil || !c.hooks.Enabled(r.app, hooks.HookConversationUpdate) {
		return hooks.UpdateVerdict{}, nil
	}
	v, _ := c.hooks.ConversationUpdate(ctx, r.app, hooks.ConversationUpdate{InitBy: r.peer, ConvID: cid, Attr: attr, Mute: mute})
	return v, convVerdict(v.ConversationVerdict)
}

func convVerdict(v hooks.ConversationVerdict) error {
	if !v.Reject {
		return nil
	}
	return &appError{kind: errConvRejected, appCode: v.AppCode, detail: v.Detail}
}

// Defaults of the after-send workers.
const (
	afterSendQueue   = 1024
	afterSendWorkers = 4
)

// afterSend runs the work that follows a fan-out and may block on the
// network — _messageSent, _receiversOffline and building the push request —
// on goroutines the core owns, never on the request goroutine. Its queue is
// bounded: when full the job is dropped and counted.
type afterSend struct {
	jobs chan sentJob
	wg   sync.WaitGroup
	ctx  context.Context // canceled by stop; bounds hook calls in flight
	stop context.CancelFunc
}

func (a *afterSend) start(c *Core, workers, size int) {
	a.jobs = make(chan sentJob, size)
	a.ctx, a.stop = context.WithCancel(context.Background())
	for range workers {
		a.wg.Go(func() {
			for {
				select {
				case <-a.ctx.Done():
					return
				case j := <-a.jobs:
					c.runSent(a.ctx, j)
				}
			}
		})
	}
}

// close cancels calls in flight and waits for the workers; jobs still
// queued are dropped.
func (a *afterSend) close() {
	if a.jobs == nil {
		return
	}
	a.stop()
	a.wg.Wait()
}

// enqueue hands j to the workers without blocking.
func (c *Core) enqueueSent(j sentJob) {
	if c.after.jobs == nil {
		return
	}
	select {
	case c.after.jobs <- j:
		c.xstats.afterQueued.Add(1)
	default:
		c.xstats.afterOverflow.Add(1)
	}
}
