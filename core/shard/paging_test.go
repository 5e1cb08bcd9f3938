package shard

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble"
)

// putMessages stores msgs directly (as an import of LeanCloud history
// would: several messages may share a millisecond, which the append path
// never produces).
func putMessages(t *testing.T, db *pebble.DB, cid string, msgs []*Message) {
	t.Helper()
	b := db.NewBatch()
	for _, m := range msgs {
		v, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Set(msgKey(app, cid, m.T, m.ID), v, nil); err != nil {
			t.Fatal(err)
		}
		if err := b.Set(msgIDKey(app, cid, m.ID), keyBuf(nil).ts(m.T), nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
}

// TestListMessagesPagingSharedMillisecond pages through 40 messages of
// which up to 7 share a millisecond, with every page size from 1 to 30, in
// both directions, using LeanCloud's (timestamp, message id) cursor as the
// SDK iterator does (the first message of a page going back, the last going
// forward): every message comes exactly once, in order.
func TestListMessagesPagingSharedMillisecond(t *testing.T) {
	h := newHarness(t)
	var all []*Message
	ts := int64(1_700_000_000_000)
	for i := 0; len(all) < 40; i++ {
		for j := range i%7 + 1 { // 1..7 messages in this millisecond
			all = append(all, &Message{ID: fmt.Sprintf("m%02d-%d", i, j), CID: "c", From: "a", T: ts, Data: "x"})
		}
		ts += int64(i%3) + 1
	}
	putMessages(t, h.db, "c", all)
	// The order a reader sees: by (timestamp, key order of the id).
	want, err := ListMessages(h.db, app, "c", LogQuery{Limit: 1000, Newer: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(want) != len(all) {
		t.Fatalf("full read: got %d messages, want %d", len(want), len(all))
	}
	ids := func(ms []*Message) []string {
		out := make([]string, len(ms))
		for i, m := range ms {
			out[i] = m.ID
		}
		return out
	}
	wantIDs := ids(want)
	for limit := 1; limit <= 30; limit++ {
		// Newest to oldest, as createMessagesIterator pages.
		var got []*Message
		q := LogQuery{Limit: limit}
		for pages := 0; ; pages++ {
			if pages > len(all)+1 {
				t.Fatalf("limit %d backwards: no end after %d pages", limit, pages)
			}
			page, err := ListMessages(h.db, app, "c", q)
			if err != nil {
				t.Fatal(err)
			}
			got = append(slices.Clone(page), got...)
			if len(page) < limit {
				break
			}
			q.Start, q.StartMID = page[0].T, page[0].ID
		}
		if g := ids(got); !slices.Equal(g, wantIDs) {
			t.Errorf("limit %d backwards: got %v, want %v", limit, g, wantIDs)
		}
		// Oldest to newest.
		got = got[:0]
		q = LogQuery{Limit: limit, Newer: true}
		for pages := 0; ; pages++ {
			if pages > len(all)+1 {
				t.Fatalf("limit %d forwards: no end after %d pages", limit, pages)
			}
			page, err := ListMessages(h.db, app, "c", q)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, page...)
			if len(page) < limit {
				break
			}
			last := page[len(page)-1]
			q.Start, q.StartMID = last.T, last.ID
		}
		if g := ids(got); !slices.Equal(g, wantIDs) {
			t.Errorf("limit %d forwards: got %v, want %v", limit, g, wantIDs)
		}
	}
	// Bounds by one message, inclusive and exclusive, at both ends.
	mid := want[20]
	cases := []struct {
		name string
		q    LogQuery
		want []*Message
	}{
		{"older than (t,mid)", LogQuery{Start: mid.T, StartMID: mid.ID, Limit: 1000}, want[:20]},
		{"older incl (t,mid)", LogQuery{Start: mid.T, StartMID: mid.ID, StartIncl: true, Limit: 1000}, want[:21]},
		{"newer than (t,mid)", LogQuery{Start: mid.T, StartMID: mid.ID, Newer: true, Limit: 1000}, want[21:]},
		{"newer incl (t,mid)", LogQuery{Start: mid.T, StartMID: mid.ID, StartIncl: true, Newer: true, Limit: 1000}, want[20:]},
		{"between excl", LogQuery{Start: want[30].T, StartMID: want[30].ID, End: want[10].T, EndMID: want[10].ID, Limit: 1000}, want[11:30]},
		{"between incl", LogQuery{Start: want[30].T, StartMID: want[30].ID, StartIncl: true, End: want[10].T, EndMID: want[10].ID, EndIncl: true, Limit: 1000}, want[10:31]},
		{"newer between", LogQuery{Start: want[10].T, StartMID: want[10].ID, End: want[30].T, EndMID: want[30].ID, Newer: true, Limit: 1000}, want[11:30]},
		{"empty range", LogQuery{Start: want[10].T, StartMID: want[10].ID, End: want[10].T, EndMID: want[10].ID, Limit: 1000}, nil},
		{"whole ms excluded without mid", LogQuery{Start: mid.T, Limit: 1000}, msgsBefore(want, mid.T)},
	}
	for _, tc := range cases {
		got, err := ListMessages(h.db, app, "c", tc.q)
		if err != nil {
			t.Fatal(err)
		}
		if g, w := ids(got), ids(tc.want); !slices.Equal(g, w) {
			t.Errorf("%s: got %v, want %v", tc.name, g, w)
		}
	}
}

func msgsBefore(ms []*Message, t int64) []*Message {
	var out []*Message
	for _, m := range ms {
		if m.T < t {
			out = append(out, m)
		}
	}
	return out
}
