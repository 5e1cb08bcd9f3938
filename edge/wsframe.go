package edge

import (
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"net/textproto"
	"strings"

	"github.com/coder/websocket"
)

// The edge's own WebSocket framing (RFC 6455, server side, no extensions),
// used by the epoll reader (wsraw.go). It behaves as coder/websocket, which
// serves the other WebSockets (TLS, non-Linux, Config.GoroutineReader):
//
//   - a client frame must be masked; an unmasked one ends the connection
//     without a close frame;
//   - RSV bits, an unknown opcode, a continuation without a message, a new
//     message inside a fragmented one, a control frame over 125 bytes or
//     fragmented, a bad close payload: close 1002 with the reason;
//   - a message over the read limit (Limits.MaxFrameBytes, summed over
//     its fragments): close 1009 "read limited at <limit+1> bytes", told
//     as soon as the header shows it, without reading the payload;
//   - ping: pong with the same payload; close: the same code and reason
//     back, then the socket closes;
//   - text frames are not checked for UTF-8 (coder/websocket does not;
//     the edge's base64 decoding refuses what is not base64).
//
// wsParser is the reader's state machine: bytes in, events out, no I/O.

// WebSocket opcodes.
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xa
)

const maxControlPayload = 125

// wsEventKind says what wsParser.next found.
type wsEventKind uint8

const (
	wsNeedMore wsEventKind = iota // no complete frame yet: need is how many bytes the frame takes
	wsMessage                     // a complete data message: payload (a fresh slice), text
	wsPing                        // payload aliases the input
	wsPong
	wsClose // code and reason (code 1005 when the frame had none)
	wsError // the connection ends: code/reason told in a close frame unless code is 0
	wsFrame // a data fragment was taken in; nothing to act on
)

type wsEvent struct {
	kind    wsEventKind
	payload []byte
	text    bool
	need    int // wsNeedMore: the size of the frame begun, or 0 when the header is not complete
	code    websocket.StatusCode
	reason  string
	err     error // wsError: what went wrong (for logs and tests)
}

// wsParser holds a connection's inbound framing state between reads.
type wsParser struct {
	limit int64  // the read limit per message; < 0: none
	msg   []byte // a fragmented message's payload so far
	msgOp byte   // its opcode while one is open, else 0
}

func protoErr(format string, a ...any) wsEvent {
	err := fmt.Errorf(format, a...)
	return wsEvent{kind: wsError, code: websocket.StatusProtocolError, reason: err.Error(), err: err}
}

