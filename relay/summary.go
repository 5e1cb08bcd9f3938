package relay

import (
	"crypto/rand"
	"encoding/hex"
	"slices"
)

// The online summary (issue 9, docs/MESH.md "Regions and relays"): which
// clientIds have a session in this region, for the other regions' cores,
// which pull it (core/regions.go) and use it where a stale answer costs
// little: an offline push skipped for a client online in another region.
//
// Every change of a clientId between offline and online gets the next
// version in a bounded log; a reader that knows this relay's epoch (a
// random name per Relay) and a version still in the log gets the changes
// since, any other reader the whole set.

// onlineLogLen bounds the changes kept for readers that poll.
const onlineLogLen = 1 << 16

// PeerRef names a clientId of an app.
type PeerRef struct{ App, Peer string }

// TaggedRef is an online clientId of a summary and the tags of its
// sessions (sorted, without duplicates or "").
type TaggedRef struct {
	PeerRef
	Tags []string
}

// tagsOf are the tags of ss, sorted, without duplicates or "".
func tagsOf(ss []*Session) []string {
	var tags []string
	for _, s := range ss {
		if s.Tag != "" {
			tags = append(tags, s.Tag)
		}
	}
	slices.Sort(tags)
	return slices.Compact(tags)
}

type onlineChange struct {
	k      peerKey
	online bool
}

// onlineLog is the versioned change log; guarded by Relay.mu.
type onlineLog struct {
	epoch   string
	version uint64         // of the newest change
	log     []onlineChange // the changes of versions version-len(log)+1 .. version
}

func (o *onlineLog) init() {
	var b [8]byte
	rand.Read(b[:])
	o.epoch = hex.EncodeToString(b[:])
}

// note records k going from was to now online, or, with changed, a
// change of k's sessions while it stays online (their tags may differ:
// readers get k again with its tags).
func (o *onlineLog) note(k peerKey, was, now, changed bool) {
	if was == now && !(now && changed) {
		return
	}
	o.version++
	if len(o.log) == onlineLogLen { // drop the older half: amortised O(1)
		o.log = append(o.log[:0], o.log[onlineLogLen/2:]...)
	}
	o.log = append(o.log, onlineChange{k, now})
}

// OnlineSince returns the changes of the online set after version of
// epoch: full is true (and adds the whole set) when epoch is not this
// relay's or the log no longer reaches back to version.
func (r *Relay) OnlineSince(epoch string, version uint64) (curEpoch string, curVersion uint64, full bool, adds []TaggedRef, removes []PeerRef) {
	r.mu.Lock()
	defer r.mu.Unlock()
	o := &r.online
	oldest := o.version - uint64(len(o.log)) // the version before the first kept change
	if epoch != o.epoch || version < oldest || version > o.version {
		for k, ss := range r.sessions {
			adds = append(adds, TaggedRef{PeerRef{k.app, k.peer}, tagsOf(ss)})
		}
		return o.epoch, o.version, true, adds, nil
	}
	// Net change per clientId since version, in order of last change.
	last := map[peerKey]bool{}
	var order []peerKey
	for _, c := range o.log[version-oldest:] {
		if _, ok := last[c.k]; !ok {
			order = append(order, c.k)
		}
		last[c.k] = c.online
	}
	for _, k := range order {
		if last[k] && len(r.sessions[k]) > 0 {
			adds = append(adds, TaggedRef{PeerRef{k.app, k.peer}, tagsOf(r.sessions[k])})
		} else {
			removes = append(removes, PeerRef{k.app, k.peer})
		}
	}
	return o.epoch, o.version, false, adds, removes
}
