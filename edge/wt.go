package edge

// WebTransport (issue 10): browsers reach the edge over HTTP/3 on UDP at the
// same host:port as its HTTP listener, path /wt (WTPath).
//
// # Wire format
//
// A session is an extended CONNECT to /wt. The client then opens one
// bidirectional stream; both directions carry LeanCloud GenericCommand
// frames (the WebSocket path's messages, always binary protobuf) each
// prefixed by its length as an unsigned varint: protobuf's delimited format
// (protodelim in Go, encodeDelimited/decodeDelimited in protobuf.js).
//
//	frame = uvarint(len(cmd)) cmd        len(cmd) ≤ Limits.MaxFrameBytes
//
// The subprotocol is lc.protobuf2.3 unless the client offers lc.protobuf2.1
// or lc.protobuf2.3 as a WebTransport application protocol
// (WT-Available-Protocols; `protocols` in the browser API) or names one in
// ?subprotocol=. The base64 subprotocols are not served: the stream is
// binary. Further bidirectional streams are never accepted.
//
// Datagrams carry one GenericCommand each, unprefixed. A client datagram is
// handled like a stream frame when it is a direct with transient=true (a
// typing indicator), the connection has logged in, and its datagram rate
// (Limits.DatagramsPerMinute) allows it; every other datagram is dropped
// and counted (Metrics.DatagramsDropped), never answered. A transient
// direct pushed to the session goes out as a datagram when it fits in one,
// else on the stream (Metrics.DatagramsFallback).
//
// Everything else is the WebSocket path's: login, limits, rate limits, the
// priority queue and its shedding, the idle timeout, goaway, metrics (split
// by transport in Metrics.ByTransport). The close codes are the WebSocket
// close codes (4107, 4108, 1013, 1001), sent as the WebTransport session
// error code with the reason as its message, after the edge has written
// what was queued, closed its side of the stream and given the client
// wtCloseGrace to read it; and:
//
//   - 1009 a length prefix over Limits.MaxFrameBytes;
//   - 1002 a length prefix that is not a varint, or the stream ending
//     inside a frame;
//   - 1000 the client closed its side of the stream.
//
// # Browsers
//
// Browsers speak different drafts of WebTransport over HTTP/3; the HTTP/3
// SETTINGS the edge sends serve them all (docs/WEBTRANSPORT.md):
//
//   - SETTINGS_ENABLE_WEBTRANSPORT (0x2b603742) = 1, the draft-02…06
//     codepoint: what Chromium (draft-02/07) and Firefox releases speaking
//     draft-02 look for, with SETTINGS_H3_DATAGRAM (0x33) and
//     SETTINGS_ENABLE_CONNECT_PROTOCOL (0x8) from quic-go;
//   - SETTINGS_WT_MAX_SESSIONS (0x14e9cd29, draft-13/14) together with
//     SETTINGS_WT_INITIAL_MAX_STREAMS_BIDI (0x2b65), _UNI (0x2b64) and
//     SETTINGS_WT_INITIAL_MAX_DATA (0x2b61): Safari 26.4+, which refuses a
//     server that sends the first without the other three. webtransport-go
//     sends those three only for a non-zero webtransport.Config
//     (quic-go/webtransport-go#355), hence wtSessionConfig;
//   - SETTINGS_WT_ENABLED (0x2c7cf000, draft-15+): Firefox with a current
//     neqo, which reads only this or draft-07's 0xc671706a, and other
//     newer clients.
//
// The draft-07…12 codepoint 0xc671706a is not sent: no browser named above
// needs it, and it could steer Chromium to a draft webtransport-go does
// not speak.

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"github.com/quic-go/webtransport-go"

	"github.com/relaymesh/relaymesh/proto/lcpb"
)

// WTPath is the path of WebTransport sessions.
const WTPath = "/wt"

// wtSessionConfig is the WebTransport flow control the edge offers to a
// client that does session flow control (Safari): the one stream a session
// uses and a spare, bounded so a client cannot park much data in streams
// the edge never reads. Every field is non-zero so that the WT_INITIAL_MAX_* settings are
// sent (Safari; see the package note above).
var wtSessionConfig = webtransport.Config{
	MaxIncomingStreams:    2,
	MaxIncomingUniStreams: 1,
	MaxIncomingData:       1 << 20,
}

