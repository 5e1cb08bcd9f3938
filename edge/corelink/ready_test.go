package corelink

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/mesh"
	"github.com/relaymesh/relaymesh/proto/meshpb"
)

// TestNotReady: the link's readiness follows the router's PING answer:
// an empty reply is ready, error_code with the shards the router lacks a
// leader for is one failing check per shard, an error code without a
// reason still one check, and no core answering as router one check
// naming the link's error.
func TestNotReady(t *testing.T) {
	ids := testPKI(t)
	n, err := mesh.Listen("127.0.0.1:0", ids["core-1"], slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	var mu sync.Mutex
	reply := &meshpb.ClientReply{}
	n.HandleRPC(meshpb.MethodClient, func(ctx context.Context, peer string, b []byte) ([]byte, error) {
		mu.Lock()
		defer mu.Unlock()
		return proto.Marshal(reply)
	})
	set := func(r *meshpb.ClientReply) {
		mu.Lock()
		reply = r
		mu.Unlock()
	}
	l := startLinkOver(t, ids["edge-1"], []string{n.Addr()})

	if got := l.NotReady(); len(got) != 0 {
		t.Errorf("router answers PING: NotReady = %q, want none", got)
	}
	set(&meshpb.ClientReply{ErrorCode: 503, ErrorReason: "shard 1: no leader; shard 3: no leader"})
	if got, want := l.NotReady(), []string{"core link: shard 1: no leader", "core link: shard 3: no leader"}; !slices.Equal(got, want) {
		t.Errorf("router without two leaders: NotReady = %q, want %q", got, want)
	}
	set(&meshpb.ClientReply{ErrorCode: 503})
	if got := l.NotReady(); len(got) != 1 || !strings.Contains(got[0], "503") {
		t.Errorf("error code without a reason: NotReady = %q, want one check naming the code", got)
	}
	if !l.Ready() {
		t.Error("Ready (liveness) follows NotReady; it must only need a router")
	}
	set(&meshpb.ClientReply{NotLeader: true})
	if got := l.NotReady(); len(got) != 1 || !strings.HasPrefix(got[0], "core link: ") {
		t.Errorf("no router: NotReady = %q, want one check from the link", got)
	}
}

// TestNotReadyDeliveryStreamRefused: a link whose mesh certificate is not
// an edge's (here a core's, as the dev PKI gives a name like gateway-1)
// reaches the router, whose client rpc takes cores too, but the core
// refuses its delivery stream (edges only). The link is not ready, and
// says why, instead of reporting ready while no delivery can arrive.
// With an edge certificate the same core makes it ready.
func TestNotReadyDeliveryStreamRefused(t *testing.T) {
	ids := testPKI(t)
	n, err := mesh.Listen("127.0.0.1:0", ids["core-1"], slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	n.HandleRPC(meshpb.MethodClient, func(ctx context.Context, peer string, b []byte) ([]byte, error) {
		return proto.Marshal(&meshpb.ClientReply{})
	}, mesh.RoleEdge, mesh.RoleCore)
	n.HandleStream(meshpb.MethodDeliveries, func(ctx context.Context, peer string, s *mesh.Stream) {
		<-ctx.Done()
	}, mesh.RoleEdge)

	bad := startLinkOver(t, ids["core-2"], []string{n.Addr()}) // a core's certificate on an edge
	var got []string
	pollUntil(t, 10*time.Second, "the refused delivery stream shows in NotReady", func() bool {
		got = bad.NotReady()
		return len(got) == 1 && strings.Contains(got[0], "refuses this edge's delivery stream") && strings.Contains(got[0], n.Addr())
	})
	if !strings.Contains(got[0], "not allowed") {
		t.Errorf("NotReady = %q, want the mesh's refusal in it", got)
	}

	good := startLinkOver(t, ids["edge-1"], []string{n.Addr()})
	time.Sleep(300 * time.Millisecond) // a refusal would have come by now (the same core refused within the poll above)
	if got := good.NotReady(); len(got) != 0 {
		t.Errorf("edge certificate: NotReady = %q, want none", got)
	}
}
