package core

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"

	"github.com/relaymesh/relaymesh/core/shard"
	"github.com/relaymesh/relaymesh/hooks"
)

// inbound is a client's message after the app's say: the _messageReceived
// hook (hooks.go) and the sensitive-word filter, both applied before the
// message is proposed, so history and every delivery carry the result.
type inbound struct {
	data string
	bin  bool
	// to replaces the recipients when the hook narrowed them; nil keeps
	// the members (see recipients).
	to []string
}

// filtered reports whether conv's messages go through the sensitive-word
// filter: group conversations (more than two members), chatrooms and
// system conversations, never 1:1 chats (LeanCloud's rule).
func filtered(conv *shard.Conv) bool {
	return conv != nil && (conv.Transient || conv.System || len(conv.Members) > 2)
}

// inbound runs the _messageReceived hook, then the filter, over the message
// (r.cmd's direct) r.peer sends to cid: a client's (direct) or the server API's (adminSend,
// ctx carrying withAdmin, whose sender need not be a member). Hook rewrites
// are filtered too. A drop is an appError wrapping errMessageRejected
// (4402). It runs before the conversation lock is taken: a slow hook delays
// only its own message.
func (c *Core) inbound(ctx context.Context, r *request, cid string) (inbound, error) {
	data, bin := directContent(r.cmd.GetDirectMessage()) // message.go
	in := inbound{data: data, bin: bin}
	conv, err := c.convView(r.app, cid)
	if err != nil || conv == nil {
		return in, nil // the send path refuses it as before
	}
	mayPost := conv.IsMember(r.peer) || conv.Transient || isAdmin(ctx)
	if c.hooks != nil && c.hooks.Enabled(r.app, hooks.HookMessageReceived) && mayPost {
		dm := r.cmd.GetDirectMessage()
		v, _ := c.hooks.MessageReceived(ctx, r.app, hooks.MessageReceived{
			FromPeer: r.peer, ConvID: cid, ToPeers: without(conv.Members, r.peer),
			Transient: dm.GetTransient(), Bin: bin, Content: data, Receipt: dm.GetR(),
			Timestamp: c.nowMS(), System: conv.System, SourceIP: r.ip,
		}) // a failed hook is counted by the client; the verdict applies
		if v.Drop {
			return in, &appError{kind: errMessageRejected, appCode: v.AppCode, detail: v.Detail}
		}
		if v.Content != nil {
			in.data = *v.Content
		}
		if v.Bin != nil && *v.Bin != bin {
			in.bin = *v.Bin
			if in.bin && v.Content == nil { // text re-flagged binary: its bytes
				in.data = base64.StdEncoding.EncodeToString([]byte(data))
			}
		}
		if v.ToPeers != nil {
			in.to = v.ToPeers
		}
	}
	if !in.bin && filtered(conv) {
		in.data = c.filterText(r.app, in.data)
	}
	return in, nil
}

// filterText replaces the app's sensitive words in a message's text.
func (c *Core) filterText(app, data string) string {
	out, n := c.filterFor(app).FilterMessage(data) // words.go
	if n > 0 {
		c.xstats.filtered.Add(1)
		c.xstats.filterHits.Add(int64(n))
	}
	return out
}

// filterAdmin filters a server-API message to a system conversation
// (sysconv.go) like a client's, without the hooks.
func (c *Core) filterAdmin(app, cid, data string, bin bool) string {
	if bin {
		return data
	}
	if conv, err := c.convView(app, cid); err != nil || !filtered(conv) {
		return data
	}
	return c.filterText(app, data)
}

// filterPatch filters the new text of an edit like a sent message's:
// binary content, recalls and 1:1 chats are left alone.
func (c *Core) filterPatch(app string, p *shard.Patch) {
	if p.Recall || p.Bin {
		return
	}
	if conv, err := c.convView(app, p.CID); err != nil || !filtered(conv) {
		return
	}
	p.Data = c.filterText(app, p.Data)
}

// recipients narrows members to the hook's toPeers, keeping the sender
// (whose other sessions stay in sync).
func (in inbound) recipients(members []string, sender string) []string {
	if in.to == nil {
		return members
	}
	out := make([]string, 0, len(in.to)+1)
	for _, m := range members {
		if m == sender || slices.Contains(in.to, m) {
			out = append(out, m)
		}
	}
	return out
}

// Refusals by an app's hook; an appError carries the hook's own code.
var (
	errMessageRejected = errors.New("core: message rejected by the app")
	errConvRejected    = errors.New("core: conversation operation rejected by the app")
)

// appError is a refusal by an app's hook: kind is errMessageRejected or
// errConvRejected; appCode and detail reach the client as appCode and
// appMsg.
type appError struct {
	kind    error
	appCode int32
	detail  string
}

func (e *appError) Error() string {
	if e.detail == "" {
		return e.kind.Error()
	}
	return fmt.Sprintf("%v: %s", e.kind, e.detail)
}

func (e *appError) Unwrap() error { return e.kind }

// asAppError returns the appError in err's chain, if any.
func asAppError(err error) (*appError, bool) {
	var ae *appError
	ok := errors.As(err, &ae)
	return ae, ok
}
