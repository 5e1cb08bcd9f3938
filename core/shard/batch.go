package shard

import (
	"fmt"

	"github.com/cockroachdb/pebble"
)

// MaxBatch bounds the commands of one batch command.
const MaxBatch = 1024

// applyBatch applies the commands of a batch in order on the same Pebble
// batch, as if each had been its own raft entry: a refused command writes
// nothing and does not stop the others. A fatal error in any of them is
// fatal for the whole entry. All of them share the entry's raft index; the
// messages its appends store share its fan-out tail key (fanout.go,
// Version4 on).
func (f *FSM) applyBatch(b *pebble.Batch, index uint64, c *Command) any {
	if len(c.Batch) == 0 || len(c.Batch) > MaxBatch {
		return fail(ErrBadCommand, fmt.Sprintf("batch of %d", len(c.Batch)))
	}
	res := &Result{Batch: make([]BatchItem, len(c.Batch))}
	var tails *[]FanoutEntry // fanout.go: the appends' tail entries, from Version4 on
	if c.version() >= Version4 {
		tails = new([]FanoutEntry)
	}
	for i, sub := range c.Batch {
		switch {
		case sub == nil || sub.Op == OpBatch:
			res.Batch[i].Err = fail(ErrBadCommand, "nested or empty batch entry")
			continue
		case sub.App == "":
			res.Batch[i].Err = fail(ErrBadCommand, "no app")
			continue
		}
		if sub.V == 0 {
			sub.V = c.V // entries take the batch's version
		}
		if ferr := checkVersion(index, sub); ferr != nil {
			return ferr
		}
		a := &applier{b: b, c: sub, cache: &f.cache, dedup: &f.dedup, v: sub.version(), index: index, touched: &f.members.touched,
			tails: tails}
		r, serr := a.apply()
		if a.err != nil { // as Apply: the whole entry is fatal
			return fatal(index, sub.Op, fmt.Errorf("batch entry %d: %w", i, a.err))
		}
		res.Batch[i] = BatchItem{Result: r, Err: serr}
	}
	if tails != nil {
		if err := writeTails(b, index, *tails); err != nil {
			return fatal(index, c.Op, err)
		}
	}
	return res
}
