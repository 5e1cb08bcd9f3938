package shard

import (
	"encoding/binary"
	"encoding/json"
	"fmt"

	"github.com/cockroachdb/pebble"
)

// Fan-out tail: which stored messages may not have reached their online
// recipients yet. A leader commits a message, acks it and then fans it out;
// if it dies in between, the message is safe in the log but nobody pushed
// it. So every stored message (append) also writes a tail entry under its
// raft index, and the leader that fanned a message out names its index in
// a later command (Command.FanoutDone, any op, or OpFanoutDone when it has
// nothing else to propose), which deletes the entry. A new leader pushes
// what is left in the tail (core/fanout.go) and then names it done.
//
//	'O' index(8)  -> FanoutEntry (JSON), or [FanoutEntry, ...] (a JSON
//	                 array) when the entry stored several messages
//
// The tail holds only the messages whose fan-out is in flight, plus those
// a dead leader left behind, so it stays small. Entries are keyed by raft
// index, which every replica applies the same, so Apply stays
// deterministic.
//
// One raft entry may store several messages: a batch of appends (the
// core's group commit of sends, core/sendgroup.go). From Version4 on, a
// batch's appends gather their tail entries and the batch writes them
// once, as an array in the order they were stored (FanoutEntry.Pos), so a
// leader still names the whole entry done with its one index and
// FanoutDone stays a point delete per index. Before Version4 each append
// wrote its entry under the same key, the later over the earlier; a
// Version3 batch of appends (never proposed by a core, which needs
// Version4 for one, NeedsVersion) still applies that way, as it first did.
const tagFanout = 'O'

// OpFanoutDone carries only Command.FanoutDone (no app).
const OpFanoutDone Op = "fanout_done"

// MaxFanoutDone bounds Command.FanoutDone; the proposer sends more in the
// next command.
const MaxFanoutDone = 4096

// FanoutEntry is a stored message whose fan-out is not known to be done.
type FanoutEntry struct {
	Index uint64 `json:"-"`
	// Pos is the message's place among those its raft entry stored (0
	// for the first, or the only one).
	Pos  int      `json:"-"`
	App  string   `json:"app"`
	CID  string   `json:"cid"`
	MID  string   `json:"mid"`
	Edge string   `json:"edge,omitempty"` // the sending session, which needs no push
	Conn uint64   `json:"conn,omitempty"`
	To   []string `json:"to,omitempty"` // the recipients when a hook narrowed them
}

func fanoutKey(index uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{tagFanout}, index)
}

// applyFanoutDone deletes the tail entries c names. It runs for every
// command, before the command itself and whatever its outcome: the
// entries name fan-outs that happened, not what this command changes.
func applyFanoutDone(b *pebble.Batch, c *Command) error {
	if len(c.FanoutDone) > MaxFanoutDone {
		return nil // a proposer never sends this many; ignore rather than half-apply
	}
	for _, idx := range c.FanoutDone {
		if err := b.Delete(fanoutKey(idx), nil); err != nil {
			return err
		}
	}
	return nil
}

// tail records a stored message in the fan-out tail at the applier's raft
// index (Version2 on; the core of a cluster pinned to Version1 neither
// writes nor replays the tail, core/fanout.go).
func (a *applier) tail(m *Message) {
	if a.v < Version2 { // a Version1 replica keeps no tail
		return
	}
	c := a.c
	e := FanoutEntry{App: c.App, CID: m.CID, MID: m.ID, Edge: c.Edge, Conn: c.Conn, To: c.To}
	if a.tails != nil { // a Version4 batch: written once at its end (writeTails)
		*a.tails = append(*a.tails, e)
		return
	}
	a.set(fanoutKey(a.index), e)
}

// writeTails writes the tail entries a batch's appends gathered (Version4
// on): one as its object, as a single append writes it, several as an
// array in order.
func writeTails(b *pebble.Batch, index uint64, tails []FanoutEntry) error {
	var v any = tails
	switch len(tails) {
	case 0:
		return nil
	case 1:
		v = tails[0]
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Set(fanoutKey(index), raw, nil)
}

// FanoutTail returns the tail entries of up to limit raft indexes ≤ upTo,
// oldest first and, within an index, in the order they were stored (an
// index's entries are never split between calls).
func FanoutTail(r Reader, upTo uint64, limit int) ([]FanoutEntry, error) {
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: []byte{tagFanout}, UpperBound: fanoutKey(upTo + 1)})
	if err != nil {
		return nil, fmt.Errorf("shard: fan-out tail: %w", err)
	}
	defer it.Close()
	var out []FanoutEntry
	for ok, n := it.First(), 0; ok && n < limit; ok, n = it.Next(), n+1 {
		k := it.Key()
		if len(k) != 9 {
			continue
		}
		idx := binary.BigEndian.Uint64(k[1:])
		v := it.Value()
		if len(v) > 0 && v[0] == '[' { // several messages (Version4)
			var es []FanoutEntry
			if err := json.Unmarshal(v, &es); err != nil {
				return nil, fmt.Errorf("shard: fan-out entries at %d: %w", idx, err)
			}
			for i := range es {
				es[i].Index, es[i].Pos = idx, i
			}
			out = append(out, es...)
			continue
		}
		var e FanoutEntry
		if err := json.Unmarshal(v, &e); err != nil {
			return nil, fmt.Errorf("shard: fan-out entry: %w", err)
		}
		e.Index = idx
		out = append(out, e)
	}
	return out, it.Error()
}
