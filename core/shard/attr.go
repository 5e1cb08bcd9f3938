package shard

import (
	"bytes"
	"encoding/json"
	"sort"
	"strings"
)

// reservedAttr are _Conversation columns that conv/update may not set.
var reservedAttr = map[string]bool{
	"objectId": true, "m": true, "c": true, "mu": true, "tr": true, "sys": true,
	"temp": true, "unique": true, "uniqueId": true, "createdAt": true,
	"updatedAt": true, "lm": true, "msg": true, "msg_from": true, "msg_mid": true,
	"msg_timestamp": true, "patch_timestamp": true, "bin": true, "ttl": true,
}

func decodeObject(b []byte) (map[string]any, bool) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil || m == nil {
		return nil, false
	}
	return m, true
}

func isDeleteOp(v any) bool {
	m, ok := v.(map[string]any)
	return ok && m["__op"] == "Delete"
}

func setPath(m map[string]any, path []string, v any) {
	for _, k := range path[:len(path)-1] {
		next, ok := m[k].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[k] = next
		}
		m = next
	}
	m[path[len(path)-1]] = v
}

func deletePath(m map[string]any, path []string) {
	for _, k := range path[:len(path)-1] {
		next, ok := m[k].(map[string]any)
		if !ok {
			return
		}
		m = next
	}
	delete(m, path[len(path)-1])
}

// applyAttrUpdate applies dotted-key changes to cur (the decoded stored
// attributes, changed in place); it returns the new attr and the nested
// form of the change (attrModified, deletions omitted).
func applyAttrUpdate(cur map[string]any, update []byte) (newAttr, modified []byte, err *Error) {
	upd, ok := decodeObject(update)
	if !ok {
		return nil, nil, fail(ErrBadCommand, "attr is not a JSON object")
	}
	keys := make([]string, 0, len(upd))
	for k := range upd {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	mod := map[string]any{}
	for _, k := range keys {
		path := strings.Split(k, ".")
		if reservedAttr[path[0]] || k == "" {
			return nil, nil, fail(ErrUpdateForbidden, k)
		}
		v := upd[k]
		if isDeleteOp(v) {
			deletePath(cur, path)
			continue
		}
		setPath(cur, path, v)
		setPath(mod, path, v)
	}
	na, e1 := json.Marshal(cur)
	nm, e2 := json.Marshal(mod)
	if e1 != nil || e2 != nil {
		return nil, nil, fail(ErrBadCommand, "attr encoding")
	}
	return na, nm, nil
}

func (a *applier) update() (*Result, *Error) {
	c := a.c
	conv, serr := a.conv(c.CID)
	if serr != nil {
		return nil, serr
	}
	if !conv.IsMember(c.From) && !c.Admin {
		return nil, fail(ErrNotMember, c.From)
	}
	cur := map[string]any{}
	if len(conv.Attr) > 0 {
		var ok bool
		if cur, ok = decodeObject(conv.Attr); !ok { // start stores only objects
			a.err = errCorrupt("conversation attributes", convKey(c.App, c.CID))
			return nil, nil
		}
	}
	na, mod, serr := applyAttrUpdate(cur, c.Update)
	if serr != nil {
		return nil, serr
	}
	if serr := a.checkAttrSize(na); serr != nil { // version.go: the merged result
		return nil, serr
	}
	conv.Attr = na
	conv.UpdatedAt = c.Now
	a.putConv(conv)
	return &Result{Conv: conv, AttrModified: mod}, nil
}
