package main

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/relaymesh/relaymesh/internal/testbin"
)

// TestMain removes the binary testbin built: tests that must see what an
// operator sees (stderr, exit codes) run the real command.
func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Remove()
	os.Exit(code)
}

// run runs the binary to its end and returns its stdout, stderr and exit
// code.
func run(t *testing.T, dir string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(testbin.Relaymesh(t), args...)
	cmd.Dir = dir
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return o.String(), e.String(), ee.ExitCode()
	}
	if err != nil {
		t.Fatalf("relaymesh %v: %v", args, err)
	}
	return o.String(), e.String(), 0
}

// proc is a running relaymesh process whose stderr lines the test reads.
type proc struct {
	cmd    *exec.Cmd
	lines  chan string // stderr, line by line; closed at EOF
	stdout *syncBuf
	done   chan struct{}
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// start starts the binary in dir; it is stopped (SIGINT, then SIGKILL)
// when the test ends.
func start(t *testing.T, dir string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(testbin.Relaymesh(t), args...)
	cmd.Dir = dir
	p := &proc{cmd: cmd, lines: make(chan string, 10000), stdout: new(syncBuf), done: make(chan struct{})}
	cmd.Stdout = p.stdout
	errPipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(errPipe)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			select {
			case p.lines <- sc.Text():
			default: // the test stopped reading
			}
		}
		_, _ = io.Copy(io.Discard, errPipe)
		close(p.lines)
		_ = cmd.Wait() // after stderr is read to its end, as Wait wants
		close(p.done)
	}()
	t.Cleanup(func() { p.stop(t) })
	return p
}

func (p *proc) stop(t *testing.T) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Errorf("relaymesh did not stop on SIGINT; killing it")
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// freeDevAddr is a loopback address whose TCP port and UDP port and
// port+1 are free (dev's edge, WebTransport and the core's mesh).
func freeDevAddr(t *testing.T) string {
	t.Helper()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u1, err1 := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(port))
		u2, err2 := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(port+1))
		for _, c := range []net.PacketConn{u1, u2} {
			if c != nil {
				c.Close()
			}
		}
		l.Close()
		if err1 == nil && err2 == nil {
			return "127.0.0.1:" + strconv.Itoa(port)
		}
	}
	t.Fatal("no free port pair")
	return ""
}
