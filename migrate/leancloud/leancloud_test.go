package leancloud

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func readAll(t *testing.T, name, in string) (rows []string, lines []int, probs []string) {
	t.Helper()
	rr, err := newRowReader(name, strings.NewReader(in))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	for {
		raw, line, err := rr.next()
		if err == io.EOF {
			return
		}
		var re *rowError
		if errors.As(err, &re) {
			probs = append(probs, re.Error())
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		rows, lines = append(rows, string(raw)), append(lines, line)
	}
}

// TestRowFormats: the export as JSON Lines (the console's), a JSON array
// and {"results":[…]} (the storage API's), with a BOM or without, read a
// row at a time with the line each starts on; bad rows are problems with
// their line, and JSON Lines goes on after one.
func TestRowFormats(t *testing.T) {
	for _, tc := range []struct {
		name, in  string
		rows      []string
		lines     []int
		problems  int
		wantError bool
	}{
		{name: "jsonl", in: "{\"a\":1}\n\n{\"a\":2}\r\n{\"a\":3}", rows: []string{`{"a":1}`, `{"a":2}`, `{"a":3}`}, lines: []int{1, 3, 4}},
		{name: "jsonl bad line", in: "{\"a\":1}\n{\"a\":\n{\"a\":3}\n", rows: []string{`{"a":1}`, `{"a":3}`}, lines: []int{1, 3}, problems: 1},
		{name: "bom", in: "\xEF\xBB\xBF{\"a\":1}\n", rows: []string{`{"a":1}`}, lines: []int{1}},
		{name: "array", in: "[\n {\"a\":1},\n {\"a\":\n  2}\n]", rows: []string{`{"a":1}`, "{\"a\":\n  2}"}, lines: []int{2, 3}},
		{name: "results", in: "{\"results\": [{\"a\":1},\n{\"a\":2}]}", rows: []string{`{"a":1}`, `{"a":2}`}, lines: []int{1, 2}},
		{name: "results one line", in: `{"results":[{"a":1}]}`, rows: []string{`{"a":1}`}, lines: []int{1}},
		{name: "array broken", in: "[{\"a\":1},\n{\"a\" 2}]", rows: []string{`{"a":1}`}, lines: []int{1}, problems: 1},
		{name: "empty", in: "  \n"},
		{name: "garbage", in: "hello", wantError: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.wantError {
				if _, err := newRowReader(tc.name, strings.NewReader(tc.in)); err == nil {
					t.Fatal("no error")
				}
				return
			}
			rows, lines, probs := readAll(t, tc.name, tc.in)
			if !reflect.DeepEqual(rows, tc.rows) || !reflect.DeepEqual(lines, tc.lines) || len(probs) != tc.problems {
				t.Fatalf("got rows %q lines %v problems %v, want %q %v and %d problems", rows, lines, probs, tc.rows, tc.lines, tc.problems)
			}
		})
	}
}

// TestRowBounds: a row over MaxRowBytes and JSON nested 100,000 deep are
// problems, not crashes or unbounded reads; JSON Lines goes on after them.
func TestRowBounds(t *testing.T) {
	huge := `{"a":"` + strings.Repeat("x", MaxRowBytes+10) + `"}`
	deep := strings.Repeat("[", 100000) + strings.Repeat("]", 100000)
	rows, lines, probs := readAll(t, "jsonl", huge+"\n"+`{"deep":`+deep+"}\n"+`{"ok":1}`+"\n")
	if len(rows) != 1 || lines[0] != 3 || len(probs) != 2 || !strings.HasPrefix(probs[0], "line 1:") || !strings.HasPrefix(probs[1], "line 2:") {
		t.Fatalf("jsonl: got rows at lines %v, problems %v; want ok at line 3, problems at lines 1 and 2", lines, probs)
	}
	// Nesting a JSON decoder accepts, but deeper than attributes go.
	nested := `{"objectId":"5f0000000000000000000003","createdAt":"2020-01-01T00:00:00Z","attr":{"x":` +
		strings.Repeat("[", 5000) + strings.Repeat("]", 5000) + `}}`
	if _, _, err := parseConversation(json.RawMessage(nested), MaxMembers); err == nil || !strings.Contains(err.Error(), "nested") {
		t.Fatalf("attributes nested 5000 deep: got %v, want refused", err)
	}
	_, _, probs = readAll(t, "array", "[{\"ok\":1},"+huge+",{\"ok\":2}]")
	if len(probs) != 1 || !strings.Contains(probs[0], "over 1 MiB") {
		t.Fatalf("array: problems %v, want the huge row", probs)
	}
	_, _, probs = readAll(t, "array", "["+deep+"]")
	if len(probs) != 1 {
		t.Fatalf("deep array: problems %v, want one", probs)
	}
}

