package core

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/relaymesh/relaymesh/proto/meshpb"
)

// Warm-up before taking other regions' pushes.
//
// A push from another region is acked once the deliveries it made have
// left this core's relay (Regions.serve). A core that just restarted has
// a relay that knows no session until its edges' delivery streams come
// back and send their full presence lists: a push taken then reaches
// nobody and is acked all the same, and its recipients, whose edges never
// lost them, have no reason to resync. So a core turns push streams away
// (the sender moves to another core of the region, and holds its pushes
// while every core does) until its edges are back:
//
//   - when it starts it asks its region's other cores which edges are
//     attached to them (MethodRelayEdges); it is ready once each of those
//     edges has attached to it and sent its full list;
//   - a core with no other core in its region, or whose others all fail to
//     answer, has no one to ask: it is ready at once when it has no other
//     core (a new or single-core region has no edges to wait for that it
//     could know of), else after warmUpMax;
//   - an edge that never comes (it died meanwhile) holds it for at most
//     warmUpMax.
//
// Once ready it stays ready.

// warmUpMax bounds the warm-up: an edge whose old connection to a killed
// core hangs notices after the mesh's idle timeout (10 s) and reattaches
// within its backoff (2 s). A variable for tests (read at SetLocalCores).
var warmUpMax = 15 * time.Second

// warmUpAsk bounds one question to another core.
const warmUpAsk = 2 * time.Second

type warmUp struct {
	mu      sync.Mutex
	started time.Time     // zero: no warm-up (SetLocalCores never called)
	max     time.Duration // warmUpMax when it started
	known   bool          // expect is the answer of at least one other core
	expect  []string      // edges to wait for
	ready   bool
}

// startWarmUp begins the warm-up: the other cores are asked on a
// goroutine.
func (g *Regions) startWarmUp() {
	w := &g.warm
	w.mu.Lock()
	if !w.started.IsZero() {
		w.mu.Unlock()
		return
	}
	w.started, w.max = time.Now(), warmUpMax
	if len(g.local) == 0 {
		w.ready = true
		w.mu.Unlock()
		return
	}
	w.mu.Unlock()
	g.wg.Go(func() {
		ctx, cancel := context.WithTimeout(g.ctx, w.max)
		defer cancel()
		for ctx.Err() == nil {
			if edges, ok := g.askEdges(ctx); ok {
				w.mu.Lock()
				w.known, w.expect = true, edges
				w.mu.Unlock()
				g.log.Info("region pushes wait for this region's edges", "edges", edges)
				return
			}
			select {
			case <-ctx.Done():
			case <-time.After(500 * time.Millisecond):
			}
		}
	})
}

// askEdges asks every other core of the region at once for the edges
// attached to it; ok when at least one answered.
func (g *Regions) askEdges(ctx context.Context) (edges []string, ok bool) {
	var mu sync.Mutex
	seen := map[string]bool{}
	var wg sync.WaitGroup
	for _, addr := range g.local {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, warmUpAsk)
			defer cancel()
			b, err := g.node.Call(cctx, addr, meshpb.MethodRelayEdges, nil)
			var got []string
			if err != nil || json.Unmarshal(b, &got) != nil {
				return
			}
			mu.Lock()
			ok = true
			for _, e := range got {
				seen[e] = true
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	for e := range seen {
		edges = append(edges, e)
	}
	return edges, ok
}

// serveRelayEdges answers MethodRelayEdges: the edges attached here. Only
// cores may ask (Serve). The request is empty and a body is ignored, so a
// later version's request still gets this answer; the mesh bounds it
// (mesh.MaxFrameSize).
func (g *Regions) serveRelayEdges(ctx context.Context, peer string, b []byte) ([]byte, error) {
	return json.Marshal(g.relay.AttachedEdges())
}

// presenceReady reports whether this core takes other regions' pushes
// now (see the top of this file).
func (g *Regions) presenceReady() bool {
	w := &g.warm
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case w.ready || w.started.IsZero():
		return true
	case time.Since(w.started) >= w.max:
		w.ready = true
		return true
	case !w.known:
		return false
	}
	listed := g.relay.ListedEdges()
	for _, e := range w.expect {
		if !listed[e] {
			return false
		}
	}
	w.ready = true
	return true
}
