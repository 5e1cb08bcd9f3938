package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/relaymesh/relaymesh/lab"
	"github.com/relaymesh/relaymesh/loadtest"
)

// labProc is a `relaymesh lab` process started by a test, as an operator
// would start it (TestLabCommand, TestLabSmoke, TestLabFaults), and its
// HTTP control API.
type labProc struct {
	t       *testing.T
	dir     string // the lab's --dir
	cmd     *exec.Cmd
	started time.Time     // just before the process started
	ready   time.Duration // from started to a readable topology.json
	topJSON []byte        // topology.json as the lab wrote it
	top     lab.Topology
	desc    lab.LabFile // lab.json once it names the control endpoint

	done chan struct{} // closed once the process exited and its output is logged
	err  error         // cmd.Wait's; read after done
}

// startLabProc runs `relaymesh lab` with args and its own --dir and
// --log-level warn, logs its output, and waits (up to 3 minutes from the
// start) for topology.json and then for lab.json to name the control
// endpoint. A lab the test did not stop gets SIGINT at the end of the
// test and a minute to stop its nodes, then SIGKILL.
func startLabProc(t *testing.T, args ...string) *labProc {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "lab")
	cmd := exec.Command(relaymeshBin(t), append(append([]string{"lab"}, args...), "--dir", dir, "--log-level", "warn")...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	l := &labProc{t: t, dir: dir, cmd: cmd, started: time.Now(), done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(l.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			t.Logf("lab: %s", sc.Text())
		}
		l.err = cmd.Wait()
	}()
	t.Cleanup(func() {
		select {
		case <-l.done:
			return
		default:
		}
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-l.done:
		case <-time.After(time.Minute):
			cmd.Process.Kill()
			<-l.done
		}
	})
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "topology.json")); err == nil && json.Unmarshal(b, &l.top) == nil {
			l.topJSON = b
			break
		}
		select {
		case <-l.done:
			t.Fatalf("relaymesh lab exited before writing topology.json: %v", l.err)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Since(l.started) > 3*time.Minute {
			t.Fatal("no topology.json after 3 minutes")
		}
	}
	l.ready = time.Since(l.started)
	// lab.json names the control endpoint once it listens, which may be
	// a moment after topology.json.
	for {
		b, _ := os.ReadFile(filepath.Join(dir, "lab.json"))
		err := json.Unmarshal(b, &l.desc)
		if err == nil && l.desc.Control != "" {
			break
		}
		if time.Since(l.started) > 3*time.Minute {
			t.Fatalf("lab.json: %v %s", err, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return l
}

// ctl calls the control API; it returns the status (0 when no answer
// came) and decodes a 200 answer into v. Any other status is an error.
func (l *labProc) ctl(method, path string, v any) (int, error) {
	req, _ := http.NewRequest(method, l.desc.Control+path, nil)
	resp, err := (&http.Client{Timeout: 3 * time.Minute}).Do(req)
	if err != nil {
		return 0, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return resp.StatusCode, fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	if v != nil {
		return resp.StatusCode, json.Unmarshal(b, v)
	}
	return resp.StatusCode, nil
}

func (l *labProc) mustCtl(method, path string) {
	l.t.Helper()
	if _, err := l.ctl(method, path, nil); err != nil {
		l.t.Fatal(err)
	}
}

// nodes returns the region's nodes of role ("core" or "edge") now.
func (l *labProc) nodes(region, role string) []lab.NodeInfo {
	var f lab.LabFile
	if _, err := l.ctl("GET", "/lab", &f); err != nil {
		l.t.Fatal(err)
	}
	var out []lab.NodeInfo
	for _, r := range f.Regions {
		if r.Name != region {
			continue
		}
		for _, n := range r.Nodes {
			if n.Role == role {
				out = append(out, n)
			}
		}
	}
	return out
}

// terminate sends the lab SIGTERM and waits up to d for it to exit, which
// it must do with status 0.
func (l *labProc) terminate(d time.Duration) {
	l.t.Helper()
	l.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-l.done:
		if l.err != nil {
			l.t.Errorf("relaymesh lab exited with %v after SIGTERM, want 0", l.err)
		}
	case <-time.After(d):
		l.t.Fatalf("relaymesh lab did not exit within %v of SIGTERM", d)
	}
}

// checkGone fails the test if a process of pids still exists, or any
// process names the lab's dir.
func (l *labProc) checkGone(pids []int) {
	l.t.Helper()
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			l.t.Errorf("node pid %d still exists after the lab exited (kill 0: %v)", pid, err)
		}
	}
	if left := processesMentioning(l.t, l.dir); len(left) > 0 {
		l.t.Errorf("processes still naming the lab dir: %v", left)
	}
}

// runLabLoad runs the load tester with cfg (for at most 4 minutes) and
// logs its summary.
func runLabLoad(t *testing.T, cfg loadtest.Config) *loadtest.Summary {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	s, err := loadtest.Run(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	s.WriteText(&text)
	t.Log("\n" + text.String())
	return s
}
