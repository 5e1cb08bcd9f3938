package rest

import (
	"strconv"
	"testing"
	"time"

	"github.com/relaymesh/relaymesh/proto/meshpb"
)

// TestSignTimestampWindow replays X-LC-Sign headers, each correctly signed,
// with timestamps outside the window: 401 code 401 and the backend never
// called; inside the window (ms or s) they work.
func TestSignTimestampWindow(t *testing.T) {
	now := time.UnixMilli(1_750_000_000_000)
	for _, tc := range []struct {
		name   string
		max    time.Duration
		at     time.Time
		secs   bool
		status int
	}{
		{"fresh", 0, now, false, 200},
		{"14 min old", 0, now.Add(-14 * time.Minute), false, 200},
		{"16 min old", 0, now.Add(-16 * time.Minute), false, 401},
		{"a day old", 0, now.Add(-24 * time.Hour), false, 401},
		{"16 min ahead", 0, now.Add(16 * time.Minute), false, 401},
		{"14 min ahead", 0, now.Add(14 * time.Minute), false, 200},
		{"seconds, fresh", 0, now, true, 200},
		{"seconds, 16 min old", 0, now.Add(-16 * time.Minute), true, 401},
		{"configured 1h, 30 min old", time.Hour, now.Add(-30 * time.Minute), false, 200},
		{"configured 1m, 2 min old", time.Minute, now.Add(-2 * time.Minute), false, 401},
		{"check disabled, a year old", -1, now.Add(-365 * 24 * time.Hour), false, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, Limits{SignMaxAge: tc.max})
			e.h.cfg.Now = func() time.Time { return now }
			calls := 0
			e.be.reply = func(*meshpb.ClientRequest) *meshpb.ClientReply {
				calls++
				return &meshpb.ClientReply{Admin: &meshpb.AdminReply{}}
			}
			ts := strconv.FormatInt(tc.at.UnixMilli(), 10)
			if tc.secs {
				ts = strconv.FormatInt(tc.at.Unix(), 10)
			}
			status, body := e.do("POST", "/1.2/rtm/clients/bob/kick", "{}",
				"X-LC-Id: "+testApp, "X-LC-Sign: "+Sign(ts, testMaster)+","+ts+",master")
			if tc.status == 401 {
				wantError(t, tc.name, status, body, 401, 401)
				if calls != 0 {
					t.Fatalf("a refused sign reached the backend %d times", calls)
				}
				return
			}
			if status != tc.status || calls != 1 {
				t.Fatalf("got %d %v (backend calls %d), want %d", status, body, calls, tc.status)
			}
		})
	}
	// Not a number: refused.
	e := newEnv(t, Limits{})
	status, body := e.do("GET", "/1.2/rtm/clients/bob/unread-count", "", "X-LC-Id: "+testApp, "X-LC-Sign: "+Sign("x", testKey)+",x")
	wantError(t, "non-numeric ts", status, body, 401, 401)
}
