package shard

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/cockroachdb/pebble"
)

// System conversations (Conv.System, LeanCloud's service conversations) are
// created by the server API and have no member list: clients subscribe and
// unsubscribe, and the subscribers live in their own key space, unbounded
// (MaxMembers does not apply). Their history holds what the server sent to
// every subscriber (broadcasts, each indexed with its expiry); what users
// send to one is kept aside for the server (sysIn), never in the history
// subscribers read.
//
//	's' app cid pid          -> ts(8)       subscriber, since
//	'y' app pid cid          -> ""          the client's subscriptions
//	'b' app cid ts(8) mid    -> validTill(8) broadcasts
//	'z' app cid ts(8) mid    -> Message     user -> server messages
//	'k' app day(8)           -> count(8)    broadcasts of the app per UTC day
//	'f' app pid              -> ts(8)       broadcasts got up to (login, logout)
//	'u' app cid pid ts(8) mid -> Message    server -> one user messages (SYS_SEND)
//	'v' app pid ts(8) cid mid -> ""         the same by user and time, for login
//
// A subscriber's value is when it subscribed (the command's Now). A
// deleted broadcast loses its 'b' entry (clients that have not got it never
// will) and keeps its history row; an edited one is an ordinary patch of
// that row, which logins read.
const (
	tagSub       = 's'
	tagSubIdx    = 'y'
	tagBroadcast = 'b'
	tagSysIn     = 'z'
	tagBcastDay  = 'k'
	tagSeen      = 'f'
	tagUserMsg   = 'u'
	tagUserIdx   = 'v'
)

// System-conversation commands.
const (
	OpSysStart  Op = "sys_start"     // create a system conversation (Admin)
	OpSubscribe Op = "subscribe"     // subscribe Members (Mute: unsubscribe)
	OpSysBcast  Op = "sys_broadcast" // append a broadcast (Admin), ValidTill, DayLimit
	OpSysIn     Op = "sys_in"        // store a user's message to the server
	OpSysSeen   Op = "sys_seen"      // From got the broadcasts up to Now; Result.Existing: seen before
	// OpSysSend stores message MID (Data, Bin) of CID for each of Members
	// (Admin).
	OpSysSend Op = "sys_send"
	// OpSysUnsend deletes message MID of time T that CID sent Members[0]
	// (Admin).
	OpSysUnsend Op = "sys_unsend"
	// OpSysUnbroadcast withdraws broadcast MID (of CID, or of any system
	// conversation when CID is empty) from the clients that have not got it
	// (Admin).
	OpSysUnbroadcast Op = "sys_unbroadcast"
)

// Sentinel errors of system conversations.
var (
	ErrNotSystem      = errors.New("shard: not a system conversation")
	ErrSystemConv     = errors.New("shard: operation not allowed on a system conversation")
	ErrBroadcastQuota = errors.New("shard: daily broadcast limit reached")
)

// dayMS is one UTC day in ms.
const dayMS = 24 * 60 * 60 * 1000

func subKey(app, cid, pid string) []byte    { return newKey(tagSub).str(app).str(cid).str(pid) }
func subPrefix(app, cid string) []byte      { return newKey(tagSub).str(app).str(cid) }
func subIdxKey(app, pid, cid string) []byte { return newKey(tagSubIdx).str(app).str(pid).str(cid) }
func subIdxPrefix(app, pid string) []byte   { return newKey(tagSubIdx).str(app).str(pid) }
func bcastPrefix(app, cid string) []byte    { return newKey(tagBroadcast).str(app).str(cid) }
func sysInPrefix(app, cid string) []byte    { return newKey(tagSysIn).str(app).str(cid) }
func bcastDayKey(app string, day int64) []byte {
	return newKey(tagBcastDay).str(app).ts(day)
}
func seenKey(app, pid string) []byte { return newKey(tagSeen).str(app).str(pid) }
func userMsgPrefix(app, cid, pid string) []byte {
	return newKey(tagUserMsg).str(app).str(cid).str(pid)
}
func userMsgKey(app, cid, pid string, t int64, mid string) []byte {
	return keyBuf(userMsgPrefix(app, cid, pid)).ts(t).str(mid)
}
func userIdxPrefix(app, pid string) []byte { return newKey(tagUserIdx).str(app).str(pid) }
func userIdxKey(app, pid string, t int64, cid, mid string) []byte {
	return keyBuf(userIdxPrefix(app, pid)).ts(t).str(cid).str(mid)
}

