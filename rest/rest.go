package rest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/apps"
	"github.com/relaymesh/relaymesh/proto/lcpb"
	"github.com/relaymesh/relaymesh/proto/meshpb"
)

// Backend runs ADMIN requests on the shard leader; the edge's core link
// (cluster) satisfies it, as it satisfies edge.Backend.
type Backend interface {
	Do(ctx context.Context, req *meshpb.ClientRequest) (*meshpb.ClientReply, error)
}

// TokenVerifier checks a session token (the st an edge issued at
// session/open) and returns the app and clientId it was issued to.
type TokenVerifier func(st string) (appID, clientID string, gen uint64, err error)

// Limits bound the REST API. Zero fields take the defaults shown.
type Limits struct {
	// SendsPerSecond is the rate at which each app's message operations
	// (send, edit, recall) are admitted. Default 50; negative: unlimited.
	SendsPerSecond float64
	// SendQueue is how many of an app's message operations may wait for
	// their turn; one more gets 429. Default 10000.
	SendQueue int
	// MaxBodyBytes bounds a request body. Default 64 KiB.
	MaxBodyBytes int64
	// MaxMessageBytes bounds message plus push_data of a send or edit.
	// Default 5120 (LeanCloud's 5 KB).
	MaxMessageBytes int
	// Timeout bounds one backend call. Default 10 s.
	Timeout time.Duration
	// BroadcastsPerDay bounds each app's system-conversation broadcasts
	// per UTC day (service.go). Default 30; negative: unlimited.
	BroadcastsPerDay int
	// SignMaxAge bounds how far an X-LC-Sign timestamp may be from now,
	// in the past or the future (auth.go). Default 15 minutes; negative:
	// unchecked.
	SignMaxAge time.Duration

	// Login signatures for app users (usersign.go): each app's requests per
	// second (default 50) and user-store calls running at once (default
	// 16); over either, 429 at once. Negative: unlimited.
	SignsPerSecond float64
	SignsInFlight  int
}

// DefaultLimits are LeanCloud's documented figures.
var DefaultLimits = Limits{
	SendsPerSecond:  50,
	SendQueue:       10000,
	MaxBodyBytes:    64 << 10,
	MaxMessageBytes: 5 << 10,
	Timeout:         10 * time.Second,

	BroadcastsPerDay: 30,
	SignMaxAge:       15 * time.Minute,

	SignsPerSecond: 50,
	SignsInFlight:  16,
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits
	if l.SendsPerSecond == 0 {
		l.SendsPerSecond = d.SendsPerSecond
	}
	if l.SendQueue <= 0 {
		l.SendQueue = d.SendQueue
	}
	if l.MaxBodyBytes <= 0 {
		l.MaxBodyBytes = d.MaxBodyBytes
	}
	if l.MaxMessageBytes <= 0 {
		l.MaxMessageBytes = d.MaxMessageBytes
	}
	if l.Timeout <= 0 {
		l.Timeout = d.Timeout
	}
	if l.BroadcastsPerDay == 0 {
		l.BroadcastsPerDay = d.BroadcastsPerDay
	}
	if l.SignMaxAge == 0 {
		l.SignMaxAge = d.SignMaxAge
	}
	if l.SignsPerSecond == 0 {
		l.SignsPerSecond = d.SignsPerSecond
	}
	if l.SignsInFlight == 0 {
		l.SignsInFlight = d.SignsInFlight
	}
	return l
}

// Config configures a Handler.
type Config struct {
	Backend Backend
	Apps    *apps.Registry // default: apps.NewDev()
	// VerifyToken checks X-LC-IM-Session-Token; nil refuses every token.
	VerifyToken TokenVerifier
	Limits      Limits
	Logger      *slog.Logger
	Now         func() time.Time // default time.Now
	// Users is the apps' user stores and _rtmClientSign hooks, for the
	// login-signature endpoints (usersign.go); nil signs for nobody.
	Users UserStore
}

// Handler serves the REST API. Mount it at /1.1/ and /1.2/.
type Handler struct {
	cfg    Config
	limits Limits
	log    *slog.Logger
	queue  *sendQueue
	signs  signLimiter // usersign.go
	mux    *http.ServeMux
}

