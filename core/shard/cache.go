package shard

import (
	"encoding/json"
	"fmt"
	"slices"
	"sync"
)

// MaxCachedConvs bounds the decoded-conversation cache; past it an
// arbitrary entry makes room (the cache only saves decoding, so which one
// goes does not matter).
const MaxCachedConvs = 4096

// convCache keeps decoded conversations so that the hot commands (append,
// ack, read) and the core's checks do not decode the JSON record, with its
// whole member list, every time.
//
// It holds, for each cached (app, cid), exactly what GetConv would return
// from the state once the batch being applied is committed: the applier
// fills it on a miss (reading through its batch) and replaces the entry
// whenever it writes the conversation's record or last message. raftstore
// commits every batch it hands to Apply, or the replica dies, so the cache
// never holds a write that the state will not. Anything that replaces the
// state behind the FSM's back (a snapshot restore) must call FSM.Reset.
//
// Entries are immutable once stored: the applier works on a shallow copy
// whose slices are clipped, so appending to them reallocates.
type convCache struct {
	mu sync.RWMutex
	m  map[convID]*Conv // guarded by mu
	// noRcp holds conversations known to have no receipt key ('Q') at
	// all, so a cursor move there need not open an iterator to look for
	// receipts due (receipts.go). An entry is added only after a scan,
	// through the batch being applied, found none; store removes it
	// before it writes a receipt key; reset (a discarded batch, a
	// restore) empties it with the rest. Guarded by mu.
	noRcp map[convID]struct{}
}

// maxNoRcp bounds convCache.noRcp; past it the set starts over (a missing
// entry only costs a scan).
const maxNoRcp = 1 << 16

type convID struct{ app, cid string }

func (c *convCache) get(app, cid string) *Conv {
	c.mu.RLock()
	v := c.m[convID{app, cid}]
	c.mu.RUnlock()
	return v
}

func (c *convCache) put(app, cid string, v *Conv) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := convID{app, cid}
	if _, ok := c.m[k]; !ok && len(c.m) >= MaxCachedConvs {
		for old := range c.m {
			delete(c.m, old)
			break
		}
	}
	if c.m == nil {
		c.m = make(map[convID]*Conv)
	}
	c.m[k] = v
}

func (c *convCache) reset() {
	c.mu.Lock()
	c.m, c.noRcp = nil, nil
	c.mu.Unlock()
}

// noReceipts reports whether (app, cid) is known to have no receipt key.
func (c *convCache) noReceipts(app, cid string) bool {
	c.mu.RLock()
	_, ok := c.noRcp[convID{app, cid}]
	c.mu.RUnlock()
	return ok
}

// setNoReceipts records that (app, cid) has no receipt key (ok=true), or
// that it may have one (ok=false).
func (c *convCache) setNoReceipts(app, cid string, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := convID{app, cid}
	if !ok {
		delete(c.noRcp, k)
		return
	}
	if c.noRcp == nil || len(c.noRcp) >= maxNoRcp {
		c.noRcp = make(map[convID]struct{})
	}
	c.noRcp[k] = struct{}{}
}

func (c *convCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m)
}

// clone returns a shallow copy of v whose slices cannot be appended to in
// place.
func (v *Conv) clone() *Conv {
	c := *v
	c.Members = slices.Clip(c.Members)
	c.Muted = slices.Clip(c.Muted)
	c.Managers = slices.Clip(c.Managers)
	c.Shutup = slices.Clip(c.Shutup)
	c.Blocked = slices.Clip(c.Blocked)
	c.Attr = slices.Clip(c.Attr)
	return &c
}

// Reset empties the conversation cache. raftstore calls it when it replaces
// the state (snapshot restore) and when it opens a state DB.
func (f *FSM) Reset() {
	f.cache.reset()
	f.dedup.reset()   // dedup.go
	f.members.reset() // members.go
}

// Conv returns the conversation as of the last applied command, from the
// cache when it is there, otherwise decoded from r (without caching it: only
// the applier fills the cache). The result is shared: callers must not
// modify it. It returns nil if the conversation does not exist.
func (f *FSM) Conv(r Reader, app, cid string) (*Conv, error) {
	if v := f.cache.get(app, cid); v != nil {
		return v, nil
	}
	return GetConv(r, app, cid)
}

// conv loads the command's conversation for modification: a private copy
// of the cached one, or decoded through the batch (and then cached).
func (a *applier) conv(cid string) (*Conv, *Error) {
	if cid == "" {
		return nil, fail(ErrBadCommand, "no cid")
	}
	if v := a.cache.get(a.c.App, cid); v != nil {
		return v.clone(), nil
	}
	conv, err := GetConv(a.b, a.c.App, cid)
	if err != nil {
		a.err = err
		return nil, fail(ErrConvNotFound, err.Error())
	}
	if conv == nil {
		return nil, fail(ErrConvNotFound, cid)
	}
	a.cache.put(a.c.App, cid, conv.clone())
	return conv, nil
}

// convExists reports whether conversation cid exists. A failed read is
// recorded in a.err (fatal) and reported as existing, so the caller
// refuses and writes nothing.
func (a *applier) convExists(cid string) bool {
	if a.cache.get(a.c.App, cid) != nil {
		return true
	}
	old, err := GetConv(a.b, a.c.App, cid)
	if err != nil {
		a.err = err
		return true
	}
	return old != nil
}

// putConv writes conv's record and caches it as GetConv will decode it: the
// record's fields from the JSON just written (so the cache never differs
// from a decode, e.g. in how JSON normalises strings), the last message as
// kept in its own key (putLast).
func (a *applier) putConv(conv *Conv) {
	if a.err != nil {
		return
	}
	b, err := json.Marshal(conv)
	if err != nil {
		a.err = err
		return
	}
	a.set(convKey(a.c.App, conv.ID), b)
	dec := new(Conv)
	if err := json.Unmarshal(b, dec); err != nil {
		a.err = fmt.Errorf("shard: decode conv just encoded: %w", err)
		return
	}
	dec.setLast(conv.last())
	a.cache.put(a.c.App, conv.ID, dec)
}

// putLast writes conv's last message to its own key and updates the cached
// conversation; the record itself is left alone. conv becomes the cached
// value as it is, not a copy (a copy a message cost an allocation of the
// whole record): it must be the applier's own (a.conv returns a copy) and
// is not changed after, as the cache's values never are.
func (a *applier) putLast(conv *Conv) {
	a.set(lastKey(a.c.App, conv.ID), conv.last().encode())
	if a.err == nil {
		a.cache.put(a.c.App, conv.ID, conv)
	}
}

// forget keeps the cache and the last-message key in step with a write to
// key that did not go through putConv: a conversation record written or
// deleted any other way leaves the cache, and a deleted record takes its
// last message with it.
func (a *applier) forget(key []byte, deleted bool) {
	if len(key) == 0 || key[0] != tagConv {
		return
	}
	app, rest, ok := readStr(key[1:])
	if !ok {
		return
	}
	cid, _, ok := readStr(rest)
	if !ok {
		return
	}
	a.cache.drop(app, cid)
	if !deleted {
		return
	}
	if err := a.b.Delete(lastKey(app, cid), nil); err != nil && a.err == nil {
		a.err = err
	}
}

func (c *convCache) drop(app, cid string) {
	c.mu.Lock()
	delete(c.m, convID{app, cid})
	c.mu.Unlock()
}
