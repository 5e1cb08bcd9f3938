package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relaymesh/relaymesh/client"
)

// A LeanCloud app, generated in LeanCloud's formats: the console's
// _Conversation export (JSON Lines, ISO createdAt/updatedAt, lm as a Date
// object, ACL, name, attr, a custom column) and the REST history API's
// rows, served by a fake history API with paging and master-key checks.

const (
	impApp       = "lcImportApp-MdYXbMMI"
	impLCKey     = "the-leancloud-master-key"
	impMasterKey = "the-relaymesh-master-key"
	impAppKey    = "the-relaymesh-app-key"
)

type lcRow = map[string]any

type lcApp struct {
	convs []lcRow
	hist  map[string][]lcRow // newest first
}

func isoMS(ms int64) string { return time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z") }

func newLCApp(nMsgs int) *lcApp {
	a := &lcApp{hist: map[string][]lcRow{}}
	base := int64(1_650_000_000_000)
	add := func(id string, members []string, extra lcRow, msgs int) {
		row := lcRow{"objectId": id, "c": members[0], "m": members, "mu": []string{}, "name": "name of " + id,
			"attr": lcRow{"topic": "imported", "level": 2}, "color": "blue",
			"createdAt": isoMS(base), "updatedAt": isoMS(base + 1000),
			"lm":  lcRow{"__type": "Date", "iso": isoMS(base + 5000)},
			"ACL": lcRow{"*": lcRow{"read": true, "write": true}}, "unique": false}
		for k, v := range extra {
			row[k] = v
		}
		a.convs = append(a.convs, row)
		var rows []lcRow
		for j := range msgs {
			t := base + 10_000 + int64(j/3)*1000 // three messages per millisecond now and then
			rows = append(rows, lcRow{"timestamp": t, "conv-id": id, "from": members[j%len(members)],
				"msg-id":  fmt.Sprintf("%sMsg%04dAbCdEfGh", id[:6], j),
				"data":    fmt.Sprintf(`{"_lctype":-1,"_lctext":"old message %d"}`, j),
				"is-conv": true, "is-room": false, "to": id, "bin": false, "from-ip": "10.1.2.3", "ack-at": t + 50})
		}
		slices.SortStableFunc(rows, func(x, y lcRow) int { // newest first, as the API answers
			tx, ty := x["timestamp"].(int64), y["timestamp"].(int64)
			if tx != ty {
				return int(ty - tx)
			}
			return strings.Compare(y["msg-id"].(string), x["msg-id"].(string))
		})
		a.hist[id] = rows
		base += 100_000
	}
	add("62a1b2c3d4e5f60718293a4b", []string{"alice", "bob", "carol"}, nil, nMsgs)
	add("62a1b2c3d4e5f60718293a4c", []string{"alice", "dave"}, lcRow{"unique": true, "uniqueId": "f00dfeedf00dfeedf00dfeedf00dfeed"}, 7)
	add("62a1b2c3d4e5f60718293a4d", []string{"alice"}, lcRow{"tr": true}, 5)
	add("62a1b2c3d4e5f60718293a4e", []string{"admin"}, lcRow{"sys": true}, 0)
	return a
}

func (a *lcApp) export(t *testing.T, path string, extra ...string) {
	t.Helper()
	var b bytes.Buffer
	for _, r := range a.convs {
		j, _ := json.Marshal(r)
		b.Write(j)
		b.WriteByte('\n')
	}
	for _, e := range extra {
		b.WriteString(e + "\n")
	}
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
}

// fakeLeanCloud serves GET /1.2/rtm/{conversations|chatrooms}/{id}/messages
// as LeanCloud documents it; after gateAfter requests (when set) it holds
// every request until gate is closed.
type fakeLeanCloud struct {
	app       *lcApp
	mu        sync.Mutex
	requests  int
	gateAfter int
	gate      chan struct{}
	reached   chan struct{}
}

func (f *fakeLeanCloud) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.requests++
	n := f.requests
	f.mu.Unlock()
	if f.gateAfter > 0 && n > f.gateAfter {
		if n == f.gateAfter+1 {
			close(f.reached)
		}
		select {
		case <-f.gate:
		case <-r.Context().Done():
			return
		}
	}
	if r.Header.Get("X-LC-Id") != impApp || r.Header.Get("X-LC-Key") != impLCKey+",master" {
		w.WriteHeader(http.StatusUnauthorized)
		w.Write([]byte(`{"code":401,"error":"Unauthorized."}`))
		return
	}
	p := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if len(p) != 5 || p[4] != "messages" || (p[2] != "conversations" && p[2] != "chatrooms") {
		http.Error(w, `{"code":404,"error":"not found"}`, 404)
		return
	}
	rows, ok := f.app.hist[p[3]]
	if !ok {
		http.Error(w, `{"code":4303,"error":"CONVERSATION_NOT_FOUND"}`, 404)
		return
	}
	q := r.URL.Query()
	limit, _ := strconv.Atoi(q.Get("limit"))
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	ts, _ := strconv.ParseInt(q.Get("timestamp"), 10, 64)
	mid := q.Get("msgid")
	page := []lcRow{}
	for _, row := range rows {
		rt, rid := row["timestamp"].(int64), row["msg-id"].(string)
		if ts > 0 && (rt > ts || rt == ts && rid >= mid) {
			continue
		}
		if len(page) == limit {
			break
		}
		page = append(page, row)
	}
	json.NewEncoder(w).Encode(page)
}

