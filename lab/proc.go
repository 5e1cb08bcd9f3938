package lab

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// Node roles.
const (
	RoleCore = "core"
	RoleEdge = "edge"
)

// ErrNotRunning is returned for an operation on a node whose process is
// not running.
var ErrNotRunning = errors.New("lab: node not running")

// Node is one relaymesh process of the lab. Its addresses stay the same
// across restarts.
type Node struct {
	Name   string // e.g. r1-core-2
	Role   string // RoleCore or RoleEdge
	Region string
	IP     netip.Addr
	// MeshAddr is a core's mesh address (raft's too), an edge's mesh bind
	// (port 0).
	MeshAddr string
	// HTTPAddr is an edge's client listener (WebSocket, /v1/route,
	// /healthz, REST), a core's metrics listener (/healthz: 200 while it
	// leads its region's shard).
	HTTPAddr string
	URL      string // an edge's ws:// URL
	lab      *Lab

	mu     sync.Mutex
	cur    *proc // guarded by mu; the last process started, nil before the first
	starts int   // guarded by mu
}

// proc is one run of a node's process.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once the process was reaped
	err  error         // its exit status; valid after done
}

// NodeInfo describes a node in lab.json.
type NodeInfo struct {
	Name    string `json:"name"`
	Role    string `json:"role"`
	Mesh    string `json:"mesh"`
	HTTP    string `json:"http"`
	URL     string `json:"url,omitempty"`
	PID     int    `json:"pid"` // of the last process started (0: none)
	Running bool   `json:"running"`
	Starts  int    `json:"starts"`
	Log     string `json:"log"`
}

// Info describes the node now.
func (n *Node) Info() NodeInfo {
	n.mu.Lock()
	defer n.mu.Unlock()
	i := NodeInfo{Name: n.Name, Role: n.Role, Mesh: n.MeshAddr, HTTP: n.HTTPAddr, URL: n.URL, Starts: n.starts, Log: n.logPath()}
	if p := n.cur; p != nil {
		i.PID = p.cmd.Process.Pid
		i.Running = !p.exited()
	}
	return i
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (n *Node) configPath() string { return filepath.Join(n.lab.dir, n.Name+".toml") }
func (n *Node) logPath() string    { return filepath.Join(n.lab.dir, "logs", n.Name+".log") }

// PID is the pid of the running process, 0 when none runs.
func (n *Node) PID() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cur == nil || n.cur.exited() {
		return 0
	}
	return n.cur.cmd.Process.Pid
}

// Running reports whether the node's process runs.
func (n *Node) Running() bool { return n.PID() != 0 }

// start starts the process; it is an error if one runs.
func (n *Node) start() error {
	n.mu.Lock()
	if n.lab.closing.Load() { // checked under n.mu: Close stops what started before it
		n.mu.Unlock()
		return ErrClosed
	}
	if n.cur != nil && !n.cur.exited() {
		n.mu.Unlock()
		return fmt.Errorf("lab: %s is running already", n.Name)
	}
	log, err := os.OpenFile(n.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		n.mu.Unlock()
		return fmt.Errorf("lab: %w", err)
	}
	fmt.Fprintf(log, "=== lab: start %s at %s\n", n.Name, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(n.lab.cfg.Binary, n.Role, "--config", n.configPath(), "--log-level", n.lab.cfg.LogLevel,
		"--test-netem", n.lab.netemPath)
	cmd.Dir = n.lab.dir
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		log.Close()
		n.mu.Unlock()
		return fmt.Errorf("lab: start %s: %w", n.Name, err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	n.cur = p
	n.starts++
	n.mu.Unlock()
	go func() { // reaps the child; Close waits for every child's done
		p.err = cmd.Wait()
		log.Close()
		close(p.done)
	}()
	n.lab.log.Debug("lab: started", "node", n.Name, "pid", cmd.Process.Pid)
	n.lab.writeLabFile()
	return nil
}

// current returns the process last started (nil before the first).
func (n *Node) current() *proc {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cur
}

// waitReady waits until an edge answers /healthz 200 (its region has a
// leader it can reach) or a core answers /healthz at all, or the process
// exits, or ctx ends.
func (n *Node) waitReady(ctx context.Context) error {
	p := n.current()
	if p == nil {
		return fmt.Errorf("%w: %s", ErrNotRunning, n.Name)
	}
	var last error
	for {
		resp, err := httpClient.Get("http://" + n.HTTPAddr + "/healthz")
		if err == nil {
			drainBody(resp)
			if n.Role == RoleCore || resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("/healthz answered %d", resp.StatusCode)
		}
		last = err
		select {
		case <-p.done:
			return fmt.Errorf("lab: %s exited while starting (%v); its log %s ends:\n%s", n.Name, p.err, n.logPath(), tail(n.logPath(), 2048))
		case <-ctx.Done():
			return fmt.Errorf("lab: %s not ready: %w (last: %v); its log %s ends:\n%s", n.Name, ctx.Err(), last, n.logPath(), tail(n.logPath(), 2048))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Start starts the node again after Stop or Kill (same addresses, data
// and config) and waits until it is ready.
func (n *Node) Start(ctx context.Context) error {
	if n.lab.isClosed() {
		return ErrClosed
	}
	if err := n.start(); err != nil {
		return err
	}
	return n.waitReady(ctx)
}

// Stop sends SIGTERM (an edge drains, a core leaves cleanly) and waits
// for the process to exit, SIGKILL after grace (0: 15 s).
func (n *Node) Stop(grace time.Duration) error {
	if grace <= 0 {
		grace = stopGrace
	}
	p := n.current()
	if p == nil || p.exited() {
		return fmt.Errorf("%w: %s", ErrNotRunning, n.Name)
	}
	n.stop(grace)
	return nil
}

// Kill sends SIGKILL and waits until the process is reaped.
func (n *Node) Kill() error {
	p := n.current()
	if p == nil || p.exited() {
		return fmt.Errorf("%w: %s", ErrNotRunning, n.Name)
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	n.lab.writeLabFile()
	return nil
}

// Wait waits until the running process exits (nil at once if none runs)
// and returns its exit status.
func (n *Node) Wait(ctx context.Context) error {
	p := n.current()
	if p == nil {
		return nil
	}
	select {
	case <-p.done:
		return p.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// stop terminates the current process if it runs: SIGTERM, then SIGKILL
// after grace; it returns once the process was reaped.
func (n *Node) stop(grace time.Duration) {
	p := n.current()
	if p == nil || p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		n.lab.log.Warn("lab: node did not stop on SIGTERM; killing it", "node", n.Name, "grace", grace)
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
	}
	n.lab.writeLabFile()
}

// Leader reports whether a core leads its region's shard now (its
// /healthz answers 200).
func (n *Node) Leader() bool {
	if n.Role != RoleCore || !n.Running() {
		return false
	}
	resp, err := httpClient.Get("http://" + n.HTTPAddr + "/healthz")
	if err != nil {
		return false
	}
	drainBody(resp)
	return resp.StatusCode == http.StatusOK
}

// tail returns the last n bytes of a file.
func tail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return ""
	}
	off := max(0, fi.Size()-n)
	b := make([]byte, fi.Size()-off)
	k, _ := f.ReadAt(b, off)
	return string(b[:k])
}
