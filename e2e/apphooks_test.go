package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/client"
	"github.com/relaymesh/relaymesh/hooks"
	"github.com/relaymesh/relaymesh/proto/lcpb"
)

// Issue 8 over the REST API and raw protocol (the official SDK's view is
// conformance/js/apphooks): login signatures for app users, the stored
// notifications in the Swift and JS shapes, and attacks on both and on
// _messageUpdate.

// httpJSON sends method to u with headers and body (JSON unless nil) and
// returns the status and the decoded JSON object.
func httpJSON(t *testing.T, method, u string, headers map[string]string, body any) (int, map[string]any) {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, u, r)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("%s %s: %d %q is not a JSON object", method, u, resp.StatusCode, raw)
	}
	return resp.StatusCode, out
}

func wantREST(t *testing.T, what string, status int, body map[string]any, wantStatus int, wantCode float64) {
	t.Helper()
	if status != wantStatus || body["code"] != wantCode {
		t.Errorf("%s: got %d %v, want %d with code %v", what, status, body, wantStatus, wantCode)
	}
	if msg, _ := body["error"].(string); msg == "" {
		t.Errorf("%s: no error message in %v", what, body)
	}
}

// rawOpen sends session/open for peer (with a signature or a session token
// when given) on a new raw socket and returns the socket and the reply.
func rawOpen(t *testing.T, ctx context.Context, wsURL, app, peer string, sm *lcpb.SessionCommand) (*raw, *lcpb.GenericCommand) {
	t.Helper()
	r, _, err := dialRaw(t, ctx, wsURL, lcpb.SubprotocolBinary3)
	if err != nil {
		t.Fatal(err)
	}
	if sm == nil {
		sm = &lcpb.SessionCommand{}
	}
	sm.Ua = proto.String("e2e")
	r.send(ctx, &lcpb.GenericCommand{Cmd: lcpb.CommandType_session.Enum(), Op: lcpb.OpType_open.Enum(), I: proto.Int32(1),
		AppId: proto.String(app), PeerId: proto.String(peer), SessionMessage: sm})
	return r, r.next(ctx)
}

// TestAppUserSignREST: POST /1.1/rtm/sign and GET /1.2/rtm/clients/sign
// against a real relaymesh dev whose app requires login signatures, with
// the user store and _rtmClientSign served here: the signature logs in
// that user and no other; bad tokens, refusals, apps without a store and
// floods get LeanCloud-shaped errors and never a signature.
func TestAppUserSignREST(t *testing.T) {
	const app, key, master = "users-app-0001", "users-app-key", "users-master"
	var inFlight, maxInFlight, storeCalls atomic.Int64
	release := make(chan struct{})
	store := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := hooks.Verify(r, master); err != nil {
			t.Errorf("user store: unsigned request: %v", err)
		}
		storeCalls.Add(1)
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for m := maxInFlight.Load(); n > m && !maxInFlight.CompareAndSwap(m, n); m = maxInFlight.Load() {
		}
		tok := r.Header.Get("X-LC-Session")
		if strings.HasPrefix(tok, "slow-") {
			<-release
		}
		id, ok := strings.CutPrefix(strings.TrimPrefix(tok, "slow-"), "token-")
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"code":211,"error":"Could not find user."}`)
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"objectId": id, "username": id})
	}))
	defer store.Close()
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var u map[string]any
		json.NewDecoder(r.Body).Decode(&u)
		if id, _ := u["objectId"].(string); strings.HasPrefix(id, "banned-") {
			io.WriteString(w, `{"result":false,"error":"banned here"}`)
			return
		}
		io.WriteString(w, `{"result":true}`)
	}))
	defer hook.Close()

	p := startDevConfig(t, `[[apps]]
id = "`+app+`"
key = "`+key+`"
master_key = "`+master+`"
signature_required = true
user_verify_url = "`+store.URL+`/users/me"
[apps.hooks]
_rtmClientSign = "`+hook.URL+`"

