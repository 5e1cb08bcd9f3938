package edge

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Readiness (/readyz) against liveness (/healthz): /healthz says the
// process should keep running and take clients (an edge: it reaches the
// region's router core); /readyz says whether it can serve them fully
// now and, when it cannot, which checks fail, one per line, for an
// operator and a load balancer alike. Both answer 503 while the edge
// drains.

// serveReady answers /readyz: the drain, then Config.NotReady (or, without
// it, Config.Ready).
func (s *Server) serveReady(w http.ResponseWriter, r *http.Request) {
	ReadyHandler(s.notReady)(w, r)
}

// readyFor is how long one answer of the backend's checks serves
// /readyz: a flood of probes on the public port costs the cores one PING
// per readyFor, not one each.
const readyFor = time.Second

// readyChecks shares the backend's readiness checks between concurrent
// /readyz requests and caches their answer for readyFor.
type readyChecks struct {
	mu      sync.Mutex
	at      time.Time     // guarded by mu; when last was found
	last    []string      // guarded by mu
	running chan struct{} // guarded by mu; closed when the check running ends, nil if none
}

// notReady lists the edge's failing readiness checks: the drain at once,
// the backend's (Config.NotReady, else Config.Ready) at most once per
// readyFor.
func (s *Server) notReady() []string {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return []string{"edge: draining or closed"}
	}
	check := s.cfg.NotReady
	if check == nil {
		if s.cfg.Ready == nil {
			return nil
		}
		check = func() []string {
			if !s.cfg.Ready() {
				return []string{"edge: backend not ready"}
			}
			return nil
		}
	}
	rc := &s.ready
	rc.mu.Lock()
	for {
		if !rc.at.IsZero() && s.now().Sub(rc.at) < readyFor {
			last := rc.last
			rc.mu.Unlock()
			return last
		}
		if rc.running == nil {
			break
		}
		wait := rc.running
		rc.mu.Unlock()
		<-wait
		rc.mu.Lock()
	}
	done := make(chan struct{})
	rc.running = done
	rc.mu.Unlock()
	out := check()
	rc.mu.Lock()
	rc.at, rc.last, rc.running = s.now(), out, nil
	rc.mu.Unlock()
	close(done)
	return out
}

// ReadyHandler serves a readiness endpoint over check, which lists the
// failing checks (none: ready). GET and HEAD answer 200 "ok" or 503 with
// the failing checks, one per line (as JSON {"ready": false, "failing":
// [...]} when the request accepts application/json and not text/plain);
// HEAD the same status without a body; other methods 405.
func ReadyHandler(check func() []string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		failing := check()
		w.Header().Set("Cache-Control", "no-store")
		status := http.StatusOK
		if len(failing) > 0 {
			status = http.StatusServiceUnavailable
		}
		accept := r.Header.Get("Accept")
		if strings.Contains(accept, "application/json") && !strings.Contains(accept, "text/plain") {
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			w.WriteHeader(status)
			if failing == nil {
				failing = []string{}
			}
			_ = json.NewEncoder(w).Encode(struct {
				Ready   bool     `json:"ready"`
				Failing []string `json:"failing"`
			}{len(failing) == 0, failing})
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(status)
		if len(failing) == 0 {
			_, _ = w.Write([]byte("ok\n"))
			return
		}
		_, _ = w.Write([]byte(strings.Join(failing, "\n") + "\n"))
	}
}
