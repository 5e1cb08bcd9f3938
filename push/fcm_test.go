package push

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relaymesh/relaymesh/metric"
)

// fakeGoogle is an OAuth2 token endpoint and an FCM send endpoint.
type fakeGoogle struct {
	t        *testing.T
	key      *rsa.PrivateKey
	srv      *httptest.Server
	mu       sync.Mutex
	grants   int      // token requests that verified
	sends    []fcmReq // send requests
	answers  []fcmAnswer
	tokenSeq int
}

type fcmReq struct {
	path, auth, ctype, body string
}

type fcmAnswer struct {
	status     int
	body       string
	retryAfter string
}

const (
	saEmail = "relaymesh@proj-1.iam.gserviceaccount.com"
	saKeyID = "0123456789abcdef"
)

func newFakeGoogle(t *testing.T) *fakeGoogle {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeGoogle{t: t, key: key}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /token", f.token)
	mux.HandleFunc("POST /v1/projects/{project}/{send}", f.send)
	f.srv = httptest.NewTLSServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

// serviceAccount is the key file the Firebase console would hand out.
func (f *fakeGoogle) serviceAccount() []byte {
	der, _ := x509.MarshalPKCS8PrivateKey(f.key)
	b, _ := json.Marshal(map[string]string{
		"type": "service_account", "project_id": "proj-1", "private_key_id": saKeyID,
		"private_key":  string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email": saEmail, "client_id": "1", "token_uri": f.srv.URL + "/token",
	})
	return b
}

// token checks the JWT-bearer grant (RFC 7523) as Google does: an RS256
// JWT signed by the service account's key, for the FCM scope and this
// endpoint.
func (f *fakeGoogle) token(w http.ResponseWriter, r *http.Request) {
	t := f.t
	if err := r.ParseForm(); err != nil {
		t.Errorf("token: %v", err)
	}
	if g := r.PostForm.Get("grant_type"); g != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
		t.Errorf("grant_type: got %q", g)
	}
	parts := strings.Split(r.PostForm.Get("assertion"), ".")
	if len(parts) != 3 {
		t.Errorf("assertion: %d parts", len(parts))
		w.WriteHeader(400)
		return
	}
	var h struct{ Alg, Typ, Kid string }
	var c struct {
		Iss, Scope, Aud string
		Iat, Exp        int64
	}
	for i, v := range []any{&h, &c} {
		b, _ := b64.DecodeString(parts[i])
		if err := json.Unmarshal(b, v); err != nil {
			t.Errorf("assertion part %d: %v", i, err)
		}
	}
	if h.Alg != "RS256" || h.Kid != saKeyID || c.Iss != saEmail || c.Scope != FCMScope || c.Aud != f.srv.URL+"/token" || c.Exp <= c.Iat {
		t.Errorf("assertion header %+v claims %+v", h, c)
	}
	sig, _ := b64.DecodeString(parts[2])
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(&f.key.PublicKey, crypto.SHA256, sum[:], sig); err != nil {
		t.Errorf("assertion signature: %v", err)
		w.WriteHeader(401)
		return
	}
	f.mu.Lock()
	f.grants++
	f.tokenSeq++
	tok := "ya29.token-" + string(rune('0'+f.tokenSeq))
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": 3600})
}

func (f *fakeGoogle) send(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.sends = append(f.sends, fcmReq{path: r.URL.EscapedPath(), auth: r.Header.Get("Authorization"), ctype: r.Header.Get("Content-Type"), body: string(b)})
	a := fcmAnswer{status: 200, body: `{"name":"projects/proj-1/messages/0:1"}`}
	if n := len(f.sends) - 1; len(f.answers) > 0 {
		a = f.answers[min(n, len(f.answers)-1)]
	}
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if a.retryAfter != "" {
		w.Header().Set("Retry-After", a.retryAfter)
	}
	w.WriteHeader(a.status)
	io.WriteString(w, a.body)
}

