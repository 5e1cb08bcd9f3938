package core

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/core/shard"
	"github.com/relaymesh/relaymesh/proto/lcpb"
)

// conv/query limits (LeanCloud: limit default 10, at most 1000); the
// bounds on where, sort and what a query may examine are in
// querylimits.go.
const (
	defaultQueryLimit = 10
	maxQueryLimit     = 1000
)

// Query flag bits (ConversationQuery._calculateFlag).
const (
	flagCompact          = 1
	flagWithLastMessages = 2
)

// convQuery answers conv/query with results{JSON array of rows}. Like
// LeanCloud it lets a client find any conversation, member or not (a
// client just kicked still reads the conversation it left), but the last
// message (lm, msg, msg_from, …) only goes to those who may read the
// history (lastVisible): the row is cut before the where clause sees it,
// so a query cannot probe it either. Queries are bounded
// (querylimits.go).
func (c *Core) convQuery(ctx context.Context, r *request) (*lcpb.GenericCommand, error) {
	cm := r.cmd.ConvMessage
	rows := []map[string]any{}
	if len(cm.TempConvIds) == 0 {
		var where map[string]any
		if w := cm.GetWhere().GetData(); strings.TrimSpace(w) != "" {
			if len(w) > MaxWhereBytes {
				c.queries.refused[refusedWhere].Add(1)
				return nil, fmt.Errorf("%w: where over %d bytes", errQueryFailed, MaxWhereBytes)
			}
			var err error
			if where, err = decodeJSONObject([]byte(w)); err != nil {
				return nil, fmt.Errorf("%w: where: %v", errQueryFailed, err)
			}
			if err := checkWhere(where); err != nil {
				c.queries.refused[refusedWhere].Add(1)
				return nil, err
			}
		}
		keys, err := sortKeys(cm.GetSort())
		if err != nil {
			c.queries.refused[refusedWhere].Add(1)
			return nil, err
		}
		limit := int(cm.GetLimit())
		if cm.Limit == nil || limit <= 0 {
			limit = defaultQueryLimit
		}
		limit = min(limit, maxQueryLimit)
		skip := max(int(cm.GetSkip()), 0)
		if !c.queries.admit(r.app, c.now()) {
			c.queries.refused[refusedBudget].Add(1)
			return nil, fmt.Errorf("%w: %w", errQueryFailed, errQueryBudget)
		}
		q := &queryRun{c: c, app: r.app, peer: r.peer, admin: isAdmin(ctx), where: where}
		err = q.scan(func(row map[string]any) { rows = append(rows, row) })
		c.queries.charge(r.app, q.examined, c.now())
		if err != nil {
			return nil, err
		}
		sortRows(rows, keys)
		if skip >= len(rows) {
			rows = rows[:0]
		} else {
			rows = rows[skip:]
		}
		if len(rows) > limit {
			rows = rows[:limit]
		}
		if cm.GetFlag()&flagCompact != 0 {
			for _, row := range rows {
				delete(row, "m")
			}
		}
	}
	b, err := json.Marshal(rows)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errInternal, err)
	}
	g := r.reply(lcpb.CommandType_conv, lcpb.OpType_results.Enum())
	g.ConvMessage = &lcpb.ConvCommand{Results: &lcpb.JsonObjectMessage{Data: proto.String(string(b))}}
	return g, nil
}

func decodeJSONObject(b []byte) (map[string]any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		return nil, err
	}
	return m, nil
}

// queryRun is one conv/query: what it matches, for whom, and what it has
// examined so far.
type queryRun struct {
	c          *Core
	app, peer  string
	admin      bool // the server API: every row whole
	where      map[string]any
	examined   int // conversations read
	regexBytes int // input given to $regex so far
	err        error
}

