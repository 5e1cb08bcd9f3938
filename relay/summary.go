package relay

import (
	"crypto/rand"
	"encoding/hex"
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

// note records k going from was to now online.
func (o *onlineLog) note(k peerKey, was, now bool) {
	if was == now {
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
func (r *Relay) OnlineSince(epoch string, version uint64) (curEpoch string, curVersion uint64, full bool, adds, removes []PeerRef) {
	r.mu.Lock()
	defer r.mu.Unlock()
	o := &r.online
	oldest := o.version - uint64(len(o.log)) // the version before the first kept change
	if epoch != o.epoch || version < oldest || version > o.version {
		for k := range r.sessions {
			adds = append(adds, PeerRef{k.app, k.peer})
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
		if last[k] {
			adds = append(adds, PeerRef{k.app, k.peer})
		} else {
			removes = append(removes, PeerRef{k.app, k.peer})
		}
	}
	return o.epoch, o.version, false, adds, removes
}
