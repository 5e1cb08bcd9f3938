package relay

import "github.com/relaymesh/relaymesh/proto/meshpb"

// SyncPresence applies an edge's presence frame (meshpb.Presence): every
// core of a region learns the sessions of every edge, so a core that
// becomes shard leader, or restarts, can fan out without anyone logging in
// again. It only records sessions: no tag kick and no login notifications,
// which the leader did when it handled the OPEN. Applying a frame twice is
// harmless.
//
// It also mirrors chatroom membership (PresenceSession.room, rooms.go),
// pushing nothing. authoritative is set on the core that leads the shard:
// it keeps its own memberships and only restores sessions it has in no
// chatroom (after a restart); the others take what the leader told the
// edge.
func (r *Relay) SyncPresence(edgeID string, p *meshpb.Presence, authoritative bool) {
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	if p.GetReplaceAll() && !authoritative {
		r.rooms.dropEdge(edgeID, now) // rebound below from the list
	}
	// A full list replaces the edge's sessions once it is all here (its
	// last frame, more unset), so none it holds is missing in between;
	// sessions registered from an OPEN the edge sent after it made the
	// list stay too: the OPEN and the list race on different streams
	// (edge/corelink/presence.go, beginOpen).
	list := r.lists[edgeID]
	if p.GetReplaceAll() {
		list = &fullList{snapshot: p.GetSnapshotSeq(), keys: make(map[listKey]struct{}, len(p.GetAdd()))}
		r.lists[edgeID] = list
	}
	for _, rm := range p.GetRemove() {
		from := ConnKey{edgeID, rm.GetConnId()}
		r.removeSessionLocked(peerKey{rm.GetAppId(), rm.GetPeerId()}, from)
		r.rooms.closeSession(rm.GetAppId(), rm.GetPeerId(), from, now) // detached for RoomGrace
	}
	for _, a := range p.GetAdd() {
		k := peerKey{a.GetAppId(), a.GetPeerId()}
		from := ConnKey{edgeID, a.GetConnId()}
		var ip string // the leader's record of its own OPEN keeps the address (core/notifyhooks.go)
		if old := r.removeSessionLocked(k, from); old != nil {
			ip = old.IP
		}
		r.online.note(k, len(r.sessions[k]) > 0, true, true)
		r.sessions[k] = append(r.sessions[k], &Session{App: a.GetAppId(), Peer: a.GetPeerId(), Tag: a.GetTag(),
			Edge: edgeID, Conn: a.GetConnId(), Version: a.GetProtocolVersion(), IP: ip, Seq: a.GetSeq(), Chain: a.GetChain()})
		if list != nil {
			list.keys[listKey{k, a.GetConnId()}] = struct{}{}
		}
		r.today.note(k, now)
		r.rooms.mirror(Member{a.GetAppId(), a.GetPeerId(), a.GetTag()}, from, a.GetRoom(), authoritative, now)
	}
	if list != nil && !p.GetMore() {
		delete(r.lists, edgeID)
		r.dropEdgeSessionsLocked(edgeID, list.snapshot, list.keys)
		if r.edges[edgeID] != nil {
			r.listed[edgeID] = true
		}
	}
}

// fullList is an edge's full presence list while its frames arrive.
type fullList struct {
	snapshot uint64               // Presence.snapshot_seq
	keys     map[listKey]struct{} // the sessions listed so far
}

// listKey names a session of one edge.
type listKey struct {
	peer peerKey
	conn uint64
}

// ListedEdges reports the edges attached whose full presence list has
// arrived since they attached: the relay knows all their sessions.
func (r *Relay) ListedEdges() map[string]bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]bool, len(r.listed))
	for e := range r.listed {
		out[e] = true
	}
	return out
}

// AttachedEdges lists the edges attached now, in no order.
func (r *Relay) AttachedEdges() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.edges))
	for e := range r.edges {
		out = append(out, e)
	}
	return out
}
