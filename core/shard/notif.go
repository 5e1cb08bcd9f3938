package shard

import (
	"encoding/json"
	"fmt"
	"sort"

	"github.com/cockroachdb/pebble"
)

// Stored notifications (GET /1.1/rtm/notifications): per client, the
// conversation events (cmd conv: joined, left, members_joined, updated,
// member_info_changed, blocked, shutuped, …) and receipts (cmd rcp) pushed
// to it, so an SDK that was offline replays what it missed. Conversation
// events are the "permanent" class, receipts the "droppable" one (the
// names the SDKs use); each class is its own log.
//
// OpNotif carries events with their recipients (Command.Notifs); apply
// writes one record per recipient and class under
//
//	N | app | clientId | class | serverTs (8 bytes, big-endian)
//
// and a meta record (count, last serverTs) per client and class. Within a
// client's log serverTs is unique and increasing: an event whose serverTs
// is not above the client's last one is stored at last+1, so paging by
// "events after serverTs" neither skips nor repeats one.
//
// Bounds, enforced deterministically at apply time (from the command's Now
// and the state only): a client keeps its newest NotifMaxPermanent
// conversation events and NotifMaxDroppable receipts, none older than
// NotifMaxAge before Now. A log may grow an eighth past its bound
// (NotifSlack) between trims: an OpNotif trims a log it appends to, oldest
// first, back to the bound only once it is past bound+slack or its oldest
// event is past the age limit, so the iteration a trim costs is paid once
// per slack appends rather than on every one (the meta record keeps the
// oldest serverTs for the age check). Reads (Notifs) skip what is past
// NotifMaxAge, so a log nobody appends to any more still answers only
// fresh events.

// OpNotif appends events to the notification logs of their recipients.
const OpNotif Op = "notif"

const tagNotif = 'N'

// Bounds of the notification logs.
const (
	NotifMaxPermanent = 200                     // conversation events kept per client
	NotifMaxDroppable = 100                     // receipts kept per client
	NotifMaxAge       = 7 * 24 * 60 * 60 * 1000 // ms; older events are dropped
	MaxNotifBatch     = 256                     // events per OpNotif
	MaxNotifFanout    = 2 * MaxMembers          // recipients of one event
	MaxNotifRecords   = 8192                    // recipients of all events of one OpNotif
)

// Notification classes.
const (
	NotifPermanent = "perm" // cmd conv
	NotifDroppable = "drop" // cmd rcp
)

// Notif is one stored event: a conv push (Op, CID, InitBy, M, Attr,
// AttrModified, Udate, Pid/Role of member_info_changed) or an rcp push
// (CID, ID, T, Read, From). TS is its serverTs.
type Notif struct {
	Cmd          string   `json:"c"` // "conv" or "rcp"
	Op           string   `json:"o,omitempty"`
	CID          string   `json:"cid"`
	TS           int64    `json:"ts"`
	InitBy       string   `json:"ib,omitempty"`
	M            []string `json:"m,omitempty"`
	Attr         string   `json:"a,omitempty"`  // JSON object text
	AttrModified string   `json:"am,omitempty"` // JSON object text
	Udate        string   `json:"u,omitempty"`
	Pid          string   `json:"pid,omitempty"`
	Role         string   `json:"role,omitempty"`
	ID           string   `json:"id,omitempty"`
	T            int64    `json:"t,omitempty"`
	Read         bool     `json:"r,omitempty"`
	From         string   `json:"f,omitempty"`
}

// Class is the log n belongs to.
func (n *Notif) Class() string {
	if n.Cmd == "rcp" {
		return NotifDroppable
	}
	return NotifPermanent
}

// NotifAppend is one event for its recipients.
type NotifAppend struct {
	To    []string `json:"to"`
	Event Notif    `json:"ev"`
}

type notifMeta struct {
	N     int   `json:"n"`
	Last  int64 `json:"l"` // newest serverTs
	First int64 `json:"f"` // oldest serverTs kept, when N > 0
}

func notifPrefix(app, client, class string) []byte {
	return newKey(tagNotif).str(app).str(client).str(class)
}
func notifMetaKey(app, client, class string) []byte {
	return newKey(tagNotif).str(app).str(client).str("meta-" + class)
}

func notifMax(class string) int {
	if class == NotifDroppable {
		return NotifMaxDroppable
	}
	return NotifMaxPermanent
}

