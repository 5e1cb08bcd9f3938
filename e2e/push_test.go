package e2e

import (
	"bufio"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/client"
	"github.com/relaymesh/relaymesh/proto/lcpb"
)

// Device push end to end: a relaymesh dev whose app has APNs and FCM
// credentials pointing at fakes this test runs (an HTTP/2 TLS APNs that
// checks the provider token against the .p8's public key, an OAuth2 token
// endpoint that checks the service account's grant, an FCM send
// endpoint), devices registered the ways the SDKs register them (REST
// _Installation, session/open deviceToken or deviceId, report/upload), and
// the exact requests the push services get.

const (
	pushApp      = "push-app-0001"
	pushAppKey   = "push-app-key"
	pushMaster   = "push-master-key"
	otherApp     = "push-app-0002"
	otherAppKey  = "other-app-key"
	otherMaster  = "other-master-key"
	apnsKeyID    = "E2EKEY1234"
	apnsTeam     = "E2ETEAM123"
	apnsTopic    = "com.example.e2e"
	fcmProject   = "proj-e2e"
	fcmEmail     = "push@proj-e2e.iam.gserviceaccount.com"
	fcmKeyID     = "e2e-key-id"
	fcmGrantType = "urn:ietf:params:oauth:grant-type:jwt-bearer"
)

// pushReq is one request a fake push service got.
type pushReq struct {
	proto       int
	path        string
	header      http.Header
	body        string
	tokenVerify string // "" when the credential verified, else why not
}

// fakeServices are the fake APNs and FCM, with what they received.
type fakeServices struct {
	t        *testing.T
	apns     *httptest.Server
	fcm      *httptest.Server
	apnsKey  *ecdsa.PrivateKey
	fcmKey   *rsa.PrivateKey
	mu       sync.Mutex
	apnsReqs []pushReq
	fcmReqs  []pushReq
	grants   int
	dead     map[string]bool // APNs tokens answered 410 Unregistered
}

func newFakeServices(t *testing.T) *fakeServices {
	f := &fakeServices{t: t, dead: map[string]bool{}}
	var err error
	if f.apnsKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	if f.fcmKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		t.Fatal(err)
	}
	f.apns = httptest.NewUnstartedServer(http.HandlerFunc(f.serveAPNs))
	f.apns.EnableHTTP2 = true
	f.apns.StartTLS()
	t.Cleanup(f.apns.Close)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /token", f.serveToken)
	mux.HandleFunc("POST /v1/projects/{project}/{send}", f.serveFCM)
	f.fcm = httptest.NewTLSServer(mux)
	t.Cleanup(f.fcm.Close)
	return f
}

var jwtB64 = base64.RawURLEncoding

// jwtParts decodes a JWT's header and claims into h and c.
func jwtParts(tok string, h, c any) ([]string, error) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return nil, fmt.Errorf("%d parts", len(parts))
	}
	for i, v := range []any{h, c} {
		b, err := jwtB64.DecodeString(parts[i])
		if err != nil {
			return nil, err
		}
		if err := json.Unmarshal(b, v); err != nil {
			return nil, err
		}
	}
	return parts, nil
}

func (f *fakeServices) serveAPNs(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	why := ""
	var h struct{ Alg, Kid string }
	var c struct {
		Iss string
		Iat int64
	}
	parts, err := jwtParts(strings.TrimPrefix(r.Header.Get("Authorization"), "bearer "), &h, &c)
	switch {
	case err != nil:
		why = err.Error()
	case h.Alg != "ES256" || h.Kid != apnsKeyID || c.Iss != apnsTeam || time.Since(time.Unix(c.Iat, 0)).Abs() > time.Hour:
		why = fmt.Sprintf("header %+v claims %+v", h, c)
	default:
		sig, _ := jwtB64.DecodeString(parts[2])
		sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
		if len(sig) != 64 || !ecdsa.Verify(&f.apnsKey.PublicKey, sum[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
			why = "signature does not verify"
		}
	}
	tok := r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]
	f.mu.Lock()
	f.apnsReqs = append(f.apnsReqs, pushReq{proto: r.ProtoMajor, path: r.URL.Path, header: r.Header.Clone(), body: string(body), tokenVerify: why})
	dead := f.dead[tok]
	f.mu.Unlock()
	switch {
	case why != "":
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, `{"reason":"InvalidProviderToken"}`)
	case dead:
		w.WriteHeader(http.StatusGone)
		io.WriteString(w, `{"reason":"Unregistered","timestamp":1700000000000}`)
	default:
		w.Header().Set("apns-id", "00000000-0000-0000-0000-000000000001")
	}
}