// TestParseConversation: the export's columns map to relaymesh's, dates in
// both of LeanCloud's encodings; bad rows are refused with why.
func TestParseConversation(t *testing.T) {
	row := lcConv("5f0000000000000000000001", "alice", []string{"bob", "alice", "bob"}, KindUnique, baseMilli)
	row["mu"] = []string{"bob"}
	row["createdAt"] = map[string]any{"__type": "Date", "iso": "2020-09-13T12:26:40.000Z"}
	raw, _ := json.Marshal(row)
	c, warns, err := parseConversation(raw, MaxMembers)
	if err != nil || len(warns) != 0 {
		t.Fatalf("parse: %v %v", err, warns)
	}
	if c.ObjectID != "5f0000000000000000000001" || c.Creator != "alice" || !reflect.DeepEqual(c.Members, []string{"alice", "bob"}) ||
		!reflect.DeepEqual(c.Muted, []string{"bob"}) || !c.Unique || c.Transient || c.System || c.CreatedAt != 1_600_000_000_000 ||
		c.UpdatedAt != baseMilli+5000 || c.Kind() != KindUnique {
		t.Fatalf("got %+v", c)
	}
	if want := `{"attr":{"n":7,"topic":"t-5f00"},"level":3,"name":"conv 0001"}`; string(c.Attributes) != want {
		t.Fatalf("attributes: got %s, want %s", c.Attributes, want)
	}

	bad := func(mod func(map[string]any)) json.RawMessage {
		r := lcConv("5f0000000000000000000002", "alice", []string{"alice"}, KindNormal, baseMilli)
		mod(r)
		b, _ := json.Marshal(r)
		return b
	}
	many := make([]string, MaxMembers+1)
	for i := range many {
		many[i] = "u" + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + string(rune('0'+i/26%10)) + string(rune('a'+i/260))
	}
	for name, raw := range map[string]json.RawMessage{
		"no objectId":     bad(func(r map[string]any) { delete(r, "objectId") }),
		"objectId number": bad(func(r map[string]any) { r["objectId"] = 5 }),
		"no createdAt":    bad(func(r map[string]any) { delete(r, "createdAt") }),
		"bad createdAt":   bad(func(r map[string]any) { r["createdAt"] = "yesterday" }),
		"bad lm":          bad(func(r map[string]any) { r["lm"] = map[string]any{"__type": "Pointer"} }),
		"m not a list":    bad(func(r map[string]any) { r["m"] = "alice" }),
		"attr a string":   bad(func(r map[string]any) { r["attr"] = "x" }),
		"name a number":   bad(func(r map[string]any) { r["name"] = 5 }),
		"huge attr":       bad(func(r map[string]any) { r["attr"] = map[string]any{"blob": strings.Repeat("x", MaxAttrBytes)} }),
		"too many":        bad(func(r map[string]any) { r["m"] = many }),
		"temp":            bad(func(r map[string]any) { r["temp"] = true }),
		"tmp id":          bad(func(r map[string]any) { r["objectId"] = "_tmp:abc" }),
		"tr not bool":     bad(func(r map[string]any) { r["tr"] = "yes" }),
		"not an object":   json.RawMessage(`[1,2]`),
	} {
		if c, _, err := parseConversation(raw, MaxMembers); err == nil {
			t.Errorf("%s: accepted as %+v", name, c)
		}
	}
	c, warns, err = parseConversation(bad(func(r map[string]any) { r["m"] = []string{"alice", "has:colon", ""} }), MaxMembers)
	if err != nil || len(warns) != 2 || !reflect.DeepEqual(c.Members, []string{"alice"}) {
		t.Fatalf("bad members: got %+v %v %v, want alice kept and two warnings", c, warns, err)
	}
}