// scan visits the rows matching q.where. It narrows the conversations by
// an objectId or m condition (the id index, the member index) and
// otherwise scans the app's conversations; either way it examines at most
// Limits.MaxQueryScan of them, and past that fails with 4310.
func (q *queryRun) scan(visit func(map[string]any)) error {
	st := q.c.state()
	maxScan := q.c.limits.MaxQueryScan
	var ids []string
	indexed := false
	switch v := q.where["objectId"].(type) {
	case string:
		ids, indexed = []string{v}, true
	case map[string]any:
		if in, ok := v["$in"].([]any); ok {
			indexed = true
			for _, x := range in {
				if s, ok := x.(string); ok {
					ids = append(ids, s)
				}
			}
		}
	}
	if !indexed {
		var pid string
		switch v := q.where["m"].(type) {
		case string:
			pid = v
		case map[string]any:
			if all, ok := v["$all"].([]any); ok && len(all) > 0 {
				pid, _ = all[0].(string)
			}
		}
		if pid != "" {
			var err error
			if ids, err = shard.MemberConvs(st, q.app, pid, maxScan+1); err != nil {
				return fmt.Errorf("%w: %v", errQueryFailed, err)
			}
			indexed = true
		}
	}
	tooMany := func() error {
		q.c.queries.refused[refusedScan].Add(1)
		return fmt.Errorf("%w: the query would examine more than %d conversations; narrow it by objectId or m",
			errQueryFailed, maxScan)
	}
	if indexed {
		seen := map[string]bool{}
		for _, id := range ids {
			if seen[id] {
				continue
			}
			seen[id] = true
			if q.examined++; q.examined > maxScan {
				return tooMany()
			}
			conv, err := shard.GetConv(st, q.app, id)
			if err != nil {
				return fmt.Errorf("%w: %v", errQueryFailed, err)
			}
			if conv != nil && !conv.Temp { // temporary: no _Conversation row
				if row, ok := q.match(conv); ok {
					visit(row)
				}
			}
		}
		return q.err
	}
	err := shard.ScanConvs(st, q.app, func(conv *shard.Conv) bool {
		if q.examined++; q.examined > maxScan {
			q.err = tooMany()
			return false
		}
		if !conv.Temp {
			if row, ok := q.match(conv); ok {
				visit(row)
			}
		}
		return q.err == nil
	})
	if q.err != nil {
		return q.err
	}
	if err != nil {
		return fmt.Errorf("%w: %v", errQueryFailed, err)
	}
	return nil
}

// match renders conv as the row q's client may see and matches it.
func (q *queryRun) match(conv *shard.Conv) (map[string]any, bool) {
	row := convRow(conv)
	if !q.admin && !q.c.lastVisible(q.app, q.peer, conv) {
		hideLast(row)
	}
	if !q.matchWhere(row, q.where) || q.err != nil {
		return nil, false
	}
	return row, true
}

// lastRowKeys are the columns that carry a conversation's last message.
var lastRowKeys = []string{"lm", "msg", "msg_from", "msg_mid", "msg_timestamp", "bin", "patch_timestamp"}

// hideLast removes the last message from a row.
func hideLast(row map[string]any) {
	for _, k := range lastRowKeys {
		delete(row, k)
	}
}

// lastVisible reports whether peer may see conv's last message in a
// query: those who may read its history. Members of a normal or temporary
// conversation, subscribers of a system conversation, anyone for a
// chatroom (anyone may join one and read its history, as logs allows).
func (c *Core) lastVisible(app, peer string, conv *shard.Conv) bool {
	switch {
	case conv.Transient:
		return true
	case conv.System:
		ok, err := shard.IsSubscriber(c.state(), app, conv.ID, peer)
		return err == nil && ok
	}
	return conv.IsMember(peer)
}

