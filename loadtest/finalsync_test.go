package loadtest_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/relaymesh/relaymesh/loadtest"
	"github.com/relaymesh/relaymesh/loadtest/devserver"
)

// TestFinalSync runs pairs with FinalSync on relaymesh dev: every copy
// delivered live is found again in history (Resynced), none is late or
// lost, and a run of more messages per conversation than one history
// page still finds them all (paging).
func TestFinalSync(t *testing.T) {
	if testing.Short() {
		t.Skip("starts relaymesh dev")
	}
	srv := devserver.Start(t)
	cfg := loadtest.Config{Scenario: loadtest.ScenarioCrossRegion, Regions: []loadtest.Region{{Name: "dev", Edges: []string{srv.URL}}},
		Sessions: 2, Rate: 50, Duration: 3 * time.Second, MaxMessages: 116, Drain: 3 * time.Second, Progress: -1,
		RunID: "finalsync", FinalSync: true}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := loadtest.Run(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	s.WriteText(&text)
	t.Log("\n" + text.String())
	if s.Acked < 110 || s.Failed != 0 {
		t.Fatalf("%d acked, %d failed (want more than one history page of 100 in the conversation, under the edge quota of 60 a minute per sender)", s.Acked, s.Failed)
	}
	if !s.Passed || s.Lost != 0 || s.Late != 0 || s.Resynced != s.Delivered || s.Delivered != s.Expected {
		t.Fatalf("acked %d expected %d delivered %d resynced %d late %d lost %d", s.Acked, s.Expected, s.Delivered, s.Resynced, s.Late, s.Lost)
	}
}
