package core

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/core/query"
	"github.com/relaymesh/relaymesh/core/shard"
	"github.com/relaymesh/relaymesh/proto/lcpb"
)

// conv/query limits (LeanCloud: limit default 10, at most 1000); the
// bounds on where, sort and what a query may examine are package query's
// and Limits' (MaxQueryScan, QueryScanPerSecond).
const (
	defaultQueryLimit = 10
	maxQueryLimit     = 1000
)

// Defaults of Limits.MaxQueryScan and Limits.QueryScanPerSecond: a query
// that would examine more conversations than MaxQueryScan (an unindexed
// scan of a large app: add an objectId or m condition) is refused with
// 4310; each app may examine QueryScanPerSecond conversations a second,
// with a burst of 2 × MaxQueryScan (query.Meter).
const (
	DefaultMaxQueryScan       = 10000
	DefaultQueryScanPerSecond = 50000
)

var errQueryBudget = errors.New("core: the app's conversation-query budget is spent, retry later")

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
// so a query cannot probe it either. Queries are bounded (package query:
// the where and sort bounds, the regex input, the per-app budget).
func (c *Core) convQuery(ctx context.Context, r *request) (*lcpb.GenericCommand, error) {
	cm := r.cmd.ConvMessage
	rows := []map[string]any{}
	if len(cm.TempConvIds) == 0 {
		where, keys, err := c.parseQuery(cm)
		if err != nil {
			return nil, err
		}
		limit := int(cm.GetLimit())
		if cm.Limit == nil || limit <= 0 {
			limit = defaultQueryLimit
		}
		if !r.part { // a router's part returns skip+limit rows for it to merge (router.go)
			limit = min(limit, maxQueryLimit)
		}
		skip := max(int(cm.GetSkip()), 0)
		// A router's part: the router admits and charges the whole query
		// against the app's budget, and caps what all shards examined.
		if !r.part && !c.queries.Admit(r.app, c.now()) {
			c.queries.Refuse(query.RefusedBudget)
			return nil, fmt.Errorf("%w: %w", errQueryFailed, errQueryBudget)
		}
		q := &queryRun{c: c, app: r.app, peer: r.peer, admin: isAdmin(ctx), where: query.Matcher{Where: where}}
		err = q.scan(func(row map[string]any) { rows = append(rows, row) })
		r.examined = q.examined
		if !r.part {
			c.queries.Charge(r.app, q.examined, c.now())
		}
		if err != nil {
			return nil, err
		}
		query.Sort(rows, keys)
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

// parseQuery checks a conv/query's where clause and sort against their
// bounds (package query), counting a refusal.
func (c *Core) parseQuery(cm *lcpb.ConvCommand) (map[string]any, []query.SortKey, error) {
	var where map[string]any
	if w := cm.GetWhere().GetData(); strings.TrimSpace(w) != "" {
		if len(w) > query.MaxWhereBytes {
			c.queries.Refuse(query.RefusedWhere)
			return nil, nil, fmt.Errorf("%w: where over %d bytes", errQueryFailed, query.MaxWhereBytes)
		}
		var err error
		if where, err = query.Decode([]byte(w)); err != nil {
			return nil, nil, fmt.Errorf("%w: where: %v", errQueryFailed, err)
		}
		if err := query.Check(where); err != nil {
			c.queries.Refuse(query.RefusedWhere)
			return nil, nil, fmt.Errorf("%w: %v", errQueryFailed, err)
		}
	}
	keys, err := query.ParseSort(cm.GetSort())
	if err != nil {
		c.queries.Refuse(query.RefusedWhere)
		return nil, nil, fmt.Errorf("%w: %v", errQueryFailed, err)
	}
	return where, keys, nil
}

// queryRun is one conv/query: what it matches, for whom, and what it has
// examined so far.
type queryRun struct {
	c         *Core
	app, peer string
	admin     bool          // the server API: every row whole
	where     query.Matcher // the checked where clause and its regex budget
	examined  int           // conversations read
	err       error
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
	switch v := q.where.Where["objectId"].(type) {
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
		switch v := q.where.Where["m"].(type) {
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
		q.c.queries.Refuse(query.RefusedScan)
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
	if !q.where.Match(row) {
		if err := q.where.Err(); err != nil && q.err == nil { // the regex input budget is spent
			q.c.queries.Refuse(query.RefusedScan)
			q.err = fmt.Errorf("%w: %v", errQueryFailed, err)
		}
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
	if attr, err := query.Decode(conv.Attr); err == nil {
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
