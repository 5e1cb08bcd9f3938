package shard

import (
	"encoding/json"
	"fmt"

	"github.com/cockroachdb/pebble"
)

// Will is a will message waiting for its session to end: a message that is
// sent to the conversation only when the session (Edge, Conn) that stored it
// drops. A client has at most one will per conversation; a newer one
// replaces it.
type Will struct {
	Message
	Edge string `json:"edge"`
	Conn uint64 `json:"conn"`
	// Priority is the send's LeanCloud priority (chatrooms: 1 HIGH, 2
	// NORMAL, 3 LOW; 0 unset), carried to the fan-out when the will fires.
	Priority int32 `json:"pri,omitempty"`
}

// will stores the command's message as From's will in CID.
func (a *applier) will() (*Result, *Error) {
	c := a.c
	conv, serr := a.conv(c.CID)
	if serr != nil {
		return nil, serr
	}
	if !conv.mayAppend(c.From) { // chatrooms: the core checked the session joined
		return nil, fail(ErrNotMember, c.From)
	}
	if conv.IsSilenced(c.From, c.Now) {
		return nil, fail(ErrShutup, c.From)
	}
	if c.MID == "" {
		return nil, fail(ErrBadCommand, "no message id")
	}
	w := &Will{
		Message: Message{ID: c.MID, CID: c.CID, From: c.From, T: c.Now, Data: c.Data, Bin: c.Bin,
			MentionPids: c.MentionPids, MentionAll: c.MentionAll},
		Edge: c.Edge, Conn: c.Conn, Priority: c.Priority,
	}
	a.set(willKey(c.App, c.From, c.CID), w)
	return &Result{Conv: conv, Message: &w.Message}, nil
}

// endWills handles the end of session (Edge, Conn) of From: with Fire its
// wills are appended to their conversations (if From may still send there),
// otherwise dropped.
func (a *applier) endWills() (*Result, *Error) {
	c := a.c
	if c.From == "" {
		return nil, fail(ErrBadCommand, "no sender")
	}
	wills, err := sessionWills(a.b, c.App, c.From, c.Edge, c.Conn)
	if err != nil {
		a.err = err
		return nil, fail(ErrBadCommand, err.Error())
	}
	res := &Result{}
	for _, w := range wills {
		a.del(willKey(c.App, c.From, w.CID))
		if !c.Fire {
			continue
		}
		conv, err := GetConv(a.b, c.App, w.CID)
		if err != nil {
			a.err = err
			return nil, fail(ErrBadCommand, err.Error())
		}
		if conv == nil || !conv.mayAppend(c.From) || conv.IsSilenced(c.From, c.Now) || conv.IsBlocked(c.From) {
			continue
		}
		if _, ok, err := getRaw(a.b, msgIDKey(c.App, w.CID, w.ID)); err != nil {
			a.err = err
			return nil, nil
		} else if ok {
			continue // the id is taken
		}
		m := w.Message
		a.store(conv, &m)
		res.Fired = append(res.Fired, Fired{Message: &m, Members: conv.Members, Room: conv.Transient, Priority: w.Priority})
	}
	return res, nil
}

// sessionWills returns the wills of pid stored by session (edge, conn).
func sessionWills(r Reader, app, pid, edge string, conn uint64) ([]*Will, error) {
	p := willPrefix(app, pid)
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var out []*Will
	for ok := it.First(); ok; ok = it.Next() {
		w := new(Will)
		if err := json.Unmarshal(it.Value(), w); err != nil {
			return nil, fmt.Errorf("%w: will at %q: %v", ErrStorage, it.Key(), err)
		}
		if w.Edge != edge || w.Conn != conn {
			continue
		}
		out = append(out, w)
	}
	return out, it.Error()
}

// SessionWills returns the conversations where session (edge, conn) of pid
// left a will.
func SessionWills(r Reader, app, pid, edge string, conn uint64) ([]string, error) {
	ws, err := sessionWills(r, app, pid, edge, conn)
	var cids []string
	for _, w := range ws {
		cids = append(cids, w.CID)
	}
	return cids, err
}
