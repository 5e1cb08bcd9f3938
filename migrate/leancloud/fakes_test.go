package leancloud

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	appID     = "lcAppId0-gzGzoHsz"
	lcMaster  = "leancloud-master-key"
	rmMaster  = "relaymesh-master-key"
	baseMilli = int64(1_600_000_000_000)
)

// ---- export and history files in LeanCloud's formats ----

// lcConv is a _Conversation row as the console's export writes it: plain
// ISO createdAt/updatedAt, lm as a Date object, ACL, name and attr, and a
// custom top-level column.
func lcConv(id, creator string, members []string, kind Kind, created int64) map[string]any {
	row := map[string]any{
		"objectId":  id,
		"c":         creator,
		"m":         members,
		"mu":        []string{},
		"name":      "conv " + id[len(id)-4:],
		"attr":      map[string]any{"topic": "t-" + id[:4], "n": 7},
		"level":     3, // a custom column
		"createdAt": time.UnixMilli(created).UTC().Format("2006-01-02T15:04:05.000Z"),
		"updatedAt": time.UnixMilli(created + 5000).UTC().Format("2006-01-02T15:04:05.000Z"),
		"lm":        map[string]any{"__type": "Date", "iso": time.UnixMilli(created + 9000).UTC().Format("2006-01-02T15:04:05.000Z")},
		"ACL":       map[string]any{"*": map[string]any{"read": true, "write": true}},
		"unique":    kind == KindUnique,
	}
	switch kind {
	case KindChatroom:
		row["tr"] = true
	case KindSystem:
		row["sys"] = true
		delete(row, "m")
	}
	if kind == KindUnique {
		row["uniqueId"] = "0123456789abcdef0123456789abcdef"
	}
	return row
}

// lcMsg is a row of LeanCloud's REST history API.
func lcMsg(cid, mid, from string, t int64, data string) map[string]any {
	return map[string]any{"timestamp": t, "conv-id": cid, "data": data, "from": from, "msg-id": mid,
		"is-conv": true, "is-room": false, "to": cid, "bin": false, "from-ip": "10.0.0.1", "ack-at": t + 10}
}

// world is a generated LeanCloud app: conversations and their history.
type world struct {
	convs []map[string]any
	hist  map[string][]map[string]any // cid -> rows, newest first
}

func hexID(i int) string { return fmt.Sprintf("5f%022x", 0xabc000+i) }

func newWorld(nConvs, msgsPer int) *world {
	w := &world{hist: map[string][]map[string]any{}}
	kinds := []Kind{KindNormal, KindUnique, KindChatroom, KindNormal, KindSystem}
	for i := range nConvs {
		cid := hexID(i)
		kind := kinds[i%len(kinds)]
		members := []string{"alice", fmt.Sprintf("user%d", i), "bob"}
		w.convs = append(w.convs, lcConv(cid, "alice", members, kind, baseMilli+int64(i)*1000))
		var rows []map[string]any
		for j := range msgsPer {
			t := baseMilli + int64(i)*1000 + 100 + int64(j/2) // two messages per millisecond
			rows = append(rows, lcMsg(cid, fmt.Sprintf("m%d-%03dxxxxxxxxxxxxxxx", i, j), members[j%len(members)], t, fmt.Sprintf("message %d of %s", j, cid)))
		}
		sortNewestFirst(rows)
		w.hist[cid] = rows
	}
	return w
}

func sortNewestFirst(rows []map[string]any) {
	sort.SliceStable(rows, func(a, b int) bool {
		ta, tb := rows[a]["timestamp"].(int64), rows[b]["timestamp"].(int64)
		if ta != tb {
			return ta > tb
		}
		return rows[a]["msg-id"].(string) > rows[b]["msg-id"].(string)
	})
}

