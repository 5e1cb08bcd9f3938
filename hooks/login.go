package hooks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"unicode/utf8"
)

// Logging in as an app user (POST /1.1/rtm/sign, GET /1.2/rtm/clients/sign;
// package rest). LeanCloud kept the app's users (_User) itself; relaymesh
// has no user store, so an app that wants the SDKs' createIMClient(user)
// names its own: App.UserVerifyURL.
//
// # The user store
//
// relaymesh asks it who holds a session token with
//
//	GET <user_verify_url>
//	X-LC-Session: <the user's session token>
//	X-LC-Id, X-Relaymesh-Hook: _userVerify, X-Relaymesh-Timestamp,
//	X-Relaymesh-Signature (over the empty body), X-LC-Hook-Key: as for hooks
//
// which is LeanCloud's own GET /1.1/users/me: a 2xx reply is the user, a
// JSON object with a non-empty string objectId (the clientId the user logs
// in as, at most 64 characters) and whatever else the app keeps (username,
// email, …; at most MaxUserBytes). Any 4xx reply means the token is not a
// valid session: ErrBadToken. Anything else — a 5xx, a timeout, a reply
// that is not such an object — is a failure (ErrFailed).
//
// # _rtmClientSign
//
// When the app has the hook, it gets the user JSON (with sessionToken
// set) and may refuse. LeanEngine wraps what the function returns as
// {"result": …}, so the reply is read as:
//
//	{"result": true}, {"result": null}, {} or an empty body   allow
//	{"result": false, "error": "why"}                          refuse
//	{"result": {"result": false, "error": "why"}}             refuse (a function that returned the object)
//	{"result": {…anything else}}                               allow
//	4xx with {"code": n, "error": "why"}                       refuse (a function that threw)
//
// Anything else fails and follows the app's policy (FailClosed refuses).

// StatUserVerify names the counters of the user-store calls.
const StatUserVerify = "_userVerify"

// MaxUserBytes bounds the user store's reply.
const MaxUserBytes = 64 << 10

var (
	// ErrNoUserStore: the app has no UserVerifyURL.
	ErrNoUserStore = errors.New("hooks: the app has no user store (user_verify_url)")
	// ErrBadToken: the user store does not know the session token.
	ErrBadToken = errors.New("hooks: session token not valid for the app's user store")
)

// User is an app user as its user store describes it.
type User struct {
	ObjectID string          // the clientId the user logs in as
	JSON     json.RawMessage // the store's object, sessionToken set
}

// HasUserStore reports whether appID has a user store.
func (c *Client) HasUserStore(appID string) bool {
	a, _ := c.app(appID)
	return a.UserVerifyURL != ""
}

// VerifyUser asks appID's user store who holds sessionToken.
func (c *Client) VerifyUser(ctx context.Context, appID, sessionToken string) (User, error) {
	a, _ := c.app(appID)
	url := a.UserVerifyURL
	if url == "" {
		return User{}, ErrNoUserStore
	}
	c.stats[StatUserVerify].calls.Add(1)
	status, data, err := c.send(ctx, appID, StatUserVerify, http.MethodGet, url, nil,
		http.Header{"X-Lc-Session": {sessionToken}}, MaxUserBytes)
	if err != nil {
		return User{}, c.failed(appID, StatUserVerify, err)
	}
	switch {
	case status >= 400 && status <= 499:
		return User{}, fmt.Errorf("%w (user store answered %d)", ErrBadToken, status)
	case status < 200 || status > 299:
		return User{}, c.failed(appID, StatUserVerify, fmt.Errorf("%w %d: %.200s", ErrStatus, status, data))
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data, &obj); err != nil || obj == nil {
		return User{}, c.failed(appID, StatUserVerify, fmt.Errorf("%w: the user is not a JSON object: %.200s", ErrBadReply, data))
	}
	var id string
	if err := json.Unmarshal(obj["objectId"], &id); err != nil || id == "" || !utf8.ValidString(id) || utf8.RuneCountInString(id) > 64 {
		return User{}, c.failed(appID, StatUserVerify, fmt.Errorf("%w: the user has no usable objectId: %.200s", ErrBadReply, obj["objectId"]))
	}
	tok, _ := json.Marshal(sessionToken)
	obj["sessionToken"] = tok
	out, err := json.Marshal(obj)
	if err != nil {
		return User{}, c.failed(appID, StatUserVerify, fmt.Errorf("%w: %w", ErrBadReply, err))
	}
	return User{ObjectID: id, JSON: out}, nil
}