// TestImportFiles imports an export and history files: every conversation
// is created with its id, every message of the non-system ones stored
// once; running again (with or without the state file) stores nothing
// more; the summary counts it all.
func TestImportFiles(t *testing.T) {
	w := newWorld(12, 25)
	export, hist := w.files(t, t.TempDir())
	rm := newFakeRM()
	target := &Target{Server: serve(t, rm), AppID: appID, MasterKey: rmMaster, Sleep: noSleep}
	state := filepath.Join(t.TempDir(), "state")
	var progress bytes.Buffer
	sum, err := Run(context.Background(), Config{Conversations: export, HistoryDir: hist, Target: target, StateFile: state, Progress: &progress})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := rm.held(), w.expected(); !reflect.DeepEqual(got, want) {
		t.Fatalf("relaymesh holds %d conversations, want %d (or their messages differ)", len(got), len(want))
	}
	if sum.Created != 12 || sum.MsgsNew != 10*25 || sum.Messages != 250 || sum.SystemHistory != 2 || sum.ProblemCount != 0 {
		var b strings.Builder
		sum.Write(&b)
		t.Fatalf("summary:\n%s", b.String())
	}
	if !strings.Contains(progress.String(), "messages 250 (new 250, dup 0)") {
		t.Errorf("progress: %q", progress.String())
	}
	stores := rm.stores

	// Again, same state: everything is skipped.
	sum, err = Run(context.Background(), Config{Conversations: export, HistoryDir: hist, Target: target, StateFile: state})
	if err != nil {
		t.Fatal(err)
	}
	if sum.ResumedConvs != 12 || sum.ResumedFiles != 12 || sum.Created != 0 || rm.stores != stores {
		t.Fatalf("second run: %+v, %d stores (want %d)", sum, rm.stores, stores)
	}
	// Again without state: the server finds everything there.
	sum, err = Run(context.Background(), Config{Conversations: export, HistoryDir: hist, Target: target})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Existing != 12 || sum.MsgsDup != 250 || sum.MsgsNew != 0 || rm.stores != stores {
		t.Fatalf("third run: %+v, %d stores (want %d)", sum, rm.stores, stores)
	}
}

// TestResume interrupts an import after a few requests (the context is
// cancelled, as by ^C), at each point in turn, then runs it again with the
// same state file: relaymesh ends up holding exactly the export, each
// message stored once.
func TestResume(t *testing.T) {
	w := newWorld(7, 40)
	export, hist := w.files(t, t.TempDir())
	// 7 requests: the conversations, then 6 histories. Not the 7th: a
	// cancel while the last request is answered may land after all the
	// work is done, and then the run rightly succeeds.
	for _, stopAt := range []int{1, 2, 3, 5, 6} {
		rm := newFakeRM()
		ctx, cancel := context.WithCancel(context.Background())
		rm.onPost = func(n int) {
			if n == stopAt {
				cancel()
			}
		}
		target := &Target{Server: serve(t, rm), AppID: appID, MasterKey: rmMaster, Sleep: noSleep}
		state := filepath.Join(t.TempDir(), "state")
		if _, err := Run(ctx, Config{Conversations: export, HistoryDir: hist, Target: target, StateFile: state}); err == nil {
			t.Fatalf("stop at %d: the interrupted run succeeded", stopAt)
		}
		rm.setOnPost(nil) // requests of the stopped run may still be in the handler
		sum, err := Run(context.Background(), Config{Conversations: export, HistoryDir: hist, Target: target, StateFile: state})
		if err != nil {
			t.Fatalf("stop at %d: resume: %v", stopAt, err)
		}
		if got, want := rm.held(), w.expected(); !reflect.DeepEqual(got, want) {
			t.Fatalf("stop at %d: after resuming relaymesh does not hold the export", stopAt)
		}
		if rm.stores != 6*40 { // the system conversation's history is not imported
			t.Fatalf("stop at %d: %d message stores, want %d", stopAt, rm.stores, 6*40)
		}
		if sum.ProblemCount != 0 {
			t.Fatalf("stop at %d: problems %v", stopAt, sum.Problems)
		}
	}
}

