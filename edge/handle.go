package edge

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"
	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/apps"
	"github.com/relaymesh/relaymesh/proto/lcpb"
	"github.com/relaymesh/relaymesh/proto/meshpb"
)

// ErrUnparseable is LeanCloud's UNPARSEABLE_RAW_MESSAGE (DOCS im-faq), sent
// as an i-less cmd:error for a frame that does not decode. lcpb does not
// list it because the JS SDK's error.js does not.
const ErrUnparseable = 4114

const (
	maxClientIDRunes = 64
	maxTagBytes      = 128
)

var (
	decodeOpts = proto.UnmarshalOptions{AllowPartial: true}
	encodeOpts = proto.MarshalOptions{AllowPartial: true}
)

// decodeFrame parses one client frame. Like the SDK's GenericCommand.decode
// it accepts base64 in a text frame on a binary subprotocol. proto2 required
// fields are not enforced (the backend validates what it uses).
func decodeFrame(codec lcpb.Codec, text bool, frame []byte) ([]byte, *lcpb.GenericCommand, error) {
	raw := frame
	if codec.Base64 || text {
		d := make([]byte, base64.StdEncoding.DecodedLen(len(frame)))
		n, err := base64.StdEncoding.Decode(d, frame)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: base64: %v", lcpb.ErrMalformed, err)
		}
		raw = d[:n]
	}
	cmd := new(lcpb.GenericCommand)
	if err := decodeOpts.Unmarshal(raw, cmd); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", lcpb.ErrMalformed, err)
	}
	return raw, cmd, nil
}

// handleFrame decodes and handles one inbound frame. It never panics on
// client input and never forwards an undecodable frame.
func (c *conn) handleFrame(ctx context.Context, text bool, frame []byte) {
	raw, cmd, err := decodeFrame(c.codec, text, frame)
	c.handleDecoded(ctx, raw, cmd, err)
}

// handleDecoded handles one inbound frame that decodeFrame decoded (or
// failed to: err).
func (c *conn) handleDecoded(ctx context.Context, raw []byte, cmd *lcpb.GenericCommand, err error) {
	if err == nil && cmd.Cmd != nil {
		if fireAndForget(cmd) {
			c.forwardAsync(ctx, raw, cmd) // batch.go
			return
		}
		if cmd.GetCmd() != lcpb.CommandType_direct {
			c.async.Wait() // what follows sees the acks and reads before it applied
		}
	}
	if err != nil {
		c.srv.metrics.MalformedFrames.Add(1)
		c.reject(nil, "", ErrUnparseable, "malformed command")
		return
	}
	if cmd.Cmd == nil {
		c.srv.metrics.MalformedFrames.Add(1)
		c.reject(cmd.I, cmd.GetPeerId(), ErrUnparseable, "missing cmd")
		return
	}
	c.srv.metrics.Command(cmd.GetCmd())
	switch cmd.GetCmd() {
	case lcpb.CommandType_login, lcpb.CommandType_logout:
		// LeanCloud Push login (Java opens every socket with it) and its
		// logout: accepted and ignored, no reply (a loggedin with
		// pushDisabled would stop the Java SDK's auto-connect). A push
		// login naming a served app counts as logging in for the login
		// deadline: a Java socket may carry push alone for a long time.
		if cmd.GetCmd() == lcpb.CommandType_login {
			if _, err := c.srv.cfg.Apps.Lookup(cmd.GetAppId()); err == nil {
				c.markLoggedIn()
			}
		}
		return
	case lcpb.CommandType_echo:
		if !c.echoes.take(c.srv.now()) {
			c.reject(cmd.I, cmd.GetPeerId(), lcpb.ErrMessageSentQuotaExceeded, "too many echo")
			return
		}
		c.reply(&lcpb.GenericCommand{Cmd: lcpb.CommandType_echo.Enum(), I: cmd.I, PeerId: cmd.PeerId})
		return
	case lcpb.CommandType_session:
		if cmd.Op == nil {
			c.srv.metrics.MalformedFrames.Add(1)
			c.reject(cmd.I, cmd.GetPeerId(), ErrUnparseable, "missing op")
			return
		}
		switch op := cmd.GetOp(); op {
		case lcpb.OpType_open, lcpb.OpType_refresh:
			if !c.sessionOps.take(c.srv.now()) {
				c.reject(cmd.I, cmd.GetPeerId(), lcpb.ErrMessageSentQuotaExceeded, "too many session/"+op.String())
				return
			}
			if op == lcpb.OpType_open {
				c.handleOpen(ctx, raw, cmd)
			} else {
				c.handleRefresh(cmd)
			}
			return
		case lcpb.OpType_close:
			c.handleClose(raw, cmd)
			return
		}
	}
	c.forward(ctx, raw, cmd)
}

