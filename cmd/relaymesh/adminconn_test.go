package main

import (
	"errors"
	"flag"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/relaymesh/relaymesh/mesh"
)

// adminCommands is every admin command with the arguments it needs to
// get as far as dialling (restore is left out there: it reads and checks
// its --in file first).
func adminCommands(t *testing.T) []struct {
	name string   // the flag set's name: the errors' prefix
	args []string // to runAdmin
} {
	out := filepath.Join(t.TempDir(), "snap") // absent: snapshot goes on to dial
	return []struct {
		name string
		args []string
	}{
		{"admin status", []string{"status"}},
		{"admin shard transfer-leader", []string{"shard", "transfer-leader", "--shard", "0"}},
		{"admin shard add-replica", []string{"shard", "add-replica", "--shard", "0", "--node", "n", "--addr", "127.0.0.1:1"}},
		{"admin shard remove-replica", []string{"shard", "remove-replica", "--shard", "0", "--node", "n"}},
		{"admin shard move", []string{"shard", "move", "--shard", "0", "--from", "a", "--to", "b", "--addr", "127.0.0.1:1"}},
		{"admin conversation show", []string{"conversation", "show", "--app", "app", "cid"}},
		{"admin snapshot", []string{"snapshot", "--shard", "0", "--out", out}},
		{"admin app list", []string{"app", "list"}},
		{"admin app show", []string{"app", "show", "app"}},
		{"admin app set", []string{"app", "set", "app", "--app-key", "k"}},
		{"admin app rotate-master-key", []string{"app", "rotate-master-key", "app"}},
		{"admin app delete", []string{"app", "delete", "app", "--yes"}},
	}
}

// TestAdminPreamble: every admin command takes the same flags and
// refuses the same way, before it dials, what it cannot run with.
func TestAdminPreamble(t *testing.T) {
	dir := t.TempDir()
	if _, err := mesh.IssueNodeRole(dir, "admin-x", mesh.RoleAdmin, nil); err != nil {
		t.Fatal(err)
	}
	cert := []string{"--ca", filepath.Join(dir, "ca.crt"), "--cert", filepath.Join(dir, "admin-x.crt"), "--key", filepath.Join(dir, "admin-x.key")}
	badConfig := filepath.Join(dir, "bad.toml")
	if err := os.WriteFile(badConfig, []byte("[core\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range adminCommands(t) {
		for _, tc := range []struct {
			what  string
			extra []string
			want  string // the whole error, or its start with "…"
		}{
			{"no certificate", nil, "admin: --config, or --ca, --cert and --key, name the admin certificate"},
			{"only --ca", []string{"--ca", "x"}, "admin: --config, or --ca, --cert and --key, name the admin certificate"},
			{"no core", cert, "admin: no core to ask: --core ADDR, or [admin] cores in --config"},
			{"an empty --core", append([]string{"--core", " , "}, cert...), "admin: no core to ask: --core ADDR, or [admin] cores in --config"},
			{"a missing certificate", []string{"--ca", "x", "--cert", "y", "--key", "z", "--core", "127.0.0.1:1"}, "admin: mesh: …"},
			{"a bad --config", []string{"--config", badConfig}, "…bad.toml"},
			{"an unknown flag", []string{"--nope"}, c.name + ": flag provided but not defined: -nope"},
			{"a bad --timeout", []string{"--timeout", "soon"}, c.name + `: invalid value "soon" for flag -timeout: parse error`},
		} {
			err := runAdmin(append(append([]string{}, c.args...), tc.extra...))
			got := ""
			if err != nil {
				got = err.Error()
			}
			ok := got == tc.want
			if pre, found := strings.CutSuffix(tc.want, "…"); found {
				ok = strings.HasPrefix(got, pre)
			} else if suf, found := strings.CutPrefix(tc.want, "…"); found {
				ok = err != nil && strings.Contains(got, suf)
			}
			if !ok {
				t.Errorf("%s, %s: got %q, want %q", c.name, tc.what, got, tc.want)
			}
		}
	}
}

// TestAdminUnexpectedArgument: the commands without positionals name
// the first one they were given.
func TestAdminUnexpectedArgument(t *testing.T) {
	for _, c := range adminCommands(t) {
		switch c.name {
		case "admin conversation show", "admin app show", "admin app set", "admin app rotate-master-key", "admin app delete":
			continue // they take positionals, checked by each (TestAdminAppArgs)
		}
		err := runAdmin(append(append([]string{}, c.args...), "stray", "more"))
		if want := c.name + `: unexpected argument "stray"`; err == nil || err.Error() != want {
			t.Errorf("%s with a stray argument: got %v, want %q", c.name, err, want)
		}
	}
	err := runAdmin([]string{"restore", "--shard", "0", "--in", "f", "stray"})
	if want := `admin restore: unexpected argument "stray"`; err == nil || err.Error() != want {
		t.Errorf("restore with a stray argument: got %v, want %q", err, want)
	}
}

// TestAdminHelp: -h is flag.ErrHelp (exit 0), for every command.
func TestAdminHelp(t *testing.T) {
	stderr := os.Stderr
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	os.Stderr = devnull // parseAll prints the flags there
	defer func() { os.Stderr = stderr }()
	for _, c := range append(adminCommands(t), struct {
		name string
		args []string
	}{"admin restore", []string{"restore"}}) {
		if err := runAdmin(append(append([]string{}, c.args...), "-h")); !errors.Is(err, flag.ErrHelp) {
			t.Errorf("%s -h: got %v, want flag.ErrHelp", c.name, err)
		}
	}
}

// TestAdminNoCoreAnswers: with a good certificate and only a dead core
// to ask, the commands that ask every core say none answered, within
// --timeout.
func TestAdminNoCoreAnswers(t *testing.T) {
	dir := t.TempDir()
	if _, err := mesh.IssueNodeRole(dir, "admin-x", mesh.RoleAdmin, nil); err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := pc.LocalAddr().String()
	pc.Close()
	flags := []string{"--ca", filepath.Join(dir, "ca.crt"), "--cert", filepath.Join(dir, "admin-x.crt"), "--key", filepath.Join(dir, "admin-x.key"),
		"--core", dead, "--timeout", "1s"}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"status"}, "admin status: no core answered"},
		{[]string{"app", "list"}, "admin app list: no core answered"},
		{[]string{"app", "show", "app"}, "admin app show: no core answered"},
	} {
		err := runAdmin(append(tc.args, flags...))
		if err == nil || err.Error() != tc.want {
			t.Errorf("admin %v: got %v, want %q", tc.args, err, tc.want)
		}
	}
}

