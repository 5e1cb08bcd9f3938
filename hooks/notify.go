package hooks

import (
	"context"
	"fmt"
)

// Notification hooks: LeanCloud calls them after the fact and ignores their
// reply. Each method blocks for its call (at most the per-call timeout); a
// caller runs them off the request path (the core queues them on bounded
// workers). A failed call is counted and returned, never acted on.

// ConversationStarted is the _conversationStarted event: a conversation was
// created.
type ConversationStarted struct {
	ConvID string `json:"convId"`
}

// ConversationChanged is the _conversationAdded and _conversationRemoved
// event: Members joined or were invited (added), or left or were kicked
// (removed), by InitBy (empty for the REST API).
type ConversationChanged struct {
	InitBy  string   `json:"initBy"`
	ConvID  string   `json:"convId"`
	Members []string `json:"members"`
}

// ClientOnline is the _clientOnline event: a login succeeded.
type ClientOnline struct {
	PeerID   string `json:"peerId"`
	SourceIP string `json:"sourceIP,omitempty"`
	Tag      string `json:"tag,omitempty"`
	// Reconnect is 1 when the SDK logged in again by itself (session/open
	// with r=true), 0 for a login the app asked for.
	Reconnect int `json:"reconnect"`
}

// _clientOffline close codes (LeanCloud's).
const (
	CloseLogout   = 1 // the client closed its session
	CloseDropped  = 2 // the connection was lost
	CloseConflict = 3 // a login with the same tag replaced the session
	CloseKicked   = 4 // the REST API kicked the client
)

// ClientOffline is the _clientOffline event: a session ended. SourceIP is
// absent when the connection dropped (LeanCloud's rule); ErrorCode and
// ErrorMsg say why the server dropped it, when it did (e.g. 4107
// READ_TIMEOUT).
type ClientOffline struct {
	PeerID    string `json:"peerId"`
	CloseCode int    `json:"closeCode"`
	CloseMsg  string `json:"closeMsg"`
	SourceIP  string `json:"sourceIP,omitempty"`
	Tag       string `json:"tag,omitempty"`
	ErrorCode int32  `json:"errorCode,omitempty"`
	ErrorMsg  string `json:"errorMsg,omitempty"`
}

// ConversationStarted calls _conversationStarted.
func (c *Client) ConversationStarted(ctx context.Context, appID string, ev ConversationStarted) error {
	return c.notify(ctx, appID, HookConversationStarted, ev)
}

// ConversationAdded calls _conversationAdded.
func (c *Client) ConversationAdded(ctx context.Context, appID string, ev ConversationChanged) error {
	ev.Members = nonNil(ev.Members)
	return c.notify(ctx, appID, HookConversationAdded, ev)
}

// ConversationRemoved calls _conversationRemoved.
func (c *Client) ConversationRemoved(ctx context.Context, appID string, ev ConversationChanged) error {
	ev.Members = nonNil(ev.Members)
	return c.notify(ctx, appID, HookConversationRemoved, ev)
}

// ClientOnline calls _clientOnline.
func (c *Client) ClientOnline(ctx context.Context, appID string, ev ClientOnline) error {
	return c.notify(ctx, appID, HookClientOnline, ev)
}

// ClientOffline calls _clientOffline.
func (c *Client) ClientOffline(ctx context.Context, appID string, ev ClientOffline) error {
	return c.notify(ctx, appID, HookClientOffline, ev)
}

// notify makes one call whose reply is ignored: any 2xx is a success,
// whatever its body (a LeanEngine function may return anything).
func (c *Client) notify(ctx context.Context, appID, hook string, ev any) error {
	url := c.url(appID, hook)
	if url == "" {
		return nil
	}
	c.stats[hook].calls.Add(1)
	status, data, err := c.post(ctx, appID, hook, url, ev)
	if err == nil && (status < 200 || status > 299) {
		err = fmt.Errorf("%w %d: %.200s", ErrStatus, status, data)
	}
	if err != nil {
		return c.failed(appID, hook, err)
	}
	return nil
}
