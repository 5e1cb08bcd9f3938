package cluster

import (
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// The admin listener: a core's [core] metrics_addr (Core.serveMetrics),
// an edge's [edge] admin_addr (StartEdge) and dev's --admin-addr
// (StartDev) serve /metrics (promhttp on the part's own registry),
// /healthz, /readyz (ready.go) and Go's profiler, on an address
// operators keep private.

// addPprof serves Go's profiler under /debug/pprof/ on mux: only on the
// admin listeners (a core's metrics_addr, an edge's admin_addr, dev's
// --admin-addr), never on a port clients reach, for it shows the
// process's internals and a CPU profile costs CPU.
func addPprof(mux *http.ServeMux) {
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
}

// metricsHandler serves g's metrics (promhttp), logging a collector's
// error and serving the rest.
func metricsHandler(g prometheus.Gatherer, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ErrorHandling: promhttp.ContinueOnError,
	})
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
