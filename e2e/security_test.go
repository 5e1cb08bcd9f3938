package e2e

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/proto/lcpb"
	"github.com/relaymesh/relaymesh/rest"
)

// Attacks on a real `relaymesh dev` (issue 8, security): each is tried over
// the raw protocol or raw HTTP and must be refused with LeanCloud's code and
// change nothing; each has an honest positive control.

const secApp, secMaster = "sec-app-0001", "sec-master-key"

// startSignedDev starts relaymesh dev serving one app that requires login
// and conversation signatures.
func startSignedDev(t *testing.T, extra ...string) (*devProc, restAPI) {
	t.Helper()
	return startSignedDevConfig(t, "", extra...)
}

// startSignedDevConfig is startSignedDev with more TOML after the app.
func startSignedDevConfig(t *testing.T, more string, extra ...string) (*devProc, restAPI) {
	t.Helper()
	p := startDevConfig(t, `[[apps]]
id = "`+secApp+`"
key = "sec-app-key"
master_key = "`+secMaster+`"
signature_required = true
conversation_signature_required = true
`+more, extra...)
	return p, restAPI{t: t, base: "http://" + p.Addr, app: secApp, key: secMaster + ",master"}
}

func hmacSHA1Hex(key, msg string) string {
	m := hmac.New(sha1.New, []byte(key))
	m.Write([]byte(msg))
	return hex.EncodeToString(m.Sum(nil))
}

// rawLogin opens peer on a new raw connection with a valid login signature
// and returns the connection and the session/opened reply.
func rawLogin(t *testing.T, ctx context.Context, url, peer string) (*raw, *lcpb.GenericCommand) {
	t.Helper()
	r, _, err := dialRaw(t, ctx, url, lcpb.SubprotocolBinary3)
	if err != nil {
		t.Fatal(err)
	}
	ts := time.Now().UnixMilli()
	r.send(ctx, &lcpb.GenericCommand{Cmd: lcpb.CommandType_session.Enum(), Op: lcpb.OpType_open.Enum(), I: proto.Int32(1),
		AppId: proto.String(secApp), PeerId: proto.String(peer),
		SessionMessage: &lcpb.SessionCommand{Ua: proto.String("raw/1"), T: proto.Int64(ts), N: proto.String("n1"),
			S: proto.String(hmacSHA1Hex(secMaster, fmt.Sprintf("%s:%s::%d:n1", secApp, peer, ts)))}})
	got := r.next(ctx)
	if got.GetOp() != lcpb.OpType_opened {
		t.Fatalf("login %s: got %v/%v %v", peer, got.GetCmd(), got.GetOp(), got.GetErrorMessage())
	}
	return r, got
}

// members reads a conversation's member list over REST (master key).
func (a restAPI) members(cid string) []string {
	a.t.Helper()
	var out struct {
		Result []string `json:"result"`
	}
	if st := a.call("GET", "/1.2/rtm/conversations/"+cid+"/members", nil, &out); st != 200 {
		a.t.Fatalf("members of %s: status %d", cid, st)
	}
	slices.Sort(out.Result)
	return out.Result
}

