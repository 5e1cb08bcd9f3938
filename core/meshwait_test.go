package core

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestMeshServerWaitStranded: a raft barrier that is never answered (raft
// stopped with it queued for the FSM) does not hold Wait, and thus a
// core's Close, forever; one answered in time is simply waited for.
func TestMeshServerWaitStranded(t *testing.T) {
	var logs bytes.Buffer
	s := &MeshServer{log: slog.New(slog.NewTextHandler(&logs, nil)), waitMax: 10 * time.Second}

	answered := make(chan struct{})
	s.barriers.Go(func() { <-answered })
	time.AfterFunc(10*time.Millisecond, func() { close(answered) })
	s.Wait()
	if logs.Len() != 0 {
		t.Fatalf("an answered barrier was warned of: %s", logs.String())
	}

	s.waitMax = 100 * time.Millisecond
	stranded := make(chan struct{})
	t.Cleanup(func() { close(stranded) }) // for goleak: the waiter ends with the test
	s.barriers.Go(func() { <-stranded })
	s.Wait() // without the bound: the test's timeout
	if !strings.Contains(logs.String(), "raft barrier was not answered") {
		t.Fatalf("no warning of the stranded barrier: %q", logs.String())
	}
}