func (f *fakeGoogle) script(a ...fcmAnswer) {
	f.mu.Lock()
	f.answers, f.sends = a, nil
	f.mu.Unlock()
}

func (f *fakeGoogle) got() ([]fcmReq, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fcmReq(nil), f.sends...), f.grants
}

func newFCMEnv(t *testing.T) (*fakeGoogle, *FCM, *sinkRec) {
	t.Helper()
	g := newFakeGoogle(t)
	f, err := NewFCM(FCMConfig{ServiceAccount: g.serviceAccount(), URL: g.srv.URL, HTTPClient: g.srv.Client(),
		Retry: Retry{Attempts: 3, Backoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond, Timeout: 5 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	return g, f, &sinkRec{}
}

func fcmDevice() Device {
	return Device{ID: "inst9", ClientID: "bob", Type: "android", Vendor: "fcm", Token: "fcm:APA91b-token"}
}

func fcmReqOf(payload string, sink DeviceSink) Request {
	return Request{AppID: "app", ConvID: "conv1", From: "alice", To: []string{"bob"}, Payload: json.RawMessage(payload),
		Timestamp: 1700000000000, Devices: []Device{fcmDevice()}, Sink: sink}
}

func TestFCMRequests(t *testing.T) {
	g, f, sink := newFCMEnv(t)
	tests := []struct {
		name, payload, body string
	}{
		{"notification with the payload as data",
			`{"alert":"hi <b>","title":"Alice","badge":"Increment","_profile":"dev","ios":{"sound":"x"},"custom":{"k":1}}`,
			`{"message":{"token":"fcm:APA91b-token","notification":{"title":"Alice","body":"hi <b>"},` +
				`"data":{"payload":"{\"alert\":\"hi <b>\",\"badge\":\"Increment\",\"custom\":{\"k\":1},\"title\":\"Alice\"}"},` +
				`"android":{"priority":"HIGH","ttl":"604800s"}}}`},
		{"android then fcm override; collapse-id and the notification channel",
			`{"alert":"generic","android":{"title":"A","alert":"for android"},"fcm":{"title":"F"},"collapse-id":"conv1","_notificationChannel":"chat"}`,
			`{"message":{"token":"fcm:APA91b-token","notification":{"title":"F","body":"for android"},` +
				`"data":{"payload":"{\"_notificationChannel\":\"chat\",\"alert\":\"for android\",\"collapse-id\":\"conv1\",\"title\":\"F\"}"},` +
				`"android":{"collapse_key":"conv1","priority":"HIGH","ttl":"604800s","notification":{"channel_id":"chat"}}}}`},
		{"silent is a data message at normal priority",
			`{"alert":"quiet","silent":true}`,
			`{"message":{"token":"fcm:APA91b-token","data":{"payload":"{\"alert\":\"quiet\",\"silent\":true}"},` +
				`"android":{"priority":"NORMAL","ttl":"604800s"}}}`},
		{"an iOS-style alert object",
			`{"alert":{"title":"T","body":"B"}}`,
			`{"message":{"token":"fcm:APA91b-token","notification":{"title":"T","body":"B"},` +
				`"data":{"payload":"{\"alert\":{\"body\":\"B\",\"title\":\"T\"}}"},"android":{"priority":"HIGH","ttl":"604800s"}}}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g.script()
			if err := f.send(context.Background(), fcmReqOf(tc.payload, sink)); err != nil {
				t.Fatalf("send: %v", err)
			}
			sends, grants := g.got()
			if len(sends) != 1 || grants != 1 {
				t.Fatalf("got %d sends and %d grants, want 1 send and the one grant", len(sends), grants)
			}
			s := sends[0]
			if s.path != "/v1/projects/proj-1/messages:send" || s.auth != "Bearer ya29.token-1" || s.ctype != "application/json; charset=utf-8" {
				t.Errorf("request: got %s, %q, %q", s.path, s.auth, s.ctype)
			}
			if s.body != tc.body {
				t.Errorf("body:\n got %s\nwant %s", s.body, tc.body)
			}
		})
	}
}

func TestFCMAnswers(t *testing.T) {
	const (
		unregistered = `{"error":{"code":404,"message":"Requested entity was not found.","status":"NOT_FOUND",` +
			`"details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"UNREGISTERED"}]}}`
		badToken = `{"error":{"code":400,"message":"The registration token is not a valid FCM registration token","status":"INVALID_ARGUMENT",` +
			`"details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"INVALID_ARGUMENT"}]}}`
		badField = `{"error":{"code":400,"message":"Invalid value at 'message.data[0].value'","status":"INVALID_ARGUMENT",` +
			`"details":[{"@type":"type.googleapis.com/google.rpc.BadRequest","fieldViolations":[{"field":"message.data[0].value"}]}]}}`
		tokenField = `{"error":{"code":400,"message":"bad token","status":"INVALID_ARGUMENT",` +
			`"details":[{"@type":"type.googleapis.com/google.rpc.BadRequest","fieldViolations":[{"field":"message.token"}]}]}}`
		unavailable = `{"error":{"code":503,"status":"UNAVAILABLE"}}`
		quota       = `{"error":{"code":429,"status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"QUOTA_EXCEEDED"}]}}`
		notFound    = `<html>404 from a proxy</html>`
	)
	ok := fcmAnswer{200, `{"name":"projects/proj-1/messages/1"}`, ""}
	tests := []struct {
		name    string
		answers []fcmAnswer
		wantErr error
		sends   int
		grants  int
		stats   ProviderStats
		sink    []string
	}{
		{"UNREGISTERED removes the device", []fcmAnswer{{404, unregistered, ""}}, ErrInvalidDevice, 1, 1,
			ProviderStats{Invalid: 1}, []string{"app/inst9/UNREGISTERED"}},
		{"INVALID_ARGUMENT on the token removes the device", []fcmAnswer{{400, badToken, ""}}, ErrInvalidDevice, 1, 1,
			ProviderStats{Invalid: 1}, []string{"app/inst9/INVALID_ARGUMENT"}},
		{"a field violation on message.token removes the device", []fcmAnswer{{400, tokenField, ""}}, ErrInvalidDevice, 1, 1,
			ProviderStats{Invalid: 1}, []string{"app/inst9/INVALID_ARGUMENT"}},
		{"INVALID_ARGUMENT on the payload fails and keeps the device", []fcmAnswer{{400, badField, ""}}, ErrRejected, 1, 1,
			ProviderStats{Failed: 1}, nil},
		{"a bare 404 keeps the device", []fcmAnswer{{404, notFound, ""}}, ErrRejected, 1, 1,
			ProviderStats{Failed: 1}, nil},
		{"503 and 429 with Retry-After 0 are retried", []fcmAnswer{{503, unavailable, "0"}, {429, quota, "0"}, ok}, nil, 3, 1,
			ProviderStats{Sent: 1, Retried: 2}, nil},
		{"a Retry-After past MaxRetryAfter gives up", []fcmAnswer{{503, unavailable, "3600"}}, ErrFailed, 1, 1,
			ProviderStats{Failed: 1}, nil},
		{"401 gets a new access token once", []fcmAnswer{{401, `{"error":{"code":401,"status":"UNAUTHENTICATED"}}`, ""}, ok}, nil, 2, 2,
			ProviderStats{Sent: 1, Retried: 1}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g, f, sink := newFCMEnv(t)
			g.script(tc.answers...)
			err := f.send(context.Background(), fcmReqOf(`{"alert":"hi"}`, sink))
			if (tc.wantErr == nil) != (err == nil) || (tc.wantErr != nil && !errors.Is(err, tc.wantErr)) {
				t.Errorf("err: got %v, want %v", err, tc.wantErr)
			}
			sends, grants := g.got()
			if len(sends) != tc.sends || grants != tc.grants {
				t.Errorf("got %d sends and %d grants, want %d and %d", len(sends), grants, tc.sends, tc.grants)
			}
			if len(sends) == 2 && tc.grants == 2 && sends[0].auth == sends[1].auth {
				t.Errorf("the retry after 401 used the same token %s", sends[1].auth)
			}
			s := f.Stats()
			if n := s.Attempts.Count(); n != uint64(len(sends)) {
				t.Errorf("attempts timed: got %d, want one per send (%d)", n, len(sends))
			}
			if s.Attempts = (metric.LatencySnapshot{}); s != tc.stats {
				t.Errorf("stats: got %+v, want %+v", s, tc.stats)
			}
			if got := sink.calls(); strings.Join(got, ",") != strings.Join(tc.sink, ",") {
				t.Errorf("sink: got %v, want %v", got, tc.sink)
			}
		})
	}
}

func TestFCMTokenReused(t *testing.T) {
	g, f, sink := newFCMEnv(t)
	for range 3 {
		if err := f.send(context.Background(), fcmReqOf(`{"alert":"hi"}`, sink)); err != nil {
			t.Fatal(err)
		}
	}
	if sends, grants := g.got(); len(sends) != 3 || grants != 1 {
		t.Errorf("got %d sends and %d grants, want 3 sends on one access token", len(sends), grants)
	}
}

func TestNewFCMRefusesBadConfig(t *testing.T) {
	g := newFakeGoogle(t)
	var sa map[string]string
	json.Unmarshal(g.serviceAccount(), &sa)
	without := func(k string) []byte {
		m := map[string]string{}
		for a, b := range sa {
			if a != k {
				m[a] = b
			}
		}
		b, _ := json.Marshal(m)
		return b
	}
	for name, cfg := range map[string]FCMConfig{
		"not JSON":      {ServiceAccount: []byte("nope")},
		"no email":      {ServiceAccount: without("client_email")},
		"no key":        {ServiceAccount: without("private_key")},
		"no project":    {ServiceAccount: without("project_id")},
		"bad token url": {ServiceAccount: g.serviceAccount(), TokenURL: "::"},
	} {
		if f, err := NewFCM(cfg); !errors.Is(err, ErrConfig) {
			if f != nil {
				f.Close()
			}
			t.Errorf("%s: got %v, want ErrConfig", name, err)
		}
	}
	f, err := NewFCM(FCMConfig{ServiceAccount: without("project_id"), ProjectID: "other"})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if want := FCMURL + "/v1/projects/other/messages:send"; f.endpoint != want {
		t.Errorf("endpoint: got %s, want %s", f.endpoint, want)
	}
	if u, _ := url.Parse(f.jwt.TokenURL); u.Host != strings.TrimPrefix(g.srv.URL, "https://") {
		t.Errorf("token URL: got %s, want the key's token_uri", f.jwt.TokenURL)
	}
}

func TestRetryDelay(t *testing.T) {
	r := Retry{Backoff: 100 * time.Millisecond, MaxBackoff: 800 * time.Millisecond}.withDefaults()
	for n, want := range map[int]time.Duration{1: 100, 2: 200, 3: 400, 4: 800, 9: 800} {
		want *= time.Millisecond
		for range 50 {
			if d := r.delay(n, 0); d < want/2 || d > want {
				t.Fatalf("delay(%d): got %v, want in [%v, %v]", n, d, want/2, want)
			}
		}
	}
	if d := r.delay(1, 3*time.Second); d != 3*time.Second {
		t.Errorf("delay with Retry-After 3s: got %v", d)
	}
	now := time.Unix(1700000000, 0)
	for v, want := range map[string]time.Duration{"": 0, "7": 7 * time.Second, "-1": 0, "x": 0,
		now.Add(90 * time.Second).UTC().Format(http.TimeFormat): 90 * time.Second} {
		if got := retryAfter(http.Header{"Retry-After": {v}}, now); got != want {
			t.Errorf("Retry-After %q: got %v, want %v", v, got, want)
		}
	}
}
