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
//
// Most conversations never had a message that asked for receipts; for
// those (known from one scan, then kept in the conversation cache) no
// iterator is opened.
func (a *applier) receipts(cid string, after, upTo int64, read bool) []Receipt {
	if !a.mayHaveReceipts(cid) {
		return nil
	}
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

// mayHaveReceipts reports whether cid may have a receipt key: false only
// when the cache knows it has none, or a scan through the batch finds none
// (which the cache then remembers until a receipt key is written).
func (a *applier) mayHaveReceipts(cid string) bool {
	app := a.c.App
	if a.cache.noReceipts(app, cid) {
		return false
	}
	p := rcpPrefix(app, cid)
	it, err := a.b.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return true // the caller's scan reports it
	}
	found := it.First()
	if err := it.Close(); err != nil {
		return true
	}
	if !found {
		a.cache.setNoReceipts(app, cid, true)
	}
	return found
}
