package raftstore

import (
	"log/slog"
	"testing"

	"github.com/cockroachdb/pebble"
)

// TestStateDBOptions: every level of the state DB writes bloom filters
// (point lookups of absent keys skip a table), with a larger block cache;
// L0 is compacted in larger steps; TuneStateDB leaves a filter or
// threshold that was set alone.
func TestStateDBOptions(t *testing.T) {
	o := stateDBOptions(slog.New(slog.DiscardHandler), false, nil)
	defer o.Cache.Unref()
	if got := o.Cache.MaxSize(); got != StateCacheSize {
		t.Fatalf("block cache %d bytes, want %d", got, StateCacheSize)
	}
	if len(o.Levels) != 7 {
		t.Fatalf("%d levels configured, want 7", len(o.Levels))
	}
	for i, l := range o.Levels {
		if l.FilterPolicy == nil || l.FilterType != pebble.TableFilter {
			t.Fatalf("level %d: filter %v type %v", i, l.FilterPolicy, l.FilterType)
		}
	}
	if o.L0CompactionThreshold != stateL0CompactionThreshold || o.L0StopWritesThreshold != stateL0StopWritesThreshold {
		t.Fatalf("L0 thresholds %d / %d, want %d / %d", o.L0CompactionThreshold, o.L0StopWritesThreshold,
			stateL0CompactionThreshold, stateL0StopWritesThreshold)
	}
	set := &pebble.Options{L0CompactionThreshold: 2, L0StopWritesThreshold: 1000}
	TuneStateDB(set)
	if set.L0CompactionThreshold != 2 || set.L0StopWritesThreshold != 1000 {
		t.Fatalf("TuneStateDB changed set L0 thresholds: %d / %d", set.L0CompactionThreshold, set.L0StopWritesThreshold)
	}
	mine := o.Levels[0].FilterPolicy
	p := &pebble.Options{Levels: []pebble.LevelOptions{{FilterPolicy: mine}, {}}}
	TuneStateDB(p)
	if p.Levels[0].FilterPolicy != mine || p.Levels[1].FilterPolicy == nil || len(p.Levels) != 2 {
		t.Fatalf("TuneStateDB over set levels: %+v", p.Levels)
	}
}