// TestSecurityJoinLeaveSignatures: conv/join and conv/leave (and the SDK's
// self add/remove) without a conversation signature get 4302 and the member
// list is unchanged; signed, they work.
func TestSecurityJoinLeaveSignatures(t *testing.T) {
	p, api := startSignedDev(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var conv map[string]any
	api.must("POST", "/1.2/rtm/conversations", map[string]any{"name": "sec", "m": []string{"owner", "bob"}, "c": "owner"}, &conv)
	cid, _ := conv["objectId"].(string)
	before := api.members(cid)
	if !slices.Equal(before, []string{"bob", "owner"}) {
		t.Fatalf("members %v", before)
	}
	convCmd := func(i int32, op lcpb.OpType, m ...string) *lcpb.GenericCommand {
		return &lcpb.GenericCommand{Cmd: lcpb.CommandType_conv.Enum(), Op: op.Enum(), I: proto.Int32(i),
			ConvMessage: &lcpb.ConvCommand{Cid: proto.String(cid), M: m}}
	}
	eve, _ := rawLogin(t, ctx, p.URL, "eve")
	for _, a := range []*lcpb.GenericCommand{
		convCmd(2, lcpb.OpType_join), convCmd(3, lcpb.OpType_add, "eve"), convCmd(4, lcpb.OpType_join, "eve"),
	} {
		eve.send(ctx, a)
		wantError(t, fmt.Sprintf("unsigned %v", a.GetOp()), eve.next(ctx), lcpb.ErrConversationSignature, a.I)
	}
	bob, _ := rawLogin(t, ctx, p.URL, "bob")
	for _, a := range []*lcpb.GenericCommand{convCmd(5, lcpb.OpType_leave), convCmd(6, lcpb.OpType_remove, "bob")} {
		bob.send(ctx, a)
		wantError(t, fmt.Sprintf("unsigned %v", a.GetOp()), bob.next(ctx), lcpb.ErrConversationSignature, a.I)
	}
	if got := api.members(cid); !slices.Equal(got, before) {
		t.Fatalf("after refused join/leave: members %v, want %v", got, before)
	}

	// Positive control: signed over the client itself, both work.
	sign := func(g *lcpb.GenericCommand, peer, action string) *lcpb.GenericCommand {
		ts := time.Now().UnixMilli()
		g.ConvMessage.T, g.ConvMessage.N = proto.Int64(ts), proto.String("n2")
		g.ConvMessage.S = proto.String(hmacSHA1Hex(secMaster, fmt.Sprintf("%s:%s:%s:%s:%d:n2:%s", secApp, peer, cid, peer, ts, action)))
		return g
	}
	eve.send(ctx, sign(convCmd(7, lcpb.OpType_join), "eve", "invite"))
	if r := eve.next(ctx); r.GetOp() != lcpb.OpType_joined && r.GetOp() != lcpb.OpType_added {
		t.Fatalf("signed join: got %v/%v %v", r.GetCmd(), r.GetOp(), r.GetErrorMessage())
	}
	if got := api.members(cid); !slices.Contains(got, "eve") {
		t.Fatalf("signed join: members %v", got)
	}
	bob.send(ctx, sign(convCmd(8, lcpb.OpType_leave), "bob", "kick"))
	for {
		r := bob.next(ctx)
		if r.GetCmd() == lcpb.CommandType_error {
			t.Fatalf("signed leave: %v", r.GetErrorMessage())
		}
		if r.GetI() == 8 {
			break
		}
	}
	if got := api.members(cid); slices.Contains(got, "bob") {
		t.Fatalf("signed leave: members %v", got)
	}
}

// TestSecurityConfigRefusesOpenApps: `relaymesh core|edge|dev --config`
// with an [[apps]] entry without master_key exit at load with a message
// naming the app; nothing starts.
func TestSecurityConfigRefusesOpenApps(t *testing.T) {
	bin := relaymeshBin(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "relaymesh.toml")
	if err := os.WriteFile(cfg, []byte("[[apps]]\nid = \"open-app\"\nkey = \"k\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"core", "--config", cfg}, {"edge", "--config", cfg},
		{"dev", "--config", cfg, "--data", filepath.Join(dir, "data"), "--addr", freeAddr(t)},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
		cancel()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Fatalf("relaymesh %v: err %v, want exit status 1\n%s", args[0], err, out)
		}
		if !strings.Contains(string(out), `app "open-app" has no master_key`) {
			t.Errorf("relaymesh %v: output %q does not say which app lacks a master_key", args[0], out)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "data")); err == nil {
		t.Error("dev created its data directory before refusing the config")
	}
}

// TestSecurityDevNonLoopbackWarning: `relaymesh dev --addr 0.0.0.0:P`
// prints a loud warning to stderr; on 127.0.0.1 it prints none.
func TestSecurityDevNonLoopbackWarning(t *testing.T) {
	bin := relaymeshBin(t)
	run := func(addr string) (stderr string) {
		t.Helper()
		cmd := exec.Command(bin, "dev", "--data", t.TempDir(), "--addr", addr, "--log-level", "error")
		var errb strings.Builder
		cmd.Stderr = &errb
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() {
			cmd.Process.Signal(syscall.SIGTERM)
			cmd.Wait()
		}()
		// The banner on stdout comes after the warning, once serving.
		sc := bufio.NewScanner(stdout)
		deadline := time.AfterFunc(30*time.Second, func() { cmd.Process.Kill() })
		defer deadline.Stop()
		for sc.Scan() {
			if strings.Contains(sc.Text(), "serving on") {
				go io.Copy(io.Discard, stdout)
				return errb.String()
			}
		}
		t.Fatalf("relaymesh dev --addr %s never served; stderr %q", addr, errb.String())
		return ""
	}
	_, port, _ := net.SplitHostPort(freeAddr(t))
	if w := run("0.0.0.0:" + port); !strings.Contains(w, "WARNING: relaymesh dev is listening on 0.0.0.0:"+port) ||
		!strings.Contains(w, "OPEN apps") {
		t.Errorf("0.0.0.0: stderr %q, want the exposure warning", w)
	}
	if w := run(freeAddr(t)); strings.Contains(w, "WARNING") {
		t.Errorf("127.0.0.1: stderr %q, want no warning", w)
	}
}

// signedCall sends method path with X-LC-Sign (master) dated at; it
// returns the status and the decoded JSON body.
func signedCall(t *testing.T, base, method, path, body string, at time.Time) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	ts := strconv.FormatInt(at.UnixMilli(), 10)
	req.Header.Set("X-LC-Id", secApp)
	req.Header.Set("X-LC-Sign", rest.Sign(ts, secMaster)+","+ts+",master")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// TestSecurityStaleSignRefused replays a correctly signed X-LC-Sign master
// request 16 minutes old (and one 16 minutes ahead): 401 {"code":401} and
// the client it would kick stays online; a fresh one kicks it.
func TestSecurityStaleSignRefused(t *testing.T) {
	p, api := startSignedDev(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	victim, _ := rawLogin(t, ctx, p.URL, "victim")
	online := func() bool {
		var out struct {
			Results []string `json:"results"`
		}
		api.must("POST", "/1.2/rtm/clients/check-online", map[string]any{"client_ids": []string{"victim"}}, &out)
		return slices.Contains(out.Results, "victim")
	}
	if !online() {
		t.Fatal("victim not online")
	}
	for _, at := range []time.Time{time.Now().Add(-16 * time.Minute), time.Now().Add(16 * time.Minute)} {
		status, body := signedCall(t, api.base, "POST", "/1.2/rtm/clients/victim/kick", "{}", at)
		if status != 401 || body["code"] != float64(401) || body["error"] != "Unauthorized." {
			t.Fatalf("sign dated %v: got %d %v, want 401 code 401 Unauthorized.", time.Until(at).Round(time.Minute), status, body)
		}
	}
	if !online() {
		t.Fatal("a refused kick kicked the victim")
	}
	status, body := signedCall(t, api.base, "POST", "/1.2/rtm/clients/victim/kick", "{}", time.Now())
	if status != 200 {
		t.Fatalf("fresh sign: got %d %v", status, body)
	}
	if r := victim.next(ctx); r.GetOp() != lcpb.OpType_closed || r.GetSessionMessage().GetCode() != 4115 {
		t.Fatalf("fresh kick: victim got %v/%v %v", r.GetCmd(), r.GetOp(), r.GetSessionMessage())
	}
}

// TestSecuritySlowAndIdleConnections against a real relaymesh dev started
// with a 500 ms login deadline and 4 connections per IP: an upgraded
// WebSocket that never logs in is closed with 4108; a TCP connection over
// the per-IP cap is closed at once while the held ones, one of them a
// logged-in session, keep working.
func TestSecuritySlowAndIdleConnections(t *testing.T) {
	p, _ := startSignedDev(t, "--login-timeout", "500ms", "--max-conns-per-ip", "4")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	idle, _, err := dialRaw(t, ctx, p.URL, lcpb.SubprotocolBinary3)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = idle.ws.Read(ctx)
	if got := websocket.CloseStatus(err); got != 4108 {
		t.Fatalf("never logged in: read err %v (close %d), want close 4108", err, got)
	}
	idle.ws.CloseNow()

	// The health checks' keep-alive connections would hold slots too.
	http.DefaultClient.CloseIdleConnections()
	alice, _ := rawLogin(t, ctx, p.URL, "alice")
	// alive reports whether the server kept c open (no EOF within 300 ms).
	alive := func(c net.Conn) bool {
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		_, err := c.Read(make([]byte, 1))
		c.SetReadDeadline(time.Time{})
		return isTimeoutErr(err)
	}
	var held []net.Conn
	deadline := time.Now().Add(10 * time.Second)
	for len(held) < 3 { // with alice, four: the cap (slots of closed conns free up as the server notices)
		c, err := net.Dial("tcp", p.Addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if alive(c) {
			held = append(held, c)
		} else if time.Now().After(deadline) {
			t.Fatalf("only %d raw connections held beside alice", len(held))
		}
	}
	over, err := net.Dial("tcp", p.Addr)
	if err != nil {
		t.Fatal(err)
	}
	if alive(over) {
		t.Fatal("a fifth connection from one IP was not closed at accept")
	}
	over.Close()
	time.Sleep(700 * time.Millisecond) // past the login deadline: alice stays
	alice.send(ctx, &lcpb.GenericCommand{Cmd: lcpb.CommandType_echo.Enum(), I: proto.Int32(9)})
	if r := alice.next(ctx); r.GetCmd() != lcpb.CommandType_echo || r.GetI() != 9 {
		t.Fatalf("logged-in session: got %v", r)
	}
	held[0].Close()
	noKeepAlive := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	deadline = time.Now().Add(10 * time.Second)
	for { // a freed slot is usable again
		resp, err := noKeepAlive.Get("http://" + p.Addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no connection served after one closed: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func isTimeoutErr(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// rawReopen opens a new raw connection and reopens with st (r:true, no
// signature), as an SDK does after a reconnect; it returns the answer.
func rawReopen(t *testing.T, ctx context.Context, url, st string) (*raw, *lcpb.GenericCommand) {
	t.Helper()
	return rawReopenApp(t, ctx, url, secApp, st) // regions_test.go
}

// TestSecurityTokenRevocation: a session token stops reopening once its
// client was kicked (tag conflict 4111, REST kick 4115) or logged out
// (session/close): the reopen gets cmd:error 4112 and no session opens.
// The positive control, a reconnect with a live token, works before each.
func TestSecurityTokenRevocation(t *testing.T) {
	p, api := startSignedDev(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	online := func(id string) bool {
		var out struct {
			Results []string `json:"results"`
		}
		api.must("POST", "/1.2/rtm/clients/check-online", map[string]any{"client_ids": []string{id}}, &out)
		return slices.Contains(out.Results, id)
	}
	refused := func(what, st, peer string) {
		t.Helper()
		r, got := rawReopen(t, ctx, p.URL, st)
		wantError(t, what, got, lcpb.ErrSessionTokenExpired, proto.Int32(1))
		r.ws.CloseNow()
		if online(peer) {
			t.Fatalf("%s: %s is online after a refused reopen", what, peer)
		}
	}

	t.Run("logout", func(t *testing.T) {
		c, opened := rawLogin(t, ctx, p.URL, "lou")
		st := opened.GetSessionMessage().GetSt()
		c.ws.CloseNow() // a dropped connection: the token still reopens
		r, got := rawReopen(t, ctx, p.URL, st)
		if got.GetOp() != lcpb.OpType_opened {
			t.Fatalf("reconnect with a live st: %v", got)
		}
		r.send(ctx, &lcpb.GenericCommand{Cmd: lcpb.CommandType_session.Enum(), Op: lcpb.OpType_close.Enum(), I: proto.Int32(2)})
		if got := r.next(ctx); got.GetOp() != lcpb.OpType_closed {
			t.Fatalf("logout: %v", got)
		}
		refused("reopen after logout", st, "lou")
		refused("reopen with the reopen's own st after logout", got.GetSessionMessage().GetSt(), "lou")
	})

	// The REST calls the SDKs make with X-LC-IM-Session-Token check the same
	// revocation: a logged-out client's token reads nothing more.
	t.Run("REST session token after logout", func(t *testing.T) {
		c, opened := rawLogin(t, ctx, p.URL, "rita")
		st := opened.GetSessionMessage().GetSt()
		get := func() int {
			req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+p.Addr+"/1.1/rtm/notifications?client_id=rita&start_ts=0&notification_type=permanent", nil)
			req.Header.Set("X-LC-Id", secApp)
			req.Header.Set("X-LC-Key", "sec-app-key")
			req.Header.Set("X-LC-IM-Session-Token", st)
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			return res.StatusCode
		}
		if code := get(); code != http.StatusOK {
			t.Fatalf("notifications with a live session token: %d, want 200", code)
		}
		c.send(ctx, &lcpb.GenericCommand{Cmd: lcpb.CommandType_session.Enum(), Op: lcpb.OpType_close.Enum(), I: proto.Int32(2)})
		if got := c.next(ctx); got.GetOp() != lcpb.OpType_closed {
			t.Fatalf("logout: %v", got)
		}
		if code := get(); code != http.StatusUnauthorized {
			t.Fatalf("notifications with the logged-out client's token: %d, want 401", code)
		}
	})

	t.Run("tag kick", func(t *testing.T) {
		open := func(tag string) (*raw, *lcpb.GenericCommand) {
			r, _, err := dialRaw(t, ctx, p.URL, lcpb.SubprotocolBinary3)
			if err != nil {
				t.Fatal(err)
			}
			ts := time.Now().UnixMilli()
			r.send(ctx, &lcpb.GenericCommand{Cmd: lcpb.CommandType_session.Enum(), Op: lcpb.OpType_open.Enum(), I: proto.Int32(1),
				AppId: proto.String(secApp), PeerId: proto.String("tim"),
				SessionMessage: &lcpb.SessionCommand{Tag: proto.String(tag), T: proto.Int64(ts), N: proto.String("n"),
					S: proto.String(hmacSHA1Hex(secMaster, fmt.Sprintf("%s:tim::%d:n", secApp, ts)))}})
			return r, r.next(ctx)
		}
		old, o1 := open("mobile")
		if o1.GetOp() != lcpb.OpType_opened {
			t.Fatalf("first login: %v", o1)
		}
		_, o2 := open("mobile")
		if o2.GetOp() != lcpb.OpType_opened {
			t.Fatalf("second login: %v", o2)
		}
		if k := old.next(ctx); k.GetOp() != lcpb.OpType_closed || k.GetSessionMessage().GetCode() != lcpb.ErrSessionConflict {
			t.Fatalf("kicked session got %v", k)
		}
		r, got := rawReopen(t, ctx, p.URL, o1.GetSessionMessage().GetSt())
		wantError(t, "reopen with the kicked session's st", got, lcpb.ErrSessionTokenExpired, proto.Int32(1))
		r.ws.CloseNow()
		// The kicker's own token is of the new generation: it reopens
		// (after its socket drops, so no tag conflict).
		if !online("tim") {
			t.Fatal("the kicking session is not online")
		}
	})

	t.Run("REST kick", func(t *testing.T) {
		c, opened := rawLogin(t, ctx, p.URL, "kim")
		st := opened.GetSessionMessage().GetSt()
		api.must("POST", "/1.2/rtm/clients/kim/kick", map[string]any{}, nil)
		if k := c.next(ctx); k.GetOp() != lcpb.OpType_closed || k.GetSessionMessage().GetCode() != 4115 {
			t.Fatalf("kicked session got %v", k)
		}
		refused("reopen after a REST kick", st, "kim")
		// Positive control: signing in again works, and its token reopens.
		c2, o := rawLogin(t, ctx, p.URL, "kim")
		c2.ws.CloseNow()
		r, got := rawReopen(t, ctx, p.URL, o.GetSessionMessage().GetSt())
		if got.GetOp() != lcpb.OpType_opened {
			t.Fatalf("reopen with the new login's st: %v", got)
		}
		r.ws.CloseNow()
	})
}

// TestSecurityRefreshChainBounded: with session tokens of 2 s and a 4 s
// session max age, a client refreshing and reconnecting with st keeps its
// session only until 4 s after its signed login; then refresh and reopen
// get 4112.
func TestSecurityRefreshChainBounded(t *testing.T) {
	p, _ := startSignedDevConfig(t, "[edge.limits]\nsession_token_ttl = \"2s\"\nsession_max_age = \"4s\"\n")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, opened := rawLogin(t, ctx, p.URL, "rae")
	start := time.Now()
	st := opened.GetSessionMessage().GetSt()
	i := int32(2)
	for {
		time.Sleep(900 * time.Millisecond)
		c.send(ctx, &lcpb.GenericCommand{Cmd: lcpb.CommandType_session.Enum(), Op: lcpb.OpType_refresh.Enum(), I: proto.Int32(i)})
		r := c.next(ctx)
		i++
		if r.GetCmd() == lcpb.CommandType_error {
			wantError(t, "refresh past the bound", r, lcpb.ErrSessionTokenExpired, proto.Int32(i-1))
			if el := time.Since(start); el < 3*time.Second {
				t.Fatalf("refresh refused after %v, before the 4 s bound", el)
			}
			break
		}
		if r.GetOp() != lcpb.OpType_refreshed {
			t.Fatalf("refresh: %v", r)
		}
		st = r.GetSessionMessage().GetSt()
		if time.Since(start) > 10*time.Second {
			t.Fatal("refresh chain outlived the 4 s bound")
		}
	}
	// The chain's last token cannot reopen either.
	_, got := rawReopen(t, ctx, p.URL, st)
	wantError(t, "reopen past the bound", got, lcpb.ErrSessionTokenExpired, proto.Int32(1))
}
