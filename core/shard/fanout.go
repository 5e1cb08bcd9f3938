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
//	'O' index(8)  -> FanoutEntry (JSON)
//
// The tail holds only the messages whose fan-out is in flight, plus those
// a dead leader left behind, so it stays small. Entries are keyed by raft
// index, which every replica applies the same, so Apply stays
// deterministic.
const tagFanout = 'O'

// OpFanoutDone carries only Command.FanoutDone (no app).
const OpFanoutDone Op = "fanout_done"

// MaxFanoutDone bounds Command.FanoutDone; the proposer sends more in the
// next command.
const MaxFanoutDone = 4096

// FanoutEntry is a stored message whose fan-out is not known to be done.
type FanoutEntry struct {
	Index uint64   `json:"-"`
	App   string   `json:"app"`
	CID   string   `json:"cid"`
	MID   string   `json:"mid"`
	Edge  string   `json:"edge,omitempty"` // the sending session, which needs no push
	Conn  uint64   `json:"conn,omitempty"`
	To    []string `json:"to,omitempty"` // the recipients when a hook narrowed them
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
	a.set(fanoutKey(a.index), FanoutEntry{App: c.App, CID: m.CID, MID: m.ID, Edge: c.Edge, Conn: c.Conn, To: c.To})
}

// FanoutTail returns up to limit tail entries with index ≤ upTo, oldest
// first.
func FanoutTail(r Reader, upTo uint64, limit int) ([]FanoutEntry, error) {
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: []byte{tagFanout}, UpperBound: fanoutKey(upTo + 1)})
	if err != nil {
		return nil, fmt.Errorf("shard: fan-out tail: %w", err)
	}
	defer it.Close()
	var out []FanoutEntry
	for ok := it.First(); ok && len(out) < limit; ok = it.Next() {
		k := it.Key()
		if len(k) != 9 {
			continue
		}
		var e FanoutEntry
		if err := json.Unmarshal(it.Value(), &e); err != nil {
			return nil, fmt.Errorf("shard: fan-out entry: %w", err)
		}
		e.Index = binary.BigEndian.Uint64(k[1:])
		out = append(out, e)
	}
	return out, it.Error()
}