// reply queues a reply frame (HIGH: replies are never shed).
func (c *conn) reply(cmd *lcpb.GenericCommand) {
	if cmd.Service == nil {
		cmd.Service = proto.Int32(lcpb.ServiceIM)
	}
	b, err := encodeOpts.Marshal(cmd)
	if err != nil {
		c.srv.log.Error("edge: encode reply", "err", err)
		return
	}
	c.enqueue(outFrame{b: b, p: PriorityHigh})
}

// reject answers request i (nil for none) with a LeanCloud error.
func (c *conn) reject(i *int32, peerID string, code int32, reason string) {
	c.srv.metrics.Reject(code)
	c.reply(lcpb.NewError(i, peerID, code, reason))
}

// sessionFor finds the session a command belongs to: the one named by its
// peerId, or the first session of the connection when it has none.
func (c *conn) sessionFor(peerID string) *session {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ss := range c.sessions {
		if peerID == "" || ss.peerID == peerID {
			return ss
		}
	}
	return nil
}

// validClientID: 1-64 characters of valid UTF-8 (LeanCloud's limit, 4103
// INVALID_LOGIN otherwise), and no ':' or control character, so no
// signature string that holds a clientId can be read two ways.
func validClientID(id string) bool {
	return id != "" && utf8.ValidString(id) && utf8.RuneCountInString(id) <= maxClientIDRunes && signedField(id)
}

// handleOpen serves session/open: a fresh login (signature checked when the
// app requires one) or a reopen with a session token (st), which any edge
// verifies without a lookup and which restores the tag.
func (c *conn) handleOpen(ctx context.Context, raw []byte, cmd *lcpb.GenericCommand) {
	s := c.srv
	sm := cmd.GetSessionMessage()
	i := cmd.I
	appID, peerID := cmd.GetAppId(), cmd.GetPeerId()
	now := s.now()
	var tag string
	var reopen *tokenClaims // the st this open presents, if any
	if st := sm.GetSt(); st != "" {
		cl, err := verifyToken(s.cfg.TokenKey, st, now)
		if err == nil && ((appID != "" && appID != cl.AppID) || (peerID != "" && peerID != cl.ClientID)) {
			err = errTokenBadMAC
		}
		if err != nil {
			c.reject(i, peerID, lcpb.ErrSessionTokenExpired, "session token invalid or expired")
			return
		}
		appID, peerID, tag = cl.AppID, cl.ClientID, cl.Tag
		reopen = &cl
	} else {
		tag = sm.GetTag()
	}
	if !validClientID(peerID) || len(tag) > maxTagBytes {
		c.reject(i, "", lcpb.ErrInvalidLogin, "clientId must be 1-64 characters without ':' or control characters")
		return
	}
	app, err := s.cfg.Apps.Lookup(appID)
	if err != nil {
		c.reject(i, peerID, lcpb.ErrAppNotAvailable, "")
		return
	}
	if sm.GetSt() == "" && app.SignatureRequired {
		if err := verifyLoginSignature(app.MasterKey, app.ID, peerID, sm.GetS(), sm.GetT(), sm.GetN(), now); err != nil {
			c.reject(i, peerID, lcpb.ErrSignatureFailed, "")
			return
		}
	}
	c.openSession(ctx, raw, cmd, app, peerID, tag, reopen)
}