// sysApply applies the system-conversation commands; ok is false for any
// other op.
func (a *applier) sysApply() (res *Result, serr *Error, ok bool) {
	switch a.c.Op {
	case OpSysStart:
		res, serr = a.sysStart()
	case OpSubscribe:
		res, serr = a.subscribe()
	case OpSysBcast:
		res, serr = a.sysBroadcast()
	case OpSysIn:
		res, serr = a.sysIn()
	case OpSysSeen:
		res, serr = a.sysSeen()
	case OpSysSend:
		res, serr = a.sysSend()
	case OpSysUnsend:
		res, serr = a.sysUnsend()
	case OpSysUnbroadcast:
		res, serr = a.sysUnbroadcast()
	default:
		return nil, nil, false
	}
	return res, serr, true
}

func (a *applier) sysStart() (*Result, *Error) {
	c := a.c
	if !c.Admin {
		return nil, fail(ErrRoleTooLow, "system conversations are created by the server API")
	}
	if c.CID == "" {
		return nil, fail(ErrBadCommand, "no cid")
	}
	if a.convExists(c.CID) {
		return nil, fail(ErrConvExists, c.CID)
	}
	attr := c.Attr
	if !isJSONObject(attr) {
		attr = []byte("{}")
	}
	if serr := a.checkAttrSize(attr); serr != nil { // version.go
		return nil, serr
	}
	conv := &Conv{ID: c.CID, Creator: c.From, Attr: attr, System: true, CreatedAt: c.Now, UpdatedAt: c.Now}
	a.putConv(conv)
	return &Result{Conv: conv}, nil
}

// sysConv loads cid and checks that it is a system conversation.
func (a *applier) sysConv() (*Conv, *Error) {
	conv, serr := a.conv(a.c.CID)
	if serr != nil {
		return nil, serr
	}
	if !conv.System {
		return nil, fail(ErrNotSystem, conv.ID)
	}
	return conv, nil
}

// subscribe adds (or with Mute removes) Members to the subscribers; a
// client may only (un)subscribe itself unless Admin. Result.Changed lists
// the clients whose subscription changed.
func (a *applier) subscribe() (*Result, *Error) {
	c := a.c
	conv, serr := a.sysConv()
	if serr != nil {
		return nil, serr
	}
	pids := normalize(c.Members)
	if len(pids) == 0 {
		return nil, fail(ErrBadCommand, "no clients")
	}
	res := &Result{Conv: conv, Allowed: []string{}}
	for _, p := range pids {
		if p != c.From && !c.Admin {
			res.Failed = append(res.Failed, Failure{PID: p, Err: ErrRoleTooLow})
			continue
		}
		res.Allowed = append(res.Allowed, p)
		_, was, err := getRaw(a.b, subKey(c.App, conv.ID, p))
		if err != nil {
			a.err = err
			return nil, fail(ErrBadCommand, err.Error())
		}
		switch {
		case !c.Mute && !was:
			a.set(subKey(c.App, conv.ID, p), keyBuf(nil).ts(c.Now))
			a.set(subIdxKey(c.App, p, conv.ID), []byte{})
			res.Changed = append(res.Changed, p)
		case c.Mute && was:
			a.del(subKey(c.App, conv.ID, p))
			a.del(subIdxKey(c.App, p, conv.ID))
			res.Changed = append(res.Changed, p)
		}
	}
	return res, nil
}