// QUIC transport parameters of the WebTransport listener. Receive windows
// are small: a LeanCloud frame is at most Limits.MaxFrameBytes (64 KiB) and
// a session reads one stream. The server pings an idle connection so that
// QUIC's idle timeout does not end a session the SDK keeps alive at its
// own pace (180 s); Limits.IdleTimeout still closes a silent client.
func wtQUICConfig() *quic.Config {
	return &quic.Config{
		EnableDatagrams:                  true,
		EnableStreamResetPartialDelivery: true,
		MaxIdleTimeout:                   60 * time.Second,
		KeepAlivePeriod:                  20 * time.Second,
		InitialStreamReceiveWindow:       128 << 10,
		MaxStreamReceiveWindow:           256 << 10,
		InitialConnectionReceiveWindow:   256 << 10,
		MaxConnectionReceiveWindow:       1 << 20,
		MaxIncomingStreams:               16,
		MaxIncomingUniStreams:            16,
	}
}

// wtCloseGrace is how long the edge waits, after closing its side of a
// session's stream, for the client to read what was written and end the
// session itself before the edge ends it with its close code (stream data
// and the session's close capsule travel on different QUIC streams, and a
// browser drops unread stream data when the session closes).
const wtCloseGrace = 500 * time.Millisecond

// wtReadBufSize is the stream reader's buffer, as connReadBufSize.
const wtReadBufSize = 1 << 10

// WTConfig configures an edge's WebTransport listener.
type WTConfig struct {
	// Cert is the certificate the listener presents (wtcert.go): a dev
	// one's hash is announced for serverCertificateHashes. The listener
	// refreshes it every RefreshEvery (0: WTCertRefreshEvery). Required.
	Cert         *WTCert
	RefreshEvery time.Duration
	// Handler serves HTTP/3 requests for other paths (nil: 404).
	Handler http.Handler
	// URL is the public WebTransport URL of this edge for
	// /v1/webtransport; empty derives it from the edge's first public URL
	// (wss://H/ → https://H/wt) or the request's Host.
	URL string
}

// WTServer is an edge's HTTP/3 listener serving WebTransport sessions.
type WTServer struct {
	s   *Server
	cfg WTConfig
	wt  *webtransport.Server

	closeOnce sync.Once
	closeErr  error
	stop      chan struct{}  // closed by Close
	wg        sync.WaitGroup // Serve and the certificate refresher
}

// NewWebTransport returns the edge's WebTransport listener; Serve starts
// it. The edge's /v1/route and /v1/webtransport then announce it.
func (s *Server) NewWebTransport(cfg WTConfig) *WTServer {
	w := &WTServer{s: s, cfg: cfg, stop: make(chan struct{})}
	tc := cfg.Cert.TLSConfig()
	tc.NextProtos = []string{http3.NextProtoH3}
	if tc.MinVersion < tls.VersionTLS13 {
		tc.MinVersion = tls.VersionTLS13
	}
	mux := http.NewServeMux()
	mux.HandleFunc(WTPath, w.serveWT)
	other := cfg.Handler
	if other == nil {
		other = http.NotFoundHandler()
	}
	mux.Handle("/", other)
	h3 := &http3.Server{
		TLSConfig:  tc,
		QUICConfig: wtQUICConfig(),
		Handler:    mux,
		// A CONNECT's headers are small; the default is 1 MiB.
		MaxHeaderBytes: httpMaxHeaderBytes,
		IdleTimeout:    httpIdleTimeout,
		Logger:         s.log,
	}
	// webtransport.Server applies ConfigureHTTP3Server and the
	// WT_INITIAL_* settings of Config on first use.
	cfgCopy := wtSessionConfig
	w.wt = &webtransport.Server{
		H3:     h3,
		Config: &cfgCopy,
		// No Origin check, as for WebSocket: a session is authorized by
		// its login (signature or session token), not by the page.
		CheckOrigin:          func(*http.Request) bool { return true },
		ApplicationProtocols: []string{lcpb.SubprotocolBinary3, lcpb.SubprotocolBinary1},
	}
	s.wt.Store(w)
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		w.refreshCert()
	}()
	return w
}

// refreshCert renews or reloads the certificate every RefreshEvery until
// Close.
func (w *WTServer) refreshCert() {
	every := w.cfg.RefreshEvery
	if every <= 0 {
		every = WTCertRefreshEvery
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
		}
		changed, err := w.cfg.Cert.Refresh()
		switch {
		case err != nil:
			w.s.log.Error("edge: webtransport certificate refresh failed; keeping the current one", "err", err, "notAfter", w.cfg.Cert.NotAfter())
		case changed:
			h := w.cfg.Cert.Hash()
			w.s.log.Info("edge: webtransport certificate renewed", "sha256", base64.StdEncoding.EncodeToString(h[:]), "notAfter", w.cfg.Cert.NotAfter())
		}
	}
}

