package hooks

import (
	"errors"
	"io"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestSignVector(t *testing.T) {
	// Computed independently:
	//   printf '%s' '1700000000000.{"convId":"c1"}' | openssl dgst -sha256 -hmac 'masterkey-123'
	const want = "43fd4320509e0beffcbcc851a25bf8862979d3f0b34cdb472fd342a03b20fc9c"
	if got := Sign("masterkey-123", "1700000000000", []byte(`{"convId":"c1"}`)); got != want {
		t.Errorf("Sign: got %s, want %s", got, want)
	}
}

func TestVerify(t *testing.T) {
	now := time.UnixMilli(1700000000000)
	body := `{"convId":"c1"}`
	ts := strconv.FormatInt(now.UnixMilli(), 10)
	good := Sign(testKey, ts, []byte(body))
	tests := []struct {
		name, ts, sig, body, key string
		want                     error
	}{
		{"good", ts, good, body, testKey, nil},
		{"upper-case hex", ts, strings.ToUpper(good), body, testKey, nil},
		{"tampered body", ts, good, `{"convId":"c2"}`, testKey, ErrBadSignature},
		{"wrong key", ts, good, body, "other", ErrBadSignature},
		{"not hex", ts, "zz", body, testKey, ErrBadSignature},
		{"no signature", ts, "", body, testKey, ErrUnsigned},
		{"no timestamp", "", good, body, testKey, ErrUnsigned},
		{"stale", strconv.FormatInt(now.Add(-MaxSkew-time.Second).UnixMilli(), 10), good, body, testKey, ErrStale},
		{"future", strconv.FormatInt(now.Add(MaxSkew+time.Second).UnixMilli(), 10), good, body, testKey, ErrStale},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/hook", strings.NewReader(tc.body))
			if tc.ts != "" {
				r.Header.Set(HeaderTimestamp, tc.ts)
			}
			if tc.sig != "" {
				r.Header.Set(HeaderSignature, tc.sig)
			}
			err := VerifyAt(r, tc.key, now)
			if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if b, _ := io.ReadAll(r.Body); tc.want == nil && string(b) != tc.body {
				t.Errorf("body after Verify: got %q, want %q", b, tc.body)
			}
		})
	}
}