// NotifSlack is how far past its bound a log of class may grow before it
// is trimmed back; a log holds at most NotifKept(class) events.
func NotifSlack(class string) int { return notifMax(class) / 8 }

// NotifKept is the most events a log of class holds: its bound plus slack.
func NotifKept(class string) int { return notifMax(class) + NotifSlack(class) }

// notif applies OpNotif.
func (a *applier) notif() (*Result, *Error) {
	c := a.c
	if len(c.Notifs) == 0 || len(c.Notifs) > MaxNotifBatch {
		return nil, fail(ErrBadCommand, fmt.Sprintf("%d notifications", len(c.Notifs)))
	}
	records := 0
	for _, na := range c.Notifs {
		if len(na.To) > MaxNotifFanout || (na.Event.Cmd != "conv" && na.Event.Cmd != "rcp") || na.Event.CID == "" {
			return nil, fail(ErrBadCommand, "bad notification")
		}
		records += len(na.To)
	}
	if records > MaxNotifRecords {
		return nil, fail(ErrBadCommand, fmt.Sprintf("%d notification records", records))
	}
	type logID struct{ client, class string }
	metas := map[logID]*notifMeta{}
	for _, na := range c.Notifs {
		class := na.Event.Class()
		seen := make(map[string]bool, len(na.To))
		for _, to := range na.To {
			if to == "" || seen[to] {
				continue
			}
			seen[to] = true
			id := logID{to, class}
			m := metas[id]
			if m == nil {
				m = new(notifMeta)
				if _, err := getJSON(a.b, notifMetaKey(c.App, to, class), m); err != nil {
					a.err = err
					return nil, fail(ErrBadCommand, err.Error())
				}
				metas[id] = m
			}
			ev := na.Event
			ev.TS = max(ev.TS, m.Last+1)
			a.set(keyBuf(notifPrefix(c.App, to, class)).ts(ev.TS), &ev)
			if m.N == 0 {
				m.First = ev.TS
			}
			m.Last = ev.TS
			m.N++
		}
	}
	ids := make([]logID, 0, len(metas))
	for id := range metas {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool {
		if ids[i].client != ids[j].client {
			return ids[i].client < ids[j].client
		}
		return ids[i].class < ids[j].class
	})
	for _, id := range ids {
		m := metas[id]
		a.trimNotifs(id.client, id.class, m)
		a.set(notifMetaKey(c.App, id.client, id.class), m)
	}
	return &Result{}, nil
}

// trimNotifs deletes the oldest events of one log while it holds more than
// its class's bound or they are older than NotifMaxAge, once the log is
// past bound+slack or its oldest event is past the age limit.
func (a *applier) trimNotifs(client, class string, m *notifMeta) {
	cutoff := a.c.Now - NotifMaxAge
	if a.err != nil || (m.N <= NotifKept(class) && (m.N == 0 || m.First >= cutoff)) {
		return
	}
	p := notifPrefix(a.c.App, client, class)
	it, err := a.b.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		a.err = err
		return
	}
	var doomed [][]byte
	n, first := m.N, int64(0)
	for ok := it.First(); ok; ok = it.Next() {
		ts, _, ok := readTS(it.Key()[len(p):])
		if !ok {
			continue
		}
		if n <= notifMax(class) && ts >= cutoff {
			first = ts
			break
		}
		doomed = append(doomed, append([]byte(nil), it.Key()...))
		n--
	}
	if err := it.Close(); err != nil {
		a.err = err
		return
	}
	for _, k := range doomed {
		a.del(k)
	}
	m.N, m.First = max(n, 0), first
}

// Notifs returns up to limit events of client's log of class with a
// serverTs after after, oldest first, skipping those older than
// NotifMaxAge before now; more says whether later ones follow.
func Notifs(r Reader, app, client, class string, after, now int64, limit int) (out []Notif, more bool, err error) {
	p := notifPrefix(app, client, class)
	lo := inc(max(after, now-NotifMaxAge-1, -1)) // after the cursor, and fresh
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: tsBound(p, lo), UpperBound: prefixEnd(p)})
	if err != nil {
		return nil, false, fmt.Errorf("shard: notifications: %w", err)
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		if len(out) == limit {
			return out, true, it.Error()
		}
		var n Notif
		if err := json.Unmarshal(it.Value(), &n); err != nil {
			return nil, false, fmt.Errorf("shard: decode notification: %w", err)
		}
		out = append(out, n)
	}
	return out, false, it.Error()
}