// sysBroadcast stores a broadcast in the history with its expiry, counting
// it against the app's daily limit.
func (a *applier) sysBroadcast() (*Result, *Error) {
	c := a.c
	if !c.Admin {
		return nil, fail(ErrRoleTooLow, "broadcasts are sent by the server API")
	}
	conv, serr := a.sysConv()
	if serr != nil {
		return nil, serr
	}
	if c.MID == "" {
		return nil, fail(ErrBadCommand, "no message id")
	}
	day := c.Now / dayMS
	var n int64
	if b, ok, err := getRaw(a.b, bcastDayKey(c.App, day)); err != nil {
		a.err = err
		return nil, fail(ErrBadCommand, err.Error())
	} else if ok && len(b) != 8 {
		a.err = errCorrupt("broadcast day count", bcastDayKey(c.App, day))
		return nil, nil
	} else if ok {
		n = int64(binary.BigEndian.Uint64(b))
	}
	if c.DayLimit > 0 && n >= int64(c.DayLimit) {
		return nil, fail(ErrBroadcastQuota, fmt.Sprintf("%d today", n))
	}
	a.set(bcastDayKey(c.App, day), keyBuf(nil).ts(n+1))
	m := &Message{ID: c.MID, CID: conv.ID, From: c.From, Data: c.Data, Bin: c.Bin}
	if c.Transient && a.v >= Version2 { // global.go: online sessions only, nothing stored
		m.T = c.Now
		return &Result{Conv: conv, Message: m}, nil
	}
	a.store(conv, m)
	a.set(keyBuf(bcastPrefix(c.App, conv.ID)).ts(m.T).str(m.ID), keyBuf(nil).ts(c.ValidTill))
	if c.Global && a.v >= Version2 {
		a.set(globalKey(c.App, m.T, m.ID), keyBuf(nil).str(conv.ID).ts(c.ValidTill))
	}
	return &Result{Conv: conv, Message: m}, nil
}

// sysIn stores what a user sent to a system conversation, for the server.
func (a *applier) sysIn() (*Result, *Error) {
	c := a.c
	conv, serr := a.sysConv()
	if serr != nil {
		return nil, serr
	}
	if c.MID == "" || c.From == "" {
		return nil, fail(ErrBadCommand, "no message id or sender")
	}
	m := &Message{ID: c.MID, CID: conv.ID, From: c.From, T: c.Now, Data: c.Data, Bin: c.Bin}
	a.putMsg(keyBuf(sysInPrefix(c.App, conv.ID)).ts(m.T).str(m.ID), m)
	return &Result{Conv: conv, Message: m}, nil
}

// sysSend stores a message of the server for each of Members.
func (a *applier) sysSend() (*Result, *Error) {
	c := a.c
	if !c.Admin {
		return nil, fail(ErrRoleTooLow, "messages to users are sent by the server API")
	}
	conv, serr := a.sysConv()
	if serr != nil {
		return nil, serr
	}
	pids := normalize(c.Members)
	if c.MID == "" || len(pids) == 0 {
		return nil, fail(ErrBadCommand, "no message id or receivers")
	}
	m := &Message{ID: c.MID, CID: conv.ID, From: c.From, T: c.Now, Data: c.Data, Bin: c.Bin}
	for _, p := range pids {
		a.putMsg(userMsgKey(c.App, conv.ID, p, m.T, m.ID), m)
		a.set(userIdxKey(c.App, p, m.T, conv.ID, m.ID), []byte{})
	}
	return &Result{Conv: conv, Message: m, Changed: pids}, nil
}

