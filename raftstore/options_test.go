package raftstore

import (
	"log/slog"
	"testing"

	"github.com/cockroachdb/pebble"
)

// TestStateDBOptions: every level of the state DB writes bloom filters
// (point lookups of absent keys skip a table), with a larger block cache;
// TuneStateDB leaves a filter that was set alone.
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
	mine := o.Levels[0].FilterPolicy
	p := &pebble.Options{Levels: []pebble.LevelOptions{{FilterPolicy: mine}, {}}}
	TuneStateDB(p)
	if p.Levels[0].FilterPolicy != mine || p.Levels[1].FilterPolicy == nil || len(p.Levels) != 2 {
		t.Fatalf("TuneStateDB over set levels: %+v", p.Levels)
	}
}