// TestFetch fetches the history from a fake LeanCloud history API, paging
// (3 rows a page, several messages in one millisecond, a chatroom through
// /chatrooms/), retrying a 429, saving it (--save); a second import reads
// the saved files instead of LeanCloud, and so does an import of the saved
// directory as history files. A wrong master key is refused, on either side.
func TestFetch(t *testing.T) {
	w := newWorld(6, 10)
	dir := t.TempDir()
	export, _ := w.files(t, dir)
	lc := &fakeLC{w: w, fail429: 2}
	lcURL := serve(t, lc)
	src := &Source{Server: lcURL, AppID: appID, MasterKey: lcMaster, PageSize: 3, Sleep: noSleep}
	rm := newFakeRM()
	target := &Target{Server: serve(t, rm), AppID: appID, MasterKey: rmMaster, Sleep: noSleep}
	save := filepath.Join(dir, "saved")
	sum, err := Run(context.Background(), Config{Conversations: export, Source: src, SaveDir: save, Target: target,
		StateFile: filepath.Join(dir, "state")})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := rm.held(), w.expected(); !reflect.DeepEqual(got, want) {
		t.Fatalf("fetched import: relaymesh does not hold the export:\n got %v\nwant %v", got, want)
	}
	if sum.Messages != 5*10 || sum.ProblemCount != 0 {
		t.Fatalf("summary: %+v", sum)
	}
	// 5 conversations with history, 10 rows each at 3 a page: 4 pages
	// each; and the key check before writing.
	if lc.requests != 5*4+2+1 {
		t.Errorf("LeanCloud got %d requests, want %d (the key check, 4 pages of 5 conversations, 2 answered 429)", lc.requests, 5*4+2+1)
	}
	saved, _ := filepath.Glob(filepath.Join(save, "*"))
	if len(saved) != 5 {
		t.Fatalf("saved files: %v", saved)
	}

	// Replayed from --save: LeanCloud is asked only to check the key.
	n := lc.requests
	rm2 := newFakeRM()
	target2 := &Target{Server: serve(t, rm2), AppID: appID, MasterKey: rmMaster, Sleep: noSleep}
	if _, err := Run(context.Background(), Config{Conversations: export, Source: src, SaveDir: save, Target: target2}); err != nil {
		t.Fatal(err)
	}
	if lc.requests != n+1 || !reflect.DeepEqual(rm2.held(), w.expected()) {
		t.Fatalf("replay: %d new LeanCloud requests (want the key check only), or relaymesh differs", lc.requests-n)
	}
	// The saved directory read as history files.
	rm3 := newFakeRM()
	target3 := &Target{Server: serve(t, rm3), AppID: appID, MasterKey: rmMaster, Sleep: noSleep}
	if _, err := Run(context.Background(), Config{Conversations: export, HistoryDir: save, Target: target3}); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(rm3.held(), w.expected()) {
		t.Fatal("the saved files imported as history files differ")
	}

	// Wrong keys.
	bad := &Source{Server: lcURL, AppID: appID, MasterKey: "wrong", Sleep: noSleep}
	if _, err := Run(context.Background(), Config{Conversations: export, Source: bad, DryRun: true}); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("wrong LeanCloud key: got %v, want ErrUnauthorized", err)
	}
	if _, err := Run(context.Background(), Config{Conversations: export, Source: bad, Target: target3}); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("wrong LeanCloud key: got %v, want ErrUnauthorized", err)
	}
	badT := &Target{Server: target.Server, AppID: appID, MasterKey: "wrong", Sleep: noSleep}
	if _, err := Run(context.Background(), Config{Conversations: export, Target: badT}); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("wrong relaymesh key: got %v, want ErrUnauthorized", err)
	}
}

