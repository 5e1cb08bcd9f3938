package corelink

import (
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/mesh"
	"github.com/relaymesh/relaymesh/proto/meshpb"
)

// Presence off the request path: the edge tells every core of its region
// which sessions it holds (meshpb.Presence on each core's delivery stream,
// relay/presence.go mirrors them). Requests never wait for it: a session
// that opens or ends only updates Link.sessions and appends a change to
// each attached core's presenceQueue under Link.mu; one writer
// goroutine per delivery stream (run by the delivery loop that owns the
// stream) sends the queued changes, coalesced per session (the last change
// of a session wins), with the stream's send timeout. A core that reads
// slowly, or died unnoticed, only delays its own queue.
//
// Overflow: a queue holds at most presenceQueueLen changes. One more
// throws the queue away and marks it for a resync: the writer then sends
// the full session list (replace_all) instead, which supersedes every
// change it dropped (counted in relaymesh_edge_link_presence_overflows_total).
// A stream (re)attaching starts with a resync too. A send that fails or
// times out closes the stream; the delivery loop reconnects and resyncs.

const (
	// presenceQueueLen bounds the changes waiting for one core.
	presenceQueueLen = 4096
	// presenceSendTimeout bounds one presence frame's write.
	presenceSendTimeout = 5 * time.Second
	// presenceChunk bounds the sessions of one frame of a full list.
	presenceChunk = 10000
)

// presenceQueue is what waits to be told to one core. Its fields are
// guarded by Link.mu.
type presenceQueue struct {
	changes []presenceChange
	resync  bool          // send the whole list first; changes are dropped
	wake    chan struct{} // cap 1: the writer has work
}

type presenceChange struct {
	ps   *meshpb.PresenceSession // shared, never modified after queueing
	open bool
}

// attachPresence registers the delivery stream to core addr: its queue
// starts with a resync. detach must follow when the stream ends.
func (l *Link) attachPresence(addr string) *presenceQueue {
	q := &presenceQueue{resync: true, wake: make(chan struct{}, 1)}
	q.wake <- struct{}{}
	l.mu.Lock()
	l.presence[addr] = q
	l.mu.Unlock()
	return q
}

func (l *Link) detachPresence(addr string, q *presenceQueue) {
	l.mu.Lock()
	if l.presence[addr] == q {
		delete(l.presence, addr)
	}
	l.mu.Unlock()
}

// beginOpen records a session whose OPEN is about to be sent and returns
// the OPEN's presence sequence number. Until endOpen, full lists include
// it.
//
// Why: a full list (replace_all) goes on each core's delivery stream, an
// OPEN on a request stream, and nothing orders the two. The core
// registers a session when it handles the OPEN; a full list made before
// the edge knew of the session, and read by the core after that, would
// drop it until the session's own change arrived, and the messages
// fanned out in between reached nobody (issue 11's reconnect storm lost
// copies this way: 15,000 OPENs overflow the queues into full lists).
// Now a full list holds every session whose OPEN was sent before it was
// made, answered or not, and says up to which sequence number
// (Presence.snapshot_seq); the core keeps a session registered from a
// later OPEN (relay.SyncPresence).
func (l *Link) beginOpen(ps *meshpb.PresenceSession) uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seq++
	ps.Seq = l.seq
	l.opening[sessionKey{ps.AppId, ps.PeerId, ps.ConnId}] = ps
	return ps.Seq
}

// endOpen settles an OPEN beginOpen recorded: the session logged in (in
// room, "" for none), or not. A session that did not log in may be on a
// full list sent meanwhile, or registered by a core whose answer was
// lost: every core is told it ended.
func (l *Link) endOpen(ps *meshpb.PresenceSession, ok bool, room string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := sessionKey{ps.AppId, ps.PeerId, ps.ConnId}
	if l.opening[k] == ps {
		delete(l.opening, k)
	}
	if ok {
		if room != "" { // ps may be on a full list being sent: a copy
			ps = proto.Clone(ps).(*meshpb.PresenceSession)
			ps.Room = room
		}
		l.sessions[k] = ps
		l.queueLocked(presenceChange{ps, true})
		return
	}
	if _, open := l.sessions[k]; open {
		return // an earlier login of the same connection still stands
	}
	l.queueLocked(presenceChange{&meshpb.PresenceSession{AppId: ps.AppId, PeerId: ps.PeerId, ConnId: ps.ConnId}, false})
}

