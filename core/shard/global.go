package shard

import (
	"fmt"

	"github.com/cockroachdb/pebble"
)

// Global broadcasts (REST POST /1.2/rtm/broadcasts, LeanCloud's 全局广播)
// are broadcasts of a system conversation (OpSysBcast with Command.Global)
// that go to every user of the app, subscriber or not: to the sessions
// online when it is sent, and to everyone else at their next login while it
// is valid. A client's first login gets only the newest valid one. They are
// indexed by app and time so that a login finds them without scanning the
// app's system conversations:
//
//	'g' app ts(8) mid -> str(cid) validTill(8)
//
// The entry is written with the broadcast's 'b' entry and removed with it
// (OpSysUnbroadcast). A transient broadcast (Command.Transient) is neither
// stored nor indexed: only the sessions online at the time get it.
const tagGlobal = 'g'

func globalPrefix(app string) []byte { return newKey(tagGlobal).str(app) }
func globalKey(app string, t int64, mid string) []byte {
	return keyBuf(globalPrefix(app)).ts(t).str(mid)
}

// GlobalBroadcast is a valid global broadcast and its conversation.
type GlobalBroadcast struct {
	CID string
	Broadcast
}

func decodeGlobal(rest, val []byte) (GlobalBroadcast, bool) {
	t, rest, ok1 := readTS(rest)
	mid, _, ok2 := readStr(rest)
	cid, val, ok3 := readStr(val)
	vt, _, ok4 := readTS(val)
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return GlobalBroadcast{}, false
	}
	return GlobalBroadcast{CID: cid, Broadcast: Broadcast{T: t, MID: mid, ValidTill: vt}}, true
}

// GlobalBroadcasts lists the app's global broadcasts sent after `after`
// (exclusive) and still valid at now, oldest first, at most limit (<= 0:
// all).
func GlobalBroadcasts(r Reader, app string, after, now int64, limit int) ([]GlobalBroadcast, error) {
	p := globalPrefix(app)
	var out []GlobalBroadcast
	err := scanFrom(r, p, tsBound(p, inc(max(after, 0))), func(rest, val []byte) bool {
		if g, ok := decodeGlobal(rest, val); ok && g.ValidTill > now {
			out = append(out, g)
		}
		return limit <= 0 || len(out) < limit
	})
	return out, err
}

// LatestGlobalBroadcast returns the app's newest global broadcast still
// valid at now; ok is false when there is none.
func LatestGlobalBroadcast(r Reader, app string, now int64) (g GlobalBroadcast, ok bool, err error) {
	p := globalPrefix(app)
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return g, false, fmt.Errorf("shard: iter: %w", err)
	}
	for valid := it.Last(); valid; valid = it.Prev() {
		if x, good := decodeGlobal(it.Key()[len(p):], it.Value()); good && x.ValidTill > now {
			g, ok = x, true
			break
		}
	}
	return g, ok, it.Close()
}