// sysUnsend deletes one message of the server to Members[0].
func (a *applier) sysUnsend() (*Result, *Error) {
	c := a.c
	if !c.Admin {
		return nil, fail(ErrRoleTooLow, "messages to users are deleted by the server API")
	}
	if len(c.Members) != 1 || c.MID == "" {
		return nil, fail(ErrBadCommand, "no receiver or message id")
	}
	pid := c.Members[0]
	k := userMsgKey(c.App, c.CID, pid, c.T, c.MID)
	if _, ok, err := getRaw(a.b, k); err != nil {
		a.err = err
		return nil, fail(ErrBadCommand, err.Error())
	} else if !ok {
		return nil, fail(ErrMsgNotFound, c.MID)
	}
	a.del(k)
	a.del(userIdxKey(c.App, pid, c.T, c.CID, c.MID))
	return &Result{}, nil
}

// sysUnbroadcast removes a broadcast's delivery entry.
func (a *applier) sysUnbroadcast() (*Result, *Error) {
	c := a.c
	if !c.Admin {
		return nil, fail(ErrRoleTooLow, "broadcasts are deleted by the server API")
	}
	if c.MID == "" {
		return nil, fail(ErrBadCommand, "no message id")
	}
	p := newKey(tagBroadcast).str(c.App)
	if c.CID != "" {
		p = bcastPrefix(c.App, c.CID)
	}
	var found []byte
	var foundT int64
	err := scan(a.b, p, func(rest, _ []byte) bool {
		r := rest
		if c.CID == "" {
			var ok bool
			if _, r, ok = readStr(r); !ok {
				return true
			}
		}
		if t, r, ok := readTS(r); ok {
			if mid, _, ok := readStr(r); ok && mid == c.MID {
				found, foundT = append(append([]byte(nil), p...), rest...), t
				return false
			}
		}
		return true
	})
	if err != nil {
		a.err = err
		return nil, fail(ErrBadCommand, err.Error())
	}
	if found == nil {
		return nil, fail(ErrMsgNotFound, c.MID)
	}
	a.del(found)
	a.del(globalKey(c.App, foundT, c.MID)) // global.go; absent for a subscribers' broadcast
	return &Result{}, nil
}

// sysSeen records that From has got the broadcasts sent up to Now (it
// logged in, or its last session ended); Existing reports it had been seen.
func (a *applier) sysSeen() (*Result, *Error) {
	c := a.c
	if c.From == "" {
		return nil, fail(ErrBadCommand, "no client")
	}
	old, seen, err := LastSeen(a.b, c.App, c.From)
	if err != nil {
		a.err = err
		return nil, fail(ErrBadCommand, err.Error())
	}
	a.set(seenKey(c.App, c.From), keyBuf(nil).ts(max(old, c.Now)))
	return &Result{Existing: seen}, nil
}

// LastSeen returns the time up to which pid has got the broadcasts; ok is
// false for a client that never logged in.
func LastSeen(r Reader, app, pid string) (t int64, ok bool, err error) {
	b, ok, err := getRaw(r, seenKey(app, pid))
	if !ok || err != nil {
		return 0, ok, err
	}
	if t, _, ok = readTS(b); !ok {
		return 0, false, errCorrupt("last-seen time", seenKey(app, pid))
	}
	return t, true, nil
}

// SubscribedAt returns when pid subscribed to cid; ok is false if it does
// not.
func SubscribedAt(r Reader, app, cid, pid string) (t int64, ok bool, err error) {
	b, ok, err := getRaw(r, subKey(app, cid, pid))
	if !ok || err != nil {
		return 0, ok, err
	}
	t, _, _ = readTS(b)
	return t, true, nil
}

// IsSubscriber reports whether pid subscribes to cid.
func IsSubscriber(r Reader, app, cid, pid string) (bool, error) {
	_, ok, err := getRaw(r, subKey(app, cid, pid))
	return ok, err
}

// scan calls fn with the rest of each key under p (after p) and its value,
// in key order, until fn returns false.
func scan(r Reader, p []byte, fn func(rest, val []byte) bool) error {
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return fmt.Errorf("shard: iter: %w", err)
	}
	for ok := it.First(); ok; ok = it.Next() {
		if !fn(it.Key()[len(p):], it.Value()) {
			break
		}
	}
	return it.Close()
}