// TestDryRun reads a messy export and history, writes nothing, and
// summarizes: conversations by kind, members, messages and their time
// range, and each problem with its file and line.
func TestDryRun(t *testing.T) {
	w := newWorld(5, 4)
	dir := t.TempDir()
	export, hist := w.files(t, dir)
	f, _ := os.OpenFile(export, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("{\"objectId\":\"5f00000000000000000000ff\",\"createdAt\":\"2020-01-01T00:00:00.000Z\",\"attr\":{\"blob\":\"" + strings.Repeat("x", MaxAttrBytes) + "\"}}\n")
	f.WriteString("this is not json\n")
	f.WriteString(`{"objectId":"5f00000000000000000000fe"}` + "\n")
	f.Close()
	writeJSONL(t, filepath.Join(hist, "extra.jsonl"), []map[string]any{
		lcMsg("5f0000000000000000000bad", "zz1", "alice", baseMilli, "to nowhere"),
		{"msg-id": "zz2", "from": "alice", "conv-id": hexID(0)},
	})
	rm := newFakeRM()
	target := &Target{Server: serve(t, rm), AppID: appID, MasterKey: rmMaster}
	sum, err := Run(context.Background(), Config{Conversations: export, HistoryDir: hist, Target: target, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if rm.posts != 0 {
		t.Fatalf("a dry run sent %d requests", rm.posts)
	}
	var out strings.Builder
	sum.Write(&out)
	for _, want := range []string{
		"dry run: nothing was written",
		"conversations: 5 (normal 2, unique 1, chatroom 1, system 1), created 2020-09-13T12:26:40.000Z .. 2020-09-13T12:26:44.000Z",
		"members: 12 entries, 6 distinct clientIds",
		"messages: 16 in 4 conversations, 2020-09-13T12:26:40.100Z .. 2020-09-13T12:26:43.101Z",
		"problems: 5",
		"_Conversation.jsonl:6: 5f00000000000000000000ff: attributes (name, attr and custom columns) are",
		"_Conversation.jsonl:7: malformed JSON",
		"_Conversation.jsonl:8: 5f00000000000000000000fe: no createdAt",
		`extra.jsonl:1: zz1: conv-id "5f0000000000000000000bad" is not in the _Conversation export`,
		"extra.jsonl:2: msg-id zz2: no timestamp",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, out.String())
		}
	}
	if !maps.Equal(sum.Kinds, map[Kind]int{KindNormal: 2, KindUnique: 1, KindChatroom: 1, KindSystem: 1}) {
		t.Errorf("kinds: %v", sum.Kinds)
	}
}

// TestMemberInfos: Manager rows of the _ConversationMemberInfo export
// become the conversations' managers; managers who are not members, an
// Owner other than the creator, unknown roles and bad rows are problems.
func TestMemberInfos(t *testing.T) {
	w := newWorld(2, 0)
	dir := t.TempDir()
	export, _ := w.files(t, dir)
	infos := filepath.Join(dir, "_ConversationMemberInfo.jsonl")
	writeJSONL(t, infos, []map[string]any{
		{"objectId": "i1", "cid": hexID(0), "clientId": "bob", "role": "Manager", "createdAt": "2020-01-01T00:00:00.000Z"},
		{"objectId": "i2", "cid": hexID(0), "peerId": "user0", "role": "Manager"},
		{"objectId": "i3", "cid": hexID(0), "clientId": "stranger", "role": "Manager"},
		{"objectId": "i4", "cid": hexID(1), "clientId": "bob", "role": "Owner"},
		{"objectId": "i5", "cid": hexID(1), "clientId": "bob", "role": "Boss"},
		{"objectId": "i6", "cid": hexID(1), "role": "Manager"},
	})
	rm := newFakeRM()
	target := &Target{Server: serve(t, rm), AppID: appID, MasterKey: rmMaster, Sleep: noSleep}
	sum, err := Run(context.Background(), Config{Conversations: export, MemberInfos: infos, Target: target})
	if err != nil {
		t.Fatal(err)
	}
	if got := rm.convs[hexID(0)].Managers; !reflect.DeepEqual(got, []string{"bob", "user0"}) {
		t.Errorf("managers: got %v, want [bob user0]", got)
	}
	var out strings.Builder
	sum.Write(&out)
	for _, want := range []string{
		"2 managers",
		`manager "stranger" is not a member`,
		`the Owner is "bob" but the creator (c) is "alice"`,
		`_ConversationMemberInfo.jsonl:5: ` + hexID(1) + `: unknown role "Boss"`,
		`_ConversationMemberInfo.jsonl:6: no clientId`,
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, out.String())
		}
	}
}

