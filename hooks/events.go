package hooks

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
)

// MessageReceived is the _messageReceived event.
type MessageReceived struct {
	FromPeer  string   `json:"fromPeer"`
	ConvID    string   `json:"convId"`
	ToPeers   []string `json:"toPeers"` // recipients after expanding the group
	Transient bool     `json:"transient"`
	Bin       bool     `json:"bin"`
	Content   string   `json:"content"` // base64 when Bin
	Receipt   bool     `json:"receipt"`
	Timestamp int64    `json:"timestamp"` // ms
	System    bool     `json:"system"`
	SourceIP  string   `json:"sourceIP,omitempty"`
}

// MessageVerdict is what to do with a received message. The zero value
// delivers it unchanged.
type MessageVerdict struct {
	Drop    bool     // refuse the message with Code
	Code    int32    // LeanCloud code for the sender when Drop: CodeMessageRejected (CodeUpdateRejected for an edit)
	AppCode int32    // the hook's own code, sent as appCode
	Detail  string   // the hook's detail, sent as appMsg
	Content *string  // replacement content; nil keeps it
	Bin     *bool    // replacement bin flag; nil keeps it
	ToPeers []string // replacement recipients; nil keeps them, empty delivers to none
}

type messageReply struct {
	Drop    bool     `json:"drop"`
	Code    int32    `json:"code"`
	Detail  string   `json:"detail"`
	Content *string  `json:"content"`
	Bin     *bool    `json:"bin"`
	ToPeers []string `json:"toPeers"`
}

// MessageReceived calls _messageReceived. The verdict applies even when err
// is non-nil (see the package documentation).
func (c *Client) MessageReceived(ctx context.Context, appID string, ev MessageReceived) (MessageVerdict, error) {
	ev.ToPeers = nonNil(ev.ToPeers)
	return c.message(ctx, appID, HookMessageReceived, CodeMessageRejected, ev)
}

// message runs a blocking message hook (_messageReceived, _messageUpdate)
// whose drop is refused with code.
func (c *Client) message(ctx context.Context, appID, hook string, code int32, ev any) (MessageVerdict, error) {
	var r messageReply
	called, err := c.call(ctx, appID, hook, ev, &r)
	switch {
	case !called:
		return MessageVerdict{}, nil
	case err != nil:
		if c.policyFor(appID) == FailClosed {
			c.stats[hook].drops.Add(1)
			return MessageVerdict{Drop: true, Code: code, Detail: "hook failed"}, err
		}
		return MessageVerdict{}, err
	case r.Drop:
		c.stats[hook].drops.Add(1)
		return MessageVerdict{Drop: true, Code: code, AppCode: r.Code, Detail: r.Detail}, nil
	}
	return MessageVerdict{Content: r.Content, Bin: r.Bin, ToPeers: r.ToPeers}, nil
}

// MessageSent is the _messageSent event.
type MessageSent struct {
	FromPeer     string   `json:"fromPeer"`
	ConvID       string   `json:"convId"`
	MsgID        string   `json:"msgId"`
	OnlinePeers  []string `json:"onlinePeers"`
	OfflinePeers []string `json:"offlinePeers"`
	Transient    bool     `json:"transient"`
	System       bool     `json:"system"`
	Bin          bool     `json:"bin"`
	Content      string   `json:"content"`
	Receipt      bool     `json:"receipt"`
	Timestamp    int64    `json:"timestamp"` // ms
	SourceIP     string   `json:"sourceIP,omitempty"`
}

// MessageSent calls _messageSent, whose reply LeanCloud ignores. It blocks
// for the call; run it off the delivery path.
func (c *Client) MessageSent(ctx context.Context, appID string, ev MessageSent) error {
	ev.OnlinePeers, ev.OfflinePeers = nonNil(ev.OnlinePeers), nonNil(ev.OfflinePeers)
	var ignored map[string]any
	_, err := c.call(ctx, appID, HookMessageSent, ev, &ignored)
	return err
}