// track records a session that ended (open false) and queues the change
// for every core. It never blocks on a core. Sessions open with
// beginOpen and endOpen.
func (l *Link) track(ps *meshpb.PresenceSession, open bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := sessionKey{ps.AppId, ps.PeerId, ps.ConnId}
	if open {
		l.sessions[k] = ps
	} else {
		if _, ok := l.sessions[k]; !ok {
			return
		}
		delete(l.sessions, k)
	}
	l.queueLocked(presenceChange{ps, open})
}

// setRoom records the chatroom the leader says session k is now in ("" for
// none) and tells every core, which mirror it (relay/rooms.go): a new
// leader then still fans out to the session.
func (l *Link) setRoom(k sessionKey, room string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	old := l.sessions[k]
	if old == nil {
		return // ended meanwhile
	}
	// A new message: the old one may sit in a queue or a frame being sent.
	ps := proto.Clone(old).(*meshpb.PresenceSession)
	ps.Room = room
	l.sessions[k] = ps
	l.queueLocked(presenceChange{ps, true})
}

// ended notices deliveries that end a session (tag kick): the core that
// sent it already forgot the session; the others must too.
func (l *Link) ended(d *meshpb.Delivery) {
	for _, t := range d.Targets {
		if t.EndSession {
			l.track(&meshpb.PresenceSession{AppId: d.AppId, PeerId: t.PeerId, ConnId: t.ConnId}, false)
		}
	}
}

func (l *Link) queueLocked(c presenceChange) {
	for _, q := range l.presence {
		switch {
		case q.resync: // the full list will carry it
		case len(q.changes) >= presenceQueueLen:
			q.changes, q.resync = nil, true
			l.stats.presenceOverflow.Add(1)
		default:
			q.changes = append(q.changes, c)
		}
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
}

// takeLocked returns the frames to send now for q and empties it.
func (l *Link) takeLocked(q *presenceQueue) []*meshpb.Presence {
	if q.resync {
		q.resync, q.changes = false, nil
		l.stats.presenceResyncs.Add(1)
		frames := []*meshpb.Presence{{ReplaceAll: true, SnapshotSeq: l.seq}}
		add := func(ps *meshpb.PresenceSession) {
			f := frames[len(frames)-1]
			if len(f.Add) >= presenceChunk {
				f.More = true
				f = &meshpb.Presence{}
				frames = append(frames, f)
			}
			f.Add = append(f.Add, ps)
		}
		for _, ps := range l.sessions {
			add(ps)
		}
		for k, ps := range l.opening {
			if _, ok := l.sessions[k]; !ok {
				add(ps)
			}
		}
		return frames
	}
	if len(q.changes) == 0 {
		return nil
	}
	// The core applies a frame's removes before its adds, so each session
	// appears once, with its last change.
	last := make(map[sessionKey]int, len(q.changes))
	for i, c := range q.changes {
		last[sessionKey{c.ps.AppId, c.ps.PeerId, c.ps.ConnId}] = i
	}
	f := &meshpb.Presence{}
	for i, c := range q.changes {
		if last[sessionKey{c.ps.AppId, c.ps.PeerId, c.ps.ConnId}] != i {
			continue
		}
		if c.open {
			f.Add = append(f.Add, c.ps)
		} else {
			f.Remove = append(f.Remove, c.ps)
		}
	}
	q.changes = nil
	return []*meshpb.Presence{f}
}

// writePresence sends q's frames on s until done is closed or a send
// fails; then it closes s so the delivery loop reconnects (and resyncs).
func (l *Link) writePresence(s *mesh.Stream, q *presenceQueue, done <-chan struct{}) {
	for {
		select {
		case <-done:
			return
		case <-q.wake:
		}
		if l.presDelay > 0 { // TEST HOOK (Config.PresenceDelay)
			select {
			case <-done:
				return
			case <-time.After(l.presDelay):
			}
		}
		l.mu.Lock()
		frames := l.takeLocked(q)
		l.mu.Unlock()
		s.SetSendTimeout(time.Duration(l.sendTimeout.Load()))
		for _, f := range frames {
			b, err := proto.Marshal(f)
			if err == nil {
				err = s.Send(b)
			}
			if err != nil {
				l.log.Debug("presence send failed; the core resyncs on reconnect", "err", err)
				s.Close()
				return
			}
		}
	}
}
