package loadtest

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/relaymesh/relaymesh/client"
)

// The Centrifugo client mode (Config.Peer = PeerCentrifugo) measures a
// peer server with the same harness: the same sessions, scenarios
// (connect and chatroom), ledger, payload and timestamps, so the figures
// of both servers compare. A session speaks Centrifugo's JSON client
// protocol over WebSocket (github.com/centrifugal/protocol, as
// centrifuge v0.38 / Centrifugo v6 serve it):
//
//   - a WebSocket message carries one or more JSON objects, one a line;
//   - the client connects with {"id":1,"connect":{"token":"JWT"}} (no token
//     when the server runs with client.insecure) and gets
//     {"id":1,"connect":{"client":..,"ping":25,"pong":true}};
//   - it subscribes with {"id":2,"subscribe":{"channel":"room"}} and gets
//     {"id":2,"subscribe":{}} (or {"id":2,"error":{"code":..,"message":..}});
//   - publications arrive as {"push":{"channel":"room","pub":{"data":{..}}}};
//   - the server pings with {} and, when the connect result said
//     "pong":true, the client answers {}.
//
// A chatroom message is published through the server HTTP API (POST
// <api>/publish with X-API-Key, {"channel":..,"data":{"text":..}}): the
// text is the one a relaymesh chatroom message carries (ledger id, class,
// send time, padding), plus the sender's session index (" s=<i>") so the
// sending session, which is subscribed too, ignores its own copy as a
// relaymesh sender gets none. The "ack" of a Centrifugo publish is the
// API's answer; a relaymesh ack means the message is committed.

// Peers (Config.Peer).
const (
	PeerRelaymesh  = "relaymesh"
	PeerCentrifugo = "centrifugo"
)

// cfCommand is a Centrifugo client command (the fields the load tester
// uses).
type cfCommand struct {
	ID        uint32          `json:"id,omitempty"`
	Connect   *cfConnectReq   `json:"connect,omitempty"`
	Subscribe *cfSubscribeReq `json:"subscribe,omitempty"`
}

type cfConnectReq struct {
	Token string `json:"token,omitempty"`
	Name  string `json:"name,omitempty"`
}

type cfSubscribeReq struct {
	Channel string `json:"channel"`
}

// cfReply is a Centrifugo reply or push.
type cfReply struct {
	ID        uint32           `json:"id,omitempty"`
	Error     *cfError         `json:"error,omitempty"`
	Push      *cfPush          `json:"push,omitempty"`
	Connect   *cfConnectResult `json:"connect,omitempty"`
	Subscribe json.RawMessage  `json:"subscribe,omitempty"`
}

type cfError struct {
	Code    uint32 `json:"code"`
	Message string `json:"message"`
}

func (e *cfError) Error() string {
	return fmt.Sprintf("centrifugo: error %d: %s", e.Code, e.Message)
}

type cfConnectResult struct {
	Client string `json:"client"`
	Ping   uint32 `json:"ping"`
	Pong   bool   `json:"pong"`
}

type cfPush struct {
	Channel    string        `json:"channel"`
	Pub        *cfPub        `json:"pub,omitempty"`
	Disconnect *cfDisconnect `json:"disconnect,omitempty"`
}

type cfPub struct {
	Data json.RawMessage `json:"data"`
}

type cfDisconnect struct {
	Code   uint32 `json:"code"`
	Reason string `json:"reason"`
}

// cfData is a chatroom publication's data.
type cfData struct {
	Text string `json:"text"`
}

// isPing says whether r is the server's ping: an empty object.
func (r *cfReply) isPing() bool {
	return r.ID == 0 && r.Error == nil && r.Push == nil && r.Connect == nil && r.Subscribe == nil
}

