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
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
)

func TestDecodeCFFrame(t *testing.T) {
	frame := []byte(`{"id":1,"connect":{"client":"abc","ping":25,"pong":true}}` + "\n" +
		`{}` + "\n" +
		`{"push":{"channel":"room","pub":{"data":{"text":"lt:0:1 p=n t=5"}}}}` + "\n" +
		`{"id":2,"error":{"code":103,"message":"permission denied"}}` + "\n")
	rs, err := decodeCFFrame(frame)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 4 {
		t.Fatalf("decoded %d replies, want 4: %+v", len(rs), rs)
	}
	if c := rs[0].Connect; rs[0].ID != 1 || c == nil || c.Client != "abc" || c.Ping != 25 || !c.Pong {
		t.Errorf("connect reply = %+v", rs[0])
	}
	if !rs[1].isPing() || rs[0].isPing() || rs[2].isPing() || rs[3].isPing() {
		t.Errorf("isPing: %v %v %v %v, want only the second", rs[0].isPing(), rs[1].isPing(), rs[2].isPing(), rs[3].isPing())
	}
	p := rs[2].Push
	if p == nil || p.Channel != "room" || p.Pub == nil {
		t.Fatalf("push = %+v", rs[2])
	}
	if text, ok := cfPubText(p.Pub.Data); !ok || text != "lt:0:1 p=n t=5" {
		t.Errorf("publication text = %q, %v", text, ok)
	}
	if e := rs[3].Error; e == nil || e.Code != 103 || !strings.Contains(e.Error(), "permission denied") {
		t.Errorf("error reply = %+v", rs[3])
	}
	// A subscribe result is an empty object: not a ping.
	rs, err = decodeCFFrame([]byte(`{"id":7,"subscribe":{}}`))
	if err != nil || len(rs) != 1 || rs[0].isPing() || rs[0].Subscribe == nil {
		t.Errorf("subscribe reply: %+v, %v", rs, err)
	}
	// Blank lines and an empty frame decode to nothing.
	if rs, err := decodeCFFrame([]byte("\n\n  \n")); err != nil || len(rs) != 0 {
		t.Errorf("blank frame: %+v, %v", rs, err)
	}
	// A bad line fails the frame, after the good ones before it.
	rs, err = decodeCFFrame([]byte("{}\n{\"push\":\n{}"))
	if err == nil || len(rs) != 1 {
		t.Errorf("bad line: %d replies, err %v; want 1 and an error", len(rs), err)
	}
	for _, bad := range []string{`[1,2]`, `"x"`, `{"id":"one"}`, `{"push":{"pub":{"data":`} {
		if _, err := decodeCFFrame([]byte(bad)); err == nil {
			t.Errorf("decodeCFFrame(%q) succeeded", bad)
		}
	}
}

func TestCFPubTextAndSenderTag(t *testing.T) {
	for _, bad := range []string{``, `null`, `"text"`, `{"text":""}`, `{"text":1}`, `{`} {
		if text, ok := cfPubText(json.RawMessage(bad)); ok {
			t.Errorf("cfPubText(%q) = %q, want not ok", bad, text)
		}
	}
	at := time.Unix(1700000000, 5)
	text := chatText(LedgerID(2, 9), chatTag(prioNormal, at)+senderTag(1234), 300)
	if len(text) != 300 {
		t.Errorf("padded text is %d bytes, want 300", len(text))
	}
	if g, ok := parseSenderTag(text); !ok || g != 1234 {
		t.Errorf("parseSenderTag = %d, %v; want 1234", g, ok)
	}
	if w, seq, ok := parseLedgerID(text); !ok || w != 2 || seq != 9 {
		t.Errorf("ledger id = %d:%d %v", w, seq, ok)
	}
	if p, sent, ok := parseChatTag(text); !ok || p != prioNormal || !sent.Equal(at) {
		t.Errorf("chat tag = %d %v %v", p, sent, ok)
	}
	for _, bad := range []string{"lt:1:2 p=n t=3", "x s=", "x s=abc"} {
		if _, ok := parseSenderTag(bad); ok {
			t.Errorf("parseSenderTag(%q) ok", bad)
		}
	}
}

