package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/relaymesh/relaymesh/netem"
)

// The control endpoint (Serve) lets tests and tools in other processes
// drive a running lab over HTTP on loopback. Every call answers JSON;
// changes answer once they are in force.
//
//	GET  /lab                                  lab.json (nodes, pids, links)
//	POST /link?a=r1&b=r2&latency=120ms&jitter=5ms&loss=0.01
//	POST /partition?a=r1&b=r2                  (b omitted: r1 from every region)
//	POST /heal?a=r1&b=r2                       (b omitted: r1 with every region)
//	POST /kill?node=r1-core-2                  SIGKILL
//	POST /stop?node=r1-edge-1                  SIGTERM (an edge drains), waited for
//	POST /start?node=r1-core-2                 start again, wait until ready
//	GET  /leader?region=r1                     {"node": "r1-core-3"} ("" if none)
//	GET  /probe?from=r1&to=r2&n=5              {"rtt_ms": [...]}: n (≤ 100) PINGs over QUIC through the emulated network; at most timeout= (default 10 s + 1 s per PING)

// Serve starts the control endpoint on addr (loopback only, e.g.
// "127.0.0.1:0") and returns its base URL; Close stops it.
func (l *Lab) Serve(addr string) (string, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("%w: control address %q: %v", ErrConfig, addr, err)
	}
	if ip, err := netip.ParseAddr(host); err != nil || !ip.IsLoopback() {
		return "", fmt.Errorf("%w: the control endpoint listens on loopback only, not %q", ErrConfig, host)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("lab: control: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /lab", func(w http.ResponseWriter, r *http.Request) { reply(w, l.Describe(), nil) })
	mux.HandleFunc("POST /link", l.serveLink)
	mux.HandleFunc("POST /partition", func(w http.ResponseWriter, r *http.Request) {
		reply(w, ok, l.Partition(r.Context(), r.FormValue("a"), r.FormValue("b")))
	})
	mux.HandleFunc("POST /heal", func(w http.ResponseWriter, r *http.Request) {
		reply(w, ok, l.Heal(r.Context(), r.FormValue("a"), r.FormValue("b")))
	})
	mux.HandleFunc("POST /kill", l.serveNode(func(ctx context.Context, n *Node) error { return n.Kill() }))
	mux.HandleFunc("POST /stop", l.serveNode(func(ctx context.Context, n *Node) error { return n.Stop(0) }))
	mux.HandleFunc("POST /start", l.serveNode(func(ctx context.Context, n *Node) error {
		ctx, cancel := context.WithTimeout(ctx, l.cfg.StartTimeout)
		defer cancel()
		return n.Start(ctx)
	}))
	mux.HandleFunc("GET /leader", func(w http.ResponseWriter, r *http.Request) {
		reg, err := l.Region(r.FormValue("region"))
		if err != nil {
			reply(w, nil, err)
			return
		}
		name := ""
		if n := reg.Leader(); n != nil {
			name = n.Name
		}
		reply(w, map[string]string{"node": name}, nil)
	})
	mux.HandleFunc("GET /probe", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.FormValue("n"))
		n = min(max(n, 1), 100)
		d := 10*time.Second + time.Duration(n)*time.Second
		if v, err := time.ParseDuration(r.FormValue("timeout")); err == nil && v > 0 {
			d = min(v, d)
		}
		ctx, cancel := context.WithTimeout(r.Context(), d)
		defer cancel()
		rtts, err := l.Probe(ctx, r.FormValue("from"), r.FormValue("to"), n)
		ms := make([]float64, len(rtts))
		for i, d := range rtts {
			ms[i] = float64(d.Microseconds()) / 1000
		}
		reply(w, map[string][]float64{"rtt_ms": ms}, err)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	l.mu.Lock()
	if l.closed || l.ctrl != nil {
		l.mu.Unlock()
		ln.Close()
		return "", fmt.Errorf("lab: control: closed or serving already")
	}
	l.ctrl = srv
	l.control = "http://" + ln.Addr().String()
	url := l.control
	l.ctrlWG.Go(func() { _ = srv.Serve(ln) })
	l.mu.Unlock()
	l.writeLabFile()
	return url, nil
}

var ok = map[string]bool{"ok": true}

func (l *Lab) serveLink(w http.ResponseWriter, r *http.Request) {
	var link netem.Link
	for _, d := range []struct {
		name string
		to   *time.Duration
	}{{"latency", &link.Latency}, {"jitter", &link.Jitter}} {
		if v := r.FormValue(d.name); v != "" {
			x, err := time.ParseDuration(v)
			if err != nil {
				reply(w, nil, fmt.Errorf("%w: %s: %v", ErrConfig, d.name, err))
				return
			}
			*d.to = x
		}
	}
	if v := r.FormValue("loss"); v != "" {
		x, err := strconv.ParseFloat(v, 64)
		if err != nil {
			reply(w, nil, fmt.Errorf("%w: loss: %v", ErrConfig, err))
			return
		}
		link.Loss = x
	}
	reply(w, ok, l.SetLink(r.Context(), r.FormValue("a"), r.FormValue("b"), link))
}

func (l *Lab) serveNode(f func(ctx context.Context, n *Node) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		n, err := l.Node(r.FormValue("node"))
		if err == nil {
			err = f(r.Context(), n)
		}
		reply(w, n.infoOrNil(), err)
	}
}

func (n *Node) infoOrNil() any {
	if n == nil {
		return nil
	}
	return n.Info()
}

// reply writes v as JSON, or {"error": …} with 404 (unknown), 400 (bad
// request), 409 (not running) or 500.
func reply(w http.ResponseWriter, v any, err error) {
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		code := http.StatusInternalServerError
		switch {
		case errors.Is(err, ErrUnknown):
			code = http.StatusNotFound
		case errors.Is(err, ErrConfig):
			code = http.StatusBadRequest
		case errors.Is(err, ErrNotRunning), errors.Is(err, ErrClosed):
			code = http.StatusConflict
		}
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
		return
	}
	_ = json.NewEncoder(w).Encode(v)
}

// Leader returns the core that leads the region's shard now, nil if none.
func (r *Region) Leader() *Node {
	for _, c := range r.Cores {
		if c.Leader() {
			return c
		}
	}
	return nil
}