// scanFrom is scan starting at the key from (under p).
func scanFrom(r Reader, p, from []byte, fn func(rest, val []byte) bool) error {
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: from, UpperBound: prefixEnd(p)})
	if err != nil {
		return fmt.Errorf("shard: iter: %w", err)
	}
	for ok := it.First(); ok; ok = it.Next() {
		if !fn(it.Key()[len(p):], it.Value()) {
			break
		}
	}
	return it.Close()
}

// Subscribers lists up to limit subscribers of cid after the clientId
// after (exclusive; "" from the start), in key order (shorter ids first,
// then bytewise), so that the last one of a page is the next page's after;
// limit <= 0 lists all.
func Subscribers(r Reader, app, cid, after string, limit int) ([]string, error) {
	rows, err := SubscriberRows(r, app, cid, after, limit)
	out := make([]string, len(rows))
	for i, s := range rows {
		out[i] = s.PID
	}
	return out, err
}

// CountSubscribers counts the subscribers of cid.
func CountSubscribers(r Reader, app, cid string) (int, error) {
	n := 0
	err := scan(r, subPrefix(app, cid), func(_, _ []byte) bool { n++; return true })
	return n, err
}

// Subscriptions lists up to limit system conversations pid subscribes to.
func Subscriptions(r Reader, app, pid string, limit int) ([]string, error) {
	var out []string
	err := scan(r, subIdxPrefix(app, pid), func(rest, _ []byte) bool {
		if cid, _, ok := readStr(rest); ok {
			out = append(out, cid)
		}
		return limit <= 0 || len(out) < limit
	})
	return out, err
}

// Broadcast is a broadcast's place in the history and its expiry.
type Broadcast struct {
	T         int64
	MID       string
	ValidTill int64
}

// Broadcasts lists the broadcasts of cid sent after t (exclusive) and
// still valid at now, oldest first, at most limit (<= 0: all).
func Broadcasts(r Reader, app, cid string, after, now int64, limit int) ([]Broadcast, error) {
	var out []Broadcast
	err := scan(r, bcastPrefix(app, cid), func(rest, val []byte) bool {
		t, rest, ok := readTS(rest)
		if !ok || t <= after {
			return true
		}
		mid, _, ok := readStr(rest)
		vt, _, ok2 := readTS(val)
		if ok && ok2 && vt > now {
			out = append(out, Broadcast{T: t, MID: mid, ValidTill: vt})
		}
		return limit <= 0 || len(out) < limit
	})
	return out, err
}

// SysMessages lists what users sent to cid, oldest first, with t in
// (after, before) (before <= 0: no bound): the oldest limit of them, or
// with newest the newest limit.
func SysMessages(r Reader, app, cid string, after, before int64, limit int, newest bool) ([]*Message, error) {
	return timedMessages(r, sysInPrefix(app, cid), after, before, limit, newest)
}

// timedMessages lists the messages under prefix (keys: prefix, timestamp,
// …) with t in (after, before), as SysMessages and UserMessages describe.
func timedMessages(r Reader, prefix []byte, after, before int64, limit int, newest bool) ([]*Message, error) {
	var out []*Message
	var derr error
	err := scan(r, prefix, func(rest, val []byte) bool {
		t, _, ok := readTS(rest)
		if !ok || t <= after {
			return true
		}
		if before > 0 && t >= before {
			return false
		}
		m := new(Message)
		if derr = decodeMessage(val, m); derr != nil {
			return false
		}
		out = append(out, m)
		return newest || limit <= 0 || len(out) < limit
	})
	if err == nil {
		err = derr
	}
	if newest && limit > 0 && len(out) > limit {
		out = out[len(out)-limit:]
	}
	return out, err
}

// Subscription is one subscriber of a system conversation and when it
// subscribed.
type Subscription struct {
	PID string
	CID string
	T   int64
}

