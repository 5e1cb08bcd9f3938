package shard

import "errors"

// lastMsg is a conversation's last message, kept under its own key ('L')
// rather than in the conversation record: appending a message then writes a
// few bytes instead of re-encoding the record with its member list. The
// value is binary, so it reads back byte for byte as written:
//
//	t(8) patch(8) flags(1: bit 0 bin) str(mid) str(from) str(data)
//
// A conversation stored before the key existed has its last message in the
// record (Conv.Last*); GetConv prefers the key when present.
type lastMsg struct {
	T, Patch       int64
	Bin            bool
	MID, From, Dat string
}

func (c *Conv) last() lastMsg {
	return lastMsg{T: c.LastT, Patch: c.LastPatch, Bin: c.LastBin, MID: c.LastMID, From: c.LastFrom, Dat: c.LastData}
}

func (c *Conv) setLast(l lastMsg) {
	c.LastT, c.LastPatch, c.LastBin = l.T, l.Patch, l.Bin
	c.LastMID, c.LastFrom, c.LastData = l.MID, l.From, l.Dat
}

func (l lastMsg) encode() keyBuf {
	b := make(keyBuf, 0, 17+len(l.MID)+len(l.From)+len(l.Dat)+6)
	b = b.ts(l.T).ts(l.Patch)
	var flags byte
	if l.Bin {
		flags |= 1
	}
	b = append(b, flags)
	return b.str(l.MID).str(l.From).str(l.Dat)
}

var errBadLast = errors.New("shard: malformed last-message value")

func decodeLast(b []byte) (lastMsg, error) {
	var l lastMsg
	var ok bool
	if l.T, b, ok = readTS(b); !ok {
		return l, errBadLast
	}
	if l.Patch, b, ok = readTS(b); !ok || len(b) < 1 {
		return l, errBadLast
	}
	l.Bin, b = b[0]&1 != 0, b[1:]
	if l.MID, b, ok = readStr(b); !ok {
		return l, errBadLast
	}
	if l.From, b, ok = readStr(b); !ok {
		return l, errBadLast
	}
	if l.Dat, _, ok = readStr(b); !ok {
		return l, errBadLast
	}
	return l, nil
}
