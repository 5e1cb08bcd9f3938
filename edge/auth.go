package edge

import (
	"crypto/hmac"
	"crypto/rand"
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
	"unicode"
)

// Session tokens (sessionMessage.st).
//
// A token lets a client reopen its session on any edge without a signature
// and without a lookup: it carries the session facts and a MAC keyed with
// Config.TokenKey, which every edge of a cluster shares.
//
// Layout, before base64url (no padding):
//
//	version  1 byte   = 3
//	expiry   8 bytes  big-endian Unix seconds
//	login    8 bytes  big-endian Unix seconds of the login the session
//	                  began with (a signature, or none where the app needs
//	                  none); tokens derived from it never expire later
//	                  than login + Limits.SessionMaxAge
//	gen      uvarint  the client's token generation at that login's OPEN
//	chain    8 bytes  big-endian random id drawn at that login, kept by
//	                  every reopen: the core replaces quietly only a stale
//	                  session of the same chain (relay.Open)
//	appId    uvarint length + bytes
//	clientId uvarint length + bytes
//	tag      uvarint length + bytes
//	mac      32 bytes HMAC-SHA256(TokenKey, "relaymesh-st\x00" || all of the above)
//
// Revocation: a kick or logout bumps the client's generation in the shard
// (core/auth.go); the edge passes the token's gen with the OPEN and the
// core refuses an old one with 4112. History: version 1 (no login, no gen)
// is refused as malformed, so clients holding one sign in again once;
// version 2 (no chain) is read with chain 0, and its reopen begins a
// chain.

const (
	tokenVersion  = 3
	tokenV2       = 2 // no chain; still read
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
	Login                time.Time // the login the session chain began with
	Gen                  uint64    // the client's token generation
	Chain                uint64    // the login's chain id; 0 in a version 2 token
}

// newChain draws a chain id: random, never 0 (0 is "unknown").
func newChain() uint64 {
	for {
		var b [8]byte
		rand.Read(b[:])
		if c := binary.BigEndian.Uint64(b[:]); c != 0 {
			return c
		}
	}
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
	b := make([]byte, 0, 32+len(c.AppID)+len(c.ClientID)+len(c.Tag)+tokenMACLen)
	b = append(b, tokenVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(c.Expiry.Unix()))
	b = binary.BigEndian.AppendUint64(b, uint64(c.Login.Unix()))
	b = binary.AppendUvarint(b, c.Gen)
	b = binary.BigEndian.AppendUint64(b, c.Chain)
	b = appendField(b, c.AppID)
	b = appendField(b, c.ClientID)
	b = appendField(b, c.Tag)
	b = append(b, tokenMAC(key, b)...)
	return base64.RawURLEncoding.EncodeToString(b)
}

// tokenEncoding decodes tokens: base64url without padding, the unused
// bits of the last character zero (as issueToken writes them).
var tokenEncoding = base64.RawURLEncoding.Strict()

// verifyToken checks st and returns its claims.
func verifyToken(key []byte, st string, now time.Time) (tokenClaims, error) {
	// Go's base64 decoder skips CR and LF: a token is only its issued
	// spelling (FuzzVerifyToken found one verifying with a LF inside).
	// Strict: nor may the last character's unused bits differ from the
	// issued zeros (FuzzVerifyToken found "…XRqZ" verifying as "…XRqY").
	if len(st) == 0 || len(st) > maxTokenChars || strings.ContainsAny(st, "\r\n") {
		return tokenClaims{}, errTokenMalformed
	}
	b, err := tokenEncoding.DecodeString(st)
	if err != nil || len(b) < 1+8+8+1+3+tokenMACLen || b[0] != tokenVersion && b[0] != tokenV2 {
		return tokenClaims{}, errTokenMalformed
	}
	payload, mac := b[:len(b)-tokenMACLen], b[len(b)-tokenMACLen:]
	if !hmac.Equal(mac, tokenMAC(key, payload)) {
		return tokenClaims{}, errTokenBadMAC
	}
	exp := int64(binary.BigEndian.Uint64(payload[1:9]))
	login := int64(binary.BigEndian.Uint64(payload[9:17]))
	gen, k := binary.Uvarint(payload[17:])
	if k <= 0 {
		return tokenClaims{}, errTokenMalformed
	}
	rest := payload[17+k:]
	var chain uint64
	if payload[0] == tokenVersion {
		if len(rest) < 8 {
			return tokenClaims{}, errTokenMalformed
		}
		chain, rest = binary.BigEndian.Uint64(rest), rest[8:]
	}
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
	c := tokenClaims{AppID: fields[0], ClientID: fields[1], Tag: fields[2], Expiry: time.Unix(exp, 0),
		Login: time.Unix(login, 0), Gen: gen, Chain: chain}
	if !now.Before(c.Expiry) {
		return c, errTokenExpired
	}
	return c, nil
}