func TestCFToken(t *testing.T) {
	now := time.Unix(1700000000, 0)
	tok := cfToken("k3y", "lt-x-m7", now, time.Hour)
	sub, err := checkCFToken("k3y", tok, now)
	if err != nil || sub != "lt-x-m7" {
		t.Fatalf("checkCFToken = %q, %v", sub, err)
	}
	if _, err := checkCFToken("other", tok, now); err == nil {
		t.Error("a token signed with another key was accepted")
	}
	if _, err := checkCFToken("k3y", tok, now.Add(2*time.Hour)); err == nil {
		t.Error("an expired token was accepted")
	}
	parts := strings.Split(tok, ".")
	forged := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"admin","exp":9999999999}`)) + "." + parts[2]
	if _, err := checkCFToken("k3y", forged, now); err == nil {
		t.Error("a token with changed claims was accepted")
	}
}

// checkCFToken verifies an HS256 token as Centrifugo does and returns its
// subject.
func checkCFToken(secret, tok string, now time.Time) (string, error) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return "", errors.New("not a JWT")
	}
	hdr, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return "", err
	}
	var h struct{ Alg, Typ string }
	if err := json.Unmarshal(hdr, &h); err != nil || h.Alg != "HS256" {
		return "", fmt.Errorf("header %s", hdr)
	}
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(parts[0] + "." + parts[1]))
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || !hmac.Equal(sig, m.Sum(nil)) {
		return "", errors.New("bad signature")
	}
	body, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", err
	}
	var c struct {
		Sub string
		Exp int64
	}
	if err := json.Unmarshal(body, &c); err != nil {
		return "", err
	}
	if c.Exp != 0 && now.Unix() >= c.Exp {
		return "", errors.New("expired")
	}
	return c.Sub, nil
}

// fakeCentrifugo speaks the subset of Centrifugo's JSON client protocol
// and server API the load tester uses: connect with an HS256 token,
// subscribe, pings answered by pongs, POST /api/publish with X-API-Key
// fanned out to the channel's subscribers (several pushes per WebSocket
// message when they queue up).
type fakeCentrifugo struct {
	t      *testing.T
	secret string
	key    string
	ping   time.Duration // 0: no pings
	// misbehave, when set, is written to a connection right after its
	// connect reply (a bad frame, a huge frame).
	misbehave []byte
	srv       *httptest.Server

	pings, pongs, publishes atomic.Int64
	connects, rejected      atomic.Int64

	mu   sync.Mutex
	subs map[string]map[*fakeCFConn]bool // guarded by mu
	all  map[*fakeCFConn]bool            // guarded by mu
}

type fakeCFConn struct {
	ws  *websocket.Conn
	out chan []byte
}

func newFakeCentrifugo(t *testing.T, secret, key string, ping time.Duration) *fakeCentrifugo {
	f := &fakeCentrifugo{t: t, secret: secret, key: key, ping: ping,
		subs: make(map[string]map[*fakeCFConn]bool), all: make(map[*fakeCFConn]bool)}
	mux := http.NewServeMux()
	mux.HandleFunc("/connection/websocket", f.serveWS)
	mux.HandleFunc("/api/publish", f.servePublish)
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.close)
	return f
}

func (f *fakeCentrifugo) target() string {
	return "ws" + strings.TrimPrefix(f.srv.URL, "http") + "/connection/websocket"
}

func (f *fakeCentrifugo) close() {
	f.mu.Lock()
	for c := range f.all {
		_ = c.ws.CloseNow()
	}
	f.mu.Unlock()
	f.srv.CloseClientConnections()
	f.srv.Close()
}

func (f *fakeCentrifugo) serveWS(w http.ResponseWriter, r *http.Request) {
	ws, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	ws.SetReadLimit(1 << 20)
	c := &fakeCFConn{ws: ws, out: make(chan []byte, 4096)}
	f.mu.Lock()
	f.all[c] = true
	f.mu.Unlock()
	ctx, cancel := context.WithCancel(r.Context())
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait() // the writer and the pinger
		f.mu.Lock()
		delete(f.all, c)
		for _, s := range f.subs {
			delete(s, c)
		}
		f.mu.Unlock()
		_ = ws.CloseNow()
	}()
	wg.Go(func() { f.writer(ctx, c) })
	if f.ping > 0 {
		wg.Go(func() {
			tk := time.NewTicker(f.ping)
			defer tk.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tk.C:
					f.pings.Add(1)
					c.send([]byte(`{}`))
				}
			}
		})
	}
	for {
		_, b, err := ws.Read(ctx)
		if err != nil {
			return
		}
		for line := range bytes.SplitSeq(b, []byte("\n")) {
			if len(bytes.TrimSpace(line)) == 0 {
				continue
			}
			var cmd struct {
				ID      uint32 `json:"id"`
				Connect *struct {
					Token string `json:"token"`
				} `json:"connect"`
				Subscribe *struct {
					Channel string `json:"channel"`
				} `json:"subscribe"`
			}
			if err := json.Unmarshal(line, &cmd); err != nil {
				_ = ws.Close(3501, "bad request")
				return
			}
			switch {
			case cmd.ID == 0 && cmd.Connect == nil && cmd.Subscribe == nil:
				f.pongs.Add(1)
			case cmd.Connect != nil:
				if _, err := checkCFToken(f.secret, cmd.Connect.Token, time.Now()); err != nil {
					f.rejected.Add(1)
					c.send(fmt.Appendf(nil, `{"id":%d,"error":{"code":109,"message":"token expired"}}`, cmd.ID))
					continue
				}
				f.connects.Add(1)
				c.send(fmt.Appendf(nil, `{"id":%d,"connect":{"client":"c","version":"fake","ping":1,"pong":true}}`, cmd.ID))
				if f.misbehave != nil { // after the connect reply, in a message of its own
					time.AfterFunc(50*time.Millisecond, func() { c.send(f.misbehave) })
				}
			case cmd.Subscribe != nil:
				f.mu.Lock()
				if f.subs[cmd.Subscribe.Channel] == nil {
					f.subs[cmd.Subscribe.Channel] = make(map[*fakeCFConn]bool)
				}
				f.subs[cmd.Subscribe.Channel][c] = true
				f.mu.Unlock()
				c.send(fmt.Appendf(nil, `{"id":%d,"subscribe":{}}`, cmd.ID))
			}
		}
	}
}

func (c *fakeCFConn) send(b []byte) {
	select {
	case c.out <- b:
	default: // a full queue drops, as a slow client would be disconnected
	}
}

// writer joins what is queued into one WebSocket message, one JSON
// object a line, as Centrifugo's writer does.
func (f *fakeCentrifugo) writer(ctx context.Context, c *fakeCFConn) {
	for {
		var b []byte
		select {
		case <-ctx.Done():
			return
		case b = <-c.out:
		}
		b = append([]byte(nil), b...)
	more:
		for {
			select {
			case x := <-c.out:
				b = append(append(b, '\n'), x...)
			default:
				break more
			}
		}
		if err := c.ws.Write(ctx, websocket.MessageText, b); err != nil {
			return
		}
	}
}

func (f *fakeCentrifugo) servePublish(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.Header.Get("X-API-Key") != f.key {
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	var req struct {
		Channel string          `json:"channel"`
		Data    json.RawMessage `json:"data"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Channel == "" {
		_, _ = w.Write([]byte(`{"error":{"code":107,"message":"bad request"}}`))
		return
	}
	f.publishes.Add(1)
	push, _ := json.Marshal(map[string]any{"push": map[string]any{"channel": req.Channel, "pub": map[string]any{"data": req.Data}}})
	f.mu.Lock()
	for c := range f.subs[req.Channel] {
		c.send(push)
	}
	f.mu.Unlock()
	_, _ = w.Write([]byte(`{"result":{}}`))
}