// TestAdminConnectDeadline: connect bounds the command by --timeout.
func TestAdminConnectDeadline(t *testing.T) {
	dir := t.TempDir()
	if _, err := mesh.IssueNodeRole(dir, "admin-x", mesh.RoleAdmin, nil); err != nil {
		t.Fatal(err)
	}
	c := newAdminCmd("admin test")
	if err := c.parseNone([]string{"--ca", filepath.Join(dir, "ca.crt"), "--cert", filepath.Join(dir, "admin-x.crt"),
		"--key", filepath.Join(dir, "admin-x.key"), "--core", "127.0.0.1:1", "--timeout", "1h", "--mesh-addr", "127.0.0.1:0"}); err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	cl, ctx, release, err := c.connect()
	if err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	if got := cl.Seeds(); len(got) != 1 || got[0] != "127.0.0.1:1" {
		t.Errorf("seeds: got %v, want [127.0.0.1:1]", got)
	}
	dl, ok := ctx.Deadline()
	if !ok || dl.Before(before.Add(time.Hour)) || dl.After(after.Add(time.Hour)) {
		t.Errorf("deadline: got %v (set %v), want --timeout 1h from connect, %v to %v", dl, ok, before.Add(time.Hour), after.Add(time.Hour))
	}
	release()
	if ctx.Err() == nil {
		t.Error("release left the context running")
	}
}

// TestNoCoreAnswered: nil when one core answered; else the first
// refusal, else "no core answered".
func TestNoCoreAnswered(t *testing.T) {
	id := func(a coreAnswer) coreAnswer { return a }
	for _, tc := range []struct {
		name  string
		nodes []coreAnswer
		want  string
	}{
		{"none asked", nil, "cmd: no core answered"},
		{"all unreachable", []coreAnswer{{err: "timeout"}, {err: "timeout"}}, "cmd: no core answered"},
		{"one refused", []coreAnswer{{err: "timeout"}, {refused: true, err: "refused A"}, {refused: true, err: "refused B"}}, "cmd: refused A"},
		{"one answered", []coreAnswer{{refused: true, err: "refused"}, {err: "timeout"}, {answered: true}}, ""},
	} {
		err := noCoreAnswered("cmd", tc.nodes, id)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}
