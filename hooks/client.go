package hooks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Hook names, as LeanCloud spells them.
const (
	HookMessageReceived    = "_messageReceived"
	HookMessageSent        = "_messageSent"
	HookReceiversOffline   = "_receiversOffline"
	HookConversationStart  = "_conversationStart"
	HookConversationAdd    = "_conversationAdd"
	HookConversationRemove = "_conversationRemove"
	HookConversationUpdate = "_conversationUpdate"

	// Issue 8 (notify.go, update.go, login.go).
	HookMessageUpdate       = "_messageUpdate"
	HookConversationStarted = "_conversationStarted"
	HookConversationAdded   = "_conversationAdded"
	HookConversationRemoved = "_conversationRemoved"
	HookClientOnline        = "_clientOnline"
	HookClientOffline       = "_clientOffline"
	HookClientSign          = "_rtmClientSign"
)

// Names lists every hook this package calls.
var Names = []string{
	HookMessageReceived, HookMessageSent, HookReceiversOffline,
	HookConversationStart, HookConversationAdd, HookConversationRemove, HookConversationUpdate,
	HookMessageUpdate, HookConversationStarted, HookConversationAdded, HookConversationRemoved,
	HookClientOnline, HookClientOffline, HookClientSign,
}

// LeanCloud error codes a verdict carries.
const (
	CodeMessageRejected      = 4402 // MESSAGE_REJECTED_BY_APP
	CodeConversationRejected = 4305 // CONVERSATION_REJECTED_BY_APP
	CodeUpdateRejected       = 4405 // MESSAGE_UPDATE_REJECTED_BY_APP
)

const (
	// DefaultTimeout bounds one hook call when Config.Timeout is zero.
	DefaultTimeout = 3 * time.Second
	// MaxReplyBytes bounds a hook's reply body.
	MaxReplyBytes = 1 << 20
)

var (
	// ErrFailed is wrapped by every error reporting a failed hook call.
	ErrFailed = errors.New("hooks: hook failed")
	// ErrTimeout is wrapped (with ErrFailed) when a call ran out of time.
	ErrTimeout = errors.New("hooks: hook timed out")
	// ErrBadReply is wrapped (with ErrFailed) for a reply that is not a
	// verdict object or is over MaxReplyBytes.
	ErrBadReply = errors.New("hooks: bad hook reply")
	// ErrStatus is wrapped (with ErrFailed) for a non-2xx reply.
	ErrStatus = errors.New("hooks: hook answered with an error status")
)

// Policy says what a failed blocking hook does.
type Policy uint8

const (
	// PolicyDefault in App means Config.Policy; in Config it means FailOpen.
	PolicyDefault Policy = iota
	// FailOpen proceeds as if no hook were configured.
	FailOpen
	// FailClosed drops the message or rejects the operation.
	FailClosed
)

// App is one app's hook configuration.
type App struct {
	// URLs maps a hook name to the URL it is POSTed to.
	URLs map[string]string
	// BaseURL, when set, serves every hook missing from URLs at
	// BaseURL + "/1.1/functions/" + name (LeanEngine's path).
	BaseURL string
	// MasterKey signs requests; empty sends them unsigned.
	MasterKey string
	// HookKey, when set, is sent as X-LC-Hook-Key.
	HookKey string
	// Policy for failed blocking hooks; PolicyDefault uses Config.Policy.
	Policy Policy

	// UserVerifyURL is the app's own user store (login.go): relaymesh
	// GETs it with an app user's session token to learn who the user is,
	// for POST /1.1/rtm/sign and GET /1.2/rtm/clients/sign. Empty: the
	// app has no users relaymesh can sign for.
	UserVerifyURL string
}

// Config configures a Client.
type Config struct {
	Apps       map[string]App // by appId; apps not listed have no hooks
	Timeout    time.Duration  // per call; zero means DefaultTimeout
	Policy     Policy         // default for apps; PolicyDefault means FailOpen
	HTTPClient *http.Client   // nil means a new client without its own timeout
	Now        func() time.Time
}

// Client calls hooks. It is safe for concurrent use.
type Client struct {
	mu      sync.RWMutex
	apps    map[string]App // guarded by mu (SetHooks changes it)
	timeout time.Duration
	policy  Policy
	http    *http.Client
	now     func() time.Time
	stats   map[string]*counters // by hook name; read-only after New
}

// New returns a Client for cfg. The configuration is copied.
func New(cfg Config) *Client {
	c := &Client{
		apps:    make(map[string]App, len(cfg.Apps)),
		timeout: cfg.Timeout,
		policy:  cfg.Policy,
		http:    cfg.HTTPClient,
		now:     cfg.Now,
		stats:   make(map[string]*counters, len(Names)),
	}
	for id, a := range cfg.Apps {
		urls := make(map[string]string, len(a.URLs))
		for k, v := range a.URLs {
			urls[k] = v
		}
		a.URLs = urls
		c.apps[id] = a
	}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	if c.policy == PolicyDefault {
		c.policy = FailOpen
	}
	if c.http == nil {
		c.http = &http.Client{}
	}
	if c.now == nil {
		c.now = time.Now
	}
	for _, n := range statNames {
		c.stats[n] = new(counters)
	}
	return c
}

// app returns appID's configuration.
func (c *Client) app(appID string) (App, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	a, ok := c.apps[appID]
	return a, ok
}