[[apps]]
id = "storeless-app"
key = "k2"
master_key = "m2"
`)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	base := "http://" + p.Addr
	hdr := map[string]string{"X-LC-Id": app, "X-LC-Key": key, "Content-Type": "application/json"}
	sign := func(tok string) (int, map[string]any) {
		return httpJSON(t, "POST", base+"/1.1/rtm/sign", hdr, map[string]string{"session_token": tok})
	}

	status, got := sign("token-alice")
	if status != 200 || got["client_id"] != "alice" {
		t.Fatalf("sign: got %d %v", status, got)
	}
	ts, isNumber := got["timestamp"].(float64)
	if !isNumber || time.Since(time.UnixMilli(int64(ts))).Abs() > time.Minute {
		t.Fatalf("timestamp %v (%T): want a number of ms near now", got["timestamp"], got["timestamp"])
	}
	sm := func() *lcpb.SessionCommand {
		return &lcpb.SessionCommand{S: proto.String(got["signature"].(string)), T: proto.Int64(int64(ts)), N: proto.String(got["nonce"].(string))}
	}
	if _, c := rawOpen(t, ctx, p.URL, app, "alice", sm()); c.GetOp() != lcpb.OpType_opened {
		t.Fatalf("alice with her signature: got %v", c)
	}
	if _, c := rawOpen(t, ctx, p.URL, app, "bob", sm()); c.GetCmd() != lcpb.CommandType_error || c.GetErrorMessage().GetCode() != lcpb.ErrSignatureFailed {
		t.Fatalf("bob with alice's signature: got %v, want error 4102", c)
	}
	tampered := sm()
	tampered.N = proto.String("othernonce")
	if _, c := rawOpen(t, ctx, p.URL, app, "alice", tampered); c.GetErrorMessage().GetCode() != lcpb.ErrSignatureFailed {
		t.Fatalf("a tampered nonce: got %v, want error 4102", c)
	}
	status, got = httpJSON(t, "GET", base+"/1.2/rtm/clients/sign?session_token="+url.QueryEscape("token-carol"), hdr, nil)
	if status != 200 || got["client_id"] != "carol" {
		t.Fatalf("GET /1.2/rtm/clients/sign: got %d %v", status, got)
	}

	status, got = sign("forged")
	wantREST(t, "forged session token", status, got, 401, 211)
	status, got = sign("token-banned-dave")
	wantREST(t, "refused by _rtmClientSign", status, got, 403, 142)
	if msg, _ := got["error"].(string); !strings.Contains(msg, "banned here") {
		t.Errorf("the hook's reason is lost: %q", msg)
	}
	status, got = sign("")
	wantREST(t, "no session token", status, got, 400, 1)
	status, got = sign(strings.Repeat("x", 2000))
	wantREST(t, "a 2000-byte session token", status, got, 400, 1)
	status, got = httpJSON(t, "POST", base+"/1.1/rtm/sign", map[string]string{"X-LC-Id": app, "X-LC-Key": "wrong"}, map[string]string{"session_token": "token-alice"})
	wantREST(t, "wrong app key", status, got, 401, 401)
	status, got = httpJSON(t, "POST", base+"/1.1/rtm/sign", map[string]string{"X-LC-Id": "storeless-app", "X-LC-Key": "k2"}, map[string]string{"session_token": "token-alice"})
	wantREST(t, "an app without a user store", status, got, 501, 1)

	// A flood while the user store is slow: at most 16 store calls at
	// once; the rest is refused at once with 429, not queued.
	before := storeCalls.Load()
	const n = 40
	var wg sync.WaitGroup
	statuses := make(chan int, n)
	for i := range n {
		wg.Go(func() {
			s, _ := httpJSON(t, "POST", base+"/1.1/rtm/sign", hdr, map[string]string{"session_token": fmt.Sprintf("slow-token-u%d", i)})
			statuses <- s
		})
	}
	deadline := time.Now().Add(20 * time.Second)
	for inFlight.Load() < 16 || storeCalls.Load()-before < 16 {
		if time.Now().After(deadline) {
			t.Fatalf("store calls in flight: %d, want 16", inFlight.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	refused := 0
	for refused < n-16 {
		select {
		case s := <-statuses:
			if s != http.StatusTooManyRequests {
				t.Fatalf("while 16 signs wait on the store: got %d, want 429", s)
			}
			refused++
		case <-ctx.Done():
			t.Fatalf("only %d of %d refused", refused, n-16)
		}
	}
	close(release)
	wg.Wait()
	close(statuses)
	for s := range statuses {
		if s != http.StatusOK {
			t.Errorf("a sign that waited on the store: got %d, want 200", s)
		}
	}
	if m := maxInFlight.Load(); m != 16 {
		t.Errorf("the store saw %d calls at once, want at most (and here exactly) 16", m)
	}
	if c := storeCalls.Load() - before; c != 16 {
		t.Errorf("the flood made %d store calls, want 16", c)
	}
}

// TestNotificationsREST: a client's missed conversation events, stored in
// the shard, read back over GET /1.1/rtm/notifications in the Swift shape
// (no notification_type) and the JS shape (paged), surviving a restart;
// another client's id, a forged token and a missing one are refused.
func TestNotificationsREST(t *testing.T) {
	const app = "notif-app-0001"
	dir := t.TempDir()
	addr := freeAddr(t)
	p := startDev(t, dir, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	base := "http://" + addr

	// bob logs in once, keeps his session token, and goes offline.
	r, opened := rawOpen(t, ctx, p.URL, app, "bob", nil)
	st := opened.GetSessionMessage().GetSt()
	if st == "" {
		t.Fatalf("no session token: %v", opened)
	}
	r.ws.CloseNow()

	alice := dial(t, ctx, p.URL, app, "alice")
	api := restAPI{t: t, base: base, app: app, key: "any,master"}
	cid, err := alice.CreateConversation(ctx, []string{"bob"}, "missed", nil, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := alice.UpdateConversation(ctx, cid, map[string]any{"attr.color": "red"}); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.AddMembers(ctx, cid, []string{"carol"}); err != nil {
		t.Fatal(err)
	}
	api.must("POST", "/1.2/rtm/conversations/"+cid+"/member-infos", map[string]any{"clientId": "bob", "role": "Manager"}, nil)
	api.must("POST", "/1.2/rtm/conversations/"+cid+"/permanent-silenceds", map[string]any{"client_ids": []string{"bob"}}, nil)

	sdk := map[string]string{"X-LC-Id": app, "X-LC-Key": "any", "X-LC-IM-Session-Token": st, "User-Agent": "LeanCloud-Swift-SDK/17.0.0"}
	want := []string{"joined", "updated", "members-joined", "member-info-changed", "shutuped", "members-shutuped"}
	var swift map[string]any
	deadline := time.Now().Add(10 * time.Second)
	for {
		var status int
		status, swift = httpJSON(t, "GET", base+"/1.1/rtm/notifications?client_id=bob&start_ts=0", sdk, nil)
		if status != 200 {
			t.Fatalf("notifications: %d %v", status, swift)
		}
		if len(items(swift["permanent"])) >= len(want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stored events: got %v, want %v", swift, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
	perm := items(swift["permanent"])
	if len(perm) != len(want) {
		t.Fatalf("stored events: got %v, want ops %v", perm, want)
	}
	var last float64
	for i, it := range perm {
		if it["op"] != want[i] || it["cmd"] != "conv" || it["cid"] != cid || it["initBy"] == nil {
			t.Errorf("event %d: got %v, want op %s in %s", i, it, want[i], cid)
		}
		ts, _ := it["serverTs"].(float64)
		if ts <= last {
			t.Errorf("event %d: serverTs %v not after %v", i, ts, last)
		}
		last = ts
	}
	if attr, _ := perm[1]["attr"].(map[string]any); attr["attr.color"] != "red" {
		t.Errorf("updated: attr %v, want the update as a JSON object", perm[1]["attr"])
	}
	if mod, _ := perm[1]["attrModified"].(map[string]any); mod == nil {
		t.Errorf("updated: attrModified %v, want an object", perm[1]["attrModified"])
	}
	if m, _ := perm[2]["m"].([]any); len(m) != 1 || m[0] != "carol" {
		t.Errorf("members-joined: m %v, want [carol]", perm[2]["m"])
	}
	if info, _ := perm[3]["info"].(map[string]any); info["pid"] != "bob" || info["role"] != "Manager" {
		t.Errorf("member-info-changed: info %v", perm[3]["info"])
	}
	if d, _ := swift["droppable"].(map[string]any); d == nil || d["notifications"] == nil {
		t.Errorf("droppable: got %v, want an object with notifications", swift["droppable"])
	}

	// The JS shape, paged by the last serverTs.
	js := map[string]string{"X-LC-Id": app, "X-LC-Key": "any", "X-LC-IM-Session-Token": st}
	_, page := httpJSON(t, "GET", base+"/1.1/rtm/notifications?client_id=bob&start_ts=0&notification_type=permanent&limit=3", js, nil)
	first := items(page)
	if page["hasMore"] != true || len(first) != 3 || first[2]["op"] != "members_joined" || first[0]["notificationType"] != "permanent" {
		t.Fatalf("first JS page: %v", page)
	}
	if attr, _ := first[1]["attr"].(map[string]any); attr["data"] != `{"attr.color":"red"}` {
		t.Errorf("JS updated attr: %v, want {data: <JSON text>}", first[1]["attr"])
	}
	next := fmt.Sprintf("%.0f", first[2]["serverTs"].(float64))
	_, page = httpJSON(t, "GET", base+"/1.1/rtm/notifications?client_id=bob&notification_type=permanent&limit=3&start_ts="+next, js, nil)
	if rest := items(page); page["hasMore"] != false || len(rest) != 3 || rest[0]["op"] != "member_info_changed" || rest[2]["op"] != "members_shutuped" {
		t.Fatalf("second JS page: %v", page)
	}

	// Receipts are the droppable class: alice asks for one, bob acks.
	bob := dial(t, ctx, p.URL, app, "bob")
	direct, err := alice.CreateConversation(ctx, []string{"bob"}, "1:1", nil, false) // receipts without bit 6
	if err != nil {
		t.Fatal(err)
	}
	sent, err := alice.Send(ctx, direct, client.TextMessage("ack me"), client.SendOptions{Receipt: true})
	if err != nil {
		t.Fatal(err)
	}
	nextEvent(t, bob, func(m client.Message) bool { return m.ID == sent.ID })
	deadline = time.Now().Add(10 * time.Second)
	for {
		_, got := httpJSON(t, "GET", base+"/1.1/rtm/notifications?client_id=alice&start_ts=0&notification_type=droppable",
			map[string]string{"X-LC-Id": app, "X-LC-Key": "any,master"}, nil)
		if rc := items(got); len(rc) > 0 {
			if rc[0]["cmd"] != "rcp" || rc[0]["id"] != sent.ID || rc[0]["from"] != "bob" || rc[0]["cid"] != direct {
				t.Fatalf("stored receipt: %v", rc[0])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("alice's receipt was not stored")
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Attacks: another client's id, a forged or missing token, a token of
	// another app.
	for name, h := range map[string]map[string]string{
		"forged token":  {"X-LC-Id": app, "X-LC-Key": "any", "X-LC-IM-Session-Token": st[:len(st)-4] + "AAAA"},
		"no token":      {"X-LC-Id": app, "X-LC-Key": "any"},
		"another app":   {"X-LC-Id": "other-app-0001", "X-LC-Key": "any", "X-LC-IM-Session-Token": st},
		"garbage token": {"X-LC-Id": app, "X-LC-Key": "any", "X-LC-IM-Session-Token": strings.Repeat("x", 5000)},
	} {
		status, got := httpJSON(t, "GET", base+"/1.1/rtm/notifications?client_id=bob&start_ts=0", h, nil)
		wantREST(t, name, status, got, 401, 401)
	}
	status, got := httpJSON(t, "GET", base+"/1.1/rtm/notifications?client_id=alice&start_ts=0", sdk, nil)
	wantREST(t, "bob's token for alice's notifications", status, got, 401, 401)

	// Durable: the log survives a restart. bob's Close was a logout, which
	// revoked his session token (docs/ARCHITECTURE.md, "Session-token
	// revocation"): after it only the master key reads his log.
	alice.Close()
	bob.Close()
	p.Stop()
	startDev(t, dir, addr)
	status, got = httpJSON(t, "GET", base+"/1.1/rtm/notifications?client_id=bob&start_ts=0", sdk, nil)
	wantREST(t, "bob's token after his logout", status, got, 401, 401)
	master := map[string]string{"X-LC-Id": app, "X-LC-Key": "any,master", "User-Agent": "LeanCloud-Swift-SDK/17.0.0"}
	_, again := httpJSON(t, "GET", base+"/1.1/rtm/notifications?client_id=bob&start_ts=0", master, nil)
	if got := items(again["permanent"]); len(got) != len(want)+1 || got[5]["op"] != "members-shutuped" || got[6]["cid"] != direct { // + the 1:1's joined
		t.Fatalf("after a restart: %v", again)
	}
}

// items returns the notifications of a {notifications: […]} object.
func items(v any) []map[string]any {
	m, _ := v.(map[string]any)
	list, _ := m["notifications"].([]any)
	out := make([]map[string]any, 0, len(list))
	for _, x := range list {
		it, _ := x.(map[string]any)
		out = append(out, it)
	}
	return out
}

// TestExpiredSessionTokenREST: an expired X-LC-IM-Session-Token is refused
// (the same token worked while it was valid).
func TestExpiredSessionTokenREST(t *testing.T) {
	p := startDevConfig(t, "[[apps]]\nid = \"ttl-app-0001\"\nkey = \"ttl-key\"\nmaster_key = \"ttl-master\"\n\n[edge.limits]\nsession_token_ttl = \"1s\"\n")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, opened := rawOpen(t, ctx, p.URL, "ttl-app-0001", "bob", nil)
	h := map[string]string{"X-LC-Id": "ttl-app-0001", "X-LC-Key": "ttl-key", "X-LC-IM-Session-Token": opened.GetSessionMessage().GetSt()}
	u := "http://" + p.Addr + "/1.1/rtm/notifications?client_id=bob&start_ts=0&notification_type=permanent"
	if status, got := httpJSON(t, "GET", u, h, nil); status != 200 {
		t.Fatalf("a fresh token: got %d %v", status, got)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		status, got := httpJSON(t, "GET", u, h, nil)
		if status == 401 {
			wantREST(t, "expired token", status, got, 401, 401)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("a 1 s token still works after 10 s: %d %v", status, got)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestMessageUpdateHookAttacks: _messageUpdate against a real relaymesh dev
// with a hook that drops, hangs, answers garbage or 2 MiB: a drop and a
// failure under fail_closed refuse the edit (4405, REST too) and change
// nothing; garbage and huge replies fail open; a patch of someone else's
// message never reaches the hook.
func TestMessageUpdateHookAttacks(t *testing.T) {
	const open, closed = "mu-open-app-0001", "mu-closed-app-0001"
	var calls atomic.Int64
	stop := make(chan struct{})
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev hooks.MessageUpdate
		json.NewDecoder(r.Body).Decode(&ev)
		calls.Add(1)
		text := ev.Content
		switch {
		case strings.Contains(text, "drop me"):
			io.WriteString(w, `{"drop":true,"code":77,"detail":"not that"}`)
		case strings.Contains(text, "hang"):
			select {
			case <-r.Context().Done():
			case <-stop:
			}
		case strings.Contains(text, "garbage"):
			io.WriteString(w, `<html>oops`)
		case strings.Contains(text, "huge"):
			w.Write(bytes.Repeat([]byte("x"), 2<<20))
		default:
			io.WriteString(w, `{}`)
		}
	}))
	defer hook.Close()
	defer close(stop)
	p := startDevConfig(t, `[[apps]]
