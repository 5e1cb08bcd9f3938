package shard

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble"
)

func convNotif(op, cid string, ts int64) Notif {
	return Notif{Cmd: "conv", Op: op, CID: cid, TS: ts, InitBy: "x"}
}

func notifTimes(t *testing.T, r Reader, client, class string, after, now int64, limit int) ([]int64, bool) {
	t.Helper()
	evs, more, err := Notifs(r, app, client, class, after, now, limit)
	if err != nil {
		t.Fatal(err)
	}
	var ts []int64
	for _, e := range evs {
		ts = append(ts, e.TS)
	}
	return ts, more
}

// TestNotifUniqueTimes: events that share a serverTs (or arrive out of
// order) are stored at increasing, unique times per client, so paging
// "after the last serverTs seen" neither skips nor repeats one; classes
// and clients are separate logs.
func TestNotifUniqueTimes(t *testing.T) {
	h := newHarness(t)
	h.must(&Command{Op: OpNotif, App: app, Now: 1000, Notifs: []NotifAppend{
		{To: []string{"a", "b", "a"}, Event: convNotif("joined", "c1", 100)},
		{To: []string{"a"}, Event: convNotif("updated", "c1", 100)},
		{To: []string{"a"}, Event: convNotif("members_joined", "c1", 90)},
		{To: []string{"a"}, Event: Notif{Cmd: "rcp", CID: "c1", ID: "m1", T: 100, TS: 100}},
	}})
	got, more := notifTimes(t, h.db, "a", NotifPermanent, 0, 1000, 10)
	if !slices.Equal(got, []int64{100, 101, 102}) || more {
		t.Fatalf("a's events: got %v more %v, want [100 101 102]", got, more)
	}
	if got, _ := notifTimes(t, h.db, "b", NotifPermanent, 0, 1000, 10); !slices.Equal(got, []int64{100}) {
		t.Fatalf("b's events: got %v, want [100] (the duplicate recipient stored once)", got)
	}
	if got, _ := notifTimes(t, h.db, "a", NotifDroppable, 0, 1000, 10); !slices.Equal(got, []int64{100}) {
		t.Fatalf("a's receipts: got %v, want [100]", got)
	}
	// Paging by the last serverTs seen.
	page, more := notifTimes(t, h.db, "a", NotifPermanent, 0, 1000, 2)
	if !slices.Equal(page, []int64{100, 101}) || !more {
		t.Fatalf("first page: got %v more %v", page, more)
	}
	page, more = notifTimes(t, h.db, "a", NotifPermanent, 101, 1000, 2)
	if !slices.Equal(page, []int64{102}) || more {
		t.Fatalf("second page: got %v more %v", page, more)
	}
	evs, _, _ := Notifs(h.db, app, "a", NotifPermanent, 100, 1000, 1)
	if evs[0].Op != "updated" || evs[0].CID != "c1" || evs[0].InitBy != "x" {
		t.Fatalf("event after 100: got %+v", evs[0])
	}
}