// decodeCFFrame decodes the replies of one WebSocket message: JSON
// objects separated by newlines (a trailing newline is allowed). An empty
// line is not a reply; a bad line fails the frame.
func decodeCFFrame(b []byte) ([]cfReply, error) {
	var out []cfReply
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		var r cfReply
		if err := json.Unmarshal(line, &r); err != nil {
			return out, fmt.Errorf("centrifugo: bad reply %.80q: %w", line, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// cfPubText returns the chatroom text of a publication's data.
func cfPubText(data json.RawMessage) (string, bool) {
	var d cfData
	if err := json.Unmarshal(data, &d); err != nil || d.Text == "" {
		return "", false
	}
	return d.Text, true
}

// cfToken is an HS256 JWT for user sub, valid for ttl: what a
// Centrifugo application backend hands its clients
// (client.token.hmac_secret_key).
func cfToken(secret, sub string, now time.Time, ttl time.Duration) string {
	enc := base64.RawURLEncoding
	claims, _ := json.Marshal(struct {
		Sub string `json:"sub"`
		Exp int64  `json:"exp"`
	}{sub, now.Add(ttl).Unix()})
	unsigned := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc.EncodeToString(claims)
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(unsigned))
	return unsigned + "." + enc.EncodeToString(m.Sum(nil))
}

// cfConn is one Centrifugo client connection.
type cfConn struct {
	ws     *websocket.Conn
	onPub  func(channel string, data json.RawMessage)
	onGone func(reason string) // a connected connection ended other than by Close
	done   chan struct{}       // closed when the read loop exited

	wmu     sync.Mutex // one writer at a time
	nextID  atomic.Uint32
	pong    atomic.Bool
	closing atomic.Bool

	mu      sync.Mutex
	pending map[uint32]chan cfReply // guarded by mu
	err     error                   // guarded by mu; why the read loop ended
	ready   bool                    // guarded by mu; connected: its end is onGone's
}

// cfReadLimit bounds one WebSocket message from the server.
const cfReadLimit = 1 << 20

// dialCentrifugo opens a WebSocket to target and connects with token ("":
// none, the server's insecure mode). onPub gets every publication; both
// callbacks run on the connection's read goroutine.
func dialCentrifugo(ctx context.Context, target, token string, hc *http.Client,
	onPub func(channel string, data json.RawMessage), onGone func(reason string)) (*cfConn, error) {
	ws, _, err := websocket.Dial(ctx, target, &websocket.DialOptions{HTTPClient: hc})
	if err != nil {
		return nil, fmt.Errorf("centrifugo: dial %s: %w", target, err)
	}
	ws.SetReadLimit(cfReadLimit)
	c := &cfConn{ws: ws, onPub: onPub, onGone: onGone, done: make(chan struct{}), pending: make(map[uint32]chan cfReply)}
	go c.readLoop()
	r, err := c.call(ctx, cfCommand{Connect: &cfConnectReq{Token: token}})
	if err == nil && r.Connect == nil {
		err = errors.New("centrifugo: connect reply without a connect result")
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	c.pong.Store(r.Connect.Pong)
	c.mu.Lock()
	ended := c.err
	c.ready = ended == nil
	c.mu.Unlock()
	if ended != nil { // ended right after the connect reply: a failed login
		c.Close()
		return nil, ended
	}
	return c, nil
}

// subscribe subscribes to channel and waits for the server's answer.
func (c *cfConn) subscribe(ctx context.Context, channel string) error {
	_, err := c.call(ctx, cfCommand{Subscribe: &cfSubscribeReq{Channel: channel}})
	return err
}

// call sends cmd with the next id and waits for its reply.
func (c *cfConn) call(ctx context.Context, cmd cfCommand) (cfReply, error) {
	cmd.ID = c.nextID.Add(1)
	ch := make(chan cfReply, 1)
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return cfReply{}, err
	}
	c.pending[cmd.ID] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, cmd.ID)
		c.mu.Unlock()
	}()
	b, err := json.Marshal(cmd)
	if err != nil {
		return cfReply{}, err
	}
	if err := c.write(ctx, b); err != nil {
		return cfReply{}, err
	}
	select {
	case r, ok := <-ch:
		if !ok {
			return cfReply{}, c.readErr()
		}
		if r.Error != nil {
			return r, r.Error
		}
		return r, nil
	case <-ctx.Done():
		return cfReply{}, ctx.Err()
	}
}

func (c *cfConn) write(ctx context.Context, b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.ws.Write(ctx, websocket.MessageText, b)
}

func (c *cfConn) readErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		return errors.New("centrifugo: connection closed")
	}
	return c.err
}

// readLoop reads frames until the connection ends: replies go to their
// callers, publications to onPub, pings are answered.
func (c *cfConn) readLoop() {
	defer close(c.done)
	var end error
	// One buffer for every frame, as the Go SDK's reads (client/transport.go):
	// the harness's two clients read alike. decodeCFFrame copies what it keeps.
	var rb bytes.Buffer
	for {
		_, r, err := c.ws.Reader(context.Background())
		if err == nil {
			if rb.Cap() > 64<<10 {
				rb = bytes.Buffer{}
			}
			rb.Reset()
			_, err = rb.ReadFrom(r)
		}
		if err != nil {
			end = err
			break
		}
		rs, err := decodeCFFrame(rb.Bytes())
		for i := range rs {
			r := &rs[i]
			switch {
			case r.isPing():
				if c.pong.Load() {
					wctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					_ = c.write(wctx, []byte("{}"))
					cancel()
				}
			case r.Push != nil:
				if r.Push.Pub != nil && c.onPub != nil {
					c.onPub(r.Push.Channel, r.Push.Pub.Data)
				}
				if d := r.Push.Disconnect; d != nil {
					end = fmt.Errorf("centrifugo: disconnected by the server: %d %s", d.Code, d.Reason)
				}
			case r.ID != 0:
				c.mu.Lock()
				ch := c.pending[r.ID]
				c.mu.Unlock()
				if ch != nil {
					select {
					case ch <- *r:
					default:
					}
				}
			}
		}
		if err != nil {
			end = err
		}
		if end != nil {
			break
		}
	}
	if end == nil {
		end = errors.New("centrifugo: connection closed")
	}
	c.mu.Lock()
	c.err = end
	ready := c.ready
	pending := c.pending
	c.pending = map[uint32]chan cfReply{}
	c.mu.Unlock()
	for _, ch := range pending {
		close(ch)
	}
	_ = c.ws.CloseNow()
	if ready && !c.closing.Load() && c.onGone != nil {
		c.onGone(end.Error())
	}
}