func (c *conn) openSession(ctx context.Context, raw []byte, cmd *lcpb.GenericCommand, app apps.App, peerID, tag string, reopen *tokenClaims) {
	s := c.srv
	sm := cmd.GetSessionMessage()
	i := cmd.I
	// Reopening a clientId already open on this socket replaces it.
	if old := c.sessionFor(peerID); old != nil && old.peerID == peerID {
		if s.unbind(old) {
			c.closeSession(old, explicitCloseCmd) // the client is still here: not a drop
		}
	}
	c.mu.Lock()
	n := len(c.sessions)
	c.mu.Unlock()
	if n >= s.limits.MaxSessionsPerConn {
		c.reject(i, peerID, lcpb.ErrInvalidLogin, "too many clients on one connection")
		return
	}
	deviceID := sm.GetDeviceId()
	if deviceID == "" {
		deviceID = sm.GetDeviceToken()
	}
	now := s.now()
	ss := &session{
		c: c, appID: app.ID, peerID: peerID, tag: tag, deviceID: deviceID,
		configBitmap: sm.GetConfigBitmap(),
		sends:        newBucket(s.limits.SendsPerMinute, now),
		logs:         newBucket(s.limits.LogsPerMinute, now),
		ops:          newBucket(s.limits.OpsPerMinute, now),
		login:        now,
	}
	ss.chain = newChain()
	if reopen != nil {
		ss.login = reopen.Login // the chain keeps its first login's bound
		if reopen.Chain != 0 {
			ss.chain = reopen.Chain // a version 2 token had none: a new chain begins
		}
	}
	// Bind before OPEN so no delivery the core sends right after
	// registering the session is lost; they are held until opened is queued.
	s.bind(ss)
	s.goAwayIfDraining(ss) // drain.go
	req := c.request(ss, meshpb.ClientRequest_OPEN, raw)
	req.Reconnect = sm.GetR()
	req.SessionChain = ss.chain
	if reopen != nil { // the core refuses a revoked generation (core/auth.go)
		req.StReopen, req.StGeneration = true, reopen.Gen
	}
	bctx, cancel := context.WithTimeout(ctx, s.limits.BackendTimeout)
	rep, err := s.cfg.Backend.Do(bctx, req)
	cancel()
	if err != nil {
		s.unbind(ss)
		s.metrics.BackendErrors.Add(1)
		s.log.Warn("edge: backend open failed", "peer", peerID, "err", err)
		if sm.GetR() {
			// A reopen error other than 4112 ends Swift/OC sessions for
			// good; closing the socket makes them retry instead.
			c.fail(websocket.StatusTryAgainLater, "backend unavailable")
			return
		}
		c.reject(i, peerID, lcpb.ErrInternal, "")
		return
	}
	if code := rep.GetErrorCode(); code != 0 {
		s.unbind(ss)
		s.metrics.Reject(code)
		if code == lcpb.ErrSessionConflict {
			// Natives handle a refused reopen as session/closed{code}.
			c.reply(&lcpb.GenericCommand{
				Cmd: lcpb.CommandType_session.Enum(), Op: lcpb.OpType_closed.Enum(),
				I: i, PeerId: proto.String(peerID),
				SessionMessage: &lcpb.SessionCommand{Code: proto.Int32(code), Reason: proto.String(reasonOr(rep.GetErrorReason(), code))},
			})
			return
		}
		c.reply(lcpb.NewError(i, peerID, code, rep.GetErrorReason()))
		return
	}
	ss.gen = rep.GetSessionGeneration()
	st, ttl := c.issue(ss)
	c.reply(&lcpb.GenericCommand{
		Cmd: lcpb.CommandType_session.Enum(), Op: lcpb.OpType_opened.Enum(),
		I: i, PeerId: proto.String(peerID),
		ServerTs:       proto.Int64(now.UnixMilli()),
		SessionMessage: &lcpb.SessionCommand{St: proto.String(st), StTtl: proto.Int32(ttl)},
	})
	c.writeReplies(ss, rep)
	c.markReady(ss)
	c.markLoggedIn() // guard.go
}

