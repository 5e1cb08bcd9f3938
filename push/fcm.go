package push

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/jwt"
)

// FCM HTTP v1 defaults (Firebase, "Migrate from legacy FCM APIs to HTTP
// v1"; Google OAuth2 service accounts).
const (
	FCMURL       = "https://fcm.googleapis.com"
	FCMScope     = "https://www.googleapis.com/auth/firebase.messaging"
	GoogleTokens = "https://oauth2.googleapis.com/token"
)

// FCMConfig configures an FCM provider for one app. Zero fields take the
// defaults.
type FCMConfig struct {
	// ServiceAccount is the Firebase service-account key (the JSON file
	// the Firebase console downloads): client_email, private_key,
	// private_key_id, project_id, token_uri.
	ServiceAccount []byte
	// ProjectID overrides the key's project_id.
	ProjectID string
	// URL is the FCM base URL (FCMURL); TokenURL the OAuth2 token
	// endpoint (the key's token_uri, else GoogleTokens). Tests point both
	// at fakes.
	URL, TokenURL string
	// Expiry is how long FCM keeps a message for a device that is off
	// (android.ttl); DefaultExpiry, at most 28 days (FCM's limit).
	Expiry     time.Duration
	Retry      Retry
	Queue      QueueConfig
	HTTPClient *http.Client // for both FCM and the token endpoint
	Now        func() time.Time
	Logger     *slog.Logger
}

// serviceAccount is the part of a service-account key FCM needs.
type serviceAccount struct {
	Type         string `json:"type"`
	ProjectID    string `json:"project_id"`
	PrivateKeyID string `json:"private_key_id"`
	PrivateKey   string `json:"private_key"`
	ClientEmail  string `json:"client_email"`
	TokenURI     string `json:"token_uri"`
}

// FCM pushes to Android devices registered through Firebase Cloud
// Messaging, over the HTTP v1 API with an OAuth2 access token made from a
// service account (golang.org/x/oauth2/jwt: a JWT grant, RS256). Like APNs,
// Push queues one send per FCM device and returns at once; a device FCM
// calls UNREGISTERED, or whose token it calls an INVALID_ARGUMENT, goes to
// the request's Sink.
type FCM struct {
	cfg      FCMConfig
	endpoint string // {URL}/v1/projects/{project}/messages:send
	jwt      *jwt.Config
	q        *Queue
	c        counters

	mu     sync.Mutex
	tokens oauth2.TokenSource // guarded by mu; replaced after a 401
}

// NewFCM checks cfg and starts an FCM provider.
func NewFCM(cfg FCMConfig) (*FCM, error) {
	var sa serviceAccount
	if err := json.Unmarshal(cfg.ServiceAccount, &sa); err != nil {
		return nil, fmt.Errorf("%w: FCM service account: %v", ErrConfig, err)
	}
	if sa.ClientEmail == "" || sa.PrivateKey == "" {
		return nil, fmt.Errorf("%w: FCM service account: client_email and private_key are required", ErrConfig)
	}
	if cfg.ProjectID == "" {
		cfg.ProjectID = sa.ProjectID
	}
	if cfg.ProjectID == "" {
		return nil, fmt.Errorf("%w: FCM: no project id (project_id in the key or the config)", ErrConfig)
	}
	if cfg.TokenURL == "" {
		cfg.TokenURL = sa.TokenURI
	}
	if cfg.TokenURL == "" {
		cfg.TokenURL = GoogleTokens
	}
	if cfg.URL == "" {
		cfg.URL = FCMURL
	}
	for _, u := range []string{cfg.URL, cfg.TokenURL} {
		if p, err := url.Parse(u); err != nil || (p.Scheme != "https" && p.Scheme != "http") || p.Host == "" {
			return nil, fmt.Errorf("%w: FCM URL %q", ErrConfig, u)
		}
	}
	if cfg.Expiry <= 0 {
		cfg.Expiry = DefaultExpiry
	}
	cfg.Expiry = min(cfg.Expiry, 28*24*time.Hour)
	cfg.Retry = cfg.Retry.withDefaults()
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	f := &FCM{
		cfg:      cfg,
		endpoint: cfg.URL + "/v1/projects/" + url.PathEscape(cfg.ProjectID) + "/messages:send",
		jwt: &jwt.Config{Email: sa.ClientEmail, PrivateKey: []byte(sa.PrivateKey), PrivateKeyID: sa.PrivateKeyID,
			Scopes: []string{FCMScope}, TokenURL: cfg.TokenURL},
	}
	f.tokens = f.newTokenSource()
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
	f.q = NewQueue(providerFunc(f.send), qc)
	return f, nil
}

// newTokenSource makes a caching token source whose token requests use the
// provider's HTTP client. It keeps a token until shortly before it expires.
func (f *FCM) newTokenSource() oauth2.TokenSource {
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, f.cfg.HTTPClient)
	return f.jwt.TokenSource(ctx)
}