func (f *fakeServices) serveToken(w http.ResponseWriter, r *http.Request) {
	r.ParseForm()
	var h struct{ Alg, Kid string }
	var c struct{ Iss, Scope, Aud string }
	parts, err := jwtParts(r.PostForm.Get("assertion"), &h, &c)
	ok := err == nil && r.PostForm.Get("grant_type") == fcmGrantType && h.Alg == "RS256" && h.Kid == fcmKeyID &&
		c.Iss == fcmEmail && c.Scope == "https://www.googleapis.com/auth/firebase.messaging" && c.Aud == f.fcm.URL+"/token"
	if ok {
		sig, _ := jwtB64.DecodeString(parts[2])
		sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
		ok = rsa.VerifyPKCS1v15(&f.fcmKey.PublicKey, crypto.SHA256, sum[:], sig) == nil
	}
	if !ok {
		f.t.Errorf("fake Google: a bad JWT grant: %v %+v %+v", err, h, c)
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, `{"error":"invalid_grant"}`)
		return
	}
	f.mu.Lock()
	f.grants++
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, `{"access_token":"ya29.e2e-access","token_type":"Bearer","expires_in":3600}`)
}

func (f *fakeServices) serveFCM(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	why := ""
	if r.Header.Get("Authorization") != "Bearer ya29.e2e-access" {
		why = "authorization " + r.Header.Get("Authorization")
	}
	f.mu.Lock()
	f.fcmReqs = append(f.fcmReqs, pushReq{proto: r.ProtoMajor, path: r.URL.Path, header: r.Header.Clone(), body: string(body), tokenVerify: why})
	f.mu.Unlock()
	if why != "" {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, `{"name":"projects/`+fcmProject+`/messages/0:1"}`)
}

// waitAPNs waits for an APNs request to path whose body contains marker.
func (f *fakeServices) waitAPNs(t *testing.T, path, marker string) pushReq {
	t.Helper()
	return f.wait(t, "APNs "+path+" "+marker, func() []pushReq { return f.apnsReqs }, func(r pushReq) bool {
		return r.path == path && strings.Contains(r.body, marker)
	})
}

func (f *fakeServices) waitFCM(t *testing.T, marker string) pushReq {
	t.Helper()
	return f.wait(t, "FCM "+marker, func() []pushReq { return f.fcmReqs }, func(r pushReq) bool { return strings.Contains(r.body, marker) })
}

func (f *fakeServices) wait(t *testing.T, what string, list func() []pushReq, ok func(pushReq) bool) pushReq {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		f.mu.Lock()
		reqs := append([]pushReq(nil), list()...)
		f.mu.Unlock()
		for _, r := range reqs {
			if ok(r) {
				if r.tokenVerify != "" {
					t.Fatalf("%s: the credential did not verify: %s", what, r.tokenVerify)
				}
				return r
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not received; got %d requests", what, len(reqs))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (f *fakeServices) count(path string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, r := range f.apnsReqs {
		if r.path == path {
			n++
		}
	}
	return n
}

func certPEM(s *httptest.Server) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw})
}

