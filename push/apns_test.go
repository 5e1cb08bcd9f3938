package push

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relaymesh/relaymesh/metric"
)

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// sinkRec records DeviceSink calls.
type sinkRec struct {
	mu  sync.Mutex
	got []string // "app/objectId/reason"
}

func (s *sinkRec) Invalid(_ context.Context, app string, d Device, reason string) {
	s.mu.Lock()
	s.got = append(s.got, app+"/"+d.ID+"/"+reason)
	s.mu.Unlock()
}

func (s *sinkRec) calls() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.got...)
}

// apnsCall is one request the fake APNs received.
type apnsCall struct {
	proto  int
	host   string // which fake: "prod" or "sandbox"
	path   string
	header http.Header
	body   string
}

// fakeAPNs is an HTTP/2 TLS server answering like APNs: each request gets
// the next scripted answer (the last repeats), and is recorded.
type fakeAPNs struct {
	prod, sandbox *httptest.Server
	mu            sync.Mutex
	calls         []apnsCall
	answers       []apnsAnswer
}

type apnsAnswer struct {
	status int
	reason string
}

func newFakeAPNs(t testing.TB) *fakeAPNs {
	f := &fakeAPNs{}
	start := func(name string) *httptest.Server {
		s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			f.mu.Lock()
			f.calls = append(f.calls, apnsCall{proto: r.ProtoMajor, host: name, path: r.URL.EscapedPath(), header: r.Header.Clone(), body: string(b)})
			a := apnsAnswer{status: 200}
			if n := len(f.calls) - 1; len(f.answers) > 0 {
				a = f.answers[min(n, len(f.answers)-1)]
			}
			f.mu.Unlock()
			if a.status == 200 {
				w.Header().Set("apns-id", "6D0C1D4F-0000-0000-0000-000000000001")
				return
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(a.status)
			json.NewEncoder(w).Encode(map[string]string{"reason": a.reason})
		}))
		s.EnableHTTP2 = true
		s.StartTLS()
		t.Cleanup(s.Close)
		return s
	}
	f.prod, f.sandbox = start("prod"), start("sandbox")
	return f
}

func (f *fakeAPNs) script(a ...apnsAnswer) {
	f.mu.Lock()
	f.answers, f.calls = a, nil
	f.mu.Unlock()
}

func (f *fakeAPNs) got() []apnsCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]apnsCall(nil), f.calls...)
}

// client trusts both fakes' certificates and speaks only HTTP/2.
func (f *fakeAPNs) client() *http.Client {
	pool := x509.NewCertPool()
	pool.AddCert(f.prod.Certificate())
	pool.AddCert(f.sandbox.Certificate())
	return HTTP2Client(pool)
}