// convRow renders a conversation as a _Conversation row: custom attributes
// at the top level as the client stored them (JS reads them there, native
// SDKs nest theirs under "attr" themselves), then the system columns.
func convRow(conv *shard.Conv) map[string]any {
	row := map[string]any{}
	if attr, err := decodeJSONObject(conv.Attr); err == nil {
		for k, v := range attr {
			row[k] = v
		}
	}
	row["objectId"] = conv.ID
	row["c"] = conv.Creator
	row["m"] = nonNil(conv.Members)
	row["mu"] = nonNil(conv.Muted)
	row["tr"] = conv.Transient
	row["sys"] = conv.System
	row["unique"] = conv.Unique
	if conv.Unique && conv.UniqueID != "" {
		row["uniqueId"] = conv.UniqueID
	}
	row["createdAt"] = isoDate(conv.CreatedAt)
	row["updatedAt"] = isoDate(conv.UpdatedAt)
	if conv.LastT > 0 {
		row["lm"] = map[string]any{"__type": "Date", "iso": isoDate(conv.LastT)}
		row["msg"] = conv.LastData
		row["msg_from"] = conv.LastFrom
		row["msg_mid"] = conv.LastMID
		row["msg_timestamp"] = conv.LastT
		row["bin"] = conv.LastBin
		if conv.LastPatch > 0 {
			row["patch_timestamp"] = conv.LastPatch
		}
	}
	return row
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// field looks a dotted key up in a row.
func field(row map[string]any, key string) (any, bool) {
	var cur any = row
	for _, part := range strings.Split(key, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[part]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// matchWhere evaluates a LeanCloud (Parse-style) where clause against a row.
func (q *queryRun) matchWhere(row map[string]any, where map[string]any) bool {
	for k, cond := range where {
		switch k {
		case "$and", "$or":
			subs, _ := cond.([]any)
			any1 := false
			for _, s := range subs {
				sm, _ := s.(map[string]any)
				ok := q.matchWhere(row, sm)
				if k == "$and" && !ok {
					return false
				}
				any1 = any1 || ok
			}
			if k == "$or" && !any1 {
				return false
			}
			continue
		}
		v, has := field(row, k)
		if !q.matchCond(v, has, cond) {
			return false
		}
	}
	return true
}

func isOperatorMap(cond any) (map[string]any, bool) {
	m, ok := cond.(map[string]any)
	if !ok || len(m) == 0 {
		return nil, false
	}
	for k := range m {
		if !strings.HasPrefix(k, "$") {
			return nil, false
		}
	}
	return m, true
}

func (q *queryRun) matchCond(v any, has bool, cond any) bool {
	ops, ok := isOperatorMap(cond)
	if !ok {
		return has && equalOrContains(v, cond)
	}
	for op, arg := range ops {
		switch op {
		case "$eq":
			if !has || !equalOrContains(v, arg) {
				return false
			}
		case "$ne":
			if has && equalOrContains(v, arg) {
				return false
			}
		case "$exists":
			want, _ := arg.(bool)
			if has != want {
				return false
			}
		case "$in":
			list, _ := arg.([]any)
			found := false
			for _, x := range list {
				if has && equalOrContains(v, x) {
					found = true
					break
				}
			}
			if !found {
				return false
			}
		case "$nin":
			list, _ := arg.([]any)
			for _, x := range list {
				if has && equalOrContains(v, x) {
					return false
				}
			}
		case "$all":
			list, _ := arg.([]any)
			arr, ok := v.([]string)
			if !ok {
				return false
			}
			for _, x := range list {
				s, _ := x.(string)
				if !contains(arr, s) {
					return false
				}
			}
		case "$size":
			n, _ := toFloat(arg)
			switch a := v.(type) {
			case []string:
				if float64(len(a)) != n {
					return false
				}
			case []any:
				if float64(len(a)) != n {
					return false
				}
			default:
				return false
			}
		case "$regex":
			rc, _ := arg.(regexCond) // compiled by checkWhere
			if !has || rc.re == nil || !q.matchRegex(rc, v) {
				return false
			}
		case "$options": // read with $regex
		case "$gt", "$gte", "$lt", "$lte":
			if !has {
				return false
			}
			c, ok := compare(v, arg)
			if !ok {
				return false
			}
			if (op == "$gt" && c <= 0) || (op == "$gte" && c < 0) || (op == "$lt" && c >= 0) || (op == "$lte" && c > 0) {
				return false
			}
		default:
			return false // unsupported operator: match nothing rather than everything
		}
	}
	return true
}

// matchRegex matches a string field, or any string of an array field,
// charging what it reads to the query's regex input budget.
func (q *queryRun) matchRegex(rc regexCond, v any) bool {
	try := func(s string) bool {
		if q.regexBytes += len(s); q.regexBytes > maxRegexInput {
			if q.err == nil {
				q.c.queries.refused[refusedScan].Add(1)
				q.err = fmt.Errorf("%w: $regex would read more than %d bytes", errQueryFailed, maxRegexInput)
			}
			return false
		}
		return rc.re.MatchString(s)
	}
	switch x := v.(type) {
	case string:
		return try(x)
	case []string:
		for _, s := range x {
			if try(s) {
				return true
			}
		}
	case []any:
		for _, e := range x {
			if s, ok := e.(string); ok && try(s) {
				return true
			}
		}
	}
	return false
}

// norm turns Date objects into their ISO string and numbers into float64.
func norm(v any) any {
	switch x := v.(type) {
	case map[string]any:
		if x["__type"] == "Date" {
			if iso, ok := x["iso"].(string); ok {
				return iso
			}
		}
	case json.Number:
		f, _ := x.Float64()
		return f
	case int64:
		return float64(x)
	case int:
		return float64(x)
	}
	return v
}

func toFloat(v any) (float64, bool) {
	f, ok := norm(v).(float64)
	return f, ok
}

// equalOrContains is equality, or membership when the field is an array.
func equalOrContains(v, want any) bool {
	if arr, ok := v.([]string); ok {
		if s, ok := want.(string); ok {
			return contains(arr, s)
		}
	}
	a, b := norm(v), norm(want)
	switch a.(type) {
	case map[string]any, []any, []string:
		ja, _ := json.Marshal(a)
		jb, _ := json.Marshal(b)
		return bytes.Equal(ja, jb)
	}
	return a == b
}

// compare orders two scalar values of the same kind.
func compare(a, b any) (int, bool) {
	a, b = norm(a), norm(b)
	switch x := a.(type) {
	case float64:
		y, ok := b.(float64)
		if !ok {
			return 0, false
		}
		switch {
		case x < y:
			return -1, true
		case x > y:
			return 1, true
		}
		return 0, true
	case string:
		y, ok := b.(string)
		if !ok {
			return 0, false
		}
		return strings.Compare(x, y), true
	case bool:
		y, ok := b.(bool)
		if !ok {
			return 0, false
		}
		switch {
		case x == y:
			return 0, true
		case !x:
			return -1, true
		}
		return 1, true
	}
	return 0, false
}

// sortKey is one key of a sort spec.
type sortKey struct {
	name string
	desc bool
}

// sortKeys parses a LeanCloud sort spec ("-lm", "a,-b"); default "-lm"
// (most recent conversation first); at most maxSortKeys keys.
func sortKeys(spec string) ([]sortKey, error) {
	if strings.TrimSpace(spec) == "" {
		spec = "-lm"
	}
	var keys []sortKey
	for _, k := range strings.Split(spec, ",") {
		k = strings.TrimSpace(k)
		if k == "" {
			continue
		}
		if len(keys) == maxSortKeys {
			return nil, fmt.Errorf("%w: sort by more than %d keys", errQueryFailed, maxSortKeys)
		}
		desc := strings.HasPrefix(k, "-")
		keys = append(keys, sortKey{strings.TrimPrefix(k, "-"), desc})
	}
	return keys, nil
}

// sortRows orders rows by keys. Missing values sort last when descending,
// first when ascending; ties break on objectId.
func sortRows(rows []map[string]any, keys []sortKey) {
	sort.SliceStable(rows, func(i, j int) bool {
		for _, k := range keys {
			a, ha := field(rows[i], k.name)
			b, hb := field(rows[j], k.name)
			var c int
			switch {
			case !ha && !hb:
				c = 0
			case !ha:
				c = -1
			case !hb:
				c = 1
			default:
				c, _ = compare(a, b)
			}
			if k.desc {
				c = -c
			}
			if c != 0 {
				return c < 0
			}
		}
		return rows[i]["objectId"].(string) < rows[j]["objectId"].(string)
	})
}