id = "`+open+`"
master_key = "mu-master"
[apps.hooks]
_messageUpdate = "`+hook.URL+`"

[[apps]]
id = "`+closed+`"
master_key = "mu-master"
hook_policy = "fail_closed"
[apps.hooks]
_messageUpdate = "`+hook.URL+`"
`)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	alice := dial(t, ctx, p.URL, open, "alice")
	bob := dial(t, ctx, p.URL, open, "bob")
	cid, err := alice.CreateConversation(ctx, []string{"bob"}, "edits", nil, false)
	if err != nil {
		t.Fatal(err)
	}
	m, err := alice.Send(ctx, cid, client.TextMessage("original"), client.SendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	text := func() string {
		h, err := bob.History(ctx, cid, client.HistoryQuery{Limit: 10})
		if err != nil || len(h) != 1 {
			t.Fatalf("history: %v %v", h, err)
		}
		return h[0].Text
	}
	var ce *client.Error
	if err := alice.Edit(ctx, cid, m.ID, m.Timestamp, client.TextMessage("drop me")); !errors.As(err, &ce) || ce.Code != lcpb.ErrMessageUpdateRejected || ce.AppCode != 77 {
		t.Fatalf("dropped edit: got %v, want 4405 with appCode 77", err)
	}
	for _, reply := range []string{"garbage", "huge"} {
		if err := alice.Edit(ctx, cid, m.ID, m.Timestamp, client.TextMessage(reply)); err != nil {
			t.Fatalf("an edit whose hook answers %s fails open: %v", reply, err)
		}
		if got := text(); !strings.Contains(got, reply) {
			t.Fatalf("after the %s reply: history %q", reply, got)
		}
	}
	// REST: a drop is 400 code 4405; the message is unchanged.
	base := "http://" + p.Addr
	masterHdr := map[string]string{"X-LC-Id": open, "X-LC-Key": "mu-master,master", "Content-Type": "application/json"}
	status, got := httpJSON(t, "PUT", base+"/1.2/rtm/conversations/"+cid+"/messages/"+m.ID, masterHdr,
		map[string]any{"from_client": "alice", "message": client.TextMessage("drop me"), "timestamp": m.Timestamp})
	wantREST(t, "REST edit dropped by the hook", status, got, 400, 4405)
	if got := text(); !strings.Contains(got, "huge") {
		t.Fatalf("a dropped REST edit changed the message: %q", got)
	}
	// Bob patching alice's message never reaches the hook.
	before := calls.Load()
	if err := bob.Edit(ctx, cid, m.ID, m.Timestamp, client.TextMessage("not yours")); !errors.As(err, &ce) || ce.Code != lcpb.ErrMessageOwnershipRequired {
		t.Fatalf("bob editing alice's message: got %v, want 4403", err)
	}
	if err := alice.Recall(ctx, cid, m.ID, m.Timestamp); err != nil {
		t.Fatal(err)
	}
	if n := calls.Load() - before; n != 1 {
		t.Fatalf("hook calls for bob's patch and alice's recall: %d, want 1 (alice's)", n)
	}

	// fail_closed: a hook that hangs refuses the edit once the 3 s timeout
	// passes, with appMsg "hook failed"; history keeps the original.
	carol := dial(t, ctx, p.URL, closed, "carol")
	cid2, err := carol.CreateConversation(ctx, []string{"dave"}, "strict", nil, false)
	if err != nil {
		t.Fatal(err)
	}
	m2, err := carol.Send(ctx, cid2, client.TextMessage("kept"), client.SendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := carol.Edit(ctx, cid2, m2.ID, m2.Timestamp, client.TextMessage("hang")); !errors.As(err, &ce) || ce.Code != lcpb.ErrMessageUpdateRejected {
		t.Fatalf("edit under fail_closed with a hanging hook: got %v, want 4405", err)
	}
	t.Logf("refused after %v (hook timeout 3 s)", time.Since(start).Round(time.Millisecond))
	h, err := carol.History(ctx, cid2, client.HistoryQuery{Limit: 10})
	if err != nil || len(h) != 1 || h[0].Text != client.TextMessage("kept") {
		t.Fatalf("history after the refused edit: %v %v", h, err)
	}
	metrics := fetchText(t, base+"/metrics")
	for _, line := range []string{`relaymesh_hook_timeouts_total{hook="_messageUpdate"} 1`, `relaymesh_hook_failures_total{hook="_messageUpdate"} 3`} {
		if !strings.Contains(metrics, line) {
			t.Errorf("/metrics lacks %q", line)
		}
	}
}

func fetchText(t *testing.T, u string) string {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