// SubscriberRows is Subscribers with when each subscribed.
func SubscriberRows(r Reader, app, cid, after string, limit int) ([]Subscription, error) {
	var out []Subscription
	p := subPrefix(app, cid)
	from := p
	if after != "" {
		from = subKey(app, cid, after)
	}
	err := scanFrom(r, p, from, func(rest, val []byte) bool {
		pid, _, ok := readStr(rest)
		if ok && (after == "" || pid != after) {
			t, _, _ := readTS(val)
			out = append(out, Subscription{PID: pid, CID: cid, T: t})
		}
		return limit <= 0 || len(out) < limit
	})
	return out, err
}

// ClientSubscriptions lists every system conversation pid subscribes to,
// in cid order, with when it subscribed.
func ClientSubscriptions(r Reader, app, pid string) ([]Subscription, error) {
	cids, err := Subscriptions(r, app, pid, 0)
	if err != nil {
		return nil, err
	}
	out := make([]Subscription, 0, len(cids))
	for _, cid := range cids {
		t, ok, err := SubscribedAt(r, app, cid, pid)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, Subscription{PID: pid, CID: cid, T: t})
		}
	}
	return out, nil
}

// UserMessages lists what the server sent pid in cid, oldest first, with t
// in (after, before) (before <= 0: no bound): the oldest limit of them, or
// with newest the newest limit.
func UserMessages(r Reader, app, cid, pid string, after, before int64, limit int, newest bool) ([]*Message, error) {
	return timedMessages(r, userMsgPrefix(app, cid, pid), after, before, limit, newest)
}

// DueUserMessages lists up to limit messages the server sent pid, in any
// system conversation, after t (exclusive), oldest first.
func DueUserMessages(r Reader, app, pid string, after int64, limit int) ([]*Message, error) {
	var out []*Message
	p := userIdxPrefix(app, pid)
	var derr error
	err := scanFrom(r, p, keyBuf(p).ts(after+1), func(rest, _ []byte) bool {
		t, rest, ok := readTS(rest)
		if !ok || t <= after {
			return true
		}
		cid, rest, ok := readStr(rest)
		mid, _, ok2 := readStr(rest)
		if !ok || !ok2 {
			return true
		}
		b, found, err := getRaw(r, userMsgKey(app, cid, pid, t, mid))
		if err != nil {
			derr = err
			return false
		}
		if found {
			m := new(Message)
			if derr = decodeMessage(b, m); derr != nil {
				return false
			}
			out = append(out, m)
		}
		return limit <= 0 || len(out) < limit
	})
	if err == nil {
		err = derr
	}
	return out, err
}

// HasUserMessages reports whether the server ever sent pid a message that
// is still stored.
func HasUserMessages(r Reader, app, pid string) (bool, error) {
	found := false
	err := scan(r, userIdxPrefix(app, pid), func(_, _ []byte) bool { found = true; return false })
	return found, err
}

// BroadcastRow is a broadcast and its conversation.
type BroadcastRow struct {
	CID string
	Broadcast
}

// ValidBroadcasts lists the broadcasts of cid (of every system
// conversation of the app when cid is "") still valid at now, newest first.
func ValidBroadcasts(r Reader, app, cid string, now int64) ([]BroadcastRow, error) {
	p := newKey(tagBroadcast).str(app)
	if cid != "" {
		p = bcastPrefix(app, cid)
	}
	var out []BroadcastRow
	err := scan(r, p, func(rest, val []byte) bool {
		c := cid
		if cid == "" {
			var ok bool
			if c, rest, ok = readStr(rest); !ok {
				return true
			}
		}
		t, rest, ok := readTS(rest)
		mid, _, ok2 := readStr(rest)
		vt, _, ok3 := readTS(val)
		if ok && ok2 && ok3 && vt > now {
			out = append(out, BroadcastRow{CID: c, Broadcast: Broadcast{T: t, MID: mid, ValidTill: vt}})
		}
		return true
	})
	slices.SortStableFunc(out, func(x, y BroadcastRow) int { return cmp.Compare(y.T, x.T) })
	return out, err
}