// next parses the frame at the front of b. It returns the event and how
// many bytes of b it used (0 with wsNeedMore; on wsError the rest of the
// input is of no interest). Control payloads alias b, unmasked in place.
func (p *wsParser) next(b []byte) (wsEvent, int) {
	if len(b) < 2 {
		return wsEvent{kind: wsNeedMore}, 0
	}
	fin := b[0]&0x80 != 0
	rsv := b[0] & 0x70
	op := b[0] & 0x0f
	masked := b[1]&0x80 != 0
	hl := 2
	var plen int64
	switch l := b[1] & 0x7f; l {
	case 126:
		hl += 2
		if len(b) < hl {
			return wsEvent{kind: wsNeedMore}, 0
		}
		plen = int64(binary.BigEndian.Uint16(b[2:]))
	case 127:
		hl += 8
		if len(b) < hl {
			return wsEvent{kind: wsNeedMore}, 0
		}
		plen = int64(binary.BigEndian.Uint64(b[2:]))
		if plen < 0 {
			err := fmt.Errorf("received negative payload length: %v", plen)
			return wsEvent{kind: wsError, err: err}, 0
		}
	default:
		plen = int64(l)
	}
	if rsv != 0 {
		return protoErr("received header with unexpected rsv bits set: %v:%v:%v", rsv&0x40 != 0, rsv&0x20 != 0, rsv&0x10 != 0), 0
	}
	if !masked {
		return wsEvent{kind: wsError, err: errors.New("received unmasked frame from client")}, 0
	}
	switch op {
	case opClose, opPing, opPong:
		if plen > maxControlPayload {
			return protoErr("received control frame payload with invalid length: %d", plen), 0
		}
		if !fin {
			return protoErr("received fragmented control frame"), 0
		}
	case opContinuation:
		if p.msgOp == 0 {
			return protoErr("received continuation frame without text or binary frame"), 0
		}
	case opText, opBinary:
		if p.msgOp != 0 {
			return protoErr("received new data message without finishing the previous message"), 0
		}
	default:
		return protoErr("received unknown opcode %v", opName(op)), 0
	}
	if op < opClose && p.limit >= 0 && int64(len(p.msg))+plen > p.limit {
		err := fmt.Errorf("read limited at %d bytes", p.limit+1)
		return wsEvent{kind: wsError, code: websocket.StatusMessageTooBig, reason: err.Error(), err: err}, 0
	}
	hl += 4
	total := int64(hl) + plen
	if int64(len(b)) < total {
		return wsEvent{kind: wsNeedMore, need: int(total)}, 0
	}
	key := [4]byte(b[hl-4 : hl])
	payload := b[hl:total]
	maskBytes(payload, key)
	n := int(total)
	switch op {
	case opPing:
		return wsEvent{kind: wsPing, payload: payload}, n
	case opPong:
		return wsEvent{kind: wsPong, payload: payload}, n
	case opClose:
		code, reason, err := parseClosePayload(payload)
		if err != nil {
			return protoErr("received invalid close payload: %w", err), 0
		}
		return wsEvent{kind: wsClose, code: code, reason: reason}, n
	}
	if op != opContinuation {
		p.msgOp = op
	}
	if fin && p.msg == nil {
		// A whole message in one frame: the common case, one copy.
		ev := wsEvent{kind: wsMessage, payload: bytes.Clone(payload), text: op == opText}
		if ev.payload == nil {
			ev.payload = []byte{}
		}
		p.msgOp = 0
		return ev, n
	}
	if p.msg == nil {
		p.msg = make([]byte, 0, len(payload))
	}
	p.msg = append(p.msg, payload...)
	if !fin {
		return wsEvent{kind: wsFrame}, n
	}
	ev := wsEvent{kind: wsMessage, payload: p.msg, text: p.msgOp == opText}
	p.msg, p.msgOp = nil, 0
	return ev, n
}

func opName(op byte) string { return fmt.Sprintf("opcode(%d)", op) }

// parseClosePayload reads a close frame's code and reason as
// coder/websocket does: empty means 1005; the code must be one a peer may
// send.
func parseClosePayload(p []byte) (websocket.StatusCode, string, error) {
	if len(p) == 0 {
		return websocket.StatusNoStatusRcvd, "", nil
	}
	if len(p) < 2 {
		return 0, "", fmt.Errorf("close payload %q too small, cannot even contain the 2 byte status code", p)
	}
	code := websocket.StatusCode(binary.BigEndian.Uint16(p))
	if !validWireCloseCode(code) {
		return 0, "", fmt.Errorf("invalid status code %v", code)
	}
	return code, string(p[2:]), nil
}

func validWireCloseCode(code websocket.StatusCode) bool {
	switch code {
	case 1004, websocket.StatusNoStatusRcvd, websocket.StatusAbnormalClosure, websocket.StatusTLSHandshake:
		return false
	}
	return code >= 1000 && code <= 1014 || code >= 3000 && code <= 4999
}

// closePayload encodes a close frame's payload; an unsendable code or an
// over-long reason becomes 1011 without a reason, as coder/websocket does.
func closePayload(code websocket.StatusCode, reason string) []byte {
	if code == websocket.StatusNoStatusRcvd {
		return nil
	}
	if !validWireCloseCode(code) || len(reason) > maxControlPayload-2 {
		code, reason = websocket.StatusInternalError, ""
	}
	b := make([]byte, 2+len(reason))
	binary.BigEndian.PutUint16(b, uint16(code))
	copy(b[2:], reason)
	return b
}

// maskBytes XORs b with the masking key in place.
func maskBytes(b []byte, key [4]byte) {
	k := binary.LittleEndian.Uint32(key[:])
	k8 := uint64(k) | uint64(k)<<32
	for len(b) >= 8 {
		binary.LittleEndian.PutUint64(b, binary.LittleEndian.Uint64(b)^k8)
		b = b[8:]
	}
	for i := range b {
		b[i] ^= key[i&3]
	}
}

