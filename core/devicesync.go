package core

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/core/shard"
	"github.com/relaymesh/relaymesh/proto/meshpb"
)

// Devices across regions (devices.go has the registry's use).
//
// Each region's system shard keeps a device registry, and a client may
// log in, report its token or be registered over REST in any region,
// while the offline push of a message runs in its conversation's home
// region, which must know the receivers' devices. So every device change
// a system shard commits — a binding at login or report/upload, an
// unbinding at logout, a REST save or delete, a dead token's removal — is
// proposed in every other region too: the same command (its device ids
// and time included), through that region's system-shard leader
// (MethodDeviceOp), after it committed here, off the request path, each
// region retried for deviceSyncFor. A region unreachable for longer misses
// the change until the device's next one (a login refreshes its binding
// every deviceRebind). A change a region takes from another is not passed
// on. Badge increments are not copied: each region counts the pushes it
// sent.

const (
	// deviceSyncFor bounds the retries of one change to one region.
	deviceSyncFor = time.Minute
	// deviceSyncPause is the first pause between tries (doubling, at
	// most 10 s).
	deviceSyncPause = 500 * time.Millisecond
	// maxDeviceSyncs bounds the copies in flight (each a goroutine that
	// may retry for deviceSyncFor while a region is down); a change over
	// it is not copied (counted failed).
	maxDeviceSyncs = 4096
)

// deviceSyncStats are the copies of device changes to other regions.
type deviceSyncStats struct {
	sent, failed, taken atomic.Uint64
	inflight            atomic.Int64
}

// syncedDeviceOps are the device changes copied to other regions.
var syncedDeviceOps = map[shard.Op]bool{
	shard.OpDeviceBind: true, shard.OpDeviceUnbind: true,
	shard.OpDeviceSave: true, shard.OpDeviceDelete: true,
}

// proposeDevice proposes a device change and, once it committed, copies
// it to every other region (syncDevice).
func (c *Core) proposeDevice(ctx context.Context, cmd *shard.Command) (*shard.Result, error) {
	res, err := c.propose(ctx, cmd)
	if err == nil {
		c.syncDevice(cmd)
	}
	return res, err
}

// syncDevice copies a committed device change to every other region, in
// the background.
func (c *Core) syncDevice(cmd *shard.Command) {
	if c.remote == nil || !syncedDeviceOps[cmd.Op] {
		return
	}
	ns := c.remote.Numbers()
	if len(ns) == 0 {
		return
	}
	b, err := cmd.Encode()
	if err != nil {
		c.log.Error("encoding a device change for other regions", "op", cmd.Op, "err", err)
		return
	}
	req := &meshpb.ClientRequest{AppId: cmd.App, Command: b}
	for _, n := range ns {
		if c.devSync.inflight.Add(1) > maxDeviceSyncs {
			c.devSync.inflight.Add(-1)
			c.devSync.failed.Add(1)
			continue
		}
		go func() {
			defer c.devSync.inflight.Add(-1)
			c.syncDeviceTo(n, req)
		}()
	}
}

// syncDeviceTo sends req to region n until it takes it, deviceSyncFor
// passes or the core closes.
func (c *Core) syncDeviceTo(n uint8, req *meshpb.ClientRequest) {
	ctx, cancel := context.WithTimeout(context.Background(), deviceSyncFor)
	defer cancel()
	pause := deviceSyncPause
	for {
		rep, err := c.remote.call(ctx, n, meshpb.MethodDeviceOp, req)
		if err == nil && rep.GetErrorCode() == 0 {
			c.devSync.sent.Add(1)
			return
		}
		if err == nil {
			err = fmt.Errorf("error %d: %s", rep.GetErrorCode(), rep.GetErrorReason())
		}
		select {
		case <-ctx.Done():
		case <-c.quit:
		case <-time.After(pause):
			pause = min(2*pause, 10*time.Second)
			continue
		}
		c.devSync.failed.Add(1)
		c.log.Warn("a device change did not reach a region", "region", n, "app", req.GetAppId(), "err", err)
		return
	}
}

// takeDevice proposes a device change another region committed
// (MethodDeviceOp), on this region's system shard, and does not pass it
// on. A change that finds nothing to change (a device deleted here
// already) is taken.
func (c *Core) takeDevice(ctx context.Context, req *meshpb.ClientRequest) *meshpb.ClientReply {
	cmd, err := shard.DecodeCommand(req.GetCommand())
	if err != nil || !syncedDeviceOps[cmd.Op] || cmd.App == "" || cmd.App != req.GetAppId() {
		return &meshpb.ClientReply{ErrorCode: codeFor(errMalformed), ErrorReason: fmt.Sprintf("not a device change: %v", err)}
	}
	cmd.Admin = false
	if _, err := c.propose(ctx, cmd); err != nil && !errors.Is(err, shard.ErrDeviceNotFound) {
		return &meshpb.ClientReply{ErrorCode: codeFor(err), ErrorReason: err.Error()}
	}
	c.devSync.taken.Add(1)
	return &meshpb.ClientReply{}
}

// handleDeviceOp serves MethodDeviceOp on the system shard's leader.
func (s *MeshServer) handleDeviceOp(ctx context.Context, peer string, b []byte) ([]byte, error) {
	req := new(meshpb.ClientRequest)
	if err := proto.Unmarshal(b, req); err != nil {
		return nil, fmt.Errorf("core: bad device change from %s: %w", peer, err)
	}
	if b, ok := s.notSystemLeader(); ok {
		return b, nil
	}
	return proto.Marshal(s.router.System().takeDevice(ctx, req))
}
