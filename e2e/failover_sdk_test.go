package e2e

import (
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// TestConformanceFailoverJS runs conformance/js/failover against three
// relaymesh core and two relaymesh edge processes: the official SDK, given
// both edges as RTMServers, loses its edge to kill -9 and must come back
// on the other one and get what it missed. The Node suite asks this test
// to kill (and later restart) an edge over HTTP:
// POST http://RELAYMESH_CONTROL/kill?edge=URL and /restart?edge=URL.
func TestConformanceFailoverJS(t *testing.T) {
	js, files := nodeSuite(t, "failover")
	c := startProcCluster(t, procOptions{Edges: 2})
	c.waitLeader()
	var mu sync.Mutex
	mux := http.NewServeMux()
	edgeIndex := func(r *http.Request) int {
		u := strings.TrimSuffix(r.URL.Query().Get("edge"), "/")
		for i, e := range c.edges {
			if strings.TrimSuffix(e.URL, "/") == u {
				return i
			}
		}
		return -1
	}
	mux.HandleFunc("POST /kill", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		i := edgeIndex(r)
		if i < 0 {
			http.Error(w, "no such edge", http.StatusNotFound)
			return
		}
		c.edges[i].Kill9()
		t.Logf("killed edge-%d (%s) for the Node suite", i+1, c.edges[i].URL)
	})
	mux.HandleFunc("POST /restart", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		i := edgeIndex(r)
		if i < 0 {
			http.Error(w, "no such edge", http.StatusNotFound)
			return
		}
		c.restartEdge(i)
		t.Logf("restarted edge-%d for the Node suite", i+1)
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	go srv.Serve(l)
	defer srv.Close()
	runNode(t, js, files, "RELAYMESH_EDGES="+strings.Join(c.edgeURLs(), ","),
		"RELAYMESH_CONTROL="+l.Addr().String(), "RELAYMESH_FAILOVER_APP=failover-app")

}
