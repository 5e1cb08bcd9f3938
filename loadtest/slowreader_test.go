package loadtest_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/relaymesh/relaymesh/loadtest"
	"github.com/relaymesh/relaymesh/loadtest/devserver"
)

// TestSlowReaders proves the edge's per-connection shedding order end to
// end against a real `relaymesh dev` with a short outbound queue
// (--queue-len 64): a fifth of a chatroom's members read at ~50 frames/s
// while the room carries 200 msgs/s of ~1 KB messages (2 % HIGH, 25 %
// NORMAL, the rest LOW). The edge must shed LOW frames, never a HIGH one,
// and every slow reader it did not disconnect must get every HIGH copy.
// The normal readers must get everything. It fails if the edge never sheds
// (the backlog sat elsewhere), sheds HIGH, or a connected slow reader
// misses a HIGH copy.
func TestSlowReaders(t *testing.T) {
	if testing.Short() {
		t.Skip("starts relaymesh dev")
	}
	srv := devserver.Start(t, "--queue-len", "64", "--sends-per-minute", "-1")
	cfg := loadtest.Config{
		Targets: []string{srv.URL}, Scenario: loadtest.ScenarioChatroom,
		Sessions: 30, Rooms: 1, Senders: 3, Rate: 200, Duration: 4 * time.Second,
		PriorityMix: loadtest.PriorityMix{0.02, 0.25, 0.73},
		SlowReaders: 0.2, SlowReadDelay: 20 * time.Millisecond, PayloadBytes: 1000,
		Drain: 20 * time.Second, Progress: time.Second, RunID: "slow-readers",
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	s, err := loadtest.Run(ctx, cfg, logWriter{t})
	if err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	s.WriteText(&text)
	t.Log("\n" + text.String())

	c := s.Chatroom
	if c == nil || c.SlowReaders == nil {
		t.Fatalf("no chatroom slow_readers section: %+v", c)
	}
	high, low := c.Priorities["high"], c.Priorities["low"]
	if high.DroppedFrames != 0 {
		t.Errorf("edge dropped %d HIGH frames, want 0", high.DroppedFrames)
	}
	if low.DroppedFrames <= 0 {
		t.Errorf("edge dropped %d LOW frames, want > 0 (the slow readers' queues never filled)", low.DroppedFrames)
	}
	sr := c.SlowReaders
	if sr.Members < 4 || sr.Members-sr.Disconnected < 1 {
		t.Errorf("slow readers %d, disconnected %d; want ≥ 4 and at least one still connected", sr.Members, sr.Disconnected)
	}
	if h := sr.Slow["high"]; h.Expected == 0 || h.Delivered != h.Expected {
		t.Errorf("HIGH at connected slow readers %d/%d, want all (and some expected)", h.Delivered, h.Expected)
	}
	if l := sr.Slow["low"]; l.Missing <= 0 {
		t.Errorf("LOW at slow readers %d/%d, want some shed", l.Delivered, l.Expected)
	}
	for _, name := range []string{"high", "normal", "low"} {
		if n := sr.Normal[name]; n.Delivered != n.Expected {
			t.Errorf("%s at normal readers %d/%d, want all", name, n.Delivered, n.Expected)
		}
	}
	if s.Lost != 0 || !s.Passed || c.HighLost != 0 {
		t.Errorf("lost %d high lost %d passed %v, want 0 0 true", s.Lost, c.HighLost, s.Passed)
	}
	if sr.NormalDisconnected != 0 {
		t.Errorf("%d normal readers disconnected, want 0", sr.NormalDisconnected)
	}
	if sr.Disconnected > 0 && c.EdgeOverflowCloses < int64(sr.Disconnected) {
		t.Errorf("%d slow readers disconnected but the edge counted %d overflow closes", sr.Disconnected, c.EdgeOverflowCloses)
	}
}
