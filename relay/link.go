package relay

import (
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/relaymesh/relaymesh/proto/meshpb"
	"github.com/relaymesh/relaymesh/relay/pq"
)

// edgeLink is one attached edge: its queue and its sending goroutine.
type edgeLink struct {
	id    string
	owner string // the mesh identity that attached it (AttachEdgeAs); "" for AttachEdge
	send  func(*meshpb.Delivery) error
	q     *pq.Queue[*meshpb.Delivery] // DropNew: the queue is shared by every connection of the edge
	done  chan struct{}               // closed when the link is detached, replaced or the relay closes
	// highOut counts the HIGH deliveries the goroutine handed to send
	// (written or failed); with pq's Outcome.Seq it tells when a delivery
	// has left the relay (Wait).
	highOut atomic.Uint64
}

// loop hands queued deliveries to send, HIGH first, until done is closed.
func (l *edgeLink) loop(st *Stats) {
	for {
		select {
		case <-l.done:
			return
		default:
		}
		d, class, state := l.q.Pop()
		if state != pq.PopItem {
			select {
			case <-l.done:
				return
			case <-l.q.Notify():
			}
			continue
		}
		err := l.send(d)
		if class == pq.High {
			l.highOut.Add(1)
		}
		if err != nil {
			st.SendErrors.Add(1)
			continue
		}
		st.Delivered.Add(1)
	}
}

// ErrEdgeOwned refuses to attach an edge id that another mesh identity
// holds attached (AttachEdgeAs).
var ErrEdgeOwned = errors.New("relay: edge id attached by another mesh identity")

// AttachEdge is AttachEdgeAs with no owner: it replaces any attachment
// of edgeID by AttachEdge, and is refused (a no-op detach) while an owner
// of AttachEdgeAs holds it. Tests and in-process edges use it.
func (r *Relay) AttachEdge(edgeID string, send func(*meshpb.Delivery) error) (detach func()) {
	detach, err := r.AttachEdgeAs(edgeID, "", send)
	if err != nil {
		r.log.Warn("relay: attach refused", "edge", edgeID, "err", err)
		return func() {}
	}
	return detach
}

// AttachEdgeAs routes deliveries for edgeID through send, from a goroutine
// owned by the relay; send is called from that goroutine only. owner is
// the mesh identity (certificate name) of the edge attaching. A second
// attach of the same edge by the same owner replaces the first and keeps
// its sessions (the edge's new stream after a broken one); by another
// owner it is refused with ErrEdgeOwned while the first is attached, so
// one edge certificate cannot take over the deliveries of an edge id
// another holds (edges of an autoscaling group may share a certificate:
// the edge id is not the certificate's name, docs/OPERATIONS.md). Once
// the first detaches, its sessions are gone and the id is free.
// detach stops the goroutine and forgets every session (and every
// chatroom binding) of the edge. After Close it attaches nothing.
func (r *Relay) AttachEdgeAs(edgeID, owner string, send func(*meshpb.Delivery) error) (detach func(), err error) {
	l := &edgeLink{id: edgeID, owner: owner, send: send, q: pq.New[*meshpb.Delivery](int(r.queueLen.Load()), pq.DropNew),
		done: make(chan struct{})}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return func() {}, nil
	}
	if old := r.edges[edgeID]; old != nil {
		if old.owner != owner {
			r.mu.Unlock()
			return nil, fmt.Errorf("%w: edge %q is attached by %q, not %q", ErrEdgeOwned, edgeID, old.owner, owner)
		}
		close(old.done)
	}
	r.edges[edgeID] = l
	r.wg.Add(1)
	r.mu.Unlock()
	go func() {
		defer r.wg.Done()
		l.loop(&r.stats)
	}()
	return func() {
		now := r.now()
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.edges[edgeID] != l {
			return // replaced or closed
		}
		delete(r.edges, edgeID)
		close(l.done)
		r.rooms.dropEdge(edgeID, now)
		delete(r.lists, edgeID)
		delete(r.listed, edgeID)
		r.dropEdgeSessionsLocked(edgeID, 0, nil)
	}, nil
}

// EdgeOwner is the owner (AttachEdgeAs) of edgeID while it is attached;
// ok is false when it is not.
func (r *Relay) EdgeOwner(edgeID string) (owner string, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	l := r.edges[edgeID]
	if l == nil {
		return "", false
	}
	return l.owner, true
}

// Queued reports the deliveries waiting in every edge's queue now.
func (r *Relay) Queued() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, l := range r.edges {
		n += l.q.Len()
	}
	return n
}

// EdgeQueued reports the deliveries waiting in edgeID's queue now (0 when
// it is not attached).
func (r *Relay) EdgeQueued(edgeID string) int {
	r.mu.Lock()
	l := r.edges[edgeID]
	r.mu.Unlock()
	if l == nil {
		return 0
	}
	return l.q.Len()
}

// Wait is one HIGH delivery in an edge's queue (Fanout, Deliver). It has
// left the relay once the edge's goroutine handed as many HIGH deliveries
// to send as had been queued up to it, or once the edge is detached.
type Wait struct {
	l   *edgeLink
	seq uint64
}

// Left reports whether the delivery has left the relay (package doc,
// "Fan-out tracking").
func (w Wait) Left() bool {
	select {
	case <-w.l.done:
		return true
	default:
	}
	return w.l.highOut.Load() >= w.seq
}