// TestProgress: on a terminal the line is rewritten in place (\r, erase to
// the end) at most every interval; elsewhere one line per interval; the
// clock is injected.
func TestProgress(t *testing.T) {
	for _, tty := range []bool{true, false} {
		now := int64(0)
		clock := func() time.Time { return time.Unix(now, 0) }
		var b bytes.Buffer
		s := &Summary{Kinds: map[Kind]int{}}
		p := &progress{w: &b, tty: tty, every: 2 * time.Second, now: clock, start: clock(), s: s, phase: "history"}
		for i := range 10 {
			now = int64(i)
			s.Messages = i * 100
			s.MsgsNew = i * 100
			p.tick(false)
		}
		p.done()
		out := b.String()
		if tty {
			if n := strings.Count(out, "\r"); n != 6 || !strings.HasSuffix(out, "\x1b[K\n") || strings.Count(out, "\n") != 1 {
				t.Errorf("tty: %d rewrites (want 5 ticks and the last), output %q", n, out)
			}
		} else if n := strings.Count(out, "\n"); n != 6 || strings.Contains(out, "\r") {
			t.Errorf("not a tty: %d lines, want 6: %q", n, out)
		}
		if !strings.Contains(out, "messages 900 (new 900, dup 0)  100 msg/s") {
			t.Errorf("tty=%v: last line lacks the counts and rate: %q", tty, out)
		}
	}
}

// TestBatchBytes: messages whose JSON is much longer than their content
// (control characters escape to six bytes each) still go out in requests
// under the server's 4 MiB cap; fetched rows without conv-id belong to the
// conversation asked for.
func TestBatchBytes(t *testing.T) {
	w := newWorld(1, 0)
	cid := hexID(0)
	data := strings.Repeat("\x01", 60<<10) // 60 KiB, 360 KiB as JSON
	for i := range 40 {
		row := lcMsg(cid, fmt.Sprintf("big%02d", i), "alice", baseMilli+int64(i), data)
		if i%2 == 0 {
			delete(row, "conv-id")
		}
		w.hist[cid] = append(w.hist[cid], row)
	}
	sortNewestFirst(w.hist[cid])
	dir := t.TempDir()
	export, _ := w.files(t, dir)
	rm := newFakeRM()
	target := &Target{Server: serve(t, rm), AppID: appID, MasterKey: rmMaster, Sleep: noSleep}
	src := &Source{Server: serve(t, &fakeLC{w: w}), AppID: appID, MasterKey: lcMaster, Sleep: noSleep}
	sum, err := Run(context.Background(), Config{Conversations: export, Source: src, Target: target})
	if err != nil {
		t.Fatal(err)
	}
	if sum.MsgsNew != 40 || sum.ProblemCount != 0 || len(rm.held()[cid]) != 40 {
		t.Fatalf("got %d new, problems %v", sum.MsgsNew, sum.Problems)
	}
	if rm.posts < 5 { // 40 × 360 KiB in requests of at most 1 MiB of JSON
		t.Fatalf("%d requests: the batches were not cut by their JSON size", rm.posts)
	}
}

// TestResumeParallelFetch interrupts an import that fetches with several
// workers, at several points, and resumes it: relaymesh ends up with
// exactly the export's history, each message stored once.
func TestResumeParallelFetch(t *testing.T) {
	w := newWorld(11, 9)
	dir := t.TempDir()
	export, _ := w.files(t, dir)
	src := &Source{Server: serve(t, &fakeLC{w: w}), AppID: appID, MasterKey: lcMaster, PageSize: 4, Sleep: noSleep}
	for _, stopAt := range []int{2, 5, 9} {
		rm := newFakeRM()
		ctx, cancel := context.WithCancel(context.Background())
		rm.onPost = func(n int) {
			if n == stopAt {
				cancel()
			}
		}
		target := &Target{Server: serve(t, rm), AppID: appID, MasterKey: rmMaster, Sleep: noSleep}
		state := filepath.Join(t.TempDir(), "state")
		cfg := Config{Conversations: export, Source: src, Target: target, StateFile: state, Parallel: 3}
		if _, err := Run(ctx, cfg); err == nil {
			t.Fatalf("stop at %d: the interrupted run succeeded", stopAt)
		}
		rm.setOnPost(nil) // requests of the stopped run may still be in the handler
		sum, err := Run(context.Background(), cfg)
		if err != nil {
			t.Fatalf("stop at %d: resume: %v", stopAt, err)
		}
		if got, want := rm.held(), w.expected(); !reflect.DeepEqual(got, want) {
			t.Fatalf("stop at %d: after resuming relaymesh does not hold the export", stopAt)
		}
		if want := 9 * 9; rm.stores != want || sum.ProblemCount != 0 { // 2 of the 11 are system conversations
			t.Fatalf("stop at %d: %d stores (want %d), problems %v", stopAt, rm.stores, want, sum.Problems)
		}
	}
}
