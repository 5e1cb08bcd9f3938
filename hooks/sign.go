package hooks

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// Request headers (see the package documentation).
const (
	HeaderHook      = "X-Relaymesh-Hook"
	HeaderTimestamp = "X-Relaymesh-Timestamp"
	HeaderSignature = "X-Relaymesh-Signature"
)

// MaxSkew is how far a request's timestamp may be from the receiver's clock
// for Verify to accept it.
const MaxSkew = 5 * time.Minute

var (
	// ErrUnsigned is returned by Verify for a request without timestamp or
	// signature.
	ErrUnsigned = errors.New("hooks: request not signed")
	// ErrBadSignature is returned by Verify for a signature that does not
	// match.
	ErrBadSignature = errors.New("hooks: bad signature")
	// ErrStale is returned by Verify for a timestamp outside MaxSkew.
	ErrStale = errors.New("hooks: stale timestamp")
)

// Sign returns hex(HMAC-SHA256(key, timestamp + "." + body)), the value of
// the X-Relaymesh-Signature header.
func Sign(key, timestamp string, body []byte) string {
	m := hmac.New(sha256.New, []byte(key))
	io.WriteString(m, timestamp)
	m.Write([]byte{'.'})
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// setHeaders puts on a hook or webhook request the headers every call
// carries: JSON, the app, the hook key when set, the hook name, and the
// timestamp and signature (with the master key, when the app has one).
func setHeaders(h http.Header, appID, hookKey, masterKey, hook string, now time.Time, body []byte) {
	ts := strconv.FormatInt(now.UnixMilli(), 10)
	h.Set("Content-Type", "application/json")
	h.Set("X-LC-Id", appID)
	if hookKey != "" {
		h.Set("X-LC-Hook-Key", hookKey)
	}
	h.Set(HeaderHook, hook)
	h.Set(HeaderTimestamp, ts)
	if masterKey != "" {
		h.Set(HeaderSignature, Sign(masterKey, ts, body))
	}
}

// Verify checks the signature of a hook request received by an HTTP handler,
// with the app's master key, against the current time. It reads the body
// (up to MaxReplyBytes) and puts it back, so the handler can read it again.
func Verify(r *http.Request, key string) error {
	return VerifyAt(r, key, time.Now())
}

// VerifyAt is Verify against the time now.
func VerifyAt(r *http.Request, key string, now time.Time) error {
	ts := r.Header.Get(HeaderTimestamp)
	sig := r.Header.Get(HeaderSignature)
	if ts == "" || sig == "" {
		return ErrUnsigned
	}
	ms, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: timestamp %q", ErrUnsigned, ts)
	}
	if d := now.Sub(time.UnixMilli(ms)); d > MaxSkew || d < -MaxSkew {
		return fmt.Errorf("%w: %v off", ErrStale, d.Round(time.Second))
	}
	var body []byte
	if r.Body != nil {
		body, err = io.ReadAll(io.LimitReader(r.Body, MaxReplyBytes+1))
		r.Body.Close()
		r.Body = io.NopCloser(bytes.NewReader(body))
		if err != nil {
			return fmt.Errorf("hooks: reading body: %w", err)
		}
	}
	got, err := hex.DecodeString(sig)
	if err != nil {
		return ErrBadSignature
	}
	want, _ := hex.DecodeString(Sign(key, ts, body))
	if !hmac.Equal(got, want) {
		return ErrBadSignature
	}
	return nil
}