// startPushDev writes the credentials and the config and starts relaymesh
// dev.
func startPushDev(t *testing.T, f *fakeServices, extra ...string) *devProc {
	t.Helper()
	dir := t.TempDir()
	der, err := x509.MarshalPKCS8PrivateKey(f.apnsKey)
	if err != nil {
		t.Fatal(err)
	}
	rder, _ := x509.MarshalPKCS8PrivateKey(f.fcmKey)
	sa, _ := json.Marshal(map[string]string{"type": "service_account", "project_id": fcmProject, "private_key_id": fcmKeyID,
		"private_key": string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: rder})), "client_email": fcmEmail,
		"token_uri": f.fcm.URL + "/token"})
	for name, b := range map[string][]byte{
		"AuthKey.p8": pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
		"sa.json":    sa, "apns.pem": certPEM(f.apns), "fcm.pem": certPEM(f.fcm),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg := filepath.Join(dir, "relaymesh.toml")
	if err := os.WriteFile(cfg, []byte(`[[apps]]
id = "`+pushApp+`"
key = "`+pushAppKey+`"
master_key = "`+pushMaster+`"
[apps.push]
expiry = "24h"
[apps.push.apns]
key_file = "AuthKey.p8"
key_id = "`+apnsKeyID+`"
team_id = "`+apnsTeam+`"
topic = "`+apnsTopic+`"
url = "`+f.apns.URL+`"
sandbox_url = "`+f.apns.URL+`/sandbox"
ca_file = "apns.pem"
[apps.push.fcm]
service_account_file = "sa.json"
url = "`+f.fcm.URL+`"
ca_file = "fcm.pem"

[[apps]]
id = "`+otherApp+`"
key = "`+otherAppKey+`"
master_key = "`+otherMaster+`"
`), 0o600); err != nil {
		t.Fatal(err)
	}
	return startDev(t, filepath.Join(dir, "data"), freeAddr(t), append([]string{"--config", cfg}, extra...)...)
}

// rest calls the REST API of p; headers are "Name: value".
func restCall(t *testing.T, p *devProc, method, path, body string, headers ...string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+p.Addr+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ": ")
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	raw, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("%s %s: %d %q is not a JSON object", method, path, resp.StatusCode, raw)
	}
	return resp.StatusCode, out
}

var (
	pushAppKeyHdr = []string{"X-LC-Id: " + pushApp, "X-LC-Key: " + pushAppKey}
	pushMasterHdr = []string{"X-LC-Id: " + pushApp, "X-LC-Key: " + pushMaster + ",master"}
)

// installations lists the push app's installations matching where.
func installations(t *testing.T, p *devProc, where string, hdr ...string) []any {
	t.Helper()
	if hdr == nil {
		hdr = pushMasterHdr
	}
	status, body := restCall(t, p, "GET", "/1.1/installations?limit=1000&where="+url.QueryEscape(where), "", hdr...)
	if status != 200 {
		t.Fatalf("list installations: %d %v", status, body)
	}
	rows, _ := body["results"].([]any)
	return rows
}

// metric reads one series from /metrics.
func metric(t *testing.T, p *devProc, series string) int64 {
	t.Helper()
	resp, err := http.Get("http://" + p.Addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			n, _ := strconv.ParseFloat(v, 64) // client_golang writes 1e6 and up as 1e+06
			return int64(n)
		}
	}
	t.Fatalf("no series %s on /metrics", series)
	return 0
}

func waitMetric(t *testing.T, p *devProc, series string, want int64) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		got := metric(t, p, series)
		if got == want {
			return
		}
		if got > want || time.Now().After(deadline) {
			t.Fatalf("%s = %d, want %d", series, got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// nativeOpen logs peer in over the raw protocol the way a native SDK does.
func nativeOpen(t *testing.T, ctx context.Context, p *devProc, peer string, sm *lcpb.SessionCommand) *raw {
	t.Helper()
	r, _, err := dialRaw(t, ctx, p.URL, lcpb.SubprotocolBinary3)
	if err != nil {
		t.Fatal(err)
	}
	r.send(ctx, &lcpb.GenericCommand{Cmd: lcpb.CommandType_session.Enum(), Op: lcpb.OpType_open.Enum(), I: proto.Int32(1),
		AppId: proto.String(pushApp), PeerId: proto.String(peer), SessionMessage: sm})
	if c := r.next(ctx); c.GetOp() != lcpb.OpType_opened {
		t.Fatalf("open %s: got %v/%v %v", peer, c.GetCmd(), c.GetOp(), c.GetErrorMessage())
	}
	return r
}

// waitOffline polls check-online until none of ids has a session.
func waitOffline(t *testing.T, p *devProc, ids ...string) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"client_ids": ids})
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, out := restCall(t, p, "POST", "/1.2/rtm/clients/check-online", string(body), pushMasterHdr...)
		if res, _ := out["results"].([]any); len(res) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still online: %v", out)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

