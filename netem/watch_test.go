package netem

import (
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestWatcher: a process sharing a rules file applies each new version
// and acknowledges its generation; a broken file keeps the rules in force.
func TestWatcher(t *testing.T) {
	dir := t.TempDir()
	path, ack := filepath.Join(dir, "netem.json"), filepath.Join(dir, "netem.json.ack")
	rules := abRules().SetPair("a", "b", Link{Latency: 10 * time.Millisecond})
	rules.Generation = 1
	if err := WriteFile(path, rules); err != nil {
		t.Fatal(err)
	}
	tab := new(Table)
	w, err := Watch(path, ack, tab, 5*time.Millisecond, nil)
	if err != nil {
		t.Fatal(err)
	}
	if g, err := ReadAck(ack); err != nil || g != 1 {
		t.Fatalf("ack after Watch: %d, %v; want 1", g, err)
	}
	if l := tab.Rules().Link("a", "b"); l.Latency != 10*time.Millisecond {
		t.Fatalf("loaded link %v", l)
	}

	next := rules.Clone().SetPair("a", "b", Link{Down: true})
	next.Generation = 2
	if err := WriteFile(path, next); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 5*time.Second, "generation 2 acknowledged", func() bool {
		g, _ := ReadAck(ack)
		return g == 2
	})
	if l := tab.Rules().Link("b", "a"); !l.Down {
		t.Errorf("after reload b→a is %v, want down", l)
	}

	// A broken file: stepped by hand on a watcher that does not poll.
	w2, err := Watch(path, "", tab, time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Close()
	w.Close()
	if err := os.WriteFile(path, []byte(`{"links":[{"from":"x","to":"y"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := w2.load(); err == nil {
		t.Error("a broken rules file loaded without error")
	}
	if g := tab.Rules().Generation; g != 2 {
		t.Errorf("a broken file replaced the rules: generation %d", g)
	}
	good := next.Clone()
	good.Generation = 3
	if err := WriteFile(path, good); err != nil {
		t.Fatal(err)
	}
	if err := w2.load(); err != nil || tab.Rules().Generation != 3 {
		t.Errorf("the good file after a broken one: %v, generation %d", err, tab.Rules().Generation)
	}

	if _, err := Watch(filepath.Join(dir, "missing.json"), "", new(Table), 0, nil); err == nil {
		t.Error("Watch of a missing file succeeded")
	}
}

// TestTCPProxy: an HTTP round trip through the proxy costs both one-way
// latencies; while the link is down a request waits, and healing lets it
// finish.
func TestTCPProxy(t *testing.T) {
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()
	const oneWay = 30 * time.Millisecond
	p, err := NewTCPProxy("127.0.0.1:0", ln.Addr().String(), Link{Latency: oneWay})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	get := func() (time.Duration, error) {
		t0 := time.Now()
		resp, err := hc.Get("http://" + p.Addr() + "/")
		if err != nil {
			return 0, err
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil && string(b) != "ok" {
			t.Errorf("body %q", b)
		}
		return time.Since(t0), err
	}
	var best time.Duration
	for range 5 {
		d, err := get()
		if err != nil {
			t.Fatal(err)
		}
		if best == 0 || d < best {
			best = d
		}
	}
	if best < 2*oneWay {
		t.Errorf("fastest HTTP round trip %v through a proxy of %v one way", best, oneWay)
	}
	t.Logf("one-way %v: fastest HTTP GET on a kept-alive connection %v", oneWay, best)

	p.SetLink(Link{Latency: oneWay, Down: true})
	done := make(chan error, 1)
	go func() {
		_, err := get()
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("a request crossed the partition (err %v)", err)
	case <-time.After(300 * time.Millisecond):
	}
	p.SetLink(Link{Latency: oneWay})
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("request held by the partition failed after healing: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("request held by the partition did not finish after healing")
	}
}
