package leancloud

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Limits the server applies (core/validate.go, core/import.go,
// core/shard/version.go), checked here first so that a bad row is reported
// with its line instead of failing a batch.
const (
	MaxAttrBytes   = 16 << 10 // a conversation's attributes, compact JSON
	MaxMembers     = 500      // members of a normal conversation (LeanCloud's and relaymesh's default)
	MaxMessageData = 64 << 10 // one message's content
	maxClientID    = 64       // runes
	maxID          = 64       // bytes of a conversation or message id
	maxMentions    = 20
	maxAttrDepth   = 64 // objects and arrays within the attributes
)

// Kind is what a conversation is.
type Kind string

// Kinds of conversations.
const (
	KindNormal   Kind = "normal"
	KindUnique   Kind = "unique"
	KindChatroom Kind = "chatroom"
	KindSystem   Kind = "system"
)

// Conversation is one _Conversation row, checked and in the import API's
// shape (rest/import.go ImportConv).
type Conversation struct {
	ObjectID   string          `json:"objectId"`
	Creator    string          `json:"c,omitempty"`
	Members    []string        `json:"m,omitempty"`
	Muted      []string        `json:"mu,omitempty"`
	Managers   []string        `json:"managers,omitempty"` // from _ConversationMemberInfo
	Transient  bool            `json:"tr,omitempty"`
	System     bool            `json:"sys,omitempty"`
	Unique     bool            `json:"unique,omitempty"`
	Attributes json.RawMessage `json:"attributes,omitempty"`
	CreatedAt  int64           `json:"createdAt"`
	UpdatedAt  int64           `json:"updatedAt,omitempty"`
}

// Kind says what the conversation is.
func (c *Conversation) Kind() Kind {
	switch {
	case c.System:
		return KindSystem
	case c.Transient:
		return KindChatroom
	case c.Unique:
		return KindUnique
	}
	return KindNormal
}

// columns are _Conversation's own columns (and LeanCloud's storage
// columns); every other top-level key is an attribute, as relaymesh keeps
// them (name, attr and custom columns).
var columns = map[string]bool{
	"objectId": true, "m": true, "c": true, "mu": true, "tr": true, "sys": true, "temp": true,
	"unique": true, "uniqueId": true, "createdAt": true, "updatedAt": true, "lm": true, "ACL": true,
	"msg": true, "msg_from": true, "msg_mid": true, "msg_timestamp": true, "patch_timestamp": true,
	"bin": true, "ttl": true,
}

// parseConversation checks one export row. It returns the conversation,
// warnings (the row is imported, with what they say dropped), or an error
// (the row is not imported).
func parseConversation(raw json.RawMessage, maxMembers int) (*Conversation, []string, error) {
	var row map[string]json.RawMessage
	if err := json.Unmarshal(raw, &row); err != nil {
		return nil, nil, fmt.Errorf("not a JSON object: %v", err)
	}
	c := new(Conversation)
	var warns []string
	var err error
	if c.ObjectID, err = str(row, "objectId", true); err != nil {
		return nil, nil, err
	}
	if err := checkID("objectId", c.ObjectID); err != nil {
		return nil, nil, err
	}
	if strings.HasPrefix(c.ObjectID, "_tmp:") {
		return nil, nil, fmt.Errorf("objectId %q: temporary conversations are not imported", c.ObjectID)
	}
	if c.Creator, err = str(row, "c", false); err != nil {
		return nil, nil, err
	}
	if c.Creator != "" {
		if err := checkClientID(c.Creator); err != nil {
			warns = append(warns, fmt.Sprintf("creator dropped: %v", err))
			c.Creator = ""
		}
	}
	for _, f := range []struct {
		key string
		out *bool
	}{{"tr", &c.Transient}, {"sys", &c.System}, {"unique", &c.Unique}} {
		if *f.out, err = boolean(row, f.key); err != nil {
			return nil, nil, err
		}
	}
	if tmp, _ := boolean(row, "temp"); tmp {
		return nil, nil, fmt.Errorf("temp is true: temporary conversations are not imported")
	}
	for _, f := range []struct {
		key string
		out *[]string
	}{{"m", &c.Members}, {"mu", &c.Muted}} {
		ids, err := strList(row, f.key)
		if err != nil {
			return nil, nil, err
		}
		for _, id := range ids {
			if err := checkClientID(id); err != nil {
				warns = append(warns, fmt.Sprintf("%s: member dropped: %v", f.key, err))
				continue
			}
			*f.out = append(*f.out, id)
		}
		*f.out = dedup(*f.out)
	}
	if !c.Transient && !c.System && len(c.Members) > maxMembers {
		return nil, nil, fmt.Errorf("%d members, relaymesh holds at most %d in a conversation", len(c.Members), maxMembers)
	}
	if c.CreatedAt, err = date(row, "createdAt"); err != nil {
		return nil, nil, err
	}
	if c.CreatedAt == 0 {
		return nil, nil, fmt.Errorf("no createdAt")
	}
	if c.UpdatedAt, err = date(row, "updatedAt"); err != nil {
		return nil, nil, err
	}
	if _, err := date(row, "lm"); err != nil {
		return nil, nil, err
	}
	if a, ok := row["attr"]; ok && !isNull(a) && !bytes.HasPrefix(bytes.TrimSpace(a), []byte("{")) {
		return nil, nil, fmt.Errorf("attr is not a JSON object")
	}
	if n, ok := row["name"]; ok && !isNull(n) && !bytes.HasPrefix(bytes.TrimSpace(n), []byte(`"`)) {
		return nil, nil, fmt.Errorf("name is not a string")
	}
	attrs := map[string]json.RawMessage{}
	for k, v := range row {
		if !columns[k] && !isNull(v) {
			var buf bytes.Buffer
			if err := json.Compact(&buf, v); err != nil {
				return nil, nil, fmt.Errorf("%s: %v", k, err)
			}
			attrs[k] = buf.Bytes()
		}
	}
	if c.Attributes, err = marshal(attrs); err != nil {
		return nil, nil, err
	}
	if d := depth(c.Attributes); d > maxAttrDepth {
		return nil, nil, fmt.Errorf("attributes are nested %d deep, relaymesh imports at most %d", d, maxAttrDepth)
	}
	if len(c.Attributes) > MaxAttrBytes {
		return nil, nil, fmt.Errorf("attributes (name, attr and custom columns) are %d bytes, relaymesh holds at most %d", len(c.Attributes), MaxAttrBytes)
	}
	return c, warns, nil
}

// marshal encodes v as compact JSON, leaving <, > and & as they are.
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// depth returns how deep objects and arrays nest in valid JSON b.
func depth(b []byte) int {
	d, most, inStr, esc := 0, 0, false, false
	for _, c := range b {
		switch {
		case inStr && esc:
			esc = false
		case inStr && c == '\\':
			esc = true
		case inStr && c == '"':
			inStr = false
		case inStr:
		case c == '"':
			inStr = true
		case c == '{' || c == '[':
			d++
			most = max(most, d)
		case c == '}' || c == ']':
			d--
		}
	}
	return most
}

func isNull(v json.RawMessage) bool { return bytes.Equal(bytes.TrimSpace(v), []byte("null")) }

func str(row map[string]json.RawMessage, key string, required bool) (string, error) {
	v, ok := row[key]
	if !ok || isNull(v) {
		if required {
			return "", fmt.Errorf("no %s", key)
		}
		return "", nil
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return "", fmt.Errorf("%s is not a string", key)
	}
	return s, nil
}

func boolean(row map[string]json.RawMessage, key string) (bool, error) {
	v, ok := row[key]
	if !ok || isNull(v) {
		return false, nil
	}
	var b bool
	if err := json.Unmarshal(v, &b); err != nil {
		return false, fmt.Errorf("%s is not a boolean", key)
	}
	return b, nil
}

func strList(row map[string]json.RawMessage, key string) ([]string, error) {
	v, ok := row[key]
	if !ok || isNull(v) {
		return nil, nil
	}
	var l []string
	if err := json.Unmarshal(v, &l); err != nil {
		return nil, fmt.Errorf("%s is not a list of strings", key)
	}
	return l, nil
}

// date reads a date column: an ISO string (createdAt, updatedAt in the
// console's export) or {"__type":"Date","iso":…} (other dates, and every
// date in the storage API's answers). Absent: 0.
func date(row map[string]json.RawMessage, key string) (int64, error) {
	v, ok := row[key]
	if !ok || isNull(v) {
		return 0, nil
	}
	var iso string
	if err := json.Unmarshal(v, &iso); err != nil {
		var d struct {
			Type string `json:"__type"`
			ISO  string `json:"iso"`
		}
		if err := json.Unmarshal(v, &d); err != nil || d.Type != "Date" {
			return 0, fmt.Errorf(`%s is neither an ISO date string nor {"__type":"Date","iso":…}`, key)
		}
		iso = d.ISO
	}
	t, err := time.Parse(time.RFC3339Nano, iso)
	if err != nil {
		return 0, fmt.Errorf("%s: %q is not an ISO 8601 date", key, iso)
	}
	if ms := t.UnixMilli(); ms > 0 {
		return ms, nil
	}
	return 0, fmt.Errorf("%s: %q is before 1970", key, iso)
}

// checkClientID: 1–64 characters of valid UTF-8 without ':' or control
// characters, as relaymesh accepts clientIds (core/validate.go).
func checkClientID(id string) error {
	if id == "" || !utf8.ValidString(id) || utf8.RuneCountInString(id) > maxClientID {
		return fmt.Errorf("clientId %q must be 1-%d characters of UTF-8", id, maxClientID)
	}
	for _, r := range id {
		if r == ':' || unicode.IsControl(r) {
			return fmt.Errorf("clientId %q holds ':' or a control character", id)
		}
	}
	return nil
}

// checkID: 1–64 printable ASCII characters other than space and ':'
// (core/import.go).
func checkID(what, id string) error {
	if id == "" || len(id) > maxID {
		return fmt.Errorf("%s %q must be 1-%d characters", what, id, maxID)
	}
	for i := 0; i < len(id); i++ {
		if b := id[i]; b <= 0x20 || b >= 0x7f || b == ':' {
			if what == "objectId" && strings.HasPrefix(id, "_tmp:") {
				return nil // reported as a temporary conversation
			}
			return fmt.Errorf("%s %q holds a space, ':' or a character outside printable ASCII", what, id)
		}
	}
	return nil
}

func dedup(ids []string) []string {
	if len(ids) == 0 {
		return nil
	}
	sort.Strings(ids)
	out := ids[:1]
	for _, id := range ids[1:] {
		if id != out[len(out)-1] {
			out = append(out, id)
		}
	}
	return out
}
