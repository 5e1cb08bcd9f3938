package catalog

import (
	"encoding/binary"
	"slices"
)

// The member index, the unique index and imported ids.

func (a *applier) memberDelta(c *MemberDelta) (*Result, *Error) {
	if serr := checkAppID(c.App); serr != nil {
		return nil, serr
	}
	if c.Index == 0 {
		return nil, fail(ErrInvalid, "index 0")
	}
	if n := len(c.Adds) + len(c.Removes); n > MaxDeltaClients {
		return nil, fail(ErrTooMany, "clients: %d, at most %d", n, MaxDeltaClients)
	}
	for _, l := range [][]string{c.Adds, c.Removes} {
		for _, id := range l {
			if serr := checkClient(id); serr != nil {
				return nil, serr
			}
		}
	}
	if s, serr := a.shard(c.Shard); s == nil {
		return nil, serr
	}
	// The net change per client, applied in clientId order.
	net := map[string]int{}
	for _, id := range c.Adds {
		net[id]++
	}
	for _, id := range c.Removes {
		net[id]--
	}
	clients := make([]string, 0, len(net))
	for id := range net {
		clients = append(clients, id)
	}
	slices.Sort(clients)
	changed := false
	for _, id := range clients {
		key := memberKey(c.App, id, c.Shard)
		v, ok := a.get(key)
		var count, last uint64
		if ok {
			if len(v) != 16 {
				a.err = errCorrupt("member entry", key)
				return nil, nil
			}
			count, last = binary.BigEndian.Uint64(v), binary.BigEndian.Uint64(v[8:])
			if c.Index <= last {
				continue // applied already
			}
		}
		d := net[id]
		switch {
		case d < 0 && uint64(-d) >= count:
			count = 0
		case d < 0:
			count -= uint64(-d)
		default:
			count += uint64(d)
		}
		if count == 0 {
			if ok {
				a.del(key)
				changed = true
			}
			continue
		}
		a.set(key, putU64s(count, c.Index))
		changed = true
	}
	return &Result{Changed: changed}, nil
}

func (a *applier) claimUnique(c *ClaimUnique) (*Result, *Error) {
	if serr := checkUnique(c.App, c.Hash, c.Cid); serr != nil {
		return nil, serr
	}
	key := uniqueKey(c.App, c.Hash)
	if v, ok := a.get(key); ok {
		return &Result{Cid: string(v), Won: string(v) == c.Cid}, nil
	}
	a.set(key, []byte(c.Cid))
	return &Result{Cid: c.Cid, Won: true, Changed: true}, nil
}

func (a *applier) releaseUnique(c *ReleaseUnique) (*Result, *Error) {
	if serr := checkUnique(c.App, c.Hash, c.Cid); serr != nil {
		return nil, serr
	}
	key := uniqueKey(c.App, c.Hash)
	v, ok := a.get(key)
	if !ok || string(v) != c.Cid {
		return &Result{Cid: string(v)}, nil
	}
	a.del(key)
	return &Result{Changed: true}, nil
}

func checkUnique(app, hash, cid string) *Error {
	if serr := checkAppID(app); serr != nil {
		return serr
	}
	if serr := checkHash(hash); serr != nil {
		return serr
	}
	return checkCid("cid", cid)
}

