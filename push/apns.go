package push

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// APNs hosts (Apple, "Sending notification requests to APNs").
const (
	APNsProduction = "https://api.push.apple.com"
	APNsSandbox    = "https://api.sandbox.push.apple.com"
)

// APNsConfig configures an APNs provider for one app. Zero fields take the
// defaults.
type APNsConfig struct {
	Key    []byte // the team's auth key (.p8 file contents)
	KeyID  string // the key's id (the kid of the token)
	TeamID string // the team id (the iss of the token)
	// Topic is the app's bundle id, used for devices that registered no
	// apnsTopic.
	Topic string
	// Sandbox sends to the development environment by default; without
	// it, only payloads with "_profile": "dev" go there (LeanCloud's rule).
	Sandbox bool
	// URL and SandboxURL are the two environments' base URLs
	// (APNsProduction, APNsSandbox); tests point them at a fake.
	URL, SandboxURL string
	// Expiry is how long APNs keeps a notification for a device that is
	// off (apns-expiration); DefaultExpiry.
	Expiry time.Duration
	Retry  Retry
	// Queue sizes the provider's own queue (DefaultDeviceQueue devices,
	// DefaultDeviceWorkers sends in flight).
	Queue QueueConfig
	// HTTPClient must speak HTTP/2 (APNs takes nothing else); the default
	// is an HTTP/2-only client with the system roots.
	HTTPClient *http.Client
	Now        func() time.Time
	Logger     *slog.Logger
}

// APNs pushes to Apple devices over HTTP/2 with token authentication. Push
// queues one send per Apple device of the request and returns at once;
// workers send them with retries (Retry), and a device APNs calls
// unregistered or bad (410 Unregistered or ExpiredToken, 400
// BadDeviceToken) goes to the request's Sink. It is safe for concurrent use; Close stops it.
type APNs struct {
	cfg   APNsConfig
	token *apnsToken
	q     *Queue
	c     counters
}

// NewAPNs checks cfg and starts an APNs provider.
func NewAPNs(cfg APNsConfig) (*APNs, error) {
	key, err := ParseP8(cfg.Key)
	if err != nil {
		return nil, err
	}
	if cfg.KeyID == "" || cfg.TeamID == "" {
		return nil, fmt.Errorf("%w: APNs needs a key id and a team id", ErrConfig)
	}
	for _, u := range []*string{&cfg.URL, &cfg.SandboxURL} {
		if *u == "" {
			continue
		}
		if p, err := url.Parse(*u); err != nil || (p.Scheme != "https" && p.Scheme != "http") || p.Host == "" {
			return nil, fmt.Errorf("%w: APNs URL %q", ErrConfig, *u)
		}
	}
	if cfg.URL == "" {
		cfg.URL = APNsProduction
	}
	if cfg.SandboxURL == "" {
		cfg.SandboxURL = APNsSandbox
	}
	if cfg.Expiry <= 0 {
		cfg.Expiry = DefaultExpiry
	}
	cfg.Retry = cfg.Retry.withDefaults()
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = HTTP2Client(nil)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	a := &APNs{cfg: cfg, token: &apnsToken{key: key, keyID: cfg.KeyID, teamID: cfg.TeamID, now: cfg.Now}}
	qc := cfg.Queue
	if qc.Size <= 0 {
		qc.Size = DefaultDeviceQueue
	}
	if qc.Workers <= 0 {
		qc.Workers = DefaultDeviceWorkers
	}
	if qc.Logger == nil {
		qc.Logger = cfg.Logger
	}
	a.q = NewQueue(providerFunc(a.send), qc)
	return a, nil
}