func p8(t testing.TB) (*ecdsa.PrivateKey, []byte) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return k, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// verifyAPNsJWT checks an APNs provider token against the public key and
// returns its iat.
func verifyAPNsJWT(t *testing.T, auth string, pub *ecdsa.PublicKey, keyID, teamID string) int64 {
	t.Helper()
	tok, ok := strings.CutPrefix(auth, "bearer ")
	if !ok {
		t.Fatalf("authorization %q: want bearer <jwt>", auth)
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token %q: want three parts", tok)
	}
	var h struct{ Alg, Kid string }
	var c struct {
		Iss string
		Iat int64
	}
	for i, v := range []any{&h, &c} {
		b, err := b64.DecodeString(parts[i])
		if err != nil {
			t.Fatal(err)
		}
		d := json.NewDecoder(strings.NewReader(string(b)))
		d.DisallowUnknownFields()
		if err := d.Decode(v); err != nil {
			t.Fatalf("token part %d %s: %v", i, b, err)
		}
	}
	if h.Alg != "ES256" || h.Kid != keyID || c.Iss != teamID {
		t.Errorf("token header %+v claims %+v: want ES256, kid %s, iss %s", h, c, keyID, teamID)
	}
	sig, err := b64.DecodeString(parts[2])
	if err != nil || len(sig) != 64 {
		t.Fatalf("signature: %d bytes, %v", len(sig), err)
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if !ecdsa.Verify(pub, sum[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
		t.Error("token signature does not verify with the key's public key")
	}
	return c.Iat
}

const (
	testKeyID  = "ABC123DEFG"
	testTeamID = "TEAM123456"
	testToken  = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"
)

type apnsEnv struct {
	f     *fakeAPNs
	key   *ecdsa.PrivateKey
	clock *fakeClock
	sink  *sinkRec
	a     *APNs
}

func newAPNsEnv(t testing.TB, mod func(*APNsConfig)) *apnsEnv {
	t.Helper()
	f := newFakeAPNs(t)
	key, pemKey := p8(t)
	e := &apnsEnv{f: f, key: key, clock: &fakeClock{t: time.Unix(1700000000, 0)}, sink: &sinkRec{}}
	cfg := APNsConfig{Key: pemKey, KeyID: testKeyID, TeamID: testTeamID, Topic: "com.example.chat",
		URL: f.prod.URL, SandboxURL: f.sandbox.URL, HTTPClient: f.client(), Now: e.clock.Now,
		Retry: Retry{Attempts: 3, Backoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond, Timeout: 5 * time.Second}}
	if mod != nil {
		mod(&cfg)
	}
	a, err := NewAPNs(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	e.a = a
	return e
}

func (e *apnsEnv) req(payload string, d Device) Request {
	return Request{AppID: "app", ConvID: "conv1", From: "alice", To: []string{d.ClientID},
		Payload: json.RawMessage(payload), Timestamp: 1700000000000, Devices: []Device{d}, Sink: e.sink}
}

func iosDevice() Device {
	return Device{ID: "inst1", ClientID: "bob", Type: "ios", Token: testToken, Topic: "com.example.chat.ios", Badge: 5}
}

func TestAPNsRequests(t *testing.T) {
	e := newAPNsEnv(t, nil)
	exp := strconv.FormatInt(e.clock.Now().Add(DefaultExpiry).Unix(), 10)
	tests := []struct {
		name    string
		payload string
		dev     func(*Device)
		host    string
		header  map[string]string // besides authorization, apns-topic and apns-expiration
		body    string
	}{
		{"alert, title, badge Increment, sound and a custom key",
			`{"alert":"hi <b>","title":"Alice","badge":"Increment","sound":"default","custom-key":{"k":1},"_profile":"prod","_apns_team_id":"` + testTeamID + `"}`,
			nil, "prod", map[string]string{"apns-push-type": "alert", "apns-priority": "10"},
			`{"aps":{"alert":{"body":"hi <b>","title":"Alice"},"badge":5,"sound":"default"},"custom-key":{"k":1}}`},
		{"_profile dev goes to the sandbox; ios overrides; collapse-id is a header",
			`{"_profile":"dev","alert":"generic","ios":{"alert":{"title":"T","body":"for ios"},"category":"MSG","thread-id":"c1","_profile":"prod"},"android":{"title":"x"},"collapse-id":"conv1"}`,
			nil, "sandbox", map[string]string{"apns-push-type": "alert", "apns-priority": "10", "apns-collapse-id": "conv1"},
			`{"aps":{"alert":{"body":"for ios","title":"T"},"category":"MSG","thread-id":"c1"}}`},
		{"content-available alone is a background push at priority 5",
			`{"content-available":1,"convId":"c1"}`,
			nil, "prod", map[string]string{"apns-push-type": "background", "apns-priority": "5"},
			`{"aps":{"content-available":1},"convId":"c1"}`},
		{"an aps object is sent as is; header keys honoured",
			`{"aps":{"alert":"raw","badge":3,"mutable-content":1},"apns-priority":5,"apns-push-type":"alert","x":"y"}`,
			nil, "prod", map[string]string{"apns-push-type": "alert", "apns-priority": "5"},
			`{"aps":{"alert":"raw","badge":3,"mutable-content":1},"x":"y"}`},
		{"Increment with no known badge is left out; the config topic when the device has none",
			`{"alert":"hi","badge":"Increment"}`,
			func(d *Device) { d.Badge, d.Topic = 0, "" }, "prod", map[string]string{"apns-push-type": "alert", "apns-priority": "10"},
			`{"aps":{"alert":"hi"}}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e.f.script()
			d := iosDevice()
			if tc.dev != nil {
				tc.dev(&d)
			}
			if err := e.a.send(context.Background(), e.req(tc.payload, d)); err != nil {
				t.Fatalf("send: %v", err)
			}
			calls := e.f.got()
			if len(calls) != 1 {
				t.Fatalf("requests: got %d, want 1", len(calls))
			}
			c := calls[0]
			if c.proto != 2 {
				t.Errorf("protocol: got HTTP/%d, want HTTP/2", c.proto)
			}
			if c.host != tc.host || c.path != "/3/device/"+testToken {
				t.Errorf("request: got %s %s, want %s /3/device/%s", c.host, c.path, tc.host, testToken)
			}
			verifyAPNsJWT(t, c.header.Get("authorization"), &e.key.PublicKey, testKeyID, testTeamID)
			topic := d.Topic
			if topic == "" {
				topic = "com.example.chat"
			}
			want := map[string]string{"apns-topic": topic, "apns-expiration": exp, "content-type": "application/json"}
			for k, v := range tc.header {
				want[k] = v
			}
			for _, k := range []string{"apns-topic", "apns-expiration", "apns-push-type", "apns-priority", "apns-collapse-id", "content-type"} {
				if got := c.header.Get(k); got != want[k] {
					t.Errorf("header %s: got %q, want %q", k, got, want[k])
				}
			}
			if c.body != tc.body {
				t.Errorf("body:\n got %s\nwant %s", c.body, tc.body)
			}
		})
	}
}

func TestAPNsAnswers(t *testing.T) {
	tests := []struct {
		name     string
		answers  []apnsAnswer
		wantErr  error
		requests int
		stats    ProviderStats
		sink     []string
	}{
		{"410 Unregistered removes the device", []apnsAnswer{{410, "Unregistered"}}, ErrInvalidDevice, 1,
			ProviderStats{Invalid: 1}, []string{"app/inst1/Unregistered"}},
		{"400 BadDeviceToken removes the device", []apnsAnswer{{400, "BadDeviceToken"}}, ErrInvalidDevice, 1,
			ProviderStats{Invalid: 1}, []string{"app/inst1/BadDeviceToken"}},
		{"503 then 429 then 200 is retried", []apnsAnswer{{503, "ServiceUnavailable"}, {429, "TooManyRequests"}, {200, ""}}, nil, 3,
			ProviderStats{Sent: 1, Retried: 2}, nil},
		{"500 three times fails after the attempts", []apnsAnswer{{500, "InternalServerError"}}, ErrFailed, 3,
			ProviderStats{Failed: 1, Retried: 2}, nil},
		{"400 DeviceTokenNotForTopic fails at once and keeps the device", []apnsAnswer{{400, "DeviceTokenNotForTopic"}}, ErrRejected, 1,
			ProviderStats{Failed: 1}, nil},
		{"410 without a reason APNs gives is not taken for a dead device", []apnsAnswer{{410, ""}}, ErrRejected, 1,
			ProviderStats{Failed: 1}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newAPNsEnv(t, nil)
			e.f.script(tc.answers...)
			err := e.a.send(context.Background(), e.req(`{"alert":"hi"}`, iosDevice()))
			if (tc.wantErr == nil) != (err == nil) || (tc.wantErr != nil && !errors.Is(err, tc.wantErr)) {
				t.Errorf("err: got %v, want %v", err, tc.wantErr)
			}
			if n := len(e.f.got()); n != tc.requests {
				t.Errorf("requests: got %d, want %d", n, tc.requests)
			}
			s := e.a.Stats()
			if n := s.Attempts.Count(); n != uint64(tc.requests) {
				t.Errorf("attempts timed: got %d, want one per request (%d)", n, tc.requests)
			}
			if s.Attempts = (metric.LatencySnapshot{}); s != tc.stats {
				t.Errorf("stats: got %+v, want %+v", s, tc.stats)
			}
			if got := e.sink.calls(); strings.Join(got, ",") != strings.Join(tc.sink, ",") {
				t.Errorf("sink: got %v, want %v", got, tc.sink)
			}
		})
	}
}

func TestAPNsProviderToken(t *testing.T) {
	e := newAPNsEnv(t, nil)
	send := func() {
		t.Helper()
		if err := e.a.send(context.Background(), e.req(`{"alert":"hi"}`, iosDevice())); err != nil {
			t.Fatal(err)
		}
	}
	send()
	send()
	c := e.f.got()
	if c[0].header.Get("authorization") != c[1].header.Get("authorization") {
		t.Error("the token was not reused within 20 minutes")
	}
	iat0 := verifyAPNsJWT(t, c[0].header.Get("authorization"), &e.key.PublicKey, testKeyID, testTeamID)
	if iat0 != e.clock.Now().Unix() {
		t.Errorf("iat: got %d, want %d", iat0, e.clock.Now().Unix())
	}
	e.clock.Add(TokenRefresh - time.Second)
	send()
	if got := e.f.got()[2].header.Get("authorization"); got != c[0].header.Get("authorization") {
		t.Error("the token was renewed before TokenRefresh")
	}
	e.clock.Add(2 * time.Second)
	send()
	last := e.f.got()[3].header.Get("authorization")
	if iat := verifyAPNsJWT(t, last, &e.key.PublicKey, testKeyID, testTeamID); iat != e.clock.Now().Unix() {
		t.Errorf("renewed token iat: got %d, want %d", iat, e.clock.Now().Unix())
	}

	// ExpiredProviderToken: a new token, and the push is retried once.
	e.f.script(apnsAnswer{403, "ExpiredProviderToken"}, apnsAnswer{200, ""})
	send()
	c = e.f.got()
	if len(c) != 2 || c[0].header.Get("authorization") == c[1].header.Get("authorization") {
		t.Fatalf("after ExpiredProviderToken: got %d requests (same token: %v), want a retry with a new token",
			len(c), len(c) == 2 && c[0].header.Get("authorization") == c[1].header.Get("authorization"))
	}
	verifyAPNsJWT(t, c[1].header.Get("authorization"), &e.key.PublicKey, testKeyID, testTeamID)
}

func TestAPNsSkips(t *testing.T) {
	e := newAPNsEnv(t, nil)
	big := `{"alert":"` + strings.Repeat("x", MaxAPNsPayload) + `"}`
	other := iosDevice()
	other.TeamID = "OTHERTEAM1"
	for _, c := range []struct {
		payload string
		d       Device
	}{
		{big, iosDevice()},
		{`{"alert":"hi","_apns_team_id":"OTHERTEAM1"}`, iosDevice()},
		{`{"alert":"hi"}`, other},
		{`[1,2]`, iosDevice()},
	} {
		e.a.send(context.Background(), e.req(c.payload, c.d))
	}
	if n := len(e.f.got()); n != 0 {
		t.Errorf("requests: got %d, want none", n)
	}
	if s := e.a.Stats(); s.Skipped != 4 || s.Sent+s.Failed != 0 {
		t.Errorf("stats: got %+v, want 4 skipped", s)
	}
}

// TestAPNsPushQueues goes through Push: only Apple devices are queued, the
// workers send them, and Stats count them.
func TestAPNsPushQueues(t *testing.T) {
	e := newAPNsEnv(t, nil)
	r := e.req(`{"alert":"hi"}`, iosDevice())
	mac := iosDevice()
	mac.ID, mac.Type, mac.Token = "inst2", "macos", "ff"+testToken[2:]
	r.Devices = append(r.Devices, mac,
		Device{ID: "inst3", ClientID: "bob", Type: "android", Vendor: "fcm", Token: "fcm-token"},
		Device{ID: "inst4", ClientID: "bob", Type: "ios"}) // no token
	if err := e.a.Push(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return e.a.Stats().Sent == 2 })
	paths := map[string]bool{}
	for _, c := range e.f.got() {
		paths[c.path] = true
	}
	if len(paths) != 2 || !paths["/3/device/"+testToken] || !paths["/3/device/"+mac.Token] {
		t.Errorf("paths: got %v, want the two Apple tokens", paths)
	}
}

func TestNewAPNsRefusesBadConfig(t *testing.T) {
	_, pemKey := p8(t)
	rsaLike := []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
	for name, cfg := range map[string]APNsConfig{
		"no key":     {KeyID: "k", TeamID: "t"},
		"broken key": {Key: rsaLike, KeyID: "k", TeamID: "t"},
		"no key id":  {Key: pemKey, TeamID: "t"},
		"no team":    {Key: pemKey, KeyID: "k"},
		"bad url":    {Key: pemKey, KeyID: "k", TeamID: "t", URL: "ftp://x"},
	} {
		if a, err := NewAPNs(cfg); !errors.Is(err, ErrConfig) {
			if a != nil {
				a.Close()
			}
			t.Errorf("%s: got %v, want ErrConfig", name, err)
		}
	}
}
