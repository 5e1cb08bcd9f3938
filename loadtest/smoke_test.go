package loadtest_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/relaymesh/relaymesh/internal/testbin"
	"github.com/relaymesh/relaymesh/loadtest"
	"github.com/relaymesh/relaymesh/loadtest/devserver"
	"go.uber.org/goleak"
)

// logWriter sends progress lines to t.Log.
type logWriter struct{ t *testing.T }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestSmoke runs every scenario at a tiny size against a real
// `relaymesh dev` and checks that nothing was lost.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts relaymesh dev")
	}
	tests := []struct {
		name  string
		cfg   loadtest.Config
		check func(t *testing.T, s *loadtest.Summary)
	}{
		{
			name: "connect",
			cfg:  loadtest.Config{Scenario: loadtest.ScenarioConnect, Sessions: 20, ConnectRate: 100, Duration: 2 * time.Second},
			check: func(t *testing.T, s *loadtest.Summary) {
				if s.ConnectLatencyMS.Count != 20 {
					t.Errorf("connect latencies %d, want 20", s.ConnectLatencyMS.Count)
				}
				if s.ServerRSSBytes <= 0 {
					t.Errorf("server RSS not measured (source %q)", s.RSSSource)
				}
			},
		},
		{
			name: "pairs",
			cfg:  loadtest.Config{Scenario: loadtest.ScenarioPairs, Sessions: 10, Rate: 30, Duration: 2 * time.Second},
			check: func(t *testing.T, s *loadtest.Summary) {
				if s.Acked < 30 || s.Delivered != s.Acked || s.Expected != s.Acked {
					t.Errorf("acked %d expected %d delivered %d, want ≥30 and all delivered", s.Acked, s.Expected, s.Delivered)
				}
			},
		},
		{
			name: "group",
			cfg:  loadtest.Config{Scenario: loadtest.ScenarioGroup, Sessions: 20, GroupSize: 10, Senders: 2, Rate: 20, Duration: 2 * time.Second},
			check: func(t *testing.T, s *loadtest.Summary) {
				if s.Acked < 20 || s.Expected != 9*s.Acked || s.Delivered != s.Expected {
					t.Errorf("acked %d expected %d delivered %d, want ≥20 acked, 9 copies each, all delivered", s.Acked, s.Expected, s.Delivered)
				}
			},
		},
		{
			name: "reconnect",
			cfg:  loadtest.Config{Scenario: loadtest.ScenarioReconnect, Sessions: 10, Duration: 2 * time.Second},
			check: func(t *testing.T, s *loadtest.Summary) {
				if s.Unrecovered != 0 || s.RecoverMS == nil || s.RecoverMS.Count != 10 {
					t.Errorf("unrecovered %d, recover %+v; want all 10 recovered", s.Unrecovered, s.RecoverMS)
				}
				if s.Late != 20 {
					t.Errorf("late %d, want 20 (2 outage messages to each of 10 sessions)", s.Late)
				}
			},
		},
		{
			name: "chatroom",
			cfg: loadtest.Config{Scenario: loadtest.ScenarioChatroom, Sessions: 20, Rooms: 1, Senders: 2, Rate: 20,
				Duration: 2 * time.Second, PriorityMix: loadtest.PriorityMix{0.2, 0.5, 0.3}},
			check: func(t *testing.T, s *loadtest.Summary) {
				c := s.Chatroom
				if c == nil {
					t.Fatal("no chatroom section in the summary")
				}
				if c.HighLost != 0 || len(c.Members) != 1 || c.Members[0] != 20 {
					t.Errorf("high lost %d, members %v; want 0 and [20]", c.HighLost, c.Members)
				}
				if s.Acked < 20 || s.Expected != 19*s.Acked {
					t.Errorf("acked %d expected %d, want ≥20 acked with 19 copies each", s.Acked, s.Expected)
				}
				for _, name := range []string{"high", "normal", "low"} {
					p := c.Priorities[name]
					if p == nil || p.Acked == 0 || p.Expected != 19*p.Acked || p.DeliveryLatencyMS.Count != p.Delivered {
						t.Errorf("%s: %+v; want acked > 0, 19 copies expected each, a latency per delivery", name, p)
					}
					if p != nil && p.DroppedFrames < 0 {
						t.Errorf("%s: dropped frames not read from /metrics", name)
					}
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := devserver.Start(t)
			cfg := tt.cfg
			cfg.Targets = []string{srv.URL}
			cfg.ServerPID = srv.PID
			cfg.Drain = 3 * time.Second
			cfg.Progress = time.Second
			cfg.RunID = "smoke-" + tt.name
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			s, err := loadtest.Run(ctx, cfg, logWriter{t})
			if err != nil {
				t.Fatal(err)
			}
			var text strings.Builder
			s.WriteText(&text)
			t.Log("\n" + text.String())
			if s.Lost != 0 || !s.Passed {
				t.Errorf("lost %d passed %v, want 0 and true", s.Lost, s.Passed)
			}
			if s.Sessions < cfg.Sessions || s.ConnectFailed != 0 {
				t.Errorf("sessions %d (failed %d), want %d", s.Sessions, s.ConnectFailed, cfg.Sessions)
			}
			if s.Duplicates != 0 || s.Unexpected != 0 || s.SendErrors != 0 {
				t.Errorf("duplicates %d unexpected %d send errors %d, want 0", s.Duplicates, s.Unexpected, s.SendErrors)
			}
			tt.check(t, s)
			path := filepath.Join(t.TempDir(), "summary.json")
			if _, err := s.WriteFiles(path); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var m map[string]any
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatalf("summary is not JSON: %v", err)
			}
			if m["scenario"] != tt.name || m["lost"] != 0.0 {
				t.Errorf("summary scenario %v lost %v, want %s and 0", m["scenario"], m["lost"], tt.name)
			}
			if tt.name == "chatroom" {
				checkChatroomJSON(t, m)
			}
		})
	}
}

// checkChatroomJSON checks the chatroom part of the JSON summary: every
// priority with its fields, and no HIGH copy lost.
func checkChatroomJSON(t *testing.T, m map[string]any) {
	t.Helper()
	c, ok := m["chatroom"].(map[string]any)
	if !ok {
		t.Fatalf("summary has no chatroom object: %v", m["chatroom"])
	}
	if c["high_lost"] != 0.0 {
		t.Errorf("chatroom.high_lost = %v, want 0", c["high_lost"])
	}
	ps, ok := c["priorities"].(map[string]any)
	if !ok {
		t.Fatalf("chatroom.priorities = %v, want an object", c["priorities"])
	}
	for _, name := range []string{"high", "normal", "low"} {
		p, ok := ps[name].(map[string]any)
		if !ok {
			t.Errorf("chatroom.priorities.%s missing", name)
			continue
		}
		for _, f := range []string{"share", "sent", "acked", "expected", "delivered", "missing", "delivered_ratio",
			"deliveries_per_s", "delivery_latency_ms", "dropped_frames"} {
			if _, ok := p[f]; !ok {
				t.Errorf("chatroom.priorities.%s.%s missing", name, f)
			}
		}
	}
	if hp, _ := ps["high"].(map[string]any); hp != nil && hp["missing"] != 0.0 {
		t.Errorf("chatroom.priorities.high.missing = %v, want 0", hp["missing"])
	}
}

func TestMain(m *testing.M) {
	// Then devserver's relaymesh binary goes.
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		testbin.Remove()
		os.Exit(code)
	}))
}