const (
	tokBob   = "b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0"
	tokCarol = "ca201ca201ca201ca201ca201ca201ca201ca201ca201ca201ca201ca201ca20"
)

// TestDevicePushEndToEnd: devices registered by REST plus login (Swift
// and Java), and by report/upload, get the exact APNs and FCM requests
// when their users are offline; a token APNs calls unregistered removes
// the device, and the next message sends nothing to it.
func TestDevicePushEndToEnd(t *testing.T) {
	f := newFakeServices(t)
	p := startPushDev(t, f)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	// bob (Swift): the app saved its installation, then logs in with the
	// token as deviceToken.
	status, body := restCall(t, p, "POST", "/1.1/installations",
		`{"deviceType":"ios","deviceToken":"`+strings.ToUpper(tokBob)+`","apnsTopic":"com.example.e2e.bob","timeZone":"Asia/Shanghai","channels":["public"]}`,
		pushAppKeyHdr...)
	if status != 201 || body["objectId"] == nil {
		t.Fatalf("POST /1.1/installations: %d %v", status, body)
	}
	bobDevice := body["objectId"].(string)
	bob := nativeOpen(t, ctx, p, "bob", &lcpb.SessionCommand{Ua: proto.String("LeanCloud-Swift-SDK/17.11.0"),
		ConfigBitmap: proto.Int64(187), DeviceToken: proto.String(tokBob)})
	// carol (Swift with no token at login: a UDID) reports her token later.
	carol := nativeOpen(t, ctx, p, "carol", &lcpb.SessionCommand{Ua: proto.String("LeanCloud-Swift-SDK/17.11.0"),
		ConfigBitmap: proto.Int64(187), DeviceToken: proto.String("6F9619FF-8B86-D011-B42D-00C04FC964FF")})
	rep := carol.do(t, ctx, "carol", -7, &lcpb.GenericCommand{Cmd: lcpb.CommandType_report.Enum(), Op: lcpb.OpType_upload.Enum(),
		ReportMessage: &lcpb.ReportCommand{Initiative: proto.Bool(true), Type: proto.String("token"), Data: proto.String(tokCarol)}})
	wantOp(t, "report/upload", rep, lcpb.CommandType_report, lcpb.OpType_uploaded)
	// dave (Java): the installation with its FCM token, then a login with
	// deviceId = installationId and configBitmap bit 2.
	status, body = restCall(t, p, "POST", "/1.1/installations?fetchWhenSave=true",
		`{"deviceType":"android","installationId":"d4ve5f2c9a","registrationId":"fcm-dave-token","vendor":"fcm","timeZone":"UTC","@type":"java.util.concurrent.ConcurrentHashMap"}`,
		pushAppKeyHdr...)
	if status != 201 || body["installationId"] != "d4ve5f2c9a" || body["vendor"] != "fcm" {
		t.Fatalf("POST android installation: %d %v", status, body)
	}
	dave := nativeOpen(t, ctx, p, "dave", &lcpb.SessionCommand{Ua: proto.String("LeanCloud-Java-SDK/8.2.28"),
		ConfigBitmap: proto.Int64(175), DeviceId: proto.String("d4ve5f2c9a")})

	// The bindings are visible as channels.
	_, row := restCall(t, p, "GET", "/1.1/installations/"+bobDevice, "", pushAppKeyHdr...)
	if chs, _ := row["channels"].([]any); fmt.Sprint(chs) != "[bob public]" || row["deviceToken"] != tokBob {
		t.Fatalf("bob's installation: %v, want channels [bob public] and the token lower-cased", row)
	}
	if rows := installations(t, p, `{"channels":"carol"}`); len(rows) != 1 || rows[0].(map[string]any)["deviceType"] != "ios" {
		t.Fatalf("carol's devices: %v", rows)
	}

	// Everyone drops off (no logout: the bindings stay).
	for _, r := range []*raw{bob, carol, dave} {
		r.ws.CloseNow()
	}
	waitOffline(t, p, "bob", "carol", "dave")

	alice := dial(t, ctx, p.URL, pushApp, "alice")
	cid, err := alice.CreateConversation(ctx, []string{"bob", "carol", "dave", "erin"}, "push", nil, false)
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	if _, err := alice.Send(ctx, cid, "first", client.SendOptions{
		PushData: `{"alert":"new message","badge":"Increment","sound":"default","ios":{"thread-id":"t1"},"android":{"title":"Chat"}}`}); err != nil {
		t.Fatal(err)
	}
	r := f.waitAPNs(t, "/3/device/"+tokBob, "new message")
	after := time.Now()
	if r.proto != 2 {
		t.Errorf("APNs request over HTTP/%d, want HTTP/2", r.proto)
	}
	if want := `{"aps":{"alert":"new message","badge":1,"sound":"default","thread-id":"t1"}}`; r.body != want {
		t.Errorf("APNs body for bob:\n got %s\nwant %s", r.body, want)
	}
	exp, _ := strconv.ParseInt(r.header.Get("apns-expiration"), 10, 64)
	if exp < before.Add(24*time.Hour).Unix() || exp > after.Add(24*time.Hour).Unix()+1 {
		t.Errorf("apns-expiration %d: want now + 24h (the app's expiry)", exp)
	}
	for k, v := range map[string]string{"apns-topic": "com.example.e2e.bob", "apns-push-type": "alert", "apns-priority": "10",
		"Content-Type": "application/json", "apns-collapse-id": ""} {
		if got := r.header.Get(k); got != v {
			t.Errorf("APNs header %s: got %q, want %q", k, got, v)
		}
	}
	r = f.waitAPNs(t, "/3/device/"+tokCarol, "new message")
	if r.header.Get("apns-topic") != apnsTopic || r.body != `{"aps":{"alert":"new message","badge":1,"sound":"default","thread-id":"t1"}}` {
		t.Errorf("APNs for carol: topic %q body %s, want the app's topic and her first badge", r.header.Get("apns-topic"), r.body)
	}
	r = f.waitFCM(t, "fcm-dave-token")
	want := `{"message":{"token":"fcm-dave-token","notification":{"title":"Chat","body":"new message"},` +
		`"data":{"payload":"{\"alert\":\"new message\",\"badge\":\"Increment\",\"sound\":\"default\",\"title\":\"Chat\"}"},` +
		`"android":{"priority":"HIGH","ttl":"86400s"}}}`
	if r.path != "/v1/projects/"+fcmProject+"/messages:send" || r.body != want {
		t.Errorf("FCM request: %s\n got %s\nwant %s", r.path, r.body, want)
	}
	waitMetric(t, p, "relaymesh_core_push_devices_total", 3) // erin has no device

	// APNs says carol's token is dead: the device goes.
	f.mu.Lock()
	f.dead[tokCarol] = true
	f.mu.Unlock()
	if _, err := alice.Send(ctx, cid, "second", client.SendOptions{PushData: `{"alert":"second","_profile":"dev"}`}); err != nil {
		t.Fatal(err)
	}
	f.waitAPNs(t, "/sandbox/3/device/"+tokBob, "second") // _profile dev: the sandbox
	f.waitAPNs(t, "/sandbox/3/device/"+tokCarol, "second")
	deadline := time.Now().Add(10 * time.Second)
	for len(installations(t, p, `{"channels":"carol"}`)) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("carol's device was not removed after 410 Unregistered")
		}
		time.Sleep(10 * time.Millisecond)
	}
	waitMetric(t, p, `relaymesh_push_provider_invalid_total{provider="apns"}`, 1)
	waitMetric(t, p, "relaymesh_core_push_devices_removed_total", 1)

	// The next message reaches bob and dave, and nothing goes to carol's
	// old token: her push request carries no device.
	if _, err := alice.Send(ctx, cid, "third", client.SendOptions{PushData: `{"alert":"third"}`}); err != nil {
		t.Fatal(err)
	}
	f.waitAPNs(t, "/3/device/"+tokBob, "third")
	f.waitFCM(t, "third")
	waitMetric(t, p, "relaymesh_push_sent_total", 3)             // all three requests went through the providers
	waitMetric(t, p, "relaymesh_core_push_devices_total", 3+3+2) // the third had bob and dave only
	if n := f.count("/3/device/"+tokCarol) + f.count("/sandbox/3/device/"+tokCarol); n != 2 {
		t.Errorf("requests to carol's dead token: got %d, want 2 (first, second)", n)
	}
	waitMetric(t, p, `relaymesh_push_provider_sent_total{provider="apns"}`, 4) // bob ×3, carol ×1
	waitMetric(t, p, `relaymesh_push_provider_sent_total{provider="fcm"}`, 3)
	f.mu.Lock()
	grants := f.grants
	f.mu.Unlock()
	if grants != 1 {
		t.Errorf("OAuth2 grants: got %d, want 1 (the access token is reused)", grants)
	}

	// A logout unbinds: dave logs in and out, the next message has no
	// device for him.
	dave = nativeOpen(t, ctx, p, "dave", &lcpb.SessionCommand{ConfigBitmap: proto.Int64(175), DeviceId: proto.String("d4ve5f2c9a")})
	rep = dave.do(t, ctx, "dave", 2, &lcpb.GenericCommand{Cmd: lcpb.CommandType_session.Enum(), Op: lcpb.OpType_close.Enum(), SessionMessage: &lcpb.SessionCommand{}})
	wantOp(t, "session/close", rep, lcpb.CommandType_session, lcpb.OpType_closed)
	deadline = time.Now().Add(10 * time.Second)
	for len(installations(t, p, `{"channels":"dave"}`)) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("dave's binding survived his logout")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if rows := installations(t, p, `{"installationId":"d4ve5f2c9a"}`); len(rows) != 1 {
		t.Errorf("dave's installation itself: got %v, want it kept", rows)
	}
}

