package edge

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"github.com/relaymesh/relaymesh/proto/lcpb"
	"slices"
	"strconv"
	"strings"
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

// VerifySessionToken checks a session token issued by this cluster's edges
// (the st of session/opened, which the JS SDK sends to the REST API as
// X-LC-IM-Session-Token) and returns the app and clientId it names.
func (s *Server) VerifySessionToken(st string) (appID, clientID string, err error) {
	c, err := verifyToken(s.cfg.TokenKey, st, s.now())
	if err != nil {
		return "", "", err
	}
	return c.AppID, c.ClientID, nil
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

// verifyLoginSignature checks s/t/n of a session/open.
func verifyLoginSignature(masterKey, appID, clientID, sig string, ts int64, nonce string, now time.Time) error {
	return verifySignature(masterKey, sig, ts, now,
		appID+":"+clientID+"::"+strconv.FormatInt(ts, 10)+":"+nonce)
}

// verifySignature checks a hex HMAC-SHA1 signature (any case) of msg keyed
// with the master key, and that the signature's timestamp is within
// signatureTTL of now. LeanCloud's docs say milliseconds but its own demos
// sign seconds, so a timestamp below 1e11 is taken as seconds.
func verifySignature(masterKey, sig string, ts int64, now time.Time, msg string) error {
	if sig == "" || masterKey == "" {
		return errSignatureMissing
	}
	at := time.UnixMilli(ts)
	if ts < 1e11 {
		at = time.Unix(ts, 0)
	}
	d := now.Sub(at)
	if d > signatureTTL || d < -signatureTTL {
		return errSignatureExpired
	}
	got, err := hex.DecodeString(sig)
	if err != nil {
		return errSignatureMismatch
	}
	m := hmac.New(sha1.New, []byte(masterKey))
	m.Write([]byte(msg))
	if !hmac.Equal(got, m.Sum(nil)) {
		return errSignatureMismatch
	}
	return nil
}

// convSignature returns the string a conversation operation is signed over
// (REST-AND-HOOKS.md §4), the signature fields and the code a failure gets;
// ok is false for commands that carry no signature.
//
//	conv/start:                 appid:clientid:sorted_member_ids:timestamp:nonce
//	conv/add (join, invite):    appid:clientid:convid:sorted_member_ids:timestamp:nonce:invite
//	conv/remove (quit, kick):   appid:clientid:convid:sorted_member_ids:timestamp:nonce:kick
//	blacklist/block, unblock:   appid:clientid:convid:sorted_member_ids:timestamp:nonce:conversation-(un)block-clients
func convSignature(appID, clientID string, cmd *lcpb.GenericCommand) (msg, sig string, ts int64, code int32, ok bool) {
	sorted := func(ids []string) string {
		s := slices.Clone(ids)
		slices.Sort(s)
		return strings.Join(s, ":")
	}
	tail := func(ts int64, nonce string) string { return strconv.FormatInt(ts, 10) + ":" + nonce }
	switch cmd.GetCmd() {
	case lcpb.CommandType_conv:
		cm := cmd.GetConvMessage()
		ts, nonce := cm.GetT(), cm.GetN()
		switch cmd.GetOp() {
		case lcpb.OpType_start:
			return appID + ":" + clientID + ":" + sorted(cm.GetM()) + ":" + tail(ts, nonce), cm.GetS(), ts, lcpb.ErrConversationSignature, true
		case lcpb.OpType_add, lcpb.OpType_remove:
			action := "invite"
			if cmd.GetOp() == lcpb.OpType_remove {
				action = "kick"
			}
			return appID + ":" + clientID + ":" + cm.GetCid() + ":" + sorted(cm.GetM()) + ":" + tail(ts, nonce) + ":" + action,
				cm.GetS(), ts, lcpb.ErrConversationSignature, true
		}
	case lcpb.CommandType_blacklist:
		bm := cmd.GetBlacklistMessage()
		ts, nonce := bm.GetT(), bm.GetN()
		action := ""
		switch cmd.GetOp() {
		case lcpb.OpType_block:
			action = "conversation-block-clients"
		case lcpb.OpType_unblock:
			action = "conversation-unblock-clients"
		default:
			return "", "", 0, 0, false
		}
		return appID + ":" + clientID + ":" + bm.GetSrcCid() + ":" + sorted(bm.GetToPids()) + ":" + tail(ts, nonce) + ":" + action,
			bm.GetS(), ts, lcpb.ErrBlacklistSignature, true
	}
	return "", "", 0, 0, false
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
