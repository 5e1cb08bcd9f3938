// Package devserver starts a real `relaymesh dev` process for tests of the
// load tester: it builds ./cmd/relaymesh once per test binary (testbin),
// runs it on a free loopback port (whose port+1/udp, the core's QUIC mesh,
// is free too) with a temporary data directory, and waits for GET
// /healthz 200.
package devserver

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/relaymesh/relaymesh/internal/testbin"
)

// Server is a running relaymesh dev process.
type Server struct {
	URL  string // ws://127.0.0.1:PORT/
	Addr string // 127.0.0.1:PORT
	PID  int
}

// Start builds (once) and starts relaymesh dev with extra flags, and stops
// it when the test ends.
func Start(t testing.TB, extra ...string) *Server {
	t.Helper()
	bin, err := testbin.Build()
	if err != nil {
		t.Fatal(err)
	}
	addr, err := freeAddr()
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"dev", "--data", t.TempDir(), "--addr", addr, "--log-level", "warn"}, extra...)
	cmd := exec.Command(bin, args...)
	var logs syncBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("devserver: start: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("relaymesh dev output:\n%s", logs.String())
		}
	})
	s := &Server{URL: "ws://" + addr + "/", Addr: addr, PID: cmd.Process.Pid}
	if err := waitHealthy(addr, exited, 30*time.Second); err != nil {
		t.Fatalf("devserver: %v\n%s", err, logs.String())
	}
	return s
}

func waitHealthy(addr string, exited <-chan struct{}, timeout time.Duration) error {
	c := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("relaymesh dev exited before it was healthy")
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/healthz", nil)
		resp, err := c.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				cancel()
				return nil
			}
		}
		cancel()
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("GET http://%s/healthz not 200 within %v", addr, timeout)
}

// freeAddr finds a loopback port free for TCP whose port+1 is free for UDP.
func freeAddr() (string, error) {
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", err
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port+1))
		if err != nil {
			l.Close()
			continue
		}
		u.Close()
		// dev's edge serves WebTransport on udp port as well.
		w, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		l.Close()
		if err != nil {
			continue
		}
		w.Close()
		return fmt.Sprintf("127.0.0.1:%d", port), nil
	}
	return "", fmt.Errorf("devserver: no free port pair")
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
