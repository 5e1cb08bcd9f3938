package shard

import (
	"fmt"

	"github.com/cockroachdb/pebble"
)

// What a restore of a shard's backup (cluster/backup.go, `relaymesh admin
// restore`) reads of the state.

// HasData reports whether the state holds any conversation, message or
// membership: a shard a restore would overwrite.
func HasData(r Reader) (bool, error) {
	for _, tag := range []byte{tagConv, tagMsg, tagMember, tagSubIdx, tagUserIdx, tagGlobal} {
		found, err := hasPrefix(r, []byte{tag})
		if err != nil {
			return false, fmt.Errorf("shard: has data: %w", err)
		}
		if found {
			return true, nil
		}
	}
	return false, nil
}

// ConvIDs calls fn with the app and id of every conversation in the
// state, in key order, until fn returns an error, which it returns.
func ConvIDs(r Reader, fn func(app, cid string) error) error {
	p := []byte{tagConv}
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return fmt.Errorf("shard: conversation ids: %w", err)
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		app, rest, ok := readStr(it.Key()[1:])
		if !ok {
			continue
		}
		cid, _, ok := readStr(rest)
		if !ok {
			continue
		}
		if err := fn(app, cid); err != nil {
			return err
		}
	}
	return it.Error()
}