func reasonOr(reason string, code int32) string {
	if reason != "" {
		return reason
	}
	return lcpb.ErrorName(code)
}

// issue makes a session token for ss and returns it with its ttl in
// seconds: SessionTokenTTL from now, but never past the session chain's
// login + SessionMaxAge.
func (c *conn) issue(ss *session) (string, int32) {
	now := c.srv.now()
	exp := now.Add(c.srv.limits.SessionTokenTTL)
	if bound := ss.login.Add(c.srv.limits.SessionMaxAge); bound.Before(exp) {
		exp = bound
	}
	st := issueToken(c.srv.cfg.TokenKey, tokenClaims{
		AppID: ss.appID, ClientID: ss.peerID, Tag: ss.tag, Expiry: exp, Login: ss.login, Gen: ss.gen, Chain: ss.chain,
	})
	return st, int32(max(exp.Sub(now).Round(time.Second).Seconds(), 1))
}

// handleClose serves session/close: CLOSE to the backend and a
// session/closed reply with the request's i and no code (a code would make
// the Java SDK wipe the cached session).
// explicitCloseCmd is a session/close, for CLOSE requests that end a session
// on the client's behalf without the connection dropping.
var explicitCloseCmd, _ = proto.Marshal(&lcpb.GenericCommand{Cmd: lcpb.CommandType_session.Enum(), Op: lcpb.OpType_close.Enum()})

func (c *conn) handleClose(raw []byte, cmd *lcpb.GenericCommand) {
	peerID := cmd.GetPeerId()
	if ss := c.sessionFor(peerID); ss != nil {
		peerID = ss.peerID
		if c.srv.unbind(ss) {
			c.closeSession(ss, raw) // the session/close itself: an explicit close (no will messages)
		}
	}
	out := &lcpb.GenericCommand{
		Cmd: lcpb.CommandType_session.Enum(), Op: lcpb.OpType_closed.Enum(),
		I: cmd.I, SessionMessage: &lcpb.SessionCommand{},
	}
	if peerID != "" {
		out.PeerId = proto.String(peerID)
	}
	c.reply(out)
}

// handleRefresh serves session/refresh: a new st for the bound session.
func (c *conn) handleRefresh(cmd *lcpb.GenericCommand) {
	ss := c.sessionFor(cmd.GetPeerId())
	if ss == nil {
		c.reject(cmd.I, cmd.GetPeerId(), lcpb.ErrSessionRequired, "")
		return
	}
	// A refresh cannot outlive the login the session began with.
	if !c.srv.now().Before(ss.login.Add(c.srv.limits.SessionMaxAge)) {
		c.reject(cmd.I, ss.peerID, lcpb.ErrSessionTokenExpired, "the login this session began with is older than the session's maximum age; sign in again")
		return
	}
	st, ttl := c.issue(ss)
	c.reply(&lcpb.GenericCommand{
		Cmd: lcpb.CommandType_session.Enum(), Op: lcpb.OpType_refreshed.Enum(),
		I: cmd.I, PeerId: proto.String(ss.peerID),
		SessionMessage: &lcpb.SessionCommand{St: proto.String(st), StTtl: proto.Int32(ttl)},
	})
}

// messageTooBig applies Limits.MaxMessageBytes to message content.
func (c *conn) messageTooBig(cmd *lcpb.GenericCommand) bool {
	max := c.srv.limits.MaxMessageBytes
	if max < 0 {
		return false
	}
	if d := cmd.GetDirectMessage(); d != nil {
		if len(d.GetMsg())+len(d.GetBinaryMsg())+len(d.GetPushData()) > max {
			return true
		}
	}
	for _, p := range cmd.GetPatchMessage().GetPatches() {
		if len(p.GetData())+len(p.GetBinaryMsg()) > max {
			return true
		}
	}
	return false
}

