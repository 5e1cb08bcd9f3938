package client

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/relaymesh/relaymesh/proto/lcpb"
)

// UA is the sessionMessage.ua this SDK sends (JS sends "js/4.3.1").
const UA = "relaymesh-go/0.1"

// DefaultConfigBitmap is what JS 4.3.1 sends: patchMessage,
// temporaryConversationMessage, transientMessageACK, keepNotification,
// partialFailedMessage (bits 0,1,3,4,5 = 0b111011).
const DefaultConfigBitmap = 59

// SignFunc signs a login: it returns LeanCloud's s (signature), t
// (timestamp, ms) and n (nonce) for clientID.
type SignFunc func(ctx context.Context, clientID string) (s string, t int64, n string, err error)

// ConvSignFunc signs a conversation operation. Like JS 4.3.1's
// conversationSignatureFactory it gets cid ("" on create), the client id,
// the sorted member ids and the action "create", "add" or "remove".
type ConvSignFunc func(ctx context.Context, cid, clientID string, members []string, action string) (s string, t int64, n string, err error)

// Options configures Dial. Zero values take the defaults noted.
type Options struct {
	AppID    string // required
	ClientID string // required: the peerId
	Tag      string // optional device tag; a newer login with the same tag kicks this one
	// Subprotocol: lcpb.SubprotocolBinary3 (default), lcpb.SubprotocolBinary1,
	// or a base64 variant.
	Subprotocol string
	DeviceID    string // default: a uuid generated per Client (JS: per Realtime)
	Signature   SignFunc
	// ConvSignature signs conv/start, add and remove when set.
	ConvSignature ConvSignFunc
	Logger        *slog.Logger // default: discard

	// Servers are more WebSocket URLs of the same service (other edges):
	// Dial tries them after its url, and every reconnect attempt goes to
	// the next one (servers.go).
	Servers []string
	// Router is the base URL (http:// or https://) of a LeanCloud router:
	// GET {Router}/v1/route?appId= answers server and secondary, which
	// come first in the list (cached for the answer's ttl). Dial may then
	// be given "" as url.
	Router string
	// Nearest measures the round trip to every server (GET /healthz on
	// its host) before Dial connects, and again when the router answers
	// anew or every server failed a round of reconnects, and tries them
	// nearest first: healthy servers by RTT, then the others (probe.go).
	// Without it the list's order is kept.
	Nearest bool
	// ProbeTimeout bounds one probe of every server, default 2 s.
	ProbeTimeout time.Duration
	// Resync, after a reconnect on lc.protobuf2.3, fetches from history
	// the messages of the conversations in the unread push that arrived
	// while the client was away, and emits them as Message with Resynced
	// set (resync.go). On .1 the server pushes them (Offline).
	Resync bool

	// NoReconnect turns automatic reconnect off (it is on by default).
	NoReconnect    bool
	ReconnectMin   time.Duration // first backoff step, default 1 s
	ReconnectMax   time.Duration // backoff cap, default 30 s
	RequestTimeout time.Duration // default 20 s (JS COMMAND_TIMEOUT)
	KeepAlive      time.Duration // echo interval, default 180 s; <0 disables
	IdleTimeout    time.Duration // drop after this long without inbound frames, default 380 s; <0 disables
	// AckInterval spaces the client's acks of received messages (one
	// ack{cid, fromts, tots} per conversation for everything received
	// since the last): the first goes at once, then at most one batch per
	// interval, as the JS SDK throttles its acks to 1 s (im-client.js
	// _doSendAck). The server moves the delivered cursor, and pushes the
	// senders' delivered receipts (rcp), when the ack arrives. Default
	// 1 s; <0 sends them whenever the writer is idle.
	AckInterval time.Duration

	// EventBuffer is the Events channel capacity, default 65536.
	EventBuffer int
	// EventOverflowWait is how long the reader blocks on a full Events
	// channel before dropping the event (counted in Dropped); default 1 s.
	EventOverflowWait time.Duration
	// ConfigBitmap overrides sessionMessage.configBitmap (default 59).
	ConfigBitmap int64
	// MaxFrame is the largest inbound frame accepted, default 16 MiB.
	MaxFrame int64
	// HTTPClient dials the WebSocket (its Transport's DialContext picks
	// source addresses, for example). Default: http.DefaultClient.
	HTTPClient *http.Client
	// ReadDelay makes the reader pause this long after each push (a frame
	// without i; replies are not delayed). It is for load testing only: it
	// simulates a slow
	// consumer whose socket receive window fills, so the server's
	// per-connection outbound queue backs up (relaymesh-loadtest
	// --slow-readers). Default 0: read as fast as frames arrive.
	ReadDelay time.Duration

	// Transport is "" or "websocket" (default), or "webtransport": each
	// connection is then a WebTransport session (HTTP/3 over UDP at the
	// edge's HTTP host:port, path /wt; docs/WEBTRANSPORT.md). Server URLs
	// stay ws:// URLs; the WebTransport URL is derived from each
	// (ws(s)://H/… → https://H/wt). Session close codes give the errors
	// the WebSocket close codes give.
	Transport string
	// WebTransportURL overrides the derived URL (one server only).
	WebTransportURL string
	// TLSConfig is the TLS configuration of WebTransport (tests:
	// InsecureSkipVerify). Default: trust the certificate by the SHA-256
	// hashes in CertHashes, or else those GET /v1/webtransport answers on
	// the server's host (relaymesh dev's self-signed certificate).
	TLSConfig  *tls.Config
	CertHashes [][]byte
	// PacketConn, when set, carries every WebTransport connection of the
	// client (quic-go dials on it), so a loss injector (netem.Conn) can sit
	// under QUIC. The caller owns it and closes it after Close. Default:
	// a new UDP socket per connection.
	PacketConn net.PacketConn
}

func (o Options) withDefaults() Options {
	if o.Transport == "" {
		o.Transport = TransportWebSocket
	}
	if o.Subprotocol == "" {
		o.Subprotocol = lcpb.SubprotocolBinary3
	}
	if o.DeviceID == "" {
		o.DeviceID = newUUID()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&o.ReconnectMin, time.Second)
	def(&o.ReconnectMax, 30*time.Second)
	def(&o.RequestTimeout, 20*time.Second)
	def(&o.KeepAlive, 180*time.Second)
	def(&o.IdleTimeout, 380*time.Second)
	def(&o.AckInterval, time.Second)
	def(&o.EventOverflowWait, time.Second)
	def(&o.ProbeTimeout, 2*time.Second)
	if o.EventBuffer <= 0 {
		o.EventBuffer = 65536
	}
	if o.ConfigBitmap == 0 {
		o.ConfigBitmap = DefaultConfigBitmap
	}
	if o.MaxFrame <= 0 {
		o.MaxFrame = 16 << 20
	}
	return o
}
