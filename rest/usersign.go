package rest

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/relaymesh/relaymesh/hooks"
)

// Logging in as an app user: POST /1.1/rtm/sign {"session_token"} (the
// SDKs' createIMClient(user): JS plugin-im.js signAVUser, Swift
// IMClient.swift getOpenSignature, Java) and GET
// /1.2/rtm/clients/sign?session_token= (the server API), both with the app
// key. relaymesh keeps no _User table: the app's user store
// (user_verify_url, hooks/login.go) says who holds the session token, the
// app's _rtmClientSign hook (when it has one) may refuse, and the answer
// is a login signature for the user's objectId:
//
//	{"signature": hex(HMAC-SHA1(masterKey, appId:clientId::timestamp:nonce)),
//	 "timestamp": <ms, a number>, "nonce": "…", "client_id": "<objectId>"}
//
// which session/open accepts (for that clientId only) when the app
// requires login signatures. Refusals, as {"code", "error"}:
//
//	400 code 1    no session_token, or one over maxSessionToken bytes
//	401 code 211  the user store does not know the token ("Could not find user.")
//	403 code 142  _rtmClientSign refused ("Cloud Code validation failed. …"), or
//	              failed under hook_policy = "fail_closed"
//	429 code 429  more than Limits.SignsPerSecond, or Limits.SignsInFlight
//	              user-store calls already running, for the app
//	501 code 1    the app has no user store, or no master key to sign with
//	502 code 1    the user store failed (timeout, 5xx, unusable reply)
//
// Every call costs the app's user store a request, so each app's calls are
// bounded by rate and concurrency; over either, the request is refused at
// once, never queued.

// maxSessionToken bounds the session token passed to the user store.
const maxSessionToken = 1024

// Codes of the sign endpoints (LeanCloud's storage API codes).
const (
	codeUserNotFound  = 211 // "Could not find user."
	codeHookRefused   = 142 // "Cloud Code validation failed."
	nonceAlphabet     = "abcdefghijklmnopqrstuvwxyz0123456789"
	signatureNonceLen = 10
)

// UserStore is the app's user store and _rtmClientSign hook;
// *hooks.Client is one.
type UserStore interface {
	HasUserStore(appID string) bool
	VerifyUser(ctx context.Context, appID, sessionToken string) (hooks.User, error)
	ClientSign(ctx context.Context, appID string, user json.RawMessage) (hooks.SignVerdict, error)
}

// POST /1.1/rtm/sign {"session_token"}.
func (h *Handler) signV11(c *call) *apiError {
	var body struct {
		SessionToken string `json:"session_token"`
	}
	if aerr := h.decode(c, &body); aerr != nil {
		return aerr
	}
	return h.sign(c, body.SessionToken)
}

// GET /1.2/rtm/clients/sign?session_token=.
func (h *Handler) signV12(c *call) *apiError {
	return h.sign(c, c.r.URL.Query().Get("session_token"))
}

func (h *Handler) sign(c *call, token string) *apiError {
	if token == "" || len(token) > maxSessionToken {
		return errBadRequest("session_token is required (at most %d bytes)", maxSessionToken)
	}
	app, err := h.cfg.Apps.Lookup(c.app)
	if err != nil {
		return errUnauthorized
	}
	if h.cfg.Users == nil || !h.cfg.Users.HasUserStore(c.app) {
		return &apiError{Status: http.StatusNotImplemented, Code: codeInternal,
			Msg: "relaymesh keeps no _User table: configure the app's user store (user_verify_url, docs/OPERATIONS.md) to sign logins for app users"}
	}
	if app.MasterKey == "" {
		return &apiError{Status: http.StatusNotImplemented, Code: codeInternal,
			Msg: "the app has no master_key to sign logins with"}
	}
	release, ok := h.signs.admit(c.app, h.limits.SignsPerSecond, h.limits.SignsInFlight, h.cfg.Now())
	if !ok {
		return &apiError{Status: http.StatusTooManyRequests, Code: codeTooMany,
			Msg: "Too many requests: too many login signatures for this app at once."}
	}
	defer release()
	ctx, cancel := context.WithTimeout(c.r.Context(), h.limits.Timeout)
	defer cancel()
	user, err := h.cfg.Users.VerifyUser(ctx, c.app, token)
	switch {
	case errors.Is(err, hooks.ErrBadToken):
		return &apiError{Status: http.StatusUnauthorized, Code: codeUserNotFound, Msg: "Could not find user."}
	case err != nil:
		h.log.Warn("rest: user store", "app", c.app, "err", err)
		return &apiError{Status: http.StatusBadGateway, Code: codeInternal, Msg: "the app's user store failed; retry"}
	}
	v, _ := h.cfg.Users.ClientSign(ctx, c.app, user.JSON) // a failure is counted; the verdict applies
	if v.Refuse {
		return &apiError{Status: http.StatusForbidden, Code: codeHookRefused,
			Msg: "Cloud Code validation failed. Error detail : " + v.Error}
	}
	ts := h.cfg.Now().UnixMilli()
	nonce := newNonce()
	m := hmac.New(sha1.New, []byte(app.MasterKey))
	m.Write([]byte(app.ID + ":" + user.ObjectID + "::" + strconv.FormatInt(ts, 10) + ":" + nonce))
	writeJSON(c.w, http.StatusOK, map[string]any{
		"signature": hex.EncodeToString(m.Sum(nil)), "timestamp": ts, "nonce": nonce, "client_id": user.ObjectID,
	})
	return nil
}

func newNonce() string {
	b := make([]byte, signatureNonceLen)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = nonceAlphabet[int(b[i])%len(nonceAlphabet)]
	}
	return string(b)
}

// signLimiter bounds each app's sign requests: a token bucket of rate per
// second (burst rate) and at most inFlight running at once.
type signLimiter struct {
	mu   sync.Mutex
	apps map[string]*signBucket // guarded by mu
}

type signBucket struct {
	tokens   float64
	last     time.Time
	inFlight int
}

// admit takes a token and an in-flight slot for app, or reports false; a
// negative rate or inFlight disables that bound.
func (l *signLimiter) admit(app string, rate float64, inFlight int, now time.Time) (release func(), ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.apps == nil {
		l.apps = make(map[string]*signBucket)
	}
	b := l.apps[app]
	if b == nil {
		b = &signBucket{tokens: rate, last: now}
		l.apps[app] = b
	}
	if rate >= 0 {
		if el := now.Sub(b.last).Seconds(); el > 0 {
			b.tokens = min(rate, b.tokens+el*rate)
			b.last = now
		}
		if b.tokens < 1 {
			return nil, false
		}
	}
	if inFlight >= 0 && b.inFlight >= inFlight {
		return nil, false
	}
	if rate >= 0 {
		b.tokens--
	}
	b.inFlight++
	return func() {
		l.mu.Lock()
		b.inFlight--
		l.mu.Unlock()
	}, true
}