// Serve serves WebTransport on pc until Close.
func (w *WTServer) Serve(pc net.PacketConn) error {
	w.wg.Add(1)
	defer w.wg.Done()
	err := w.wt.Serve(pc)
	if errors.Is(err, quic.ErrServerClosed) || errors.Is(err, http.ErrServerClosed) || errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// Close stops the listener and closes every QUIC connection. Close the edge
// Server first: its Close says goaway to the sessions and waits for them.
func (w *WTServer) Close() error {
	w.closeOnce.Do(func() {
		w.s.wt.CompareAndSwap(w, nil)
		close(w.stop)
		w.closeErr = w.wt.Close()
		w.wg.Wait()
	})
	return w.closeErr
}

// wtCodec picks a session's subprotocol: the negotiated application
// protocol, else ?subprotocol= when it is a binary one, else lc.protobuf2.3.
func wtCodec(negotiated string, r *http.Request) lcpb.Codec {
	for _, name := range []string{negotiated, r.URL.Query().Get("subprotocol")} {
		if c, err := lcpb.CodecFor(name); err == nil && !c.Base64 {
			return c
		}
	}
	c, _ := lcpb.CodecFor(lcpb.SubprotocolBinary3)
	return c
}

// serveWT upgrades an extended CONNECT to a WebTransport session and
// starts its connection, then returns (the session outlives the handler).
func (w *WTServer) serveWT(rw http.ResponseWriter, r *http.Request) {
	s := w.s
	if r.Method != http.MethodConnect {
		http.Error(rw, "relaymesh: WebTransport (extended CONNECT over HTTP/3) only", http.StatusMethodNotAllowed)
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.metrics.WTRefused.Add(1)
		http.Error(rw, "relaymesh: edge shutting down", http.StatusServiceUnavailable)
		return
	}
	s.wg.Add(1)
	s.mu.Unlock()
	ip := s.clientIP(r)
	if !s.wsPerIP.acquire(ip) {
		s.wg.Done()
		s.metrics.ConnsOverIPCap.Add(1)
		s.metrics.WTRefused.Add(1)
		http.Error(rw, "relaymesh: too many connections from this address", http.StatusTooManyRequests)
		return
	}
	started := false
	defer func() {
		if !started {
			s.wsPerIP.release(ip)
			s.wg.Done()
		}
	}()
	sess, err := w.wt.Upgrade(rw, r)
	if err != nil {
		s.metrics.WTRefused.Add(1)
		s.log.Debug("edge: webtransport upgrade failed", "err", err)
		rw.WriteHeader(http.StatusBadRequest)
		return
	}
	t := &wtTransport{sess: sess, max: s.limits.MaxFrameBytes, m: s.metrics}
	c := newConn(s, wtCodec(sess.SessionState().ApplicationProtocol, r), t)
	c.remote = r.RemoteAddr
	if ip.IsValid() {
		c.ip = ip.String()
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		c.cancel()
		s.metrics.WTRefused.Add(1)
		_ = sess.CloseWithError(webtransport.SessionErrorCode(CloseShutdown), "edge shutting down")
		return
	}
	s.conns[c.id] = c
	s.mu.Unlock()
	started = true
	s.openConn(c)
	go func() {
		defer s.wg.Done()
		defer s.wsPerIP.release(ip)
		s.runConn(c)
	}()
}

// Errors of the delimited-frame reader.
var (
	errWTFrameTooLarge = errors.New("edge: webtransport frame over the size limit")
	errWTBadPrefix     = errors.New("edge: webtransport length prefix is not a varint")
)

// maxVarintLen is the longest uvarint of a 64-bit value.
const maxVarintLen = binary.MaxVarintLen64

// readDelimited reads one varint-length-prefixed frame from r, refusing a
// length over max before it reads or allocates the frame. It returns io.EOF
// at a clean end between frames, io.ErrUnexpectedEOF inside one,
// errWTBadPrefix for a prefix longer than ten bytes or over 64 bits, and
// errWTFrameTooLarge.
func readDelimited(r *bufio.Reader, max int64) ([]byte, error) {
	var n uint64
	var shift uint
	for i := 0; ; i++ {
		b, err := r.ReadByte()
		if err != nil {
			if i > 0 && errors.Is(err, io.EOF) {
				return nil, io.ErrUnexpectedEOF
			}
			return nil, err
		}
		if i == maxVarintLen-1 && b > 1 {
			return nil, errWTBadPrefix
		}
		n |= uint64(b&0x7f) << shift
		if b < 0x80 {
			break
		}
		shift += 7
		if i == maxVarintLen-1 {
			return nil, errWTBadPrefix
		}
	}
	if max >= 0 && n > uint64(max) {
		return nil, errWTFrameTooLarge
	}
	frame := make([]byte, n)
	if _, err := io.ReadFull(r, frame); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return frame, nil
}

// appendDelimited appends b with its length prefix.
func appendDelimited(dst, b []byte) []byte {
	return append(binary.AppendUvarint(dst, uint64(len(b))), b...)
}

// wtTransport is a WebTransport session as a conn's transport: frames on
// the first bidirectional stream the client opens, transient frames also
// as datagrams.
type wtTransport struct {
	sess *webtransport.Session
	max  int64
	m    *Metrics

	str atomic.Pointer[webtransport.Stream] // set by the reader once accepted
	br  *bufio.Reader                       // the reader's
	buf []byte                              // the writer's
}

var errWTNoStream = errors.New("edge: webtransport session has no stream yet")

func (t *wtTransport) kind() Transport { return TransportWebTransport }

func (t *wtTransport) readFrame() ([]byte, bool, error) {
	if t.br == nil {
		// The session's context ends when the writer closes the session
		// (login deadline, shutdown) or the client goes.
		str, err := t.sess.AcceptStream(t.sess.Context())
		if err != nil {
			return nil, false, err
		}
		t.str.Store(str)
		t.br = bufio.NewReaderSize(str, wtReadBufSize)
	}
	b, err := readDelimited(t.br, t.max)
	switch {
	case err == nil:
		return b, false, nil
	case errors.Is(err, errWTFrameTooLarge):
		return nil, false, &closeError{websocket.StatusMessageTooBig, fmt.Sprintf("frame over %d bytes", t.max)}
	case errors.Is(err, errWTBadPrefix):
		return nil, false, &closeError{websocket.StatusProtocolError, "bad length prefix"}
	case errors.Is(err, io.ErrUnexpectedEOF):
		return nil, false, &closeError{websocket.StatusProtocolError, "stream ended inside a frame"}
	case errors.Is(err, io.EOF):
		return nil, false, &closeError{websocket.StatusNormalClosure, "stream closed"}
	}
	return nil, false, err
}

// bufferedFrame returns the next frame when the read buffer already holds
// all of it (readFrame would not block), else ok false: the reader hands
// what one stream read brought over together, as a raw WebSocket's does
// (conn.readLoop, batch.go). A prefix readFrame would refuse is left to it.
func (t *wtTransport) bufferedFrame() (b []byte, ok bool) {
	if t.br == nil || t.br.Buffered() == 0 {
		return nil, false
	}
	head, _ := t.br.Peek(t.br.Buffered())
	n, k := binary.Uvarint(head)
	if k <= 0 || (t.max >= 0 && n > uint64(t.max)) || n > uint64(len(head)-k) {
		return nil, false
	}
	b, err := readDelimited(t.br, t.max)
	return b, err == nil
}

// writeFrame sends a transient push as a datagram when it fits (quic-go
// queues up to 32 datagrams per connection and blocks the writer, as a
// full socket would, until the connection sends one or closes), else
// writes f length-prefixed on the stream within ctx's deadline.
func (t *wtTransport) writeFrame(ctx context.Context, f outFrame) (int, error) {
	if f.dgram {
		err := t.sess.SendDatagram(f.b)
		if err == nil {
			t.m.DatagramsOut.Add(1)
			return len(f.b), nil
		}
		if _, tooBig := errors.AsType[*quic.DatagramTooLargeError](err); !tooBig {
			return 0, err
		}
		t.m.DatagramsFallback.Add(1)
	}
	str := t.str.Load()
	if str == nil {
		return 0, errWTNoStream
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = str.SetWriteDeadline(dl)
	}
	t.buf = appendDelimited(t.buf[:0], f.b)
	if cap(t.buf) > 4*wtReadBufSize {
		defer func() { t.buf = nil }() // an idle session keeps no big buffer
	}
	return str.Write(t.buf)
}

// close ends the stream after what was written, gives the client
// wtCloseGrace to read it, then closes the session with code and reason.
func (t *wtTransport) close(code websocket.StatusCode, reason string) {
	if str := t.str.Load(); str != nil {
		_ = str.Close()
		timer := time.NewTimer(wtCloseGrace)
		select {
		case <-t.sess.Context().Done():
		case <-timer.C:
		}
		timer.Stop()
	}
	_ = t.sess.CloseWithError(webtransport.SessionErrorCode(code), reason)
}

func (t *wtTransport) closeNow() {
	_ = t.sess.CloseWithError(webtransport.SessionErrorCode(websocket.StatusAbnormalClosure), "")
}

// datagrammer is a transport that also receives datagrams.
type datagrammer interface {
	receiveDatagram(ctx context.Context) ([]byte, error)
}

func (t *wtTransport) receiveDatagram(ctx context.Context) ([]byte, error) {
	return t.sess.ReceiveDatagram(ctx)
}

// datagramLoop handles a session's datagrams until c.ctx ends: a transient
// direct within the datagram rate, once the session has logged in, is
// handled as a frame (under handleMu, as the reader's); anything else is
// dropped and counted.
func (c *conn) datagramLoop(d datagrammer) {
	m := c.srv.metrics
	rate := newBucket(c.srv.limits.DatagramsPerMinute, c.srv.now())
	for {
		b, err := d.receiveDatagram(c.ctx)
		if err != nil {
			return
		}
		c.touch()
		// Before login (which needs the stream) a datagram could only
		// be refused, and the refusal would need the stream.
		if !c.loggedIn.Load() || !rate.take(c.srv.now()) || !transientDirect(b) {
			m.DatagramsDropped.Add(1)
			continue
		}
		m.DatagramsIn.Add(1)
		m.FramesIn.Add(1)
		m.BytesIn.Add(int64(len(b)))
		m.transport(TransportWebTransport).FramesIn.Add(1)
		c.offStack(func() { c.handleFrame(c.ctx, false, b) })
	}
}

// transientDirect reports whether b is a GenericCommand direct with
// transient=true.
func transientDirect(b []byte) bool {
	cmd := new(lcpb.GenericCommand)
	if decodeOpts.Unmarshal(b, cmd) != nil {
		return false
	}
	return cmd.GetCmd() == lcpb.CommandType_direct && cmd.GetDirectMessage().GetTransient()
}

// wtInfo is what a page needs to open a WebTransport session to this edge:
// the URL and, for a self-signed certificate, the hashes for
// serverCertificateHashes ({algorithm, value: base64}).
type wtInfo struct {
	URL               string   `json:"url"`
	CertificateHashes []wtHash `json:"certificateHashes"`
}

type wtHash struct {
	Algorithm string `json:"algorithm"`
	Value     []byte `json:"value"` // base64 in JSON
}

// wtURLFor turns a WebSocket URL ws(s)://H/… into the WebTransport URL of
// the same edge, https://H/wt ("" when it is not one).
func wtURLFor(wsURL string) string {
	for _, p := range []string{"wss://", "ws://"} {
		if rest, ok := strings.CutPrefix(wsURL, p); ok {
			host, _, _ := strings.Cut(rest, "/")
			if host == "" {
				return ""
			}
			return "https://" + host + WTPath
		}
	}
	return ""
}

// info returns the WebTransport details for a client that would connect to
// the edge at wsURL.
func (w *WTServer) info(wsURL string) *wtInfo {
	u := wtURLFor(wsURL)
	if u == "" {
		return nil
	}
	in := &wtInfo{URL: u, CertificateHashes: []wtHash{}}
	for _, h := range w.cfg.Cert.Hashes() {
		in.CertificateHashes = append(in.CertificateHashes, wtHash{Algorithm: "sha-256", Value: h})
	}
	return in
}

// serveWTInfo answers /v1/webtransport: the URL and certificate hashes a
// page passes to `new WebTransport(url, {serverCertificateHashes})`, or 404
// when the edge serves no WebTransport.
//
//	{"url":"https://127.0.0.1:8080/wt","certificateHashes":[{"algorithm":"sha-256","value":"<base64>"}]}
func (s *Server) serveWTInfo(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	l := s.wt.Load()
	var in *wtInfo
	if l != nil {
		u := "ws://" + r.Host + "/"
		if len(s.cfg.PublicURLs) > 0 {
			u = s.cfg.PublicURLs[0]
		}
		in = l.info(u)
	}
	if in == nil {
		http.Error(w, "relaymesh: this edge serves no WebTransport", http.StatusNotFound)
		return
	}
	if l.cfg.URL != "" {
		in.URL = l.cfg.URL
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Access-Control-Allow-Origin", "*")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(in)
}