// ReceiversOffline is the _receiversOffline event. It is never sent for
// chatrooms.
type ReceiversOffline struct {
	FromPeer            string   `json:"fromPeer"`
	ConvID              string   `json:"convId"`
	OfflinePeers        []string `json:"offlinePeers"`
	Content             string   `json:"content"`
	Timestamp           int64    `json:"timestamp"` // ms
	MentionAll          bool     `json:"mentionAll"`
	MentionOfflinePeers []string `json:"mentionOfflinePeers"` // empty when MentionAll
}

// OfflineVerdict is what to push to offline receivers. The zero value pushes
// the default content to every offline receiver.
type OfflineVerdict struct {
	Skip         bool     // push nothing
	OfflinePeers []string // replacement receivers; nil keeps them
	// PushMessage is the push payload, a JSON object, or nil for the
	// default. The hook may answer an object or a string: a string holding
	// a JSON object is that object, any other string becomes
	// {"alert": string}.
	PushMessage json.RawMessage
	Force       bool // push even to receivers who muted the conversation
}

type offlineReply struct {
	Skip         bool            `json:"skip"`
	OfflinePeers []string        `json:"offlinePeers"`
	PushMessage  json.RawMessage `json:"pushMessage"`
	Force        bool            `json:"force"`
}

// ReceiversOffline calls _receiversOffline. It always fails open: on error
// the verdict is the zero value.
func (c *Client) ReceiversOffline(ctx context.Context, appID string, ev ReceiversOffline) (OfflineVerdict, error) {
	ev.OfflinePeers, ev.MentionOfflinePeers = nonNil(ev.OfflinePeers), nonNil(ev.MentionOfflinePeers)
	var r offlineReply
	if called, err := c.call(ctx, appID, HookReceiversOffline, ev, &r); !called || err != nil {
		return OfflineVerdict{}, err
	}
	push, err := normalizePush(r.PushMessage)
	if err != nil {
		c.stats[HookReceiversOffline].failures.Add(1)
		return OfflineVerdict{}, fmt.Errorf("%w: %s of app %s: %w", ErrFailed, HookReceiversOffline, appID, err)
	}
	return OfflineVerdict{Skip: r.Skip, OfflinePeers: r.OfflinePeers, PushMessage: push, Force: r.Force}, nil
}

// normalizePush turns a pushMessage into a JSON object, or nil when absent.
func normalizePush(raw json.RawMessage) (json.RawMessage, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, nil
	}
	switch raw[0] {
	case '{':
		return raw, nil
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, fmt.Errorf("%w: pushMessage: %w", ErrBadReply, err)
		}
		var obj map[string]json.RawMessage
		if b := bytes.TrimSpace([]byte(s)); len(b) > 0 && b[0] == '{' && json.Unmarshal(b, &obj) == nil {
			return b, nil
		}
		return json.Marshal(map[string]string{"alert": s})
	}
	return nil, fmt.Errorf("%w: pushMessage is neither an object nor a string: %.100s", ErrBadReply, raw)
}

// ConversationStart is the _conversationStart event.
type ConversationStart struct {
	InitBy  string          `json:"initBy"`
	Members []string        `json:"members"`
	Attr    json.RawMessage `json:"attr"` // a JSON object; nil sends {}
}

// ConversationMembers is the _conversationAdd and _conversationRemove event.
// For a self-join InitBy equals Members[0].
type ConversationMembers struct {
	InitBy  string   `json:"initBy"`
	Members []string `json:"members"`
	ConvID  string   `json:"convId"`
}

// ConversationUpdate is the _conversationUpdate event: either Mute or Attr
// is set.
type ConversationUpdate struct {
	InitBy string          `json:"initBy"`
	ConvID string          `json:"convId"`
	Mute   *bool           `json:"mute,omitempty"`
	Attr   json.RawMessage `json:"attr,omitempty"` // a JSON object
}

// ConversationVerdict says whether a conversation operation may proceed. The
// zero value lets it.
type ConversationVerdict struct {
	Reject  bool   // refuse the operation with Code
	Code    int32  // LeanCloud code for the client when Reject: CodeConversationRejected
	AppCode int32  // the hook's own code
	Detail  string // the hook's detail
}

