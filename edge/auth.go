package edge

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"strconv"
	"time"
)

// Session tokens (sessionMessage.st).
//
// A token lets a client reopen its session on any edge without a signature
// and without a lookup: it carries the session facts and a MAC keyed with
// Config.TokenKey, which every edge of a cluster shares.
//
// Layout, before base64url (no padding):
//
//	version  1 byte   = 1
//	expiry   8 bytes  big-endian Unix seconds
//	appId    uvarint length + bytes
//	clientId uvarint length + bytes
//	tag      uvarint length + bytes
//	mac      32 bytes HMAC-SHA256(TokenKey, "relaymesh-st\x00" || all of the above)
//
// The token is the whole proof: tokens are not revocable before expiry.

const (
	tokenVersion  = 1
	tokenMACLen   = sha256.Size
	maxTokenChars = 1024
	tokenDomain   = "relaymesh-st\x00"
)

var (
	errTokenMalformed = errors.New("edge: malformed session token")
	errTokenBadMAC    = errors.New("edge: session token signature mismatch")
	errTokenExpired   = errors.New("edge: session token expired")
)

// tokenClaims are the session facts a token carries.
type tokenClaims struct {
	AppID, ClientID, Tag string
	Expiry               time.Time
}

func appendField(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func tokenMAC(key, payload []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(tokenDomain))
	m.Write(payload)
	return m.Sum(nil)
}

// issueToken returns a session token for c.
func issueToken(key []byte, c tokenClaims) string {
	b := make([]byte, 0, 16+len(c.AppID)+len(c.ClientID)+len(c.Tag)+tokenMACLen)
	b = append(b, tokenVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(c.Expiry.Unix()))
	b = appendField(b, c.AppID)
	b = appendField(b, c.ClientID)
	b = appendField(b, c.Tag)
	b = append(b, tokenMAC(key, b)...)
	return base64.RawURLEncoding.EncodeToString(b)
}

// verifyToken checks st and returns its claims.
func verifyToken(key []byte, st string, now time.Time) (tokenClaims, error) {
	if len(st) == 0 || len(st) > maxTokenChars {
		return tokenClaims{}, errTokenMalformed
	}
	b, err := base64.RawURLEncoding.DecodeString(st)
	if err != nil || len(b) < 1+8+3+tokenMACLen || b[0] != tokenVersion {
		return tokenClaims{}, errTokenMalformed
	}
	payload, mac := b[:len(b)-tokenMACLen], b[len(b)-tokenMACLen:]
	if !hmac.Equal(mac, tokenMAC(key, payload)) {
		return tokenClaims{}, errTokenBadMAC
	}
	exp := int64(binary.BigEndian.Uint64(payload[1:9]))
	rest := payload[9:]
	var fields [3]string
	for i := range fields {
		n, k := binary.Uvarint(rest)
		if k <= 0 || n > uint64(len(rest)-k) {
			return tokenClaims{}, errTokenMalformed
		}
		fields[i] = string(rest[k : k+int(n)])
		rest = rest[k+int(n):]
	}
	if len(rest) != 0 {
		return tokenClaims{}, errTokenMalformed
	}
	c := tokenClaims{AppID: fields[0], ClientID: fields[1], Tag: fields[2], Expiry: time.Unix(exp, 0)}
	if !now.Before(c.Expiry) {
		return c, errTokenExpired
	}
	return c, nil
}

// Login signatures (LeanCloud "senior" guide): hex HMAC-SHA1 keyed with the
// app's Master Key over "appid:clientid::timestamp:nonce", timestamp in
// milliseconds. A signature is valid for signatureTTL either side of now
// (clock skew is allowed both ways). Nonces are not remembered: an edge is
// stateless, so a signature can be replayed within its validity window, as
// with any stateless verifier.
const signatureTTL = 6 * time.Hour

var (
	errSignatureMissing  = errors.New("edge: signature required")
	errSignatureExpired  = errors.New("edge: signature timestamp outside validity window")
	errSignatureMismatch = errors.New("edge: signature mismatch")
)

// loginSignature computes the expected hex signature.
func loginSignature(masterKey, appID, clientID string, ts int64, nonce string) string {
	m := hmac.New(sha1.New, []byte(masterKey))
	m.Write([]byte(appID + ":" + clientID + "::" + strconv.FormatInt(ts, 10) + ":" + nonce))
	return hex.EncodeToString(m.Sum(nil))
}

// verifyLoginSignature checks s/t/n of a session/open.
func verifyLoginSignature(masterKey, appID, clientID, sig string, ts int64, nonce string, now time.Time) error {
	if sig == "" || masterKey == "" {
		return errSignatureMissing
	}
	d := now.Sub(time.UnixMilli(ts))
	if d > signatureTTL || d < -signatureTTL {
		return errSignatureExpired
	}
	got, err := hex.DecodeString(sig)
	if err != nil {
		return errSignatureMismatch
	}
	want, _ := hex.DecodeString(loginSignature(masterKey, appID, clientID, ts, nonce))
	if !hmac.Equal(got, want) {
		return errSignatureMismatch
	}
	return nil
}

// bucket is a token bucket: capacity perMinute, refilled at perMinute per
// minute. perMinute < 0 disables it. Owned by the connection's reader goroutine.
type bucket struct {
	perMinute float64
	tokens    float64
	last      time.Time
}

func newBucket(perMinute int, now time.Time) bucket {
	return bucket{perMinute: float64(perMinute), tokens: float64(perMinute), last: now}
}

// take consumes one token, reporting whether one was available.
func (b *bucket) take(now time.Time) bool {
	if b.perMinute < 0 {
		return true
	}
	if el := now.Sub(b.last); el > 0 {
		b.tokens += el.Minutes() * b.perMinute
		if b.tokens > b.perMinute {
			b.tokens = b.perMinute
		}
		b.last = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