func (f *FCM) tokenSource() oauth2.TokenSource {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.tokens
}

// resetToken drops the cached token if ts is still the source in use (FCM
// answered 401: the token was revoked).
func (f *FCM) resetToken(ts oauth2.TokenSource) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.tokens == ts {
		f.tokens = f.newTokenSource()
	}
}

// Push queues r's FCM devices; it never blocks.
func (f *FCM) Push(ctx context.Context, r Request) error {
	return queueDevices(ctx, f.q, r, ServiceFCM)
}

// Stats returns the counters, in devices.
func (f *FCM) Stats() ProviderStats { return f.c.stats(f.q) }

// Close stops the workers; devices still queued are discarded.
func (f *FCM) Close() { f.q.Close() }

// fcmError is FCM's error body (google.rpc.Status).
type fcmError struct {
	Error struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Status  string `json:"status"`
		Details []struct {
			Type            string `json:"@type"`
			ErrorCode       string `json:"errorCode"`
			FieldViolations []struct {
				Field string `json:"field"`
			} `json:"fieldViolations"`
		} `json:"details"`
	} `json:"error"`
}

// tokenRefused reports whether e says the registration token itself is
// unusable: UNREGISTERED, SENDER_ID_MISMATCH (a token of another Firebase
// project), or INVALID_ARGUMENT about the token (an FcmError detail, as
// FCM answers "not a valid FCM registration token", or a field violation
// on message.token). An INVALID_ARGUMENT about the rest of the message is
// a failure, not a bad device.
func (e *fcmError) tokenRefused() bool {
	codes := map[string]bool{e.Error.Status: true}
	fcmDetail, tokenField := false, false
	for _, d := range e.Error.Details {
		if d.ErrorCode != "" {
			codes[d.ErrorCode] = true
		}
		if d.Type == "type.googleapis.com/google.firebase.fcm.v1.FcmError" {
			fcmDetail = true
		}
		for _, v := range d.FieldViolations {
			if v.Field == "message.token" {
				tokenField = true
			}
		}
	}
	switch {
	case codes["UNREGISTERED"], codes["SENDER_ID_MISMATCH"]:
		return true
	case e.Error.Status == "INVALID_ARGUMENT":
		return tokenField || (fcmDetail && !hasFieldViolations(e))
	}
	return false
}

func hasFieldViolations(e *fcmError) bool {
	for _, d := range e.Error.Details {
		if len(d.FieldViolations) > 0 {
			return true
		}
	}
	return false
}

// send pushes r.Devices[0], with retries.
func (f *FCM) send(ctx context.Context, r Request) error {
	d := r.Devices[0]
	body, err := fcmMessage(r.Payload, d.Token, int64(f.cfg.Expiry/time.Second))
	if err != nil {
		f.c.skipped.Add(1)
		return fmt.Errorf("%w: FCM payload: %v", ErrRejected, err)
	}
	reauthed := false
	return sendDevice(ctx, f.cfg.Retry, &f.c, r.AppID, d, r.Sink, func(ctx context.Context) attemptResult {
		ts := f.tokenSource()
		tok, err := ts.Token()
		if err != nil {
			// The token endpoint failed; oauth2 does not say whether for
			// good, so it is retried like a transport error.
			return attemptResult{v: vRetry, err: fmt.Errorf("FCM access token: %w", err)}
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.endpoint, bytes.NewReader(body))
		if err != nil {
			return attemptResult{v: vFail, err: err}
		}
		req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
		req.Header.Set("Content-Type", "application/json; charset=utf-8")
		resp, err := f.cfg.HTTPClient.Do(req)
		if err != nil {
			return transportVerdict(ctx, err)
		}
		defer resp.Body.Close()
		rb, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<10))
		if resp.StatusCode == http.StatusOK {
			return attemptResult{v: vSent}
		}
		var e fcmError
		json.Unmarshal(rb, &e)
		err = fmt.Errorf("FCM %d %s: %s", resp.StatusCode, e.Error.Status, e.Error.Message)
		reason := e.Error.Status
		for _, d := range e.Error.Details {
			if d.ErrorCode != "" {
				reason = d.ErrorCode
				break
			}
		}
		switch {
		case e.tokenRefused():
			return attemptResult{v: vInvalid, reason: reason, err: err}
		case resp.StatusCode == http.StatusUnauthorized && !reauthed:
			reauthed = true
			f.resetToken(ts)
			return attemptResult{v: vRetry, reason: reason, err: err}
		case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
			return attemptResult{v: vRetry, retryAfter: retryAfter(resp.Header, f.cfg.Now()), reason: reason, err: err}
		}
		return attemptResult{v: vFail, reason: reason, err: err}
	})
}