// SignVerdict says whether a user may get a login signature. The zero
// value allows it.
type SignVerdict struct {
	Refuse bool
	Error  string // the hook's reason, or "hook failed"
}

// ClientSign calls _rtmClientSign with the user JSON. The verdict applies
// even when err is non-nil; an app without the hook gets the zero verdict.
func (c *Client) ClientSign(ctx context.Context, appID string, user json.RawMessage) (SignVerdict, error) {
	url := c.url(appID, HookClientSign)
	if url == "" {
		return SignVerdict{}, nil
	}
	c.stats[HookClientSign].calls.Add(1)
	status, data, err := c.send(ctx, appID, HookClientSign, http.MethodPost, url, user, nil, MaxReplyBytes)
	if err == nil {
		var v SignVerdict
		if v, err = signVerdict(status, data); err == nil {
			if v.Refuse {
				c.stats[HookClientSign].drops.Add(1)
			}
			return v, nil
		}
	}
	err = c.failed(appID, HookClientSign, err)
	if c.policyFor(appID) == FailClosed {
		c.stats[HookClientSign].drops.Add(1)
		return SignVerdict{Refuse: true, Error: "hook failed"}, err
	}
	return SignVerdict{}, err
}

// signVerdict reads an _rtmClientSign reply (see the table above).
func signVerdict(status int, data []byte) (SignVerdict, error) {
	data = bytes.TrimSpace(data)
	var obj struct {
		Result json.RawMessage `json:"result"`
		Error  *string         `json:"error"`
	}
	if status >= 400 && status <= 499 {
		if json.Unmarshal(data, &obj) == nil && obj.Error != nil && *obj.Error != "" {
			return SignVerdict{Refuse: true, Error: *obj.Error}, nil
		}
		return SignVerdict{}, fmt.Errorf("%w %d: %.200s", ErrStatus, status, data)
	}
	if status < 200 || status > 299 {
		return SignVerdict{}, fmt.Errorf("%w %d: %.200s", ErrStatus, status, data)
	}
	if len(data) == 0 {
		return SignVerdict{}, nil
	}
	if err := json.Unmarshal(data, &obj); err != nil || data[0] != '{' {
		return SignVerdict{}, fmt.Errorf("%w: not a JSON object: %.200s", ErrBadReply, data)
	}
	r := bytes.TrimSpace(obj.Result)
	switch {
	case len(r) == 0, bytes.Equal(r, []byte("null")), bytes.Equal(r, []byte("true")):
		return SignVerdict{}, nil
	case bytes.Equal(r, []byte("false")):
		return SignVerdict{Refuse: true, Error: deref(obj.Error)}, nil
	case r[0] == '{':
		var inner struct {
			Result *bool   `json:"result"`
			Error  *string `json:"error"`
		}
		if err := json.Unmarshal(r, &inner); err != nil {
			return SignVerdict{}, fmt.Errorf("%w: %w", ErrBadReply, err)
		}
		if inner.Result != nil && !*inner.Result {
			return SignVerdict{Refuse: true, Error: deref(inner.Error)}, nil
		}
		return SignVerdict{}, nil
	}
	return SignVerdict{}, fmt.Errorf("%w: result is neither a boolean nor an object: %.200s", ErrBadReply, r)
}

func deref(s *string) string {
	if s == nil || *s == "" {
		return "refused by _rtmClientSign"
	}
	return *s
}