// New returns a Handler; it starts no goroutines.
func New(cfg Config) *Handler {
	if cfg.Apps == nil {
		cfg.Apps = apps.NewDev()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	h := &Handler{cfg: cfg, limits: cfg.Limits.withDefaults(), log: cfg.Logger}
	h.queue = newSendQueue(h.limits.SendsPerSecond, h.limits.SendQueue)
	h.routes()
	return h
}

// access is what a route requires of the caller.
type access int

const (
	masterKey    access = iota // X-LC-Key: <masterKey>,master (or the sign)
	appKey                     // the app key or the master key
	sessionToken               // X-LC-IM-Session-Token of the app, or the master key
)

// call is one authenticated request.
type call struct {
	w      http.ResponseWriter
	r      *http.Request
	app    string
	master bool
	client string // sessionToken routes: the token's clientId ("" with the master key)
	// stGen: sessionToken routes, the token's generation; the core refuses
	// the request (4112 → 401) when a kick or logout retired it (do).
	stGen uint64
}

func (h *Handler) routes() {
	m := http.NewServeMux()
	h.mux = m
	handle := func(pattern string, need access, fn func(*call) *apiError) {
		m.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			c, aerr := h.admit(w, r, need)
			if aerr == nil {
				aerr = fn(c)
			}
			if aerr != nil {
				writeError(w, aerr)
			}
		})
	}
	for _, kind := range []string{"conversations", "chatrooms"} {
		tr := kind == "chatrooms"
		base := "/1.2/rtm/" + kind
		handle("POST "+base, masterKey, func(c *call) *apiError { return h.createConv(c, tr) })
		handle("GET "+base, masterKey, func(c *call) *apiError { return h.queryConvs(c, &tr) })
		handle("GET "+base+"/{cid}", masterKey, h.getConv)
		handle("PUT "+base+"/{cid}", masterKey, h.updateConv)
		handle("DELETE "+base+"/{cid}", masterKey, h.deleteConv)
		handle("POST "+base+"/{cid}/members", masterKey, func(c *call) *apiError { return h.members(c, true) })
		handle("DELETE "+base+"/{cid}/members", masterKey, func(c *call) *apiError { return h.members(c, false) })
		handle("GET "+base+"/{cid}/members", masterKey, h.listMembers)
		handle("POST "+base+"/{cid}/messages", masterKey, h.sendMessage)
		handle("GET "+base+"/{cid}/messages", masterKey, h.history)
		handle("PUT "+base+"/{cid}/messages/{mid}", masterKey, func(c *call) *apiError { return h.patchMessage(c, false) })
		handle("PUT "+base+"/{cid}/messages/{mid}/recall", masterKey, func(c *call) *apiError { return h.patchMessage(c, true) })
		handle("DELETE "+base+"/{cid}/messages/{mid}", masterKey, h.deleteMessage)
	}
	handle("POST /1.2/rtm/conversations/{cid}/mutes", masterKey, func(c *call) *apiError { return h.mutes(c, true) })
	handle("DELETE /1.2/rtm/conversations/{cid}/mutes", masterKey, func(c *call) *apiError { return h.mutes(c, false) })
	handle("GET /1.2/rtm/conversations/{cid}/mutes", masterKey, h.listMutes)
	handle("GET /1.2/rtm/all-conversations", masterKey, func(c *call) *apiError { return h.queryConvs(c, nil) })

	h.serviceRoutes(handle)    // service.go
	h.moderationRoutes(handle) // moderation.go

	h.installationRoutes(handle) // installations.go
	h.importRoutes(handle)       // import.go

	handle("POST /1.2/rtm/clients/check-online", masterKey, h.checkOnline)
	handle("GET /1.2/rtm/clients/{client}/unread-count", appKey, h.unreadCount)
	handle("POST /1.2/rtm/clients/{client}/kick", masterKey, h.kick)
	handle("GET /1.2/rtm/sensitive-words", masterKey, h.getWords) // words.go
	handle("PUT /1.2/rtm/sensitive-words", masterKey, h.putWords)
	handle("DELETE /1.2/rtm/sensitive-words", masterKey, h.deleteWords)

	handle("GET /1.1/rtm/notifications", sessionToken, h.notifications) // notif.go
	handle("POST /1.1/rtm/sign", appKey, h.signV11)                     // usersign.go
	handle("GET /1.2/rtm/clients/sign", appKey, h.signV12)
	handle("GET /1.1/classes/_ConversationMemberInfo", sessionToken, h.memberInfos)

	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, &apiError{Status: http.StatusNotFound, Code: codeNotFound,
			Msg: fmt.Sprintf("relaymesh does not serve %s %s (see docs/REST.md)", r.Method, r.URL.Path)})
	})
}