// TestDevicePushAttacks misuses the device endpoints: no keys, huge and
// deep JSON, another app's device, a report/upload flood. Each is refused
// with a LeanCloud code and changes nothing.
func TestDevicePushAttacks(t *testing.T) {
	f := newFakeServices(t)
	p := startPushDev(t, f) // ops_per_minute: LeanCloud's 30
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	status, body := restCall(t, p, "POST", "/1.1/installations", `{"deviceType":"ios","deviceToken":"`+tokBob+`"}`, pushAppKeyHdr...)
	if status != 201 {
		t.Fatalf("POST: %d %v", status, body)
	}
	bobDevice := body["objectId"].(string)
	count := func() int { return len(installations(t, p, `{}`)) }
	base := count()
	deep := `{"deviceType":"android","installationId":"x","a":` + strings.Repeat("[", 11000) + strings.Repeat("]", 11000) + `}`
	for _, tc := range []struct {
		name, method, path, body string
		hdr                      []string
		status                   int
		code                     float64
	}{
		{"no key", "POST", "/1.1/installations", `{"deviceType":"ios","deviceToken":"` + tokCarol + `"}`, []string{"X-LC-Id: " + pushApp}, 401, 401},
		{"the other app's key", "POST", "/1.1/installations", `{"deviceType":"ios","deviceToken":"` + tokCarol + `"}`,
			[]string{"X-LC-Id: " + pushApp, "X-LC-Key: " + otherAppKey}, 401, 401},
		{"list with the app key", "GET", "/1.1/installations", "", pushAppKeyHdr, 403, 119},
		{"delete with the app key", "DELETE", "/1.1/installations/" + bobDevice, "", pushAppKeyHdr, 403, 119},
		{"deep JSON", "POST", "/1.1/installations", deep, pushAppKeyHdr, 400, 107},
		{"huge body", "POST", "/1.1/installations", `{"deviceType":"android","installationId":"x","a":"` + strings.Repeat("x", 100<<10) + `"}`, pushAppKeyHdr, 413, 1},
		{"a path in the token", "POST", "/1.1/installations", `{"deviceType":"ios","deviceToken":"../../3/device/` + tokCarol + `"}`, pushAppKeyHdr, 400, 114},
		{"the other app reads this app's device", "GET", "/1.1/installations/" + bobDevice, "", []string{"X-LC-Id: " + otherApp, "X-LC-Key: " + otherAppKey}, 404, 101},
		{"the other app updates it", "PUT", "/1.1/installations/" + bobDevice, `{"channels":["bob"]}`,
			[]string{"X-LC-Id: " + otherApp, "X-LC-Key: " + otherMaster + ",master"}, 404, 101},
	} {
		status, body := restCall(t, p, tc.method, tc.path, tc.body, tc.hdr...)
		if status != tc.status || body["code"] != tc.code {
			t.Errorf("%s: got %d %v, want %d code %v", tc.name, status, body, tc.status, tc.code)
		}
	}
	if n := count(); n != base {
		t.Errorf("installations after the refused requests: %d, want %d", n, base)
	}
	// The other app's registry is its own: the same token there is another
	// row, and this app's row is unchanged.
	status, body = restCall(t, p, "POST", "/1.1/installations", `{"deviceType":"ios","deviceToken":"`+tokBob+`"}`,
		"X-LC-Id: "+otherApp, "X-LC-Key: "+otherAppKey)
	if status != 201 || body["objectId"] == bobDevice {
		t.Errorf("the other app's POST of the same token: %d %v, want a new row", status, body)
	}
	if rows := installations(t, p, `{"deviceToken":"`+tokBob+`"}`); len(rows) != 1 || rows[0].(map[string]any)["objectId"] != bobDevice {
		t.Errorf("this app's rows for the token: %v", rows)
	}

	// Channels saved with the app key do not route someone else's pushes:
	// mallory claims victim's channel; victim's message pushes nowhere.
	status, _ = restCall(t, p, "POST", "/1.1/installations", `{"deviceType":"ios","deviceToken":"`+tokCarol+`","channels":["victim"]}`, pushAppKeyHdr...)
	if status != 201 {
		t.Fatalf("mallory's POST: %d", status)
	}
	alice := dial(t, ctx, p.URL, pushApp, "alice")
	cid, err := alice.CreateConversation(ctx, []string{"victim", "bob"}, "", nil, false)
	if err != nil {
		t.Fatal(err)
	}
	// bob's device is bound by the master key: the positive control.
	if status, body := restCall(t, p, "PUT", "/1.1/installations/"+bobDevice, `{"channels":["bob"]}`, pushMasterHdr...); status != 200 {
		t.Fatalf("master PUT: %d %v", status, body)
	}
	if _, err := alice.Send(ctx, cid, "secret", client.SendOptions{PushData: `{"alert":"secret for victim"}`}); err != nil {
		t.Fatal(err)
	}
	f.waitAPNs(t, "/3/device/"+tokBob, "secret for victim")
	waitMetric(t, p, "relaymesh_push_sent_total", 1)
	waitMetric(t, p, "relaymesh_core_push_devices_total", 1) // bob's only
	if n := f.count("/3/device/" + tokCarol); n != 0 {
		t.Errorf("mallory's device got %d pushes for victim", n)
	}

	// report/upload flood: the edge's limit (30 operations a minute)
	// refuses the excess with 4116, and a clientId keeps at most 16
	// devices however many tokens it reports.
	frank := nativeOpen(t, ctx, p, "frank", &lcpb.SessionCommand{ConfigBitmap: proto.Int64(187)})
	const n = 40
	for i := range n {
		tok := fmt.Sprintf("%064x", 0xf0000+i)
		frank.send(ctx, &lcpb.GenericCommand{Cmd: lcpb.CommandType_report.Enum(), Op: lcpb.OpType_upload.Enum(), I: proto.Int32(int32(100 + i)),
			ReportMessage: &lcpb.ReportCommand{Type: proto.String("token"), Data: proto.String(tok)}})
	}
	uploaded, limited := 0, 0
	for range n {
		c := frank.next(ctx)
		switch {
		case c.GetCmd() == lcpb.CommandType_report && c.GetOp() == lcpb.OpType_uploaded:
			uploaded++
		case c.GetCmd() == lcpb.CommandType_error && c.GetErrorMessage().GetCode() == lcpb.ErrMessageSentQuotaExceeded:
			limited++
		default:
			t.Fatalf("flood reply: %v", c)
		}
	}
	if uploaded == 0 || limited == 0 || uploaded > 30 {
		t.Errorf("flood: %d uploaded, %d refused with 4116; want at most 30 uploaded and the rest refused", uploaded, limited)
	}
	if rows := installations(t, p, `{"channels":"frank"}`); len(rows) != min(uploaded, 16) {
		t.Errorf("frank's devices: got %d, want %d (at most 16 per clientId)", len(rows), min(uploaded, 16))
	}
	// A token that is no APNs token is refused with 114; nothing is bound.
	other := nativeOpen(t, ctx, p, "grace", &lcpb.SessionCommand{ConfigBitmap: proto.Int64(187)})
	other.send(ctx, &lcpb.GenericCommand{Cmd: lcpb.CommandType_report.Enum(), Op: lcpb.OpType_upload.Enum(), I: proto.Int32(9),
		ReportMessage: &lcpb.ReportCommand{Type: proto.String("token"), Data: proto.String("../evil")}})
	if c := other.next(ctx); c.GetCmd() != lcpb.CommandType_error || c.GetErrorMessage().GetCode() != 114 || c.GetI() != 9 {
		t.Errorf("a bad token: got %v, want error 114 with i 9", c)
	}
	if rows := installations(t, p, `{"channels":"grace"}`); len(rows) != 0 {
		t.Errorf("grace's devices: %v", rows)
	}
}