// TestNotifBounds: a log keeps its newest NotifMaxPermanent events and none
// older than NotifMaxAge, trimmed when it is appended to; reads skip
// stale events of a log nobody appends to.
func TestNotifBounds(t *testing.T) {
	h := newHarness(t)
	const n = NotifMaxPermanent + 50
	var batch []NotifAppend
	for i := range n {
		batch = append(batch, NotifAppend{To: []string{"a"}, Event: convNotif("updated", "c1", int64(1000+i))})
	}
	for len(batch) > 0 { // ten per command
		h.must(&Command{Op: OpNotif, App: app, Now: 5000, Notifs: batch[:10]})
		batch = batch[10:]
	}
	// After 230 events the log is past bound+slack (225) and is trimmed to
	// 200 at the end of that command; the 20 after fit in the slack.
	got, _ := notifTimes(t, h.db, "a", NotifPermanent, 0, 5000, 1000)
	kept := NotifMaxPermanent + 20
	if len(got) != kept || got[0] != int64(1000+n-kept) || got[len(got)-1] != 1000+n-1 {
		t.Fatalf("after %d events: %d kept, %v…%v; want the newest %d", n, len(got), got[0], got[len(got)-1], kept)
	}
	if c := countPrefix(t, h.db, notifPrefix(app, "a", NotifPermanent)); c != kept {
		t.Fatalf("%d records stored, want %d", c, kept)
	}
	// Age: a week later the old events are invisible, and the next append
	// deletes them.
	later := int64(5000 + NotifMaxAge + 1)
	if got, _ := notifTimes(t, h.db, "a", NotifPermanent, 0, later, 1000); len(got) != 0 {
		t.Fatalf("stale events answered: %v", got)
	}
	h.must(&Command{Op: OpNotif, App: app, Now: later, Notifs: []NotifAppend{{To: []string{"a"}, Event: convNotif("left", "c1", later)}}})
	if c := countPrefix(t, h.db, notifPrefix(app, "a", NotifPermanent)); c != 1 {
		t.Fatalf("%d records after the age trim, want 1", c)
	}
	got, _ = notifTimes(t, h.db, "a", NotifPermanent, 0, later, 10)
	if !slices.Equal(got, []int64{later}) {
		t.Fatalf("after the age trim: got %v", got)
	}
	// Receipts have their own, smaller bound.
	batch = nil
	for i := range NotifMaxDroppable + 10 {
		batch = append(batch, NotifAppend{To: []string{"a"}, Event: Notif{Cmd: "rcp", CID: "c1", ID: fmt.Sprint(i), TS: later + int64(i)}})
	}
	h.must(&Command{Op: OpNotif, App: app, Now: later, Notifs: batch})
	if got, _ := notifTimes(t, h.db, "a", NotifDroppable, 0, later, 1000); len(got) != NotifMaxDroppable+10 {
		t.Fatalf("receipts kept: %d, want %d (within the slack)", len(got), NotifMaxDroppable+10)
	}
	batch = nil
	for i := range NotifSlack(NotifDroppable) {
		batch = append(batch, NotifAppend{To: []string{"a"}, Event: Notif{Cmd: "rcp", CID: "c1", ID: fmt.Sprint("x", i), TS: later}})
	}
	h.must(&Command{Op: OpNotif, App: app, Now: later, Notifs: batch})
	if got, _ := notifTimes(t, h.db, "a", NotifDroppable, 0, later, 1000); len(got) != NotifMaxDroppable {
		t.Fatalf("receipts past bound+slack: %d kept, want %d", len(got), NotifMaxDroppable)
	}
	if got, _ := notifTimes(t, h.db, "a", NotifPermanent, 0, later, 10); len(got) != 1 {
		t.Fatalf("receipts evicted conversation events: %v", got)
	}
}

// TestNotifRefused: malformed or oversized OpNotif commands change nothing.
func TestNotifRefused(t *testing.T) {
	h := newHarness(t)
	many := make([]string, MaxNotifFanout+1)
	for i := range many {
		many[i] = fmt.Sprint("p", i)
	}
	for name, c := range map[string]*Command{
		"empty":          {Op: OpNotif, App: app, Now: 1},
		"too many":       {Op: OpNotif, App: app, Now: 1, Notifs: make([]NotifAppend, MaxNotifBatch+1)},
		"unknown cmd":    {Op: OpNotif, App: app, Now: 1, Notifs: []NotifAppend{{To: []string{"a"}, Event: Notif{Cmd: "direct", CID: "c"}}}},
		"no cid":         {Op: OpNotif, App: app, Now: 1, Notifs: []NotifAppend{{To: []string{"a"}, Event: Notif{Cmd: "conv"}}}},
		"fan-out":        {Op: OpNotif, App: app, Now: 1, Notifs: []NotifAppend{{To: many, Event: convNotif("joined", "c", 1)}}},
		"records":        {Op: OpNotif, App: app, Now: 1, Notifs: slices.Repeat([]NotifAppend{{To: many[:MaxNotifFanout], Event: convNotif("joined", "c", 1)}}, MaxNotifRecords/MaxNotifFanout+1)},
		"one bad of two": {Op: OpNotif, App: app, Now: 1, Notifs: []NotifAppend{{To: []string{"a"}, Event: convNotif("joined", "c", 1)}, {To: []string{"a"}, Event: Notif{Cmd: "x", CID: "c"}}}},
	} {
		if _, err := h.apply(c); !errors.Is(err, ErrBadCommand) {
			t.Errorf("%s: got %v, want ErrBadCommand", name, err)
		}
	}
	if c := countPrefix(t, h.db, []byte{tagNotif}); c != 0 {
		t.Fatalf("refused commands stored %d records", c)
	}
}

func countPrefix(t *testing.T, db *pebble.DB, p []byte) int {
	t.Helper()
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		if !strings.Contains(string(it.Key()), "meta-") {
			n++
		}
	}
	return n
}