func notImplemented(what string) func(*call) *apiError {
	return func(*call) *apiError {
		return &apiError{Status: http.StatusNotImplemented, Code: codeInternal, Msg: "relaymesh does not implement " + what}
	}
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// admit authenticates r for a route needing need. The SDK's own calls
// (sessionToken) carry the app key and X-LC-IM-Session-Token: the token is
// the credential, and the app key must match too when the app has one.
func (h *Handler) admit(w http.ResponseWriter, r *http.Request, need access) (*call, *apiError) {
	who, aerr := h.authenticate(r)
	if aerr == nil && who.master {
		return &call{w: w, r: r, app: who.app.ID, master: true}, nil
	}
	switch need {
	case masterKey:
		if aerr != nil {
			return nil, aerr
		}
		return nil, errMasterOnly
	case appKey:
		if aerr != nil {
			return nil, aerr
		}
		return &call{w: w, r: r, app: who.app.ID}, nil
	}
	app, err := h.cfg.Apps.Lookup(r.Header.Get("X-LC-Id"))
	if err != nil || (aerr != nil && app.Key != "") {
		return nil, errUnauthorized
	}
	st := r.Header.Get("X-LC-IM-Session-Token")
	if st == "" || h.cfg.VerifyToken == nil {
		return nil, &apiError{Status: http.StatusUnauthorized, Code: codeUnauthorized, Msg: "Unauthorized. (X-LC-IM-Session-Token or the master key required)"}
	}
	tokApp, client, gen, err := h.cfg.VerifyToken(st)
	if err != nil || tokApp != app.ID {
		return nil, &apiError{Status: http.StatusUnauthorized, Code: codeUnauthorized, Msg: "Unauthorized. (invalid or expired X-LC-IM-Session-Token)"}
	}
	if q := r.URL.Query().Get("client_id"); q != "" && q != client {
		return nil, &apiError{Status: http.StatusUnauthorized, Code: codeUnauthorized, Msg: "Unauthorized. (client_id is not the session token's client)"}
	}
	return &call{w: w, r: r, app: app.ID, client: client, stGen: gen}, nil
}

// decode reads the JSON body into v (a struct or map).
func (h *Handler) decode(c *call, v any) *apiError {
	body, err := io.ReadAll(http.MaxBytesReader(c.w, c.r.Body, h.limits.MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return &apiError{Status: http.StatusRequestEntityTooLarge, Code: codeInternal, Msg: "request body too large"}
		}
		return errBadRequest("reading the body: %v", err)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		body = []byte("{}")
	}
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	if err := d.Decode(v); err != nil {
		return errInvalidJSON
	}
	return nil
}

// do sends an ADMIN request acting as peer and returns the core's reply;
// with cmd set it also returns the reply command.
func (h *Handler) do(c *call, peer string, a *meshpb.AdminRequest, cmd *lcpb.GenericCommand) (*meshpb.ClientReply, *lcpb.GenericCommand, *apiError) {
	req := &meshpb.ClientRequest{Kind: meshpb.ClientRequest_ADMIN, AppId: c.app, PeerId: peer, Admin: a}
	if c.client != "" { // a session token's request: the core checks it was not revoked
		req.PeerId, req.StReopen, req.StGeneration = c.client, true, c.stGen
	}
	if cmd != nil {
		b, err := proto.Marshal(cmd)
		if err != nil {
			return nil, nil, errBadRequest("encoding the command: %v", err)
		}
		req.Command = b
	}
	ctx, cancel := context.WithTimeout(c.r.Context(), h.limits.Timeout)
	defer cancel()
	rep, err := h.cfg.Backend.Do(ctx, req)
	if err != nil {
		h.log.Warn("rest: backend", "app", c.app, "err", err)
		return nil, nil, &apiError{Status: http.StatusServiceUnavailable, Code: codeBackendFailed, Msg: "INTERNAL_ERROR: the conversation service is unavailable, retry"}
	}
	if rep.GetErrorCode() == lcpb.ErrSessionTokenExpired && c.client != "" { // a kick or logout retired the token
		return nil, nil, &apiError{Status: http.StatusUnauthorized, Code: codeUnauthorized, Msg: "Unauthorized. (the X-LC-IM-Session-Token was revoked by a kick or logout)"}
	}
	if rep.GetErrorCode() != 0 {
		return nil, nil, &apiError{Status: imStatus(rep.GetErrorCode()), Code: rep.GetErrorCode(), Msg: rep.GetErrorReason()}
	}
	if cmd == nil {
		return rep, nil, nil
	}
	if len(rep.GetCommands()) == 0 {
		return nil, nil, &apiError{Status: http.StatusInternalServerError, Code: codeBackendFailed, Msg: "INTERNAL_ERROR: empty reply"}
	}
	out := new(lcpb.GenericCommand)
	if err := proto.Unmarshal(rep.GetCommands()[0], out); err != nil {
		return nil, nil, &apiError{Status: http.StatusInternalServerError, Code: codeBackendFailed, Msg: "INTERNAL_ERROR: bad reply"}
	}
	if out.GetCmd() == lcpb.CommandType_error { // not expected from ADMIN, but never pass one as success
		e := out.GetErrorMessage()
		return nil, nil, &apiError{Status: imStatus(e.GetCode()), Code: e.GetCode(), Msg: e.GetReason()}
	}
	return rep, out, nil
}

// command runs cmd as peer with the server's authority.
func (h *Handler) command(c *call, peer string, cmd *lcpb.GenericCommand) (*lcpb.GenericCommand, *apiError) {
	_, out, aerr := h.do(c, peer, &meshpb.AdminRequest{Op: meshpb.AdminRequest_COMMAND}, cmd)
	return out, aerr
}

// waitTurn holds a message operation until the app's send queue admits it.
func (h *Handler) waitTurn(c *call) *apiError {
	wait, ok := h.queue.admit(c.app, h.cfg.Now())
	if !ok {
		return errTooMany
	}
	if wait <= 0 {
		return nil
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-c.r.Context().Done():
		return &apiError{Status: http.StatusServiceUnavailable, Code: codeBackendFailed, Msg: "request cancelled while queued"}
	}
}