// UpdateVerdict is the verdict of _conversationUpdate. A replacement is of
// the same kind as the request (Attr for an attribute change, Mute for a
// mute change); the other is nil.
type UpdateVerdict struct {
	ConversationVerdict
	Attr json.RawMessage // replacement attributes (a JSON object); nil keeps them
	Mute *bool           // replacement mute flag; nil keeps it
}

type conversationReply struct {
	Reject bool            `json:"reject"`
	Code   int32           `json:"code"`
	Detail string          `json:"detail"`
	Attr   json.RawMessage `json:"attr"`
	Mute   *bool           `json:"mute"`
}

// ConversationStart calls _conversationStart. The verdict applies even when
// err is non-nil.
func (c *Client) ConversationStart(ctx context.Context, appID string, ev ConversationStart) (ConversationVerdict, error) {
	ev.Members = nonNil(ev.Members)
	if len(ev.Attr) == 0 {
		ev.Attr = json.RawMessage("{}")
	}
	v, _, err := c.conversation(ctx, appID, HookConversationStart, ev)
	return v, err
}

// ConversationAdd calls _conversationAdd before members join or are
// invited. The verdict applies even when err is non-nil.
func (c *Client) ConversationAdd(ctx context.Context, appID string, ev ConversationMembers) (ConversationVerdict, error) {
	ev.Members = nonNil(ev.Members)
	v, _, err := c.conversation(ctx, appID, HookConversationAdd, ev)
	return v, err
}

// ConversationRemove calls _conversationRemove before members are kicked
// (not when they quit). The verdict applies even when err is non-nil.
func (c *Client) ConversationRemove(ctx context.Context, appID string, ev ConversationMembers) (ConversationVerdict, error) {
	ev.Members = nonNil(ev.Members)
	v, _, err := c.conversation(ctx, appID, HookConversationRemove, ev)
	return v, err
}

// ConversationUpdate calls _conversationUpdate. The verdict applies even
// when err is non-nil.
func (c *Client) ConversationUpdate(ctx context.Context, appID string, ev ConversationUpdate) (UpdateVerdict, error) {
	v, r, err := c.conversation(ctx, appID, HookConversationUpdate, ev)
	out := UpdateVerdict{ConversationVerdict: v}
	if err != nil || v.Reject {
		return out, err
	}
	switch {
	case ev.Mute != nil:
		out.Mute = r.Mute
	case len(r.Attr) > 0 && !bytes.Equal(bytes.TrimSpace(r.Attr), []byte("null")):
		if bytes.TrimSpace(r.Attr)[0] != '{' {
			c.stats[HookConversationUpdate].failures.Add(1)
			err := fmt.Errorf("%w: %s of app %s: %w: attr is not an object", ErrFailed, HookConversationUpdate, appID, ErrBadReply)
			return c.updateFailed(appID), err
		}
		out.Attr = r.Attr
	}
	return out, nil
}

func (c *Client) updateFailed(appID string) UpdateVerdict {
	if c.policyFor(appID) == FailClosed {
		c.stats[HookConversationUpdate].drops.Add(1)
		return UpdateVerdict{ConversationVerdict: ConversationVerdict{Reject: true, Code: CodeConversationRejected, Detail: "hook failed"}}
	}
	return UpdateVerdict{}
}

// conversation runs one of the blocking conversation hooks.
func (c *Client) conversation(ctx context.Context, appID, hook string, ev any) (ConversationVerdict, conversationReply, error) {
	var r conversationReply
	called, err := c.call(ctx, appID, hook, ev, &r)
	switch {
	case !called:
		return ConversationVerdict{}, r, nil
	case err != nil:
		if c.policyFor(appID) == FailClosed {
			c.stats[hook].drops.Add(1)
			return ConversationVerdict{Reject: true, Code: CodeConversationRejected, Detail: "hook failed"}, r, err
		}
		return ConversationVerdict{}, r, err
	case r.Reject:
		c.stats[hook].drops.Add(1)
		return ConversationVerdict{Reject: true, Code: CodeConversationRejected, AppCode: r.Code, Detail: r.Detail}, r, nil
	}
	return ConversationVerdict{}, r, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
