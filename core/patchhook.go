package core

import (
	"context"
	"encoding/base64"
	"errors"

	"github.com/relaymesh/relaymesh/core/shard"
	"github.com/relaymesh/relaymesh/hooks"
)

// _messageUpdate runs before an edit or recall is proposed, on the request
// goroutine (it may block for the hook's timeout), for client patch/modify
// and the REST API's edits and recalls alike. It is called only for a
// message that exists and that r.peer may patch (its sender, or the server
// API), so a client cannot make the app's hook run for messages it could
// not change. A drop refuses the whole patch command with 4405
// MESSAGE_UPDATE_REJECTED_BY_APP (the hook's code and detail as appCode
// and appMsg); nothing is applied. A returned content (and bin) replaces
// an edit's new content — a recall stays a recall — and toPeers narrows
// the members told of the change (the sender's other sessions always
// are); history holds the change either way. A failed call follows the
// app's hook_policy.

// errUpdateRejected: an edit or recall the app's _messageUpdate dropped.
var errUpdateRejected = errors.New("core: message update rejected by the app")

// hookMessageUpdate calls _messageUpdate for sp, rewriting it as the hook
// says, and returns the recipients it narrowed the push to (nil: every
// member).
func (c *Core) hookMessageUpdate(ctx context.Context, r *request, sp *shard.Patch) ([]string, error) {
	if c.hooks == nil || !c.hooks.Enabled(r.app, hooks.HookMessageUpdate) {
		return nil, nil
	}
	conv, err := c.convView(r.app, sp.CID)
	if err != nil || conv == nil {
		return nil, nil // the proposal refuses it as before
	}
	m, err := shard.GetMessage(c.state(), r.app, sp.CID, sp.MID)
	if err != nil || m == nil || (m.From != r.peer && !isAdmin(ctx)) {
		return nil, nil
	}
	ev := hooks.MessageUpdate{
		FromPeer: r.peer, ConvID: sp.CID, ToPeers: without(conv.Members, r.peer),
		Timestamp: m.T, MsgID: m.ID, SourceIP: r.ip, Recall: sp.Recall, System: conv.System,
	}
	if !sp.Recall {
		ev.Content, ev.Bin = sp.Data, sp.Bin
	}
	v, _ := c.hooks.MessageUpdate(ctx, r.app, ev) // a failure is counted; the verdict applies
	if v.Drop {
		return nil, &appError{kind: errUpdateRejected, appCode: v.AppCode, detail: v.Detail}
	}
	if !sp.Recall {
		if v.Content != nil {
			sp.Data = *v.Content
		}
		if v.Bin != nil && *v.Bin != sp.Bin {
			if *v.Bin && v.Content == nil { // text re-flagged binary: its bytes
				sp.Data = base64.StdEncoding.EncodeToString([]byte(sp.Data))
			}
			sp.Bin = *v.Bin
		}
	}
	return v.ToPeers, nil
}