// TestGlobalBroadcastPushesEveryDevice: a global broadcast's push goes to
// every registered device of the app (LeanCloud: "all iOS and Android
// users get this push"), whoever it is bound to, subscriber or not; a
// subscribers' broadcast's push only to its offline subscribers' devices.
func TestGlobalBroadcastPushesEveryDevice(t *testing.T) {
	f := newFakeServices(t)
	p := startPushDev(t, f)
	// An iOS device nobody is bound to and an Android device bound to no
	// subscriber: neither is a subscriber of anything.
	if status, body := restCall(t, p, "POST", "/1.1/installations", `{"deviceType":"ios","deviceToken":"`+tokBob+`"}`,
		pushAppKeyHdr...); status != 201 {
		t.Fatalf("POST ios installation: %d %v", status, body)
	}
	if status, body := restCall(t, p, "POST", "/1.1/installations",
		`{"deviceType":"android","installationId":"gl0bal1","registrationId":"fcm-global-token","vendor":"fcm"}`, pushAppKeyHdr...); status != 201 {
		t.Fatalf("POST android installation: %d %v", status, body)
	}
	status, conv := restCall(t, p, "POST", "/1.2/rtm/service-conversations", `{"name":"news"}`, pushMasterHdr...)
	if status != 200 {
		t.Fatalf("create service conversation: %d %v", status, conv)
	}
	cid := conv["objectId"].(string)

	// The subscribers' broadcast has no subscribers: no device is pushed.
	if status, body := restCall(t, p, "POST", "/1.2/rtm/service-conversations/"+cid+"/broadcasts",
		`{"from_client":"sys","message":"subs","push":{"alert":"for subscribers"}}`, pushMasterHdr...); status != 200 {
		t.Fatalf("subscribers' broadcast: %d %v", status, body)
	}
	if status, body := restCall(t, p, "POST", "/1.2/rtm/broadcasts",
		`{"conv_id":"`+cid+`","from_client":"sys","message":"all","push":{"alert":"for everyone"}}`, pushMasterHdr...); status != 200 {
		t.Fatalf("global broadcast: %d %v", status, body)
	}
	r := f.waitAPNs(t, "/3/device/"+tokBob, "for everyone")
	if r.body != `{"aps":{"alert":"for everyone"}}` {
		t.Errorf("APNs body: got %s", r.body)
	}
	f.waitFCM(t, "fcm-global-token")
	// One push request in all (the global broadcast's), with both devices:
	// the subscribers' broadcast, sent first, queued none.
	if n := metric(t, p, "relaymesh_core_push_requests_total"); n != 1 {
		t.Errorf("push requests: got %d, want 1", n)
	}
	waitMetric(t, p, "relaymesh_core_push_devices_total", 2)
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range append(append([]pushReq(nil), f.apnsReqs...), f.fcmReqs...) {
		if strings.Contains(r.body, "for subscribers") {
			t.Errorf("a device got the subscribers' broadcast push: %s %s", r.path, r.body)
		}
	}
}