// HTTP2Client returns a client that speaks only HTTP/2 over TLS, trusting
// roots (the system's when nil).
func HTTP2Client(roots *x509.CertPool) *http.Client {
	t := &http.Transport{
		TLSClientConfig:     &tls.Config{MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     5 * time.Minute,
	}
	if roots != nil {
		t.TLSClientConfig.RootCAs = roots
	}
	var p http.Protocols
	p.SetHTTP2(true)
	t.Protocols = &p
	return &http.Client{Transport: t}
}

// providerFunc adapts a function to Provider.
type providerFunc func(ctx context.Context, r Request) error

func (f providerFunc) Push(ctx context.Context, r Request) error { return f(ctx, r) }

// Push queues r's Apple devices; it never blocks. Devices of other
// services are not counted here.
func (a *APNs) Push(ctx context.Context, r Request) error {
	return queueDevices(ctx, a.q, r, ServiceAPNs)
}

// Stats returns the counters, in devices.
func (a *APNs) Stats() ProviderStats { return a.c.stats(a.q) }

// Close stops the workers; devices still queued are discarded (counted as
// dropped).
func (a *APNs) Close() { a.q.Close() }

// apnsReason is APNs' error body.
type apnsReason struct {
	Reason string `json:"reason"`
}

// send pushes r.Devices[0], with retries.
func (a *APNs) send(ctx context.Context, r Request) error {
	d := r.Devices[0]
	n, err := apnsMessage(r.Payload, d)
	if err != nil {
		a.c.skipped.Add(1)
		return fmt.Errorf("%w: APNs payload: %v", ErrRejected, err)
	}
	if (n.teamID != "" && n.teamID != a.cfg.TeamID) || (d.TeamID != "" && d.TeamID != a.cfg.TeamID) {
		// Another team's device: this key cannot reach it.
		a.c.skipped.Add(1)
		return nil
	}
	topic := d.Topic
	if topic == "" {
		topic = a.cfg.Topic
	}
	base := a.cfg.URL
	if n.sandbox || a.cfg.Sandbox {
		base = a.cfg.SandboxURL
	}
	u := base + "/3/device/" + url.PathEscape(d.Token)
	expiration := strconv.FormatInt(a.cfg.Now().Add(a.cfg.Expiry).Unix(), 10)
	refreshed := false
	return sendDevice(ctx, a.cfg.Retry, &a.c, r.AppID, d, r.Sink, func(ctx context.Context) attemptResult {
		tok, err := a.token.get()
		if err != nil {
			return attemptResult{v: vFail, err: err}
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(n.body))
		if err != nil {
			return attemptResult{v: vFail, err: err}
		}
		h := req.Header
		h.Set("authorization", "bearer "+tok)
		h.Set("apns-topic", topic)
		h.Set("apns-push-type", n.pushType)
		h.Set("apns-expiration", expiration)
		h.Set("apns-priority", n.priority)
		if n.collapseID != "" {
			h.Set("apns-collapse-id", n.collapseID)
		}
		h.Set("content-type", "application/json")
		resp, err := a.cfg.HTTPClient.Do(req)
		if err != nil {
			return transportVerdict(ctx, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		if resp.StatusCode == http.StatusOK {
			return attemptResult{v: vSent}
		}
		var why apnsReason
		json.Unmarshal(body, &why)
		err = fmt.Errorf("APNs %d %s", resp.StatusCode, why.Reason)
		switch {
		case resp.StatusCode == http.StatusGone && (why.Reason == "Unregistered" || why.Reason == "ExpiredToken"),
			resp.StatusCode == http.StatusBadRequest && why.Reason == "BadDeviceToken":
			return attemptResult{v: vInvalid, reason: why.Reason, err: err}
		case resp.StatusCode == http.StatusForbidden && why.Reason == "ExpiredProviderToken" && !refreshed:
			refreshed = true
			a.token.expire(tok)
			return attemptResult{v: vRetry, reason: why.Reason, err: err}
		case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
			return attemptResult{v: vRetry, retryAfter: retryAfter(resp.Header, a.cfg.Now()), reason: why.Reason, err: err}
		}
		return attemptResult{v: vFail, reason: why.Reason, err: err}
	})
}