func (a *applier) importIDs(c *ImportIDs) (*Result, *Error) {
	if serr := checkAppID(c.App); serr != nil {
		return nil, serr
	}
	if len(c.Cids) > MaxImportIDs {
		return nil, fail(ErrTooMany, "cids: %d, at most %d", len(c.Cids), MaxImportIDs)
	}
	for _, cid := range c.Cids {
		if serr := checkCid("cid", cid); serr != nil {
			return nil, serr
		}
	}
	if s, serr := a.shard(c.Shard); s == nil {
		return nil, serr
	}
	want := encodeRef(c.Shard)
	var add []string
	for _, cid := range normalize(c.Cids) {
		v, ok := a.get(importedKey(c.App, cid))
		if a.err != nil {
			return nil, nil
		}
		if !ok {
			add = append(add, cid)
			continue
		}
		if ref, valid := decodeRef(v); !valid {
			a.err = errCorrupt("imported id", importedKey(c.App, cid))
			return nil, nil
		} else if ref != c.Shard {
			return nil, fail(ErrConflict, "%s is registered on shard %s", cid, ref)
		}
	}
	for _, cid := range add {
		a.set(importedKey(c.App, cid), want)
	}
	return &Result{Added: len(add), Changed: len(add) > 0}, nil
}

// App settings.

func (a *applier) putApp(c *PutApp) (*Result, *Error) {
	if serr := checkAppID(c.ID); serr != nil {
		return nil, serr
	}
	settings, serr := checkSettings(c.Settings)
	if serr != nil {
		return nil, serr
	}
	key := appKey(c.ID)
	if a.has(key) {
		if c.IfAbsent {
			return &Result{Existing: true}, nil
		}
		a.set(key, settings)
		return &Result{Existing: true, Changed: true}, nil
	}
	if a.err != nil {
		return nil, nil
	}
	count := a.counter(counterKey(ctrApps))
	if count >= MaxApps {
		return nil, fail(ErrTooMany, "apps: at most %d", MaxApps)
	}
	a.setCounter(counterKey(ctrApps), count+1)
	a.set(key, settings)
	return &Result{Changed: true}, nil
}

func (a *applier) deleteApp(c *DeleteApp) (*Result, *Error) {
	if serr := checkAppID(c.ID); serr != nil {
		return nil, serr
	}
	key := appKey(c.ID)
	if !a.has(key) {
		return &Result{}, nil
	}
	count := a.counter(counterKey(ctrApps))
	if count == 0 {
		a.err = errCorrupt("app counter", counterKey(ctrApps))
		return nil, nil
	}
	a.setCounter(counterKey(ctrApps), count-1)
	a.del(key)
	return &Result{Changed: true}, nil
}

func (a *applier) memberSet(c *MemberSet) (*Result, *Error) {
	if c.Index == 0 {
		return nil, fail(ErrInvalid, "index 0")
	}
	if len(c.Counts) > MaxDeltaClients {
		return nil, fail(ErrTooMany, "counts: %d, at most %d", len(c.Counts), MaxDeltaClients)
	}
	for _, e := range c.Counts {
		if serr := checkAppID(e.App); serr != nil {
			return nil, serr
		}
		if serr := checkClient(e.Client); serr != nil {
			return nil, serr
		}
	}
	if s, serr := a.shard(c.Shard); s == nil {
		return nil, serr
	}
	changed := false
	for _, e := range c.Counts { // a client listed twice: the last count wins
		key := memberKey(e.App, e.Client, c.Shard)
		v, ok := a.get(key)
		if a.err != nil {
			return nil, nil
		}
		if ok {
			if len(v) != 16 {
				a.err = errCorrupt("member entry", key)
				return nil, nil
			}
			if c.Index <= binary.BigEndian.Uint64(v[8:]) {
				continue // a later change won
			}
		}
		switch {
		case e.Count == 0 && ok:
			a.del(key)
			changed = true
		case e.Count > 0:
			a.set(key, putU64s(e.Count, c.Index))
			changed = true
		}
	}
	if c.Complete {
		mk := markKey(c.Shard)
		var mark uint64
		if v, ok := a.get(mk); ok {
			if len(v) != 8 {
				a.err = errCorrupt("member mark", mk)
				return nil, nil
			}
			mark = binary.BigEndian.Uint64(v)
		}
		if c.Index > mark {
			a.set(mk, binary.BigEndian.AppendUint64(nil, c.Index))
			changed = true
		}
	}
	return &Result{Changed: changed}, nil
}