// allow applies the session's rate limits to cmd.
func (c *conn) allow(ss *session, cmd *lcpb.GenericCommand) bool {
	now := c.srv.now()
	switch cmd.GetCmd() {
	case lcpb.CommandType_direct:
		return ss.sends.take(now)
	case lcpb.CommandType_logs:
		return ss.logs.take(now)
	case lcpb.CommandType_ack, lcpb.CommandType_read, lcpb.CommandType_echo:
		return true
	}
	return ss.ops.take(now)
}

// forward sends a command of a logged-in session to the backend and queues
// its replies.
func (c *conn) forward(ctx context.Context, raw []byte, cmd *lcpb.GenericCommand) {
	ss := c.sessionFor(cmd.GetPeerId())
	if ss == nil {
		c.reject(cmd.I, cmd.GetPeerId(), lcpb.ErrSessionRequired, "")
		return
	}
	if c.admit(ss, cmd) {
		c.forwardChecked(ctx, ss, raw, cmd)
	}
}

// admit reports whether a command of ss passes the edge's own checks
// (content size, rate, conversation signature); a command refused is
// answered here.
func (c *conn) admit(ss *session, cmd *lcpb.GenericCommand) bool {
	s := c.srv
	i := cmd.I
	if c.messageTooBig(cmd) {
		c.reject(i, ss.peerID, lcpb.ErrFrameTooLong, fmt.Sprintf("message content exceeds %d bytes", s.limits.MaxMessageBytes))
		return false
	}
	if !c.allow(ss, cmd) {
		c.reject(i, ss.peerID, lcpb.ErrMessageSentQuotaExceeded, "")
		return false
	}
	if app, err := s.cfg.Apps.Lookup(ss.appID); err == nil && app.ConversationSignatureRequired {
		if op, ok := convSignature(ss.appID, ss.peerID, cmd); ok {
			if err := op.verify(app.MasterKey, s.now()); err != nil {
				c.reject(i, ss.peerID, op.code, err.Error())
				return false
			}
		}
	}
	return true
}

// forwardChecked sends a command forward checked to the backend and
// queues its replies.
func (c *conn) forwardChecked(ctx context.Context, ss *session, raw []byte, cmd *lcpb.GenericCommand) {
	if rep := c.ask(ctx, ss, c.request(ss, meshpb.ClientRequest_COMMAND, raw), cmd); rep != nil {
		c.writeReplies(ss, rep)
	}
}

// ask sends req, which carries cmds (all of one type), to the backend and
// returns its reply; when the call fails or the reply refuses the request
// it answers each of cmds here (a failed call only those with an i) and
// returns nil, as it does when the connection went meanwhile.
func (c *conn) ask(ctx context.Context, ss *session, req *meshpb.ClientRequest, cmds ...*lcpb.GenericCommand) *meshpb.ClientReply {
	s := c.srv
	bctx, cancel := context.WithTimeout(ctx, s.limits.BackendTimeout)
	t0 := time.Now()
	rep, err := s.cfg.Backend.Do(bctx, req)
	cancel()
	s.metrics.observeBackend(cmds[0].GetCmd(), time.Since(t0))
	if err != nil {
		s.metrics.BackendErrors.Add(1)
		if errors.Is(err, context.Canceled) && ctx.Err() != nil {
			return nil // connection gone
		}
		for _, cmd := range cmds {
			if cmd.I != nil {
				c.reject(cmd.I, ss.peerID, lcpb.ErrInternal, "")
			}
		}
		return nil
	}
	if code := rep.GetErrorCode(); code != 0 {
		for _, cmd := range cmds {
			c.reject(cmd.I, ss.peerID, code, rep.GetErrorReason())
		}
		return nil
	}
	return rep
}

// writeReplies queues the backend's reply commands for ss, filling peerId
// and service when the backend left them unset.
func (c *conn) writeReplies(ss *session, rep *meshpb.ClientReply) {
	for _, b := range rep.GetCommands() {
		f, ok := scanCommand(b) // pushwire.go
		if !ok || len(b) == 0 {
			c.srv.metrics.BadReplies.Add(1)
			continue
		}
		c.enqueue(outFrame{b: completeReply(b, f, ss.peerID), p: PriorityHigh})
	}
}
