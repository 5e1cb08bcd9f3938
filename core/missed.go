package core

import (
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/proto/lcpb"
)

// Pushes just missed, for a login in another region (loginregions.go).
//
// A login in another region marks the client online here when its share
// request arrives, one one-way delay after the login began, and that login
// does not wait for this region when the member index names nothing of the
// client here (or names it a catalog commit late: a conversation joined
// just before). A push made here in between (a message, the client added
// to a conversation, a receipt) finds the client online nowhere and
// reaches no one, after the client was told its session is open. So while
// other regions exist, each core keeps such pushes for missedKeep, per
// recipient that had no session anywhere, and a region's share of a login
// hands the recipient's to the asking region with the rest of the share,
// which pushes it (late, if it did not wait). A message is also counted in
// the share's unread counts, which come after it, so the count ends right.
// Transient messages and chatroom traffic are never kept (they are not for
// clients that were offline), nor is anything in a deployment of one
// region.

// missedKeep is how long a missed push is kept; missedMax and
// missedMaxBytes bound how many are (the oldest go first; the bytes of a
// push kept for several recipients count once per recipient).
const (
	missedKeep     = 3 * time.Second
	missedMax      = 4096
	missedMaxBytes = 8 << 20
)

type missedKey struct{ app, peer string }

type missedEvent struct {
	at  time.Time
	key missedKey
	cmd []byte // encoded, stamped, without peerId
}

// missedLog holds the events.
type missedLog struct {
	mu    sync.Mutex
	fifo  []missedEvent // guarded by mu; oldest first
	bytes int           // guarded by mu; of the commands in fifo
}

// noteMissed keeps cmd for every peer with no session here and none that
// a push reaches in another region (its summary, or a login marked there:
// once a login's share request marked the client here, its pushes go to
// that region live and are not kept, so none is handed over twice). cmd
// is stamped (pushEnvelope).
func (c *Core) noteMissed(app string, peers []string, cmd *lcpb.GenericCommand) {
	if c.remote == nil || len(c.remote.Numbers()) == 0 || len(peers) == 0 {
		return
	}
	switch cmd.GetCmd() {
	case lcpb.CommandType_conv:
		if !notifOps[cmd.GetOp()] {
			return
		}
	case lcpb.CommandType_rcp:
	case lcpb.CommandType_direct:
		if cmd.GetDirectMessage().GetTransient() {
			return
		}
	default:
		return
	}
	var b []byte
	now := time.Now()
	_, offline := c.relay.SplitOnline(app, peers) // one relay lock for the push, not one per recipient
	for _, p := range offline {
		if c.remote.ReachedElsewhere(app, p) {
			continue
		}
		if b == nil {
			g := proto.Clone(cmd).(*lcpb.GenericCommand)
			g.PeerId = nil
			var err error
			if b, err = proto.Marshal(g); err != nil {
				return
			}
		}
		c.missed.add(missedEvent{at: now, key: missedKey{app, p}, cmd: b})
	}
}

func (m *missedLog) add(e missedEvent) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.trimLocked(e.at)
	for len(m.fifo) > 0 && (len(m.fifo) >= missedMax || m.bytes+len(e.cmd) > missedMaxBytes) {
		m.dropLocked(1)
	}
	m.fifo = append(m.fifo, e)
	m.bytes += len(e.cmd)
}

// dropLocked forgets the n oldest.
func (m *missedLog) dropLocked(n int) {
	for _, e := range m.fifo[:n] {
		m.bytes -= len(e.cmd)
	}
	m.fifo = append(m.fifo[:0], m.fifo[n:]...)
	clear(m.fifo[len(m.fifo) : len(m.fifo)+n])
}

// trimLocked drops what is older than missedKeep.
func (m *missedLog) trimLocked(now time.Time) {
	i := 0
	for i < len(m.fifo) && now.Sub(m.fifo[i].at) > missedKeep {
		i++
	}
	if i > 0 {
		m.dropLocked(i)
	}
}

// missedFor returns the pushes kept for (app, peer) that were made since
// the login began, oldest first, with peerId set, and forgets them; a
// message whose id is in skip (the share's offline messages, protocol .1)
// is left out. What was pushed before the login began is an offline
// message like any other: counted in the share's unread, not pushed.
// since is the asking router's clock, compared with this core's as it is:
// if this one runs behind by d, a push made in the first d of the login is
// not handed over (it is in the share's unread counts); if ahead, one made
// up to d before the login is pushed as well.
func (c *Core) missedFor(app, peer string, since time.Time, skip map[string]bool) [][]byte {
	return c.missed.take(app, peer, time.Now(), since, skip)
}

// take is missedFor at now.
func (m *missedLog) take(app, peer string, now, since time.Time, skip map[string]bool) [][]byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.trimLocked(now)
	k := missedKey{app, peer}
	var out [][]byte
	keep := m.fifo[:0]
	for _, e := range m.fifo {
		if e.key != k {
			keep = append(keep, e)
			continue
		}
		m.bytes -= len(e.cmd)
		if e.at.Before(since) {
			continue
		}
		g := new(lcpb.GenericCommand)
		if proto.Unmarshal(e.cmd, g) != nil || skip[g.GetDirectMessage().GetId()] && g.GetCmd() == lcpb.CommandType_direct {
			continue
		}
		g.PeerId = proto.String(peer)
		if b, err := proto.Marshal(g); err == nil {
			out = append(out, b)
		}
	}
	clear(m.fifo[len(keep):])
	m.fifo = keep
	return out
}
