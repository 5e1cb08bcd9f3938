package push

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"sync"
	"time"
)

// APNs provider tokens (Apple, "Establishing a token-based connection to
// APNs"): a JWT signed ES256 with the team's .p8 key, header {alg, kid},
// claims {iss: team id, iat: seconds}. APNs refuses a token older than an
// hour and one renewed more often than every 20 minutes, so a token is
// reused for TokenRefresh, which sits between the two.
const TokenRefresh = 40 * time.Minute

// ParseP8 parses an APNs auth key (.p8: a PEM PKCS#8 P-256 private key).
func ParseP8(pemBytes []byte) (*ecdsa.PrivateKey, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return nil, fmt.Errorf("%w: APNs key: no PEM block", ErrConfig)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: APNs key: %v", ErrConfig, err)
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok || ek.Curve != elliptic.P256() {
		return nil, fmt.Errorf("%w: APNs key: not a P-256 ECDSA key", ErrConfig)
	}
	return ek, nil
}

// apnsToken makes and caches the provider token.
type apnsToken struct {
	key           *ecdsa.PrivateKey
	keyID, teamID string
	now           func() time.Time

	mu     sync.Mutex
	tok    string    // guarded by mu
	issued time.Time // guarded by mu
}

// get returns the current token, making a new one when it is TokenRefresh
// old (or none was made yet).
func (t *apnsToken) get() (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	if t.tok != "" && now.Sub(t.issued) < TokenRefresh && !now.Before(t.issued) {
		return t.tok, nil
	}
	tok, err := signES256(t.key, t.keyID, t.teamID, now)
	if err != nil {
		return "", err
	}
	t.tok, t.issued = tok, now
	return tok, nil
}

// expire drops tok if it is still the current token (APNs answered
// ExpiredProviderToken), so the next get makes a new one.
func (t *apnsToken) expire(tok string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.tok == tok {
		t.tok = ""
	}
}

var b64 = base64.RawURLEncoding

func signES256(key *ecdsa.PrivateKey, keyID, teamID string, now time.Time) (string, error) {
	h, _ := json.Marshal(struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
	}{"ES256", keyID})
	c, _ := json.Marshal(struct {
		Iss string `json:"iss"`
		Iat int64  `json:"iat"`
	}{teamID, now.Unix()})
	input := b64.EncodeToString(h) + "." + b64.EncodeToString(c)
	sum := sha256.Sum256([]byte(input))
	r, s, err := ecdsa.Sign(rand.Reader, key, sum[:])
	if err != nil {
		return "", fmt.Errorf("push: signing the APNs token: %w", err)
	}
	// JWS ES256: r and s, each 32 bytes big-endian (RFC 7518 §3.4).
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return input + "." + b64.EncodeToString(sig), nil
}
