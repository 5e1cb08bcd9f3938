package e2e

import (
	"bufio"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/relaymesh/relaymesh/internal/testbin"
)

// TestMain removes the relaymesh binary the tests built (testbin).
func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Remove()
	os.Exit(code)
}

// relaymeshBin is cmd/relaymesh, built once per test binary run.
func relaymeshBin(t *testing.T) string {
	t.Helper()
	return testbin.Relaymesh(t)
}

// freeAddr returns 127.0.0.1:P where TCP P and UDP P+1 are both free.
func freeAddr(t *testing.T) string {
	t.Helper()
	for range 200 {
		p := 10000 + rand.IntN(22000) // below Linux's ephemeral range (32768–60999), which outgoing sockets take
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		u, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(p+1))
		if err != nil {
			l.Close()
			continue
		}
		// dev's edge serves WebTransport on udp p as well.
		w, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(p))
		l.Close()
		u.Close()
		if err != nil {
			continue
		}
		w.Close()
		return "127.0.0.1:" + strconv.Itoa(p)
	}
	t.Fatal("no free port pair")
	return ""
}

// devProc is a `relaymesh dev` child process.
type devProc struct {
	t    *testing.T
	cmd  *exec.Cmd
	Addr string
	URL  string
	Data string
	done chan struct{}

	outMu   sync.Mutex
	out     []string      // every line it printed
	scanned chan struct{} // closed once its output is read to the end
}

// Output returns every line the process printed; after it exited, it
// waits until they are all read.
func (p *devProc) Output() []string {
	select {
	case <-p.done:
		<-p.scanned
	default:
	}
	p.outMu.Lock()
	defer p.outMu.Unlock()
	return slices.Clone(p.out)
}

// startDev starts `relaymesh dev` on addr with data in dir and waits until
// /healthz answers 200.
//
// RELAYMESH_TEST_SHARDS=N runs every such dev with --shards N (unless the
// test gives --shards itself): `RELAYMESH_TEST_SHARDS=4 go test ./e2e`
// runs the end-to-end suite with conversations spread over four shards.
func startDev(t *testing.T, dir, addr string, extra ...string) *devProc {
	t.Helper()
	args := append([]string{"dev", "--data", dir, "--addr", addr, "--log-level", "warn"}, extra...)
	if n := os.Getenv("RELAYMESH_TEST_SHARDS"); n != "" && !slices.Contains(extra, "--shards") {
		args = append(args, "--shards", n)
	}
	p := startProc(t, addr, args...)
	p.Data = dir
	return p
}

// startDevConfig is startDev with config written to a relaymesh.toml as
// its --config, beside its data in a temp dir, on a free address.
func startDevConfig(t *testing.T, config string, extra ...string) *devProc {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "relaymesh.toml")
	if err := os.WriteFile(cfg, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	return startDev(t, filepath.Join(dir, "data"), freeAddr(t), append([]string{"--config", cfg}, extra...)...)
}

// startProc starts relaymesh with args; when healthAddr is set it waits
// until http://healthAddr/healthz answers 200.
func startProc(t *testing.T, healthAddr string, args ...string) *devProc {
	t.Helper()
	addr := healthAddr
	cmd := exec.Command(relaymeshBin(t), args...)
	pr, pw := io.Pipe()
	cmd.Stdout = pw
	cmd.Stderr = pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &devProc{t: t, cmd: cmd, Addr: addr, URL: "ws://" + addr + "/", done: make(chan struct{}), scanned: make(chan struct{})}
	go func() {
		defer close(p.scanned)
		defer io.Copy(io.Discard, pr) // a line over the scanner's limit must not block the process
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			t.Logf("relaymesh[%d]: %s", cmd.Process.Pid, sc.Text())
			p.outMu.Lock()
			p.out = append(p.out, sc.Text())
			p.outMu.Unlock()
		}
	}()
	go func() {
		cmd.Wait()
		pw.Close()
		close(p.done)
	}()
	t.Cleanup(p.Stop)
	if addr == "" {
		return p
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p
			}
		}
		select {
		case <-p.done:
			t.Fatalf("relaymesh %v exited before it was healthy", args)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("relaymesh %v not healthy after 30s (last err %v)", args, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Kill9 kills the process with SIGKILL and waits for it.
func (p *devProc) Kill9() {
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// Stop asks the process to shut down and waits (SIGKILL after 10 s).
func (p *devProc) Stop() {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		// SIGQUIT first: the Go runtime prints every goroutine's stack
		// (logged above), which says what held the shutdown.
		p.t.Errorf("relaymesh dev did not stop on SIGTERM; its goroutines (SIGQUIT), then SIGKILL")
		p.cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-p.done:
		case <-time.After(3 * time.Second):
		}
		p.Kill9()
	}
}

// freeUDPAddr returns a free loopback UDP address for a mesh node whose
// address must be known before it starts (raft peers).
func freeUDPAddr(t testing.TB) string { return freeUDPAddrOn(t, "127.0.0.1") }

// udpPicked holds the UDP addresses freeUDPAddrOn has handed out: each is
// free when picked but bound only later, by a process, so it must not be
// picked twice.
var udpPicked struct {
	sync.Mutex
	m map[string]bool
}

// freeUDPAddrOn is freeUDPAddr on host. The port is below freeAddr's range
// (10000-31999) and below Linux's ephemeral range (32768-60999): a port
// the kernel picked (":0") was free only until some process's outgoing
// socket took it, which is how a core once failed to bind its mesh port
// after an edge's QUIC dial had taken it (TestLeaderKilledBeforeFanout).
func freeUDPAddrOn(t testing.TB, host string) string {
	t.Helper()
	udpPicked.Lock()
	defer udpPicked.Unlock()
	if udpPicked.m == nil {
		udpPicked.m = map[string]bool{}
	}
	for range 500 {
		addr := net.JoinHostPort(host, strconv.Itoa(5000+rand.IntN(5000)))
		if udpPicked.m[addr] {
			continue
		}
		u, err := net.ListenPacket("udp", addr)
		if err != nil {
			continue
		}
		u.Close()
		udpPicked.m[addr] = true
		return addr
	}
	t.Fatal("no free UDP port in 5000-9999")
	return ""
}
