package raftstore

import (
	"sync"
	"testing"
	"time"
)

// TestWaitAtMost: waiters that end are waited for; one that never does (a
// raft future raft never answers) holds the caller for the bound only.
func TestWaitAtMost(t *testing.T) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		time.Sleep(20 * time.Millisecond)
		wg.Done()
	}()
	if !WaitAtMost(&wg, 10*time.Second) {
		t.Fatal("a waiter that ended was not waited for")
	}
	var stranded sync.WaitGroup
	stranded.Add(1)
	defer stranded.Done()
	start := time.Now()
	if WaitAtMost(&stranded, 50*time.Millisecond) {
		t.Fatal("WaitAtMost reported a stranded waiter as finished")
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Fatalf("gave up after %v, before the bound", d)
	}
}
