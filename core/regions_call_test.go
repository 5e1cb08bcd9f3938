package core

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/mesh"
	"github.com/relaymesh/relaymesh/netem"
	"github.com/relaymesh/relaymesh/proto/meshpb"
	"github.com/relaymesh/relaymesh/relay"
)

// callRig is a region-1 core calling region 2, whose three cores run on
// 127.0.0.2-4 behind netem (a cut core is one killed with kill -9: its
// connection stays up, its datagrams vanish).
type callRig struct {
	g     *Regions
	tab   *netem.Table
	rules *netem.Rules
	cores [3]*mesh.Node
	calls [3]atomic.Int64 // non-PING requests each remote core got
}

// newCallRig starts the rig; serve[i] answers core i's non-PING requests.
func newCallRig(t *testing.T, serve [3]func(*meshpb.ClientRequest) *meshpb.ClientReply) *callRig {
	t.Helper()
	names := []string{"core-1", "core-a", "core-b", "core-c"}
	ids, err := mesh.EnsureDevPKI(filepath.Join(t.TempDir(), "pki"), names...)
	if err != nil {
		t.Fatal(err)
	}
	groups := make([]netem.Group, len(names))
	for i, n := range names {
		groups[i] = netem.Group{Name: n, Prefixes: []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{127, 0, 0, byte(i + 1)}), 32)}}
	}
	r := &callRig{rules: netem.NewRules(groups...)}
	r.tab = netem.NewTable(r.rules)
	shaped := mesh.WithPacketConn(func(u *net.UDPConn) net.PacketConn {
		return netem.NewConn(u, netem.Config{Table: r.tab})
	})
	listen := func(i int) *mesh.Node {
		n, err := mesh.Listen(netip.AddrFrom4([4]byte{127, 0, 0, byte(i + 1)}).String()+":0", ids[names[i]], slog.New(slog.DiscardHandler), shaped)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		return n
	}
	self := listen(0)
	var addrs []string
	for i := range r.cores {
		n := listen(i + 1)
		n.HandleRPC(meshpb.MethodClient, func(ctx context.Context, _ string, b []byte) ([]byte, error) {
			req := new(meshpb.ClientRequest)
			if err := proto.Unmarshal(b, req); err != nil {
				return nil, err
			}
			if req.GetKind() == meshpb.ClientRequest_PING {
				return proto.Marshal(&meshpb.ClientReply{})
			}
			r.calls[i].Add(1)
			return proto.Marshal(serve[i](req))
		}, mesh.RoleCore)
		r.cores[i] = n
		addrs = append(addrs, n.Addr())
	}
	rl := relay.New(relay.Config{})
	t.Cleanup(rl.Close)
	if r.g, err = NewRegions(1, self, rl, []RemoteRegion{{Number: 2, Cores: addrs}}, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.g.Close)
	return r
}

// kill cuts remote core i off: what it gets is lost, it sends nothing.
func (r *callRig) kill(i int) {
	r.tab.Set(r.rules.Clone().SetPair("core-1", []string{"core-a", "core-b", "core-c"}[i], netem.Link{Down: true}))
}

func (r *callRig) call(t *testing.T) (*meshpb.ClientReply, error) {
	t.Helper()
	return r.g.call(context.Background(), 2, meshpb.MethodClient, &meshpb.ClientRequest{Kind: meshpb.ClientRequest_COMMAND, AppId: "app"})
}