// SetHooks replaces appID's hook URLs, base URL and master key (the
// catalog's settings, which `relaymesh admin app` changes); its hook key,
// policy and user store stay as configured. Empty urls and baseURL leave
// the app without hooks.
func (c *Client) SetHooks(appID string, urls map[string]string, baseURL, masterKey string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	a := c.apps[appID]
	a.URLs = make(map[string]string, len(urls))
	for k, v := range urls {
		a.URLs[k] = v
	}
	a.BaseURL, a.MasterKey = baseURL, masterKey
	c.apps[appID] = a
}

// statNames are the names counters are kept under: every hook, and
// StatUserVerify for the user-store calls (login.go).
var statNames = append(append([]string(nil), Names...), StatUserVerify)

// Enabled reports whether appID has a URL for hook, so callers can skip
// building an event nobody receives.
func (c *Client) Enabled(appID, hook string) bool {
	return c.url(appID, hook) != ""
}

func (c *Client) url(appID, hook string) string {
	a, ok := c.app(appID)
	if !ok {
		return ""
	}
	if u := a.URLs[hook]; u != "" {
		return u
	}
	if a.BaseURL != "" {
		return strings.TrimSuffix(a.BaseURL, "/") + "/1.1/functions/" + hook
	}
	return ""
}

func (c *Client) policyFor(appID string) Policy {
	if a, _ := c.app(appID); a.Policy != PolicyDefault {
		return a.Policy
	}
	return c.policy
}

// call POSTs ev to appID's hook and decodes the verdict object into reply.
// It reports whether a hook was configured; err wraps ErrFailed.
func (c *Client) call(ctx context.Context, appID, hook string, ev, reply any) (called bool, err error) {
	url := c.url(appID, hook)
	if url == "" {
		return false, nil
	}
	c.stats[hook].calls.Add(1)
	if err := c.do(ctx, appID, hook, url, ev, reply); err != nil {
		return true, c.failed(appID, hook, err)
	}
	return true, nil
}

// failed counts a failed call of hook (a timeout also as a timeout) and
// returns err wrapped in ErrFailed.
func (c *Client) failed(appID, hook string, err error) error {
	st := c.stats[hook]
	st.failures.Add(1)
	if errors.Is(err, ErrTimeout) {
		st.timeouts.Add(1)
	}
	return fmt.Errorf("%w: %s of app %s: %w", ErrFailed, hook, appID, err)
}

func (c *Client) do(ctx context.Context, appID, hook, url string, ev, reply any) error {
	status, data, err := c.post(ctx, appID, hook, url, ev)
	if err != nil {
		return err
	}
	if status < 200 || status > 299 {
		return fmt.Errorf("%w %d: %.200s", ErrStatus, status, data)
	}
	return decodeReply(data, reply)
}

// post POSTs ev as JSON to url within the per-call timeout and returns
// the reply's status and body (at most MaxReplyBytes; more is
// ErrBadReply). A transport failure or the timeout is the error.
func (c *Client) post(ctx context.Context, appID, hook, url string, ev any) (int, []byte, error) {
	body, err := json.Marshal(ev)
	if err != nil {
		return 0, nil, fmt.Errorf("encoding event: %w", err)
	}
	return c.send(ctx, appID, hook, http.MethodPost, url, body, nil, MaxReplyBytes)
}

// send makes one signed request (sign.go headers, plus extra) within the
// per-call timeout and reads at most max bytes of the reply.
func (c *Client) send(ctx context.Context, appID, hook, method, url string, body []byte, extra http.Header, max int) (int, []byte, error) {
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()

	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return 0, nil, fmt.Errorf("building request: %w", err)
	}
	a, _ := c.app(appID)
	setHeaders(req.Header, appID, a.HookKey, a.MasterKey, hook, c.now(), body) // sign.go
	for k, v := range extra {
		req.Header[k] = v
	}

	start := time.Now()
	status, data, err := c.exchange(ctx, parent, req, max)
	c.observe(hook, time.Since(start), status, err) // stats.go
	return status, data, err
}

// exchange runs req and reads at most max bytes of the reply; parent is
// the caller's context, ctx the per-call one req carries.
func (c *Client) exchange(ctx, parent context.Context, req *http.Request, max int) (int, []byte, error) {
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() == context.DeadlineExceeded && parent.Err() == nil {
			return 0, nil, fmt.Errorf("%w after %v", ErrTimeout, c.timeout)
		}
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, int64(max)+1))
	if err != nil {
		if ctx.Err() == context.DeadlineExceeded && parent.Err() == nil {
			return 0, nil, fmt.Errorf("%w after %v reading the reply", ErrTimeout, c.timeout)
		}
		return 0, nil, fmt.Errorf("reading reply: %w", err)
	}
	if len(data) > max {
		return 0, nil, fmt.Errorf("%w: over %d bytes", ErrBadReply, max)
	}
	return resp.StatusCode, data, nil
}

// decodeReply decodes a verdict object, bare or wrapped in {"result": …}.
// An empty body is the empty verdict.
func decodeReply(data []byte, reply any) error {
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data, &obj); err != nil || obj == nil {
		return fmt.Errorf("%w: not a JSON object: %.200s", ErrBadReply, data)
	}
	if r, ok := obj["result"]; ok {
		r = bytes.TrimSpace(r)
		switch {
		case bytes.Equal(r, []byte("null")):
			return nil
		case len(r) > 0 && r[0] == '{':
			data = r
		default:
			return fmt.Errorf("%w: result is not an object: %.200s", ErrBadReply, r)
		}
	}
	if err := json.Unmarshal(data, reply); err != nil {
		return fmt.Errorf("%w: %w", ErrBadReply, err)
	}
	return nil
}