type importRun struct {
	out, errOut string
	err         error
}

// runImport runs `relaymesh import leancloud` with args.
func runImportCmd(t *testing.T, ctx context.Context, args ...string) importRun {
	t.Helper()
	cmd := exec.CommandContext(ctx, relaymeshBin(t), append([]string{"import", "leancloud"}, args...)...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	t.Logf("relaymesh import %v: %v\nstdout:\n%s\nstderr (last 600 bytes):\n%s", args, err, out.String(), lastBytes(errOut.String(), 600))
	return importRun{out: out.String(), errOut: errOut.String(), err: err}
}

func lastBytes(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func impConfig(t *testing.T, dir string) string {
	t.Helper()
	cfg := filepath.Join(dir, "relaymesh.toml")
	if err := os.WriteFile(cfg, []byte(`[[apps]]
id = "`+impApp+`"
key = "`+impAppKey+`"
master_key = "`+impMasterKey+`"
`), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// restHistory returns every message id of cid through REST, oldest first.
func restHistory(t *testing.T, api restAPI, cid string, room bool) []string {
	t.Helper()
	kind := "conversations"
	if room {
		kind = "chatrooms"
	}
	var ids []string
	cursor := ""
	for {
		var rows []struct {
			ID string `json:"msg-id"`
			T  int64  `json:"timestamp"`
		}
		api.must("GET", "/1.2/rtm/"+kind+"/"+cid+"/messages?limit=1000&reversed=true"+cursor, nil, &rows)
		for _, r := range rows {
			ids = append(ids, r.ID)
		}
		if len(rows) < 1000 {
			return ids
		}
		last := rows[len(rows)-1]
		cursor = fmt.Sprintf("&timestamp=%d&msgid=%s", last.T, last.ID)
	}
}

func wantIDs(a *lcApp, cid string) []string {
	rows := a.hist[cid]
	ids := make([]string, len(rows))
	for i, r := range rows {
		ids[len(rows)-1-i] = r["msg-id"].(string)
	}
	return ids
}

// TestImportLeanCloud imports a LeanCloud app into a running `relaymesh
// dev` with `relaymesh import leancloud`, fetching the history from a fake
// LeanCloud history API (paging, master key) and saving it; then a Go SDK
// client logged in as a member sees the conversation under its LeanCloud
// id with its name, attributes, creator and creation time, pages through
// history getting the original message ids and timestamps in order, has
// nothing unread, and sends a new message into it, which another member
// receives. Running the import again changes nothing.
func TestImportLeanCloud(t *testing.T) {
	dir := t.TempDir()
	p := startDev(t, filepath.Join(dir, "data"), freeAddr(t), "--config", impConfig(t, dir))
	lcApp := newLCApp(250)
	export := filepath.Join(dir, "_Conversation.jsonl")
	lcApp.export(t, export)
	fake := &fakeLeanCloud{app: lcApp}
	lc := httptest.NewServer(fake)
	defer lc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	server := "http://" + p.Addr
	save := filepath.Join(dir, "saved")
	infos := filepath.Join(dir, "_ConversationMemberInfo.jsonl")
	if err := os.WriteFile(infos, []byte(`{"objectId":"a1","cid":"62a1b2c3d4e5f60718293a4b","clientId":"carol","role":"Manager","createdAt":"2022-04-15T05:20:00.000Z"}`+"\n"+
		`{"objectId":"a2","cid":"62a1b2c3d4e5f60718293a4b","clientId":"alice","role":"Owner"}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"--conversations", export, "--member-infos", infos, "--leancloud-server", lc.URL, "--leancloud-master-key", impLCKey,
		"--save", save, "--server", server, "--app-id", impApp, "--master-key", impMasterKey, "--state", filepath.Join(dir, "state")}

	// The dry run writes nothing and summarizes.
	r := runImportCmd(t, ctx, "--conversations", export, "--leancloud-server", lc.URL, "--leancloud-master-key", impLCKey,
		"--app-id", impApp, "--dry-run")
	if r.err != nil {
		t.Fatalf("dry run: %v", r.err)
	}
	for _, want := range []string{"dry run: nothing was written", "conversations: 4 (normal 1, unique 1, chatroom 1, system 1)",
		"messages: 262 in 3 conversations", "problems: 0"} {
		if !strings.Contains(r.out, want) {
			t.Errorf("dry run summary lacks %q", want)
		}
	}
	api := restAPI{t: t, base: server, app: impApp, key: impMasterKey + ",master"}
	const cid = "62a1b2c3d4e5f60718293a4b"
	if status := api.call("GET", "/1.2/rtm/conversations/"+cid, nil, nil); status == http.StatusOK {
		t.Fatal("the dry run created the conversation")
	}

	r = runImportCmd(t, ctx, args...)
	if r.err != nil {
		t.Fatalf("import: %v", r.err)
	}
	for _, want := range []string{"written: conversations created 4, existing 0, refused 0; messages new 262, already there 0", "problems: 0"} {
		if !strings.Contains(r.out, want) {
			t.Errorf("summary lacks %q", want)
		}
	}
	if !strings.Contains(r.errOut, "import history: conversations 4") {
		t.Errorf("no progress line on stderr")
	}

	// A member sees it as it was.
	bob := dial(t, ctx, p.URL, impApp, "bob")
	rows, err := bob.QueryConversations(ctx, map[string]any{"objectId": cid}, "", 10, 0)
	if err != nil || len(rows) != 1 {
		t.Fatalf("query: %v %v", rows, err)
	}
	row := rows[0]
	if row["name"] != "name of "+cid || row["c"] != "alice" || row["createdAt"] != isoMS(1_650_000_000_000) || row["color"] != "blue" ||
		fmt.Sprint(row["m"]) != "[alice bob carol]" || fmt.Sprint(row["attr"]) != "map[level:2 topic:imported]" {
		t.Errorf("conversation row: got %v", row)
	}
	if _, ok := row["ACL"]; ok {
		t.Errorf("the ACL column was imported as an attribute: %v", row)
	}
	var roles struct {
		Results []struct{ ClientID, Role string }
	}
	api.must("GET", "/1.2/rtm/conversations/"+cid+"/member-infos", nil, &roles)
	if got := fmt.Sprint(roles.Results); got != "[{alice Owner} {carol Manager}]" {
		t.Errorf("member roles: got %s, want alice Owner and carol Manager", got)
	}
	// History, paged back 100 at a time, is LeanCloud's, in order.
	var got []client.Message
	q := client.HistoryQuery{Limit: 100}
	for {
		page, err := bob.History(ctx, cid, q)
		if err != nil {
			t.Fatal(err)
		}
		got = append(page, got...)
		if len(page) < 100 {
			break
		}
		q.StartTS, q.StartMID = page[0].Timestamp, page[0].ID
	}
	orig := lcApp.hist[cid]
	if len(got) != len(orig) {
		t.Fatalf("history: got %d messages, want %d", len(got), len(orig))
	}
	for i, m := range got {
		o := orig[len(orig)-1-i]
		if m.ID != o["msg-id"] || m.Timestamp != o["timestamp"].(int64) || m.From != o["from"] || m.Text != o["data"] {
			t.Fatalf("history[%d]: got %s@%d from %s %q, want %v", i, m.ID, m.Timestamp, m.From, m.Text, o)
		}
	}
	var unread struct{ Count int }
	api.must("GET", "/1.2/rtm/clients/bob/unread-count", nil, &unread)
	if unread.Count != 0 {
		t.Errorf("bob has %d unread after the import, want 0 (imported history is read)", unread.Count)
	}
	// A new message goes into the imported conversation and reaches carol.
	carol := dial(t, ctx, p.URL, impApp, "carol")
	sent, err := bob.Send(ctx, cid, client.TextMessage("hello from relaymesh"), client.SendOptions{})
	if err != nil {
		t.Fatalf("send into the imported conversation: %v", err)
	}
	if last := orig[0]["timestamp"].(int64); sent.Timestamp <= last {
		t.Errorf("new message at %d, not after the imported history (%d)", sent.Timestamp, last)
	}
	waitDirect(t, ctx, carol, sent.ID)

	// Chatroom and unique conversation histories are there too.
	if ids := restHistory(t, api, "62a1b2c3d4e5f60718293a4d", true); !slices.Equal(ids, wantIDs(lcApp, "62a1b2c3d4e5f60718293a4d")) {
		t.Errorf("chatroom history: got %v", ids)
	}
	if ids := restHistory(t, api, "62a1b2c3d4e5f60718293a4c", false); !slices.Equal(ids, wantIDs(lcApp, "62a1b2c3d4e5f60718293a4c")) {
		t.Errorf("unique conversation history: got %v", ids)
	}

	// Again, with no state and from the saved history: nothing changes.
	n := fake.requests
	r = runImportCmd(t, ctx, "--conversations", export, "--history", save, "--server", server, "--app-id", impApp,
		"--master-key", impMasterKey, "--state", "none")
	if r.err != nil || !strings.Contains(r.out, "written: conversations created 0, existing 4, refused 0; messages new 0, already there 262") {
		t.Fatalf("re-import: %v", r.err)
	}
	if fake.requests != n {
		t.Errorf("the re-import from saved files asked LeanCloud %d times", fake.requests-n)
	}
	if ids := restHistory(t, api, cid, false); len(ids) != 251 {
		t.Errorf("after the re-import the conversation holds %d messages, want 251", len(ids))
	}
}

func waitDirect(t *testing.T, ctx context.Context, c *client.Client, mid string) {
	t.Helper()
	for {
		select {
		case ev := <-c.Events():
			if m, ok := ev.(client.Message); ok && m.ID == mid {
				return
			}
		case <-ctx.Done():
			t.Fatalf("%s never received %s", c.ID(), mid)
		}
	}
}

// TestImportResumeAfterKill kills `relaymesh import` (SIGKILL) while it is
// fetching, part of the way through, then runs it again with the same
// state file: relaymesh ends up with exactly LeanCloud's history, every
// message once.
func TestImportResumeAfterKill(t *testing.T) {
	dir := t.TempDir()
	p := startDev(t, filepath.Join(dir, "data"), freeAddr(t), "--config", impConfig(t, dir))
	lcApp := newLCApp(2500)
	export := filepath.Join(dir, "_Conversation.jsonl")
	lcApp.export(t, export)
	fake := &fakeLeanCloud{app: lcApp, gateAfter: 3, gate: make(chan struct{}), reached: make(chan struct{})}
	lc := httptest.NewServer(fake)
	defer lc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	server := "http://" + p.Addr
	args := []string{"import", "leancloud", "--conversations", export, "--leancloud-server", lc.URL, "--leancloud-master-key", impLCKey,
		"--server", server, "--app-id", impApp, "--master-key", impMasterKey, "--state", filepath.Join(dir, "state"), "--parallel", "1"}
	cmd := exec.Command(relaymeshBin(t), args...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	select { // the key check, two pages of 1000 fetched (the first imported), the third asked for
	case <-fake.reached:
	case <-ctx.Done():
		cmd.Process.Kill()
		t.Fatal("the import never reached its third page")
	}
	cmd.Process.Kill()
	cmd.Wait()
	close(fake.gate)
	api := restAPI{t: t, base: server, app: impApp, key: impMasterKey + ",master"}
	const cid = "62a1b2c3d4e5f60718293a4b"
	if n := len(restHistory(t, api, cid, false)); n == 0 || n >= 2500 {
		t.Fatalf("after the kill relaymesh holds %d messages: not part of the way", n)
	}
	r := runImportCmd(t, ctx, args[2:]...)
	if r.err != nil {
		t.Fatalf("resume: %v", r.err)
	}
	if !strings.Contains(r.out, "existing 4") && !strings.Contains(r.out, "resumed: skipped 4 conversations") {
		t.Errorf("the resumed run did not find the conversations done")
	}
	for c := range lcApp.hist {
		room := c == "62a1b2c3d4e5f60718293a4d"
		if got, want := restHistory(t, api, c, room), wantIDs(lcApp, c); !slices.Equal(got, want) {
			t.Errorf("%s: after resuming got %d messages, want exactly LeanCloud's %d", c, len(got), len(want))
		}
	}
}

// TestImportMisuse: the import API refuses an app key and malformed or
// hostile bodies; the command refuses a wrong master key (LeanCloud's or
// relaymesh's) without writing, and reports garbage rows, huge attributes
// and deep JSON in the export with their lines, importing the good rows.
func TestImportMisuse(t *testing.T) {
	dir := t.TempDir()
	p := startDev(t, filepath.Join(dir, "data"), freeAddr(t), "--config", impConfig(t, dir))
	server := "http://" + p.Addr
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	appKey := restAPI{t: t, base: server, app: impApp, key: impAppKey}
	body := map[string]any{"conversations": []any{map[string]any{"objectId": "62a1b2c3d4e5f60718293aaa", "createdAt": 1}}}
	if status := appKey.call("POST", "/1.2/rtm/import/conversations", body, nil); status != http.StatusForbidden {
		t.Errorf("import with the app key: got %d, want 403", status)
	}
	master := restAPI{t: t, base: server, app: impApp, key: impMasterKey + ",master"}
	var made struct{ ObjectID string }
	master.must("POST", "/1.2/rtm/conversations", map[string]any{"name": "made here", "m": []string{"alice"}}, &made)
	deep := strings.Repeat("[", 20000) + strings.Repeat("]", 20000)
	for name, b := range map[string]string{
		"garbage":      `{"conversations":[{`,
		"deep":         `{"conversations":` + deep + `}`,
		"relaymesh id": `{"conversations":[{"objectId":"` + made.ObjectID + `","createdAt":1}]}`,
	} {
		req, _ := http.NewRequest("POST", server+"/1.2/rtm/import/conversations", strings.NewReader(b))
		req.Header.Set("X-LC-Id", impApp)
		req.Header.Set("X-LC-Key", impMasterKey+",master")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var rep struct {
			Created  []string `json:"created"`
			Existing []string `json:"existing"`
		}
		json.NewDecoder(resp.Body).Decode(&rep)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK && (len(rep.Created) > 0 || len(rep.Existing) > 0) {
			t.Errorf("%s: created %v, or found existing %v", name, rep.Created, rep.Existing)
		}
	}
	if status := master.call("POST", "/1.2/rtm/import/conversations/62a1b2c3d4e5f60718293aaa/messages",
		map[string]any{"messages": []any{map[string]any{"msg-id": "m1", "from": "alice", "timestamp": 5, "data": "x"}}}, nil); status != http.StatusNotFound {
		t.Errorf("messages into a conversation that was never imported: got %d, want 404", status)
	}
	// Bad rows are the caller's fault (400, not retried), and store nothing.
	master.must("POST", "/1.2/rtm/import/conversations", map[string]any{"conversations": []any{
		map[string]any{"objectId": "62a1b2c3d4e5f60718293aab", "m": []string{"alice"}, "createdAt": 1}}}, nil)
	for name, row := range map[string]map[string]any{
		"no timestamp":  {"msg-id": "m1", "from": "alice", "data": "x"},
		"bad sender":    {"msg-id": "m1", "from": "a:b", "timestamp": 5},
		"huge data":     {"msg-id": "m1", "from": "alice", "timestamp": 5, "data": strings.Repeat("x", 70<<10)},
		"many mentions": {"msg-id": "m1", "from": "alice", "timestamp": 5, "mention-pids": strings.Split(strings.Repeat("u,", 21)+"u", ",")},
	} {
		if status := master.call("POST", "/1.2/rtm/import/conversations/62a1b2c3d4e5f60718293aab/messages",
			map[string]any{"messages": []any{map[string]any{"msg-id": "ok", "from": "alice", "timestamp": 4}, row}}, nil); status != http.StatusBadRequest {
			t.Errorf("%s: got %d, want 400", name, status)
		}
	}
	if ids := restHistory(t, master, "62a1b2c3d4e5f60718293aab", false); len(ids) != 0 {
		t.Errorf("refused batches stored %v", ids)
	}

	lcApp := newLCApp(3)
	export := filepath.Join(dir, "_Conversation.jsonl")
	lcApp.export(t, export,
		`this is not JSON`,
		`{"objectId":"62a1b2c3d4e5f607182930ff","createdAt":"2022-01-01T00:00:00.000Z","attr":{"blob":"`+strings.Repeat("x", 20000)+`"}}`,
		`{"objectId":"62a1b2c3d4e5f607182930fe","createdAt":"2022-01-01T00:00:00.000Z","attr":{"deep":`+deep+`}}`,
		`{"objectId":"62a1b2c3d4e5f607182930fd","m":["alice"]}`,
	)
	fake := &fakeLeanCloud{app: lcApp}
	lc := httptest.NewServer(fake)
	defer lc.Close()
	state := filepath.Join(dir, "state")
	common := []string{"--conversations", export, "--server", server, "--app-id", impApp, "--state", state}

	r := runImportCmd(t, ctx, append(common, "--master-key", "wrong", "--leancloud-server", lc.URL, "--leancloud-master-key", impLCKey)...)
	if r.err == nil || !strings.Contains(r.errOut, "credentials refused") {
		t.Errorf("a wrong relaymesh master key: got %v", r.err)
	}
	os.Remove(state)
	r = runImportCmd(t, ctx, append(common, "--master-key", impAppKey, "--leancloud-server", lc.URL, "--leancloud-master-key", impLCKey)...)
	if r.err == nil || !strings.Contains(r.errOut, "credentials refused") {
		t.Errorf("the app key instead of the master key: got %v", r.err)
	}
	os.Remove(state)
	r = runImportCmd(t, ctx, append(common, "--master-key", impMasterKey, "--leancloud-server", lc.URL, "--leancloud-master-key", "wrong")...) // refused before anything is written
	if r.err == nil || !strings.Contains(r.errOut, "credentials refused") {
		t.Errorf("a wrong LeanCloud master key: got %v", r.err)
	}
	os.Remove(state)

	r = runImportCmd(t, ctx, append(common, "--master-key", impMasterKey, "--leancloud-server", lc.URL, "--leancloud-master-key", impLCKey)...)
	if r.err != nil {
		t.Fatalf("import of a messy export: %v", r.err)
	}
	for _, want := range []string{
		"_Conversation.jsonl:5: malformed JSON",
		"_Conversation.jsonl:6: 62a1b2c3d4e5f607182930ff: attributes (name, attr and custom columns) are",
		"_Conversation.jsonl:7: malformed JSON",
		"_Conversation.jsonl:8: 62a1b2c3d4e5f607182930fd: no createdAt",
		"written: conversations created 4",
		"problems: 4",
	} {
		if !strings.Contains(r.out, want) {
			t.Errorf("summary lacks %q", want)
		}
	}
}

// TestImportJS imports a LeanCloud app and runs conformance/js/import
// against it: the official leancloud-realtime 4.3.1 SDK, logged in as a
// member, finds the conversation under its LeanCloud id, pages its whole
// history with LeanCloud's ids and timestamps, and sends into it.
func TestImportJS(t *testing.T) {
	if testing.Short() {
		t.Skip("conformance runs Node and a relaymesh process; skipped in -short mode")
	}
	js := sdkDir(t)
	dir := t.TempDir()
	p := startDev(t, filepath.Join(dir, "data"), freeAddr(t), "--config", impConfig(t, dir), "--logs-per-minute", "-1")
	lcApp := newLCApp(230)
	export := filepath.Join(dir, "_Conversation.jsonl")
	lcApp.export(t, export)
	lc := httptest.NewServer(&fakeLeanCloud{app: lcApp})
	defer lc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if r := runImportCmd(t, ctx, "--conversations", export, "--leancloud-server", lc.URL, "--leancloud-master-key", impLCKey,
		"--server", "http://"+p.Addr, "--app-id", impApp, "--master-key", impMasterKey, "--state", "none"); r.err != nil {
		t.Fatalf("import: %v", r.err)
	}
	const cid = "62a1b2c3d4e5f60718293a4b"
	conv := lcApp.convs[0]
	type msg struct {
		ID        string `json:"id"`
		Timestamp int64  `json:"timestamp"`
		From      string `json:"from"`
		Data      string `json:"data"`
	}
	want := struct {
		CID       string   `json:"cid"`
		Name      string   `json:"name"`
		Creator   string   `json:"creator"`
		Members   []string `json:"members"`
		CreatedAt int64    `json:"createdAt"`
		Messages  []msg    `json:"messages"`
	}{CID: cid, Name: conv["name"].(string), Creator: conv["c"].(string), Members: conv["m"].([]string), CreatedAt: 1_650_000_000_000}
	rows := lcApp.hist[cid]
	for i := len(rows) - 1; i >= 0; i-- {
		r := rows[i]
		want.Messages = append(want.Messages, msg{r["msg-id"].(string), r["timestamp"].(int64), r["from"].(string), r["data"].(string)})
	}
	b, _ := json.Marshal(want)
	expect := filepath.Join(dir, "expect.json")
	if err := os.WriteFile(expect, b, 0o600); err != nil {
		t.Fatal(err)
	}
	runNode(t, js, []string{filepath.Join(js, "import", "import.test.js")},
		"RELAYMESH_IMPORT_URL="+p.URL, "RELAYMESH_IMPORT_APP="+impApp, "RELAYMESH_IMPORT_EXPECT="+expect)
}