// TestRegionCallPastKilledRouter: the core a region's calls went to (its
// router) is killed with no close; its successor is elected and the
// survivors' hints still name the dead core for a while. A call must reach
// the new router within the call's wait, not wait the whole of it on the
// dead core and fail (the lab's leader kill -9 failed sends with 4200 so,
// for up to 6 s), and the region must not be marked unreachable.
func TestRegionCallPastKilledRouter(t *testing.T) {
	var deadAddr atomic.Value
	deadAddr.Store("")
	hintDead := func(*meshpb.ClientRequest) *meshpb.ClientReply {
		return &meshpb.ClientReply{NotLeader: true, Leader: deadAddr.Load().(string)}
	}
	router := func(*meshpb.ClientRequest) *meshpb.ClientReply { return &meshpb.ClientReply{ErrorReason: "router"} }
	var routerIsA atomic.Bool
	routerIsA.Store(true)
	a := func(req *meshpb.ClientRequest) *meshpb.ClientReply {
		if routerIsA.Load() {
			return router(req)
		}
		return hintDead(req)
	}
	r := newCallRig(t, [3]func(*meshpb.ClientRequest) *meshpb.ClientReply{a, hintDead, router})
	// Before the kill, core a answers as the router and is remembered.
	rep, err := r.call(t)
	if err != nil || rep.GetErrorReason() != "router" || r.calls[0].Load() != 1 {
		t.Fatalf("first call: %v %v, calls %d", rep, err, r.calls[0].Load())
	}
	deadAddr.Store(r.cores[0].Addr())
	r.kill(0)
	for i := range 3 {
		rep, err := r.call(t)
		if err != nil {
			t.Fatalf("call %d after the router's kill: %v", i, err)
		}
		if rep.GetErrorReason() != "router" {
			t.Fatalf("call %d answered by a non-router: %v", i, rep)
		}
	}
	if n := r.calls[2].Load(); n != 3 {
		t.Errorf("the new router got %d calls, want 3", n)
	}
	if got := r.g.stats.SilentCores.Load(); got != 1 {
		t.Errorf("silent cores counted %d, want 1 (the dead core is tried last after the first call, its hints ignored)", got)
	}
	if r.g.stats.Unreachable.Load() != 0 {
		t.Error("the region was marked unreachable")
	}
	rr := r.g.peers[2]
	rr.mu.Lock()
	down := rr.down
	rr.mu.Unlock()
	if down {
		t.Error("region 2 marked down though a core answered")
	}
}

// TestRegionCallWaitsForBusyCore: a core that is slow to answer a call but
// answers a PING is alive (its shard is electing, say); the call keeps
// waiting for it instead of sending the request again elsewhere.
func TestRegionCallWaitsForBusyCore(t *testing.T) {
	const busy = regionCheckAfter + regionPingWait + 500*time.Millisecond
	slow := func(*meshpb.ClientRequest) *meshpb.ClientReply {
		time.Sleep(busy)
		return &meshpb.ClientReply{ErrorReason: "slow router"}
	}
	other := func(*meshpb.ClientRequest) *meshpb.ClientReply { return &meshpb.ClientReply{ErrorReason: "other"} }
	r := newCallRig(t, [3]func(*meshpb.ClientRequest) *meshpb.ClientReply{slow, other, other})
	rep, err := r.call(t)
	if err != nil {
		t.Fatal(err)
	}
	if rep.GetErrorReason() != "slow router" {
		t.Errorf("answered by %q, want the slow router", rep.GetErrorReason())
	}
	if n := r.calls[1].Load() + r.calls[2].Load(); n != 0 {
		t.Errorf("the request went to %d other cores while the first was alive", n)
	}
	if got := r.g.stats.SilentCores.Load(); got != 0 {
		t.Errorf("silent cores counted %d, want 0", got)
	}
}

// TestRegionCallEveryCoreKilled: with every core of the region cut off,
// the call fails once a PING to each went unanswered (unknown outcome: the
// first attempt may have reached a core), not after trying each core in
// turn, and the region is marked unreachable.
func TestRegionCallEveryCoreKilled(t *testing.T) {
	ok := func(*meshpb.ClientRequest) *meshpb.ClientReply { return &meshpb.ClientReply{} }
	r := newCallRig(t, [3]func(*meshpb.ClientRequest) *meshpb.ClientReply{ok, ok, ok})
	if _, err := r.call(t); err != nil { // connections up
		t.Fatal(err)
	}
	all := r.rules.Clone()
	for _, c := range []string{"core-a", "core-b", "core-c"} {
		all = all.SetPair("core-1", c, netem.Link{Down: true})
	}
	r.tab.Set(all)
	_, err := r.call(t)
	if !errors.Is(err, errRegionUnknown) {
		t.Fatalf("call with every core cut: %v, want errRegionUnknown", err)
	}
	// All three are PINGed at once and found silent: the call fails then,
	// without trying the other two one by one for the rest of its wait.
	if !strings.Contains(err.Error(), errRegionSilent.Error()) {
		t.Errorf("call with every core cut: %v, want it to say no core answered a ping", err)
	}
	if got := r.g.stats.SilentCores.Load(); got != 3 {
		t.Errorf("silent cores %d, want 3", got)
	}

	if _, err := r.call(t); !errors.Is(err, errRegionDown) {
		t.Errorf("next call: %v, want errRegionDown at once", err)
	}
}