// Close closes the connection and waits for the read loop.
func (c *cfConn) Close() {
	c.closing.Store(true)
	_ = c.ws.CloseNow()
	<-c.done
}

// cfAPIClient is the worker's HTTP client for the Centrifugo server API:
// kept-alive connections, unlike the sessions' dialer.
func cfAPIClient() *http.Client {
	return &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
		MaxIdleConns: 256, MaxIdleConnsPerHost: 256, IdleConnTimeout: 30 * time.Second}}
}

// cfPublish publishes data to channel through the server API at api
// (e.g. http://127.0.0.1:8000/api) with key.
func cfPublish(ctx context.Context, hc *http.Client, api, key, channel, text string) error {
	body, err := json.Marshal(struct {
		Channel string `json:"channel"`
		Data    cfData `json:"data"`
	}{channel, cfData{Text: text}})
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(api, "/")+"/publish", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("X-API-Key", key)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("centrifugo: publish: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return fmt.Errorf("centrifugo: publish: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("centrifugo: publish: HTTP %d: %.200s", resp.StatusCode, b)
	}
	var r struct {
		Error *cfError `json:"error"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return fmt.Errorf("centrifugo: publish: bad answer %.200q: %w", b, err)
	}
	if r.Error != nil {
		return r.Error
	}
	return nil
}

// cfDefaultAPI is the server API next to a WebSocket target:
// ws://host:port/connection/websocket → http://host:port/api.
func cfDefaultAPI(target string) string {
	u, err := url.Parse(target)
	if err != nil || u.Host == "" {
		return ""
	}
	scheme := "http"
	if u.Scheme == "wss" {
		scheme = "https"
	}
	return scheme + "://" + u.Host + "/api"
}

// cfChannels are the chatroom channels of a Centrifugo run: nothing is
// created, a channel exists while someone is subscribed.
func cfChannels(runID string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("lt-%s-room-%d", runID, i)
	}
	return out
}

// senderTag marks a Centrifugo chatroom text with the sending session's
// global index.
func senderTag(g int) string { return " s=" + strconv.Itoa(g) }

// parseSenderTag reads the index senderTag wrote.
func parseSenderTag(text string) (int, bool) {
	i := strings.Index(text, " s=")
	if i < 0 {
		return 0, false
	}
	rest := text[i+3:]
	n := 0
	for n < len(rest) && rest[n] >= '0' && rest[n] <= '9' {
		n++
	}
	g, err := strconv.Atoi(rest[:n])
	return g, err == nil
}

// cfLogin dials session s to Centrifugo and starts counting its
// publications as chatroom copies.
func (s *session) cfLogin(ctx context.Context) error {
	w := s.w
	token := ""
	if w.cfg.CentrifugoSecret != "" {
		token = cfToken(w.cfg.CentrifugoSecret, s.id, time.Now(), 24*time.Hour)
	}
	c, err := dialCentrifugo(ctx, s.target, token, w.http, s.onCFPub, func(string) {
		if !s.disconnected.Swap(true) {
			w.disconnected.Add(1)
		}
		s.down.Store(true)
		s.closed.Store(true)
		w.sessionsClosed.Add(1)
	})
	if err != nil {
		return err
	}
	s.cf = c
	return nil
}

// onCFPub records a publication received by a Centrifugo session: a
// chatroom copy, unless this session published it.
func (s *session) onCFPub(channel string, data json.RawMessage) {
	if s.chatRoom == "" {
		return
	}
	text, ok := cfPubText(data)
	if !ok {
		s.w.chat.unexpected.Add(1)
		return
	}
	if g, ok := parseSenderTag(text); ok && g == s.w.first+s.chatIdx {
		return
	}
	s.onChatMessage(client.Message{ConvID: channel, Text: text})
}

// cfSend publishes one chatroom message for sender s through the API.
func (c *chatroomScenario) cfSend(s *session, id string, seq uint64, room, prio int, t0 time.Time) {
	w := c.w
	text := chatText(id, chatTag(prio, t0)+senderTag(w.first+s.chatIdx), w.cfg.PayloadBytes)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := cfPublish(ctx, w.cfAPI, w.cfg.CentrifugoAPI, w.cfg.CentrifugoAPIKey, s.chatRoom, text)
	now := time.Now()
	if err != nil {
		w.sendErrors.Add(1)
		w.countKind("centrifugo publish")
		w.noteErr("publish %s for %s: %v", id, s.id, err)
		return
	}
	w.chat.noteSent(seq, ChatSent{Room: room, Prio: prio, Acked: true})
	w.ledger.Acked(seq, id, now.UnixMilli(), now)
	w.ackH.Record(now.Sub(t0))
	w.ackS.Record(now, now.Sub(t0))
}
