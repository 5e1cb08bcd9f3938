package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"time"

	"github.com/relaymesh/relaymesh/raftstore"
)

// A core is ready (/readyz on its admin listener) when:
//
//   - its mesh node serves the core's methods (edges and the other cores
//     can reach it), and the core is not closing;
//   - every shard it hosts has a leader it knows (itself or another core);
//   - every shard's replica has caught up: it has applied the raft log up
//     to what it held when the node started, and up to the commit index
//     the shard had when this replica first saw its leader, so a
//     restarted core is not called ready while it still replays;
//   - no replica stopped on a fatal apply error.
//
// Readiness only looks at the node's own region: another region being
// down makes requests homed there fail, not this core unready.
// /healthz keeps its meaning (200 on the region's router only).

// catchUp is one replica's catch-up gate: the raft index it must have
// applied before it counts as caught up. It only ever opens (a lagging
// replica later shows in the raft metrics, not as unready).
type catchUp struct {
	mu      sync.Mutex
	start   uint64 // the raft log's last index when the node started
	target  uint64 // guarded by mu; set when the leader is first known, 0 before
	reached bool   // guarded by mu
}

// check reports whether the replica has caught up, given whether a leader
// is known and its commit and applied indexes now; when it has not, why.
func (p *catchUp) check(leaderKnown bool, commit, applied uint64) (bool, string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.reached {
		return true, ""
	}
	if p.target == 0 {
		if !leaderKnown {
			return false, "catching up (no leader yet)"
		}
		p.target = max(p.start, commit)
	}
	if applied < p.target {
		return false, fmt.Sprintf("catching up (applied %d of %d)", applied, p.target)
	}
	p.reached = true
	return true, ""
}

// shardChecks lists the failing checks of shard n's replica.
func shardChecks(n int, rep *raftstore.Node, p *catchUp) []string {
	if err := rep.Err(); err != nil {
		return []string{fmt.Sprintf("shard %d: stopped: %v", n, err)}
	}
	var out []string
	addr, _ := rep.Leader()
	known := addr != "" || rep.IsLeader()
	if !known {
		out = append(out, fmt.Sprintf("shard %d: no leader", n))
	}
	// raft's applied index, not the state machine's (raftstore's counts
	// commands only, and stays behind configuration and no-op entries).
	if ok, why := p.check(known, rep.Raft().CommitIndex(), rep.Raft().AppliedIndex()); !ok {
		out = append(out, fmt.Sprintf("shard %d: %s", n, why))
	}
	return out
}

// NotReady lists the core node's failing readiness checks (none: ready),
// one line each, such as "shard 2: no leader".
func (c *Core) NotReady() []string {
	select {
	case <-c.quit:
		return []string{"core: closing"}
	default:
	}
	var out []string
	if !c.meshUp.Load() {
		out = append(out, "mesh: not serving yet")
	}
	for n, rep := range c.Replicas {
		out = append(out, shardChecks(n, rep, c.progress[n])...)
	}
	return out
}

// addPprof serves Go's profiler under /debug/pprof/ on mux: only on the
// admin listeners (a core's metrics_addr, dev's --admin-addr), never on a
// port clients reach, for it shows the process's internals and a CPU
// profile costs CPU.
func addPprof(mux *http.ServeMux) {
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
}

// adminServer is an admin HTTP listener (dev's; a core's is
// Core.serveMetrics).
type adminServer struct {
	ln  net.Listener
	url string
	srv *http.Server
	wg  sync.WaitGroup
}

// listenAdmin listens on addr; serve starts serving.
func listenAdmin(addr string) (*adminServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return &adminServer{ln: ln, url: "http://" + ln.Addr().String()}, nil
}

func (a *adminServer) serve(h http.Handler, log *slog.Logger) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a.srv = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		if err := a.srv.Serve(a.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("admin listener", "err", err)
		}
	}()
}

func (a *adminServer) close() error {
	var err error
	if a.srv != nil {
		err = a.srv.Close()
	} else {
		err = a.ln.Close()
	}
	a.wg.Wait()
	return err
}