// appendFrameHeader appends a server frame's header (FIN set, unmasked).
func appendFrameHeader(b []byte, op byte, n int) []byte {
	b = append(b, 0x80|op)
	switch {
	case n < 126:
		return append(b, byte(n))
	case n <= 0xffff:
		return binary.BigEndian.AppendUint16(append(b, 126), uint16(n))
	default:
		return binary.BigEndian.AppendUint64(append(b, 127), uint64(n))
	}
}

// The WebSocket handshake, as coder/websocket.Accept does it with
// InsecureSkipVerify and compression disabled: the same checks, statuses
// and messages.

// verifyUpgrade checks a client's upgrade request; on failure it returns
// the HTTP status to answer (headers it needs are set on w).
func verifyUpgrade(w http.ResponseWriter, r *http.Request) (int, error) {
	if !r.ProtoAtLeast(1, 1) {
		return http.StatusUpgradeRequired, fmt.Errorf("WebSocket protocol violation: handshake request must be at least HTTP/1.1: %q", r.Proto)
	}
	if !headerHasToken(r.Header, "Connection", "Upgrade") {
		w.Header().Set("Connection", "Upgrade")
		w.Header().Set("Upgrade", "websocket")
		return http.StatusUpgradeRequired, fmt.Errorf("WebSocket protocol violation: Connection header %q does not contain Upgrade", r.Header.Get("Connection"))
	}
	if !headerHasToken(r.Header, "Upgrade", "websocket") {
		w.Header().Set("Connection", "Upgrade")
		w.Header().Set("Upgrade", "websocket")
		return http.StatusUpgradeRequired, fmt.Errorf("WebSocket protocol violation: Upgrade header %q does not contain websocket", r.Header.Get("Upgrade"))
	}
	if r.Method != http.MethodGet {
		return http.StatusMethodNotAllowed, fmt.Errorf("WebSocket protocol violation: handshake request method is not GET but %q", r.Method)
	}
	if r.Header.Get("Sec-WebSocket-Version") != "13" {
		w.Header().Set("Sec-WebSocket-Version", "13")
		return http.StatusBadRequest, fmt.Errorf("unsupported WebSocket protocol version (only 13 is supported): %q", r.Header.Get("Sec-WebSocket-Version"))
	}
	keys := r.Header.Values("Sec-WebSocket-Key")
	if len(keys) == 0 {
		return http.StatusBadRequest, errors.New("WebSocket protocol violation: missing Sec-WebSocket-Key")
	}
	if len(keys) > 1 {
		return http.StatusBadRequest, errors.New("WebSocket protocol violation: multiple Sec-WebSocket-Key headers")
	}
	key := strings.TrimSpace(keys[0])
	if v, err := base64.StdEncoding.DecodeString(key); err != nil || len(v) != 16 {
		return http.StatusBadRequest, fmt.Errorf("WebSocket protocol violation: invalid Sec-WebSocket-Key %q, must be a 16 byte base64 encoded string", key)
	}
	return 0, nil
}

func headerTokens(h http.Header, key string) []string {
	var tokens []string
	for _, v := range h[textproto.CanonicalMIMEHeaderKey(key)] {
		for _, t := range strings.Split(strings.TrimSpace(v), ",") {
			tokens = append(tokens, strings.TrimSpace(t))
		}
	}
	return tokens
}

func headerHasToken(h http.Header, key, token string) bool {
	for _, t := range headerTokens(h, key) {
		if strings.EqualFold(t, token) {
			return true
		}
	}
	return false
}

// offeredSubprotocol returns the client's spelling of name among its
// offered subprotocols, or "".
func offeredSubprotocol(r *http.Request, name string) string {
	for _, cp := range headerTokens(r.Header, "Sec-WebSocket-Protocol") {
		if strings.EqualFold(name, cp) {
			return cp
		}
	}
	return ""
}

const wsKeyGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

func secWebSocketAccept(key string) string {
	h := sha1.Sum([]byte(key + wsKeyGUID))
	return base64.StdEncoding.EncodeToString(h[:])
}