func cfTestConfig(f *fakeCentrifugo, scenario string, sessions int) Config {
	return Config{Peer: PeerCentrifugo, Targets: []string{f.target()}, Scenario: scenario, Sessions: sessions,
		CentrifugoAPIKey: f.key, CentrifugoSecret: f.secret, Progress: -1, Concurrency: 20}
}

// The chatroom over the fake: every published copy reaches every member
// but the sender, exactly once, latencies are measured, and the
// connections answer the server's pings.
func TestCentrifugoChatroom(t *testing.T) {
	f := newFakeCentrifugo(t, "s3cret", "apikey", 50*time.Millisecond)
	cfg := cfTestConfig(f, ScenarioChatroom, 30)
	cfg.Rate, cfg.Duration, cfg.Senders, cfg.PayloadBytes, cfg.Drain = 40, 1500*time.Millisecond, 3, 200, 3*time.Second
	s, err := Run(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.Sessions != 30 || s.Peer != PeerCentrifugo {
		t.Fatalf("sessions %d, peer %q; want 30, centrifugo (errors %v)", s.Sessions, s.Peer, s.Errors)
	}
	if s.Acked < 40 || s.Acked != s.Sent || int64(f.publishes.Load()) != s.Acked {
		t.Errorf("sent %d, acked %d, the server got %d publishes", s.Sent, s.Acked, f.publishes.Load())
	}
	if want := s.Acked * 29; s.Expected != want || s.Delivered != want {
		t.Errorf("expected %d, delivered %d; want both %d (acked × members but the sender)", s.Expected, s.Delivered, want)
	}
	if s.Duplicates != 0 || s.Unexpected != 0 || !s.Passed {
		t.Errorf("duplicates %d, unexpected %d, passed %v", s.Duplicates, s.Unexpected, s.Passed)
	}
	if s.DeliveryLatencyMS.Count != s.Delivered || s.DeliveryLatencyMS.P50 <= 0 {
		t.Errorf("delivery latency %+v for %d copies", s.DeliveryLatencyMS, s.Delivered)
	}
	if c := s.Chatroom; c == nil || c.Members[0] != 30 || c.Priorities["normal"].DeliveredRatio != 1 ||
		c.ExpectedAllSends != s.Expected || c.DeliveredAllSends != s.Delivered || c.FanoutAllPerS != c.FanoutPerS || c.FanoutPerS <= 0 {
		t.Errorf("chatroom summary %+v", c)
	}
	if f.connects.Load() != 30 || f.pings.Load() == 0 || f.pongs.Load() == 0 {
		t.Errorf("connects %d, pings %d, pongs %d", f.connects.Load(), f.pings.Load(), f.pongs.Load())
	}
}

func TestCentrifugoConnect(t *testing.T) {
	f := newFakeCentrifugo(t, "s3cret", "apikey", 0)
	cfg := cfTestConfig(f, ScenarioConnect, 25)
	cfg.Duration = 200 * time.Millisecond
	s, err := Run(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.Sessions != 25 || s.ConnectFailed != 0 || s.ConnectLatencyMS.Count != 25 {
		t.Errorf("sessions %d, failed %d, connect latencies %d; errors %v", s.Sessions, s.ConnectFailed, s.ConnectLatencyMS.Count, s.Errors)
	}
}

// Misuse: a wrong token secret, a wrong API key, a server that sends
// garbage or a frame over the read limit.
func TestCentrifugoMisuse(t *testing.T) {
	t.Run("wrong secret", func(t *testing.T) {
		f := newFakeCentrifugo(t, "s3cret", "apikey", 0)
		cfg := cfTestConfig(f, ScenarioConnect, 5)
		cfg.CentrifugoSecret, cfg.Duration = "guess", 100*time.Millisecond
		s, err := Run(context.Background(), cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		if s.Sessions != 0 || s.ConnectFailed != 5 || f.rejected.Load() != 5 {
			t.Errorf("sessions %d, failed %d, rejected %d; want 0, 5, 5", s.Sessions, s.ConnectFailed, f.rejected.Load())
		}
		if !strings.Contains(strings.Join(s.Errors, " "), "109") {
			t.Errorf("errors %v do not name the server's code 109", s.Errors)
		}
	})
	t.Run("wrong api key", func(t *testing.T) {
		f := newFakeCentrifugo(t, "s3cret", "apikey", 0)
		cfg := cfTestConfig(f, ScenarioChatroom, 6)
		cfg.CentrifugoAPIKey, cfg.Rate, cfg.Duration, cfg.Drain = "nope", 20, 300*time.Millisecond, time.Second
		s, err := Run(context.Background(), cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		if s.Sent == 0 || s.Acked != 0 || s.Delivered != 0 || f.publishes.Load() != 0 {
			t.Errorf("sent %d, acked %d, delivered %d, publishes %d; want sends, none acked", s.Sent, s.Acked, s.Delivered, f.publishes.Load())
		}
		if c := s.Chatroom; c == nil || c.ExpectedAllSends != s.Sent*5 || c.DeliveredAllSends != 0 {
			t.Errorf("all sends: %+v, want %d expected, none delivered", c, s.Sent*5)
		}
		if !strings.Contains(strings.Join(s.Errors, " "), "HTTP 401") {
			t.Errorf("errors %v do not say HTTP 401", s.Errors)
		}
	})
	for name, frame := range map[string][]byte{
		"garbage":    []byte("{\"push\":nope}"),
		"huge frame": bytes.Repeat([]byte("x"), cfReadLimit+1),
		"disconnect": []byte(`{"push":{"disconnect":{"code":3001,"reason":"shutdown"}}}`),
	} {
		t.Run(name, func(t *testing.T) {
			f := newFakeCentrifugo(t, "s3cret", "apikey", 0)
			f.misbehave = frame
			cfg := cfTestConfig(f, ScenarioConnect, 4)
			cfg.Duration = 300 * time.Millisecond
			s, err := Run(context.Background(), cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			// The connect reply came first: the logins succeed, then every
			// connection ends and is counted as closed by the server.
			if s.Sessions != 4 || s.SessionsClosed != 4 {
				t.Errorf("sessions %d, closed by the server %d; want 4, 4", s.Sessions, s.SessionsClosed)
			}
		})
	}
}

func TestCentrifugoValidate(t *testing.T) {
	base := Config{Peer: PeerCentrifugo, Targets: []string{"ws://127.0.0.1:1/connection/websocket"}, Sessions: 2}
	for _, tt := range []struct {
		name string
		edit func(*Config)
		ok   bool
	}{
		{"connect", func(c *Config) { c.Scenario = ScenarioConnect }, true},
		{"chatroom", func(c *Config) { c.Scenario = ScenarioChatroom }, true},
		{"pairs", func(c *Config) { c.Scenario = ScenarioPairs }, false},
		{"reconnect", func(c *Config) { c.Scenario = ScenarioReconnect }, false},
		{"webtransport", func(c *Config) { c.Scenario, c.Transport = ScenarioConnect, TransportWebTransport }, false},
		{"slow readers", func(c *Config) { c.Scenario, c.SlowReaders = ScenarioChatroom, 0.1 }, false},
		{"bad api", func(c *Config) { c.Scenario, c.CentrifugoAPI = ScenarioChatroom, "ftp://x/api" }, false},
		{"unknown peer", func(c *Config) { c.Scenario, c.Peer = ScenarioConnect, "nats" }, false},
		{"relaymesh", func(c *Config) { c.Scenario, c.Peer = ScenarioPairs, PeerRelaymesh }, true},
	} {
		c := base
		tt.edit(&c)
		if err := c.Validate(); (err == nil) != tt.ok {
			t.Errorf("%s: Validate() = %v, want ok %v", tt.name, err, tt.ok)
		}
	}
	c := base
	c.Scenario = ScenarioChatroom
	c.Defaults()
	if c.CentrifugoAPI != "http://127.0.0.1:1/api" {
		t.Errorf("default API %q", c.CentrifugoAPI)
	}
}