// VerifySessionToken checks a session token issued by this cluster's edges
// (the st of session/opened, which the JS SDK sends to the REST API as
// X-LC-IM-Session-Token) and returns the app and clientId it names, and
// the token generation it carries (core/auth.go: the core refuses a
// request whose token a kick or logout retired).
func (s *Server) VerifySessionToken(st string) (appID, clientID string, gen uint64, err error) {
	c, err := verifyToken(s.cfg.TokenKey, st, s.now())
	if err != nil {
		return "", "", 0, err
	}
	return c.AppID, c.ClientID, c.Gen, nil
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
	// errSignatureAmbiguous: a field of the signed string holds ':' or a
	// control character, so the string could stand for other fields.
	errSignatureAmbiguous = errors.New("edge: signed field holds ':' or a control character")
)

// verifyLoginSignature checks s/t/n of a session/open.
func verifyLoginSignature(masterKey, appID, clientID, sig string, ts int64, nonce string, now time.Time) error {
	if !signedField(nonce) || !signedField(clientID) {
		return errSignatureAmbiguous
	}
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
// ok is false for commands that carry no signature. Every client op that
// adds or removes members is here: the SDKs' join and quit are conv/add and
// conv/remove naming the client itself (persistent-conversation.js), and
// the protocol's own conv/join and conv/leave (ops 80 and 82, which the
// core serves like add/remove of the client itself) are signed as the
// invite and kick of the client. A signed id list that holds a ':' or a
// control character is refused (errSignatureAmbiguous): its joined string
// would be ambiguous.
//
//	conv/start:                         appid:clientid:sorted_member_ids:timestamp:nonce
//	conv/add, conv/join (join, invite): appid:clientid:convid:sorted_member_ids:timestamp:nonce:invite
//	conv/remove, conv/leave (quit, kick): appid:clientid:convid:sorted_member_ids:timestamp:nonce:kick
//	blacklist/block, unblock:           appid:clientid:convid:sorted_member_ids:timestamp:nonce:conversation-(un)block-clients
//
// For join and leave without m, the member list is the client itself.
func convSignature(appID, clientID string, cmd *lcpb.GenericCommand) (s signedOp, ok bool) {
	tail := func(ts int64, nonce string) string { return strconv.FormatInt(ts, 10) + ":" + nonce }
	switch cmd.GetCmd() {
	case lcpb.CommandType_conv:
		cm := cmd.GetConvMessage()
		s = signedOp{sig: cm.GetS(), ts: cm.GetT(), nonce: cm.GetN(), code: lcpb.ErrConversationSignature}
		switch cmd.GetOp() {
		case lcpb.OpType_start:
			s.ids = cm.GetM()
			s.msg = appID + ":" + clientID + ":" + sortedIDs(s.ids) + ":" + tail(s.ts, s.nonce)
			return s, true
		case lcpb.OpType_add, lcpb.OpType_remove, lcpb.OpType_join, lcpb.OpType_leave:
			action := "invite"
			if op := cmd.GetOp(); op == lcpb.OpType_remove || op == lcpb.OpType_leave {
				action = "kick"
			}
			s.ids = cm.GetM()
			if len(s.ids) == 0 {
				s.ids = []string{clientID} // join / quit: the core applies it to the client itself
			}
			s.msg = appID + ":" + clientID + ":" + cm.GetCid() + ":" + sortedIDs(s.ids) + ":" + tail(s.ts, s.nonce) + ":" + action
			s.cid = cm.GetCid()
			return s, true
		}
	case lcpb.CommandType_blacklist:
		bm := cmd.GetBlacklistMessage()
		action := ""
		switch cmd.GetOp() {
		case lcpb.OpType_block:
			action = "conversation-block-clients"
		case lcpb.OpType_unblock:
			action = "conversation-unblock-clients"
		default:
			return signedOp{}, false
		}
		s = signedOp{sig: bm.GetS(), ts: bm.GetT(), nonce: bm.GetN(), code: lcpb.ErrBlacklistSignature,
			ids: bm.GetToPids(), cid: bm.GetSrcCid()}
		s.msg = appID + ":" + clientID + ":" + s.cid + ":" + sortedIDs(s.ids) + ":" + tail(s.ts, s.nonce) + ":" + action
		return s, true
	}
	return signedOp{}, false
}

// signedOp is a client command that carries a signature: the string it is
// signed over, its s/t/n fields, the ids and conversation in that string,
// and the LeanCloud code a failed check answers.
type signedOp struct {
	msg, sig, nonce, cid string
	ts                   int64
	ids                  []string
	code                 int32
}

// verify checks the op's signature with the app's master key.
func (s signedOp) verify(masterKey string, now time.Time) error {
	if !signedField(s.nonce) || !signedField(s.cid) {
		return errSignatureAmbiguous
	}
	for _, id := range s.ids {
		if !signedField(id) {
			return errSignatureAmbiguous
		}
	}
	return verifySignature(masterKey, s.sig, s.ts, now, s.msg)
}

func sortedIDs(ids []string) string {
	s := slices.Clone(ids)
	slices.Sort(s)
	return strings.Join(s, ":")
}

// signedField reports whether s may stand in a ':'-joined signed string:
// no ':' (it would move the field boundaries: ["a:b"] and ["a", "b"] sign
// alike) and no control character.
func signedField(s string) bool {
	for _, r := range s {
		if r == ':' || unicode.IsControl(r) {
			return false
		}
	}
	return true
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
