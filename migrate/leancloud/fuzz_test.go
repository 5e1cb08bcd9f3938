package leancloud

import (
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
)

// FuzzRowReader: any bytes, read as an export or history file, give rows
// that are valid JSON, problems, or an error, never a panic or a loop.
func FuzzRowReader(f *testing.F) {
	for _, s := range []string{
		"{\"a\":1}\n{\"b\":2}\n", "[{\"a\":1},{\"b\":[1,2]}]", `{"results":[{"a":1}]}`, "\xEF\xBB\xBF[]", "[{", "{\"results\":[", "[1,,2]",
		"{\"a\":\n", "  \n\n", "[\"x\"]", `{"results":{}}`, "[" + strings.Repeat("[", 50),
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		rr, err := newRowReader("fuzz", strings.NewReader(string(b)))
		if err != nil {
			return
		}
		for n := 0; ; n++ {
			if n > len(b)+1 {
				t.Fatalf("more rows than bytes: a loop")
			}
			raw, _, err := rr.next()
			if err == io.EOF {
				return
			}
			var re *rowError
			if errors.As(err, &re) {
				if re.Fatal {
					if _, _, err := rr.next(); err != io.EOF {
						t.Fatalf("rows after a fatal problem: %v", err)
					}
					return
				}
				continue
			}
			if err != nil {
				return
			}
			if !json.Valid(raw) {
				t.Fatalf("row %q is not valid JSON", raw)
			}
		}
	})
}

// FuzzParseRows: any row is a conversation, a message, or an error; what
// is accepted holds the import's limits.
func FuzzParseRows(f *testing.F) {
	for _, s := range []string{
		`{"objectId":"5f1a2b3c4d5e6f7a8b9c0d1e","c":"a","m":["a","b"],"createdAt":"2020-01-01T00:00:00.000Z","attr":{"x":1},"name":"n"}`,
		`{"objectId":"x","createdAt":{"__type":"Date","iso":"2020-01-01T00:00:00Z"},"tr":true}`,
		`{"msg-id":"m","from":"a","timestamp":5,"conv-id":"c","data":"d","bin":true}`,
		`{"msg-id":"m","from":"a","timestamp":"5","conv-id":"c"}`, `[]`, `null`, `{"objectId":null}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if c, _, err := parseConversation(b, MaxMembers); err == nil {
			if checkID("objectId", c.ObjectID) != nil || c.CreatedAt <= 0 || len(c.Attributes) > MaxAttrBytes || depth(c.Attributes) > maxAttrDepth ||
				(!c.Transient && !c.System && len(c.Members) > MaxMembers) || !json.Valid(c.Attributes) {
				t.Fatalf("accepted %+v", c)
			}
			for _, m := range append(c.Members, c.Muted...) {
				if checkClientID(m) != nil {
					t.Fatalf("accepted member %q", m)
				}
			}
		}
		if m, err := parseMessage(b); err == nil {
			if checkID("msg-id", m.MsgID) != nil || checkClientID(m.From) != nil || m.Timestamp <= 0 || len(m.Data) > MaxMessageData {
				t.Fatalf("accepted %+v", m)
			}
		}
	})
}
