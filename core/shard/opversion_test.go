package shard

import (
	"errors"
	"testing"
)

// TestOpsNewerThanTheCommandVersion: ops added in Version2 (the device
// registry, token revocation) in a Version1 command are refused as
// ErrBadCommand, which is what a replica from before them answers, and a
// Version1 global or transient broadcast is stored as a subscribers'
// broadcast, as such a replica stores it: a mixed cluster stays alike.
func TestOpsNewerThanTheCommandVersion(t *testing.T) {
	h := sysHarness(t)
	for _, c := range []*Command{
		{V: Version1, Op: OpRevokeTokens, App: app, From: "alice", Now: 2000},
		{V: Version1, Op: OpDeviceUnbind, App: app, From: "alice", Now: 2000},
		{V: Version1, Op: OpNotif, App: app, Now: 2000},
	} {
		if _, err := h.apply(c); !errors.Is(err, ErrBadCommand) {
			t.Errorf("version 1 %s: got %v, want ErrBadCommand", c.Op, err)
		}
		if need := NeedsVersion(c); need != Version2 {
			t.Errorf("NeedsVersion(%s): got %d, want %d", c.Op, need, Version2)
		}
	}
	h.must(&Command{V: Version2, Op: OpRevokeTokens, App: app, From: "alice", Now: 2000})

	h.must(&Command{V: Version1, Op: OpSysBcast, App: app, CID: "s1", From: "sys", MID: "old", Data: "x", Now: 3000,
		ValidTill: 10000, Admin: true, Global: true})
	h.must(&Command{V: Version1, Op: OpSysBcast, App: app, CID: "s1", From: "sys", MID: "oldtr", Data: "x", Now: 3100,
		ValidTill: 10000, Admin: true, Global: true, Transient: true})
	if gs, _ := GlobalBroadcasts(h.db, app, 0, 3500, 0); len(gs) != 0 {
		t.Errorf("version 1 global broadcasts indexed: %+v", gs)
	}
	if m, _ := GetMessage(h.db, app, "s1", "oldtr"); m == nil {
		t.Error("a version 1 transient broadcast was not stored, as version 1 replicas store it")
	}
	for _, c := range []*Command{{Op: OpSysBcast, Global: true}, {Op: OpSysBcast, Transient: true},
		{Op: OpBatch, Batch: []*Command{{Op: OpAck}, {Op: OpDeviceBadge}}}} {
		if need := NeedsVersion(c); need != Version2 {
			t.Errorf("NeedsVersion(%+v): got %d, want %d", c, need, Version2)
		}
	}
	if need := NeedsVersion(&Command{Op: OpSysBcast}); need != Version1 {
		t.Errorf("NeedsVersion(subscribers' broadcast): got %d, want 1", need)
	}
}
