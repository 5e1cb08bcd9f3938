package shard

import (
	"github.com/cockroachdb/pebble"
)

// MaxReceiptsPerMove bounds the receipts one cursor move produces; a cursor
// that jumps further only reports the oldest ones.
const MaxReceiptsPerMove = 1000

// receipts lists the receipts due because the command's sender moved its
// delivered (read=false) or read cursor in cid from (after, upTo]: one per
// message that asked for receipts and was sent by someone else.
func (a *applier) receipts(cid string, after, upTo int64, read bool) []Receipt {
	p := rcpPrefix(a.c.App, cid)
	it, err := a.b.NewIter(&pebble.IterOptions{LowerBound: tsBound(p, inc(after)), UpperBound: tsBound(p, inc(upTo))})
	if err != nil {
		a.err = err
		return nil
	}
	defer it.Close()
	var out []Receipt
	for ok := it.First(); ok && len(out) < MaxReceiptsPerMove; ok = it.Next() {
		_, rest, ok1 := readTS(it.Key()[len(p):])
		mid, _, ok2 := readStr(rest)
		sender := string(it.Value())
		if !ok1 || !ok2 || sender == a.c.From {
			continue
		}
		out = append(out, Receipt{CID: cid, MID: mid, To: sender, From: a.c.From, T: a.c.Now, Read: read})
	}
	if err := it.Error(); err != nil {
		a.err = err
	}
	return out
}