func writeJSONL(t *testing.T, path string, rows []map[string]any) {
	t.Helper()
	var b strings.Builder
	for _, r := range rows {
		j, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(j)
		b.WriteByte('\n')
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// files writes the export as _Conversation.jsonl and each history as a
// JSON array file (the history API's answer) in dir/history.
func (w *world) files(t *testing.T, dir string) (export, histDir string) {
	t.Helper()
	export = filepath.Join(dir, "_Conversation.jsonl")
	writeJSONL(t, export, w.convs)
	histDir = filepath.Join(dir, "history")
	os.MkdirAll(histDir, 0o755)
	for cid, rows := range w.hist {
		b, _ := json.MarshalIndent(rows, "", " ")
		if err := os.WriteFile(filepath.Join(histDir, cid+".json"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return export, histDir
}

// expected is what relaymesh should hold after importing w: the
// non-system conversations' messages.
func (w *world) expected() map[string]map[string]int64 {
	out := map[string]map[string]int64{}
	for _, c := range w.convs {
		cid := c["objectId"].(string)
		out[cid] = map[string]int64{}
		if c["sys"] == true {
			continue
		}
		for _, m := range w.hist[cid] {
			out[cid][m["msg-id"].(string)] = m["timestamp"].(int64)
		}
	}
	return out
}

// ---- a fake LeanCloud REST history API ----

type fakeLC struct {
	w        *world
	mu       sync.Mutex
	requests int
	fail429  int // answer this many requests 429 first
}

func (f *fakeLC) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.requests++
	if f.fail429 > 0 {
		f.fail429--
		f.mu.Unlock()
		http.Error(rw, `{"code":429,"error":"Too many requests."}`, http.StatusTooManyRequests)
		return
	}
	f.mu.Unlock()
	if r.Header.Get("X-LC-Id") != appID || r.Header.Get("X-LC-Key") != lcMaster+",master" {
		rw.WriteHeader(http.StatusUnauthorized)
		rw.Write([]byte(`{"code":401,"error":"Unauthorized."}`))
		return
	}
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/") // 1.2 rtm kind cid messages
	if r.Method != "GET" || len(parts) != 5 || parts[0] != "1.2" || parts[1] != "rtm" || parts[4] != "messages" {
		http.Error(rw, `{"code":404,"error":"no route"}`, 404)
		return
	}
	cid := parts[3]
	conv := f.conv(cid)
	if conv == nil {
		http.Error(rw, `{"code":4303,"error":"CONVERSATION_NOT_FOUND"}`, 404)
		return
	}
	if room := conv["tr"] == true; room != (parts[2] == "chatrooms") {
		http.Error(rw, `{"code":4316,"error":"wrong kind"}`, 400)
		return
	}
	q := r.URL.Query()
	limit, _ := strconv.Atoi(q.Get("limit"))
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	var ts int64
	if s := q.Get("timestamp"); s != "" {
		ts, _ = strconv.ParseInt(s, 10, 64)
	}
	mid := q.Get("msgid")
	page := []map[string]any{}
	for _, row := range f.w.hist[cid] { // newest first
		rt, rid := row["timestamp"].(int64), row["msg-id"].(string)
		if ts > 0 && (rt > ts || rt == ts && rid >= mid) {
			continue // not older than the cursor (exclusive)
		}
		if len(page) == limit {
			break
		}
		page = append(page, row)
	}
	rw.Header().Set("Content-Type", "application/json")
	json.NewEncoder(rw).Encode(page)
}

func (f *fakeLC) conv(cid string) map[string]any {
	for _, c := range f.w.convs {
		if c["objectId"] == cid {
			return c
		}
	}
	return nil
}

// ---- a fake relaymesh import API, with the server's semantics ----

type fakeRM struct {
	mu     sync.Mutex
	convs  map[string]*Conversation
	msgs   map[string]map[string]int64 // cid -> mid -> timestamp
	stores int                         // messages stored (a duplicate store is a bug)
	posts  int
	// onPost runs before each request is served (tests cancel from it).
	onPost func(n int)
}

func newFakeRM() *fakeRM {
	return &fakeRM{convs: map[string]*Conversation{}, msgs: map[string]map[string]int64{}}
}

func (f *fakeRM) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	if r.Header.Get("X-LC-Id") != appID || r.Header.Get("X-LC-Key") != rmMaster+",master" {
		rw.WriteHeader(http.StatusUnauthorized)
		rw.Write([]byte(`{"code":401,"error":"Unauthorized."}`))
		return
	}
	if r.ContentLength > 4<<20 { // the server's cap (rest/import.go)
		http.Error(rw, `{"code":1,"error":"import body over 4 MiB"}`, http.StatusRequestEntityTooLarge)
		return
	}
	f.mu.Lock()
	f.posts++
	n, hook := f.posts, f.onPost
	f.mu.Unlock()
	if hook != nil {
		hook(n)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	enc := json.NewEncoder(rw)
	switch {
	case r.URL.Path == "/1.2/rtm/import/conversations":
		var body struct{ Conversations []*Conversation }
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil || len(body.Conversations) == 0 || len(body.Conversations) > convBatch {
			http.Error(rw, `{"code":107,"error":"bad"}`, 400)
			return
		}
		rep := convsReply{Created: []string{}, Existing: []string{}}
		for _, c := range body.Conversations {
			if f.convs[c.ObjectID] != nil {
				rep.Existing = append(rep.Existing, c.ObjectID)
				continue
			}
			f.convs[c.ObjectID] = c
			f.msgs[c.ObjectID] = map[string]int64{}
			rep.Created = append(rep.Created, c.ObjectID)
		}
		enc.Encode(rep)
	case strings.HasPrefix(r.URL.Path, "/1.2/rtm/import/conversations/") && strings.HasSuffix(r.URL.Path, "/messages"):
		cid := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/1.2/rtm/import/conversations/"), "/messages")
		var body struct{ Messages []*Message }
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil || len(body.Messages) == 0 || len(body.Messages) > msgBatch {
			http.Error(rw, `{"code":107,"error":"bad"}`, 400)
			return
		}
		held := f.msgs[cid]
		if held == nil {
			http.Error(rw, `{"code":4401,"error":"INVALID_MESSAGING_TARGET"}`, 400)
			return
		}
		var rep msgsReply
		for _, m := range body.Messages {
			if _, ok := held[m.MsgID]; ok {
				rep.Duplicates++
				continue
			}
			held[m.MsgID] = m.Timestamp
			f.stores++
			rep.Imported++
		}
		enc.Encode(rep)
	default:
		http.Error(rw, `{"code":404,"error":"relaymesh does not serve it"}`, 404)
	}
}

func (f *fakeRM) setOnPost(fn func(int)) {
	f.mu.Lock()
	f.onPost = fn
	f.mu.Unlock()
}

func (f *fakeRM) held() map[string]map[string]int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]map[string]int64{}
	for cid, ms := range f.msgs {
		out[cid] = map[string]int64{}
		for k, v := range ms {
			out[cid][k] = v
		}
	}
	return out
}

func serve(t *testing.T, h http.Handler) string {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s.URL
}

func noSleep(context.Context, time.Duration) error { return nil }
