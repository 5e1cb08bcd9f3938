package client

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/proto/lcpb"
)

// CreateConversation starts a conversation (conv/start) as JS
// createConversation does: m is members plus this client, deduplicated and
// sorted; attr is attrs plus "name" as JSON. With unique, an existing
// conversation with the same members is returned. It returns the cid.
func (c *Client) CreateConversation(ctx context.Context, members []string, name string, attrs map[string]any, unique bool) (string, error) {
	return c.start(ctx, members, name, attrs, unique, false)
}

// CreateChatRoom starts a transient conversation (JS createChatRoom).
func (c *Client) CreateChatRoom(ctx context.Context, name string, attrs map[string]any) (string, error) {
	return c.start(ctx, nil, name, attrs, false, true)
}

func (c *Client) start(ctx context.Context, members []string, name string, attrs map[string]any, unique, transient bool) (string, error) {
	m := slices.Sorted(maps.Keys(setOf(append(slices.Clone(members), c.opts.ClientID))))
	attr := maps.Clone(attrs)
	if attr == nil {
		attr = map[string]any{}
	}
	if name != "" {
		attr["name"] = name
	}
	js, err := json.Marshal(attr)
	if err != nil {
		return "", fmt.Errorf("client: conversation attributes: %w", err)
	}
	cm := &lcpb.ConvCommand{M: m, Attr: &lcpb.JsonObjectMessage{Data: proto.String(string(js))}}
	if unique {
		cm.Unique = proto.Bool(true)
	}
	if transient {
		cm.Transient, cm.Unique, cm.TempConv = proto.Bool(true), proto.Bool(false), proto.Bool(false)
	}
	if err := c.signConv(ctx, cm, "", m, "create"); err != nil {
		return "", err
	}
	r, err := c.convRequest(ctx, lcpb.OpType_start, cm)
	if err != nil {
		return "", err
	}
	cid := r.GetConvMessage().GetCid()
	if cid == "" {
		return "", fmt.Errorf("%w: conv/start reply without cid", ErrProtocol)
	}
	return cid, nil
}

func setOf(ids []string) map[string]struct{} {
	s := make(map[string]struct{}, len(ids))
	for _, id := range ids {
		s[id] = struct{}{}
	}
	return s
}

// QueryConversations runs conv/query: where is the LeanCloud query object
// (nil = all), sort e.g. "-lm", limit/skip 0 = server default. It returns
// the _Conversation rows as decoded JSON.
func (c *Client) QueryConversations(ctx context.Context, where map[string]any, sort string, limit, skip int) ([]map[string]any, error) {
	if where == nil {
		where = map[string]any{}
	}
	js, err := json.Marshal(where)
	if err != nil {
		return nil, fmt.Errorf("client: query where: %w", err)
	}
	cm := &lcpb.ConvCommand{Where: &lcpb.JsonObjectMessage{Data: proto.String(string(js))}, Flag: proto.Int32(0)}
	if sort != "" {
		cm.Sort = proto.String(sort)
	}
	if limit > 0 {
		cm.Limit = proto.Int32(int32(limit))
	}
	if skip > 0 {
		cm.Skip = proto.Int32(int32(skip))
	}
	r, err := c.convRequest(ctx, lcpb.OpType_query, cm)
	if err != nil {
		return nil, err
	}
	var rows []map[string]any
	data := r.GetConvMessage().GetResults().GetData()
	if data == "" {
		return nil, nil
	}
	if err := json.Unmarshal([]byte(data), &rows); err != nil {
		return nil, fmt.Errorf("%w: conv/query results: %v", ErrProtocol, err)
	}
	return rows, nil
}

// MembersResult is the partial success of AddMembers/RemoveMembers.
type MembersResult struct {
	Allowed []string
	Failed  []*Error // each with the Pids it failed for
}

// Join adds this client to cid (conv/add of self).
func (c *Client) Join(ctx context.Context, cid string) error {
	return firstFailure(c.members(ctx, lcpb.OpType_add, cid, []string{c.opts.ClientID}))
}

// Quit removes this client from cid (conv/remove of self).
func (c *Client) Quit(ctx context.Context, cid string) error {
	return firstFailure(c.members(ctx, lcpb.OpType_remove, cid, []string{c.opts.ClientID}))
}

// AddMembers invites ids to cid (conv/add).
func (c *Client) AddMembers(ctx context.Context, cid string, ids []string) (MembersResult, error) {
	return c.members(ctx, lcpb.OpType_add, cid, ids)
}

// RemoveMembers removes ids from cid (conv/remove).
func (c *Client) RemoveMembers(ctx context.Context, cid string, ids []string) (MembersResult, error) {
	return c.members(ctx, lcpb.OpType_remove, cid, ids)
}

func firstFailure(r MembersResult, err error) error {
	if err != nil {
		return err
	}
	if len(r.Failed) > 0 {
		return r.Failed[0]
	}
	return nil
}

func (c *Client) members(ctx context.Context, op lcpb.OpType, cid string, ids []string) (MembersResult, error) {
	cm := &lcpb.ConvCommand{Cid: proto.String(cid), M: ids}
	action := "add"
	if op == lcpb.OpType_remove {
		action = "remove"
	}
	if err := c.signConv(ctx, cm, cid, slices.Sorted(slices.Values(ids)), action); err != nil {
		return MembersResult{}, err
	}
	r, err := c.convRequest(ctx, op, cm)
	if err != nil {
		return MembersResult{}, err
	}
	res := MembersResult{Allowed: r.GetConvMessage().GetAllowedPids()}
	for _, f := range r.GetConvMessage().GetFailedPids() {
		res.Failed = append(res.Failed, errorFromCommand(f))
	}
	return res, nil
}

// UpdateConversation sets attributes of cid (conv/update{attr}); keys are
// as in JS ("name", "attr.color", ...).
func (c *Client) UpdateConversation(ctx context.Context, cid string, attr map[string]any) error {
	js, err := json.Marshal(attr)
	if err != nil {
		return fmt.Errorf("client: conversation attributes: %w", err)
	}
	_, err = c.convRequest(ctx, lcpb.OpType_update, &lcpb.ConvCommand{
		Cid: proto.String(cid), Attr: &lcpb.JsonObjectMessage{Data: proto.String(string(js))},
	})
	return err
}

// Count returns the member count of cid (for chat rooms: online members).
func (c *Client) Count(ctx context.Context, cid string) (int, error) {
	r, err := c.convRequest(ctx, lcpb.OpType_count, &lcpb.ConvCommand{Cid: proto.String(cid)})
	if err != nil {
		return 0, err
	}
	return int(r.GetConvMessage().GetCount()), nil
}

func (c *Client) convRequest(ctx context.Context, op lcpb.OpType, cm *lcpb.ConvCommand) (*lcpb.GenericCommand, error) {
	r, err := c.Request(ctx, &lcpb.GenericCommand{Cmd: lcpb.CommandType_conv.Enum(), Op: op.Enum(), ConvMessage: cm})
	if err != nil {
		return nil, fmt.Errorf("client: conv/%v %s: %w", op, cm.GetCid(), err)
	}
	return r, nil
}

func (c *Client) signConv(ctx context.Context, cm *lcpb.ConvCommand, cid string, sorted []string, action string) error {
	if c.opts.ConvSignature == nil {
		return nil
	}
	s, t, n, err := c.opts.ConvSignature(ctx, cid, c.opts.ClientID, sorted, action)
	if err != nil {
		return fmt.Errorf("client: conversation signature: %w", err)
	}
	cm.S, cm.T, cm.N = proto.String(s), proto.Int64(t), proto.String(n)
	return nil
}
