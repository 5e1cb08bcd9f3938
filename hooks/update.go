package hooks

import "context"

// MessageUpdate is the _messageUpdate event: a client (or the REST API)
// edits or recalls a message, before the change is applied. Content is the
// new content (base64 when Bin); on a recall it is empty and Recall is set.
// Timestamp is the message's own timestamp (ms).
type MessageUpdate struct {
	FromPeer  string   `json:"fromPeer"`
	ConvID    string   `json:"convId"`
	ToPeers   []string `json:"toPeers"` // the members but the sender
	Bin       bool     `json:"bin"`
	Content   string   `json:"content"`
	Timestamp int64    `json:"timestamp"`
	MsgID     string   `json:"msgId"`
	SourceIP  string   `json:"sourceIP,omitempty"`
	Recall    bool     `json:"recall"`
	System    bool     `json:"system"`
}

// MessageUpdate calls _messageUpdate. Its reply is read as
// _messageReceived's: drop (with code and detail) refuses the change with
// CodeUpdateRejected (4405), content and bin replace the edit's, toPeers
// narrows who is told. A failed call follows the app's policy; the verdict
// applies even when err is non-nil.
func (c *Client) MessageUpdate(ctx context.Context, appID string, ev MessageUpdate) (MessageVerdict, error) {
	ev.ToPeers = nonNil(ev.ToPeers)
	return c.message(ctx, appID, HookMessageUpdate, CodeUpdateRejected, ev)
}
