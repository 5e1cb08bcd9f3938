package client

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"github.com/quic-go/webtransport-go"
)

// Transport names for Options.Transport.
const (
	TransportWebSocket    = "websocket"
	TransportWebTransport = "webtransport"
)

// frameTransport is what a conn needs from its connection: whole
// GenericCommand frames in and out, and the two ways to close. Read and
// write are each called from one goroutine; close and closeNow from any.
type frameTransport interface {
	// read returns the next frame; text reports a WebSocket text message
	// (a base64 subprotocol). b is valid until the next read. A read ends
	// with an error once closeNow is called (the conn's kill does), and
	// may end earlier when ctx is done.
	read(ctx context.Context) (b []byte, text bool, err error)
	// write writes one frame. It has no deadline: a write blocks until it
	// is done or closeNow is called (the conn's write watchdog does).
	write(b []byte, text bool) error
	// close ends the connection politely with a WebSocket close code.
	close(code websocket.StatusCode, reason string) error
	closeNow() error
}

// wsTransport is a WebSocket connection.
type wsTransport struct {
	ws *websocket.Conn
	rb *bytes.Buffer // read's frame; reused, as read's b is valid until the next
}

func newWSTransport(ws *websocket.Conn) wsTransport {
	return wsTransport{ws: ws, rb: new(bytes.Buffer)}
}

// maxKeptReadBuf is the largest read buffer kept for the next frame: a
// bigger one (a long history page) is dropped after its frame.
const maxKeptReadBuf = 64 << 10

// read reads the next message into t.rb. It does not pass ctx to the
// library: closeNow ends the read, and a cancellable context costs a
// registration (context.AfterFunc) per frame, a sixth of a busy client's
// reading (docs/BENCHMARKS.md, "the Go SDK's reads").
func (t wsTransport) read(context.Context) ([]byte, bool, error) {
	typ, r, err := t.ws.Reader(context.Background())
	if err != nil {
		return nil, false, err
	}
	if t.rb.Cap() > maxKeptReadBuf {
		*t.rb = bytes.Buffer{}
	}
	t.rb.Reset()
	if _, err := t.rb.ReadFrom(r); err != nil {
		return nil, false, err
	}
	return t.rb.Bytes(), typ == websocket.MessageText, nil
}

func (t wsTransport) write(b []byte, text bool) error {
	typ := websocket.MessageBinary
	if text {
		typ = websocket.MessageText
	}
	return t.ws.Write(context.Background(), typ, b)
}

func (t wsTransport) close(code websocket.StatusCode, reason string) error {
	return t.ws.Close(code, reason)
}

func (t wsTransport) closeNow() error { return t.ws.CloseNow() }

// wtTransport is a WebTransport session (docs/WEBTRANSPORT.md): one
// bidirectional stream of uvarint-length-delimited frames, and datagrams
// from the edge (a transient direct each), read as frames too.
type wtTransport struct {
	sess *webtransport.Session
	str  *webtransport.Stream
	tr   *webtransport.Transport
	max  int64

	in        chan []byte   // stream frames and datagrams, in arrival order per source
	done      chan struct{} // closed when the stream reader ended
	readErr   error         // why; set before done is closed
	closeOnce sync.Once
	wg        sync.WaitGroup
}

// wtCloseWait is how long a reader that met the end of the stream waits
// for the session's close code (it travels apart from the stream).
const wtCloseWait = time.Second

func (t *wtTransport) start() {
	t.in = make(chan []byte, 64)
	t.done = make(chan struct{})
	t.wg.Add(2)
	go func() { // stream
		defer t.wg.Done()
		br := bufio.NewReader(t.str)
		for {
			b, err := readDelimited(br, t.max)
			if err != nil {
				t.readErr = t.closeError(err)
				close(t.done)
				return
			}
			select {
			case t.in <- b:
			case <-t.sess.Context().Done():
				t.readErr = t.closeError(io.EOF)
				close(t.done)
				return
			}
		}
	}()
	go func() { // datagrams
		defer t.wg.Done()
		for {
			b, err := t.sess.ReceiveDatagram(t.sess.Context())
			if err != nil {
				return
			}
			select {
			case t.in <- b:
			case <-t.sess.Context().Done():
				return
			}
		}
	}()
}

// errFrameTooBig: an inbound length prefix over Options.MaxFrame.
var errFrameTooBig = errors.New("webtransport: frame over MaxFrame")

// readDelimited reads one uvarint-prefixed frame.
func readDelimited(br *bufio.Reader, max int64) ([]byte, error) {
	n, err := binary.ReadUvarint(br)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, io.EOF // between frames
		}
		return nil, err
	}
	if n > uint64(max) {
		return nil, fmt.Errorf("%w: %d bytes", errFrameTooBig, n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(br, b); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return b, nil
}

// closeError turns the end of the stream into the error a WebSocket would
// give: a websocket.CloseError with the session's close code when the
// edge closed the session with one.
func (t *wtTransport) closeError(err error) error {
	if errors.Is(err, io.EOF) {
		// The edge writes FIN, then closes the session: wait for its code.
		tm := time.NewTimer(wtCloseWait)
		select {
		case <-t.sess.Context().Done():
		case <-tm.C:
		}
		tm.Stop()
		if _, oerr := t.sess.OpenStream(); oerr != nil {
			err = oerr
		}
	}
	if se, ok := errors.AsType[*webtransport.SessionError](err); ok {
		return websocket.CloseError{Code: websocket.StatusCode(se.ErrorCode), Reason: se.Message}
	}
	return err
}

func (t *wtTransport) read(ctx context.Context) ([]byte, bool, error) {
	select {
	case b := <-t.in:
		return b, false, nil
	default:
	}
	select {
	case b := <-t.in:
		return b, false, nil
	case <-t.done:
		select { // frames read before the end come first
		case b := <-t.in:
			return b, false, nil
		default:
		}
		return nil, false, t.readErr
	case <-ctx.Done():
		return nil, false, ctx.Err()
	}
}

func (t *wtTransport) write(b []byte, _ bool) error {
	buf := make([]byte, 0, binary.MaxVarintLen64+len(b))
	buf = binary.AppendUvarint(buf, uint64(len(b)))
	buf = append(buf, b...)
	_, err := t.str.Write(buf)
	return err
}

func (t *wtTransport) close(code websocket.StatusCode, reason string) error {
	_ = t.str.Close() // FIN: the edge reads it as 1000 between frames
	err := t.sess.CloseWithError(webtransport.SessionErrorCode(code), reason)
	t.release()
	return err
}

func (t *wtTransport) closeNow() error {
	err := t.sess.CloseWithError(webtransport.SessionErrorCode(websocket.StatusAbnormalClosure), "")
	t.release()
	return err
}

func (t *wtTransport) release() {
	t.closeOnce.Do(func() {
		go func() {
			t.wg.Wait()
			_ = t.tr.Close()
		}()
	})
}

// wtURL derives the WebTransport URL of a WebSocket URL:
// ws(s)://H/… → https://H/wt (docs/WEBTRANSPORT.md).
func wtURL(wsURL string) (string, error) {
	u, err := url.Parse(wsURL)
	if err != nil {
		return "", err
	}
	if u.Host == "" {
		return "", fmt.Errorf("no host in %q", wsURL)
	}
	return "https://" + u.Host + "/wt", nil
}

// wtInfo is GET /v1/webtransport.
type wtInfo struct {
	URL    string `json:"url"`
	Hashes []struct {
		Algorithm string `json:"algorithm"`
		Value     []byte `json:"value"`
	} `json:"certificateHashes"`
}

// WebTransportCertHashes asks the edge behind wsURL (GET
// /v1/webtransport on its host) for the SHA-256 hashes of its
// WebTransport certificate (relaymesh dev's self-signed one), for
// Options.CertHashes. hc nil: http.DefaultClient.
func WebTransportCertHashes(ctx context.Context, hc *http.Client, wsURL string) ([][]byte, error) {
	return fetchCertHashes(ctx, hc, wsURL)
}

// fetchCertHashes asks the edge behind wsURL for its certificate hashes.
func fetchCertHashes(ctx context.Context, hc *http.Client, wsURL string) ([][]byte, error) {
	u, err := url.Parse(wsURL)
	if err != nil {
		return nil, err
	}
	scheme := "http"
	if u.Scheme == "wss" || u.Scheme == "https" {
		scheme = "https"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+u.Host+"/v1/webtransport", nil)
	if err != nil {
		return nil, err
	}
	if hc == nil {
		hc = http.DefaultClient
	}
	rsp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer rsp.Body.Close()
	if rsp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/v1/webtransport: %s", rsp.Status)
	}
	var in wtInfo
	if err := json.NewDecoder(io.LimitReader(rsp.Body, 1<<16)).Decode(&in); err != nil {
		return nil, fmt.Errorf("/v1/webtransport: %w", err)
	}
	var out [][]byte
	for _, h := range in.Hashes {
		if strings.EqualFold(h.Algorithm, "sha-256") && len(h.Value) == sha256.Size {
			out = append(out, h.Value)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("/v1/webtransport: no sha-256 certificate hash")
	}
	return out, nil
}

// hashTLS trusts a certificate by its SHA-256 alone, as a browser given
// serverCertificateHashes does.
func hashTLS(hashes [][]byte) *tls.Config {
	return &tls.Config{
		InsecureSkipVerify: true, // verified by hash below
		NextProtos:         []string{http3.NextProtoH3},
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return errors.New("webtransport: no certificate")
			}
			h := sha256.Sum256(raw[0])
			for _, want := range hashes {
				if bytes.Equal(h[:], want) {
					return nil
				}
			}
			return errors.New("webtransport: certificate hash mismatch")
		},
	}
}

// dialWebTransport opens the session and its stream.
func (c *Client) dialWebTransport(ctx context.Context, wsURL string) (*wtTransport, error) {
	target := c.opts.WebTransportURL
	if target == "" {
		var err error
		if target, err = wtURL(wsURL); err != nil {
			return nil, err
		}
	}
	tlsConf := c.opts.TLSConfig
	if tlsConf == nil {
		hashes := c.opts.CertHashes
		if len(hashes) == 0 {
			// Fetched once per server and kept; dropped when a dial fails
			// (a renewed certificate).
			c.mu.Lock()
			hashes = c.wtHashes[wsURL]
			c.mu.Unlock()
			if len(hashes) == 0 {
				var err error
				if hashes, err = fetchCertHashes(ctx, c.opts.HTTPClient, wsURL); err != nil {
					return nil, err
				}
				c.mu.Lock()
				if c.wtHashes == nil {
					c.wtHashes = make(map[string][][]byte)
				}
				c.wtHashes[wsURL] = hashes
				c.mu.Unlock()
			}
		}
		tlsConf = hashTLS(hashes)
	}
	if c.opts.Subprotocol != "" && strings.HasPrefix(c.opts.Subprotocol, "lc.protobuf2.1") {
		target += "?subprotocol=" + url.QueryEscape(c.opts.Subprotocol)
	}
	tr := &webtransport.Transport{TLSClientConfig: tlsConf}
	if qtr := c.quicTransport(); qtr != nil {
		tr.DialAddr = func(ctx context.Context, addr string, tc *tls.Config, qc *quic.Config) (*quic.Conn, error) {
			ua, err := net.ResolveUDPAddr("udp", addr)
			if err != nil {
				return nil, err
			}
			return qtr.DialEarly(ctx, ua, tc, qc)
		}
	}
	fail := func(err error) (*wtTransport, error) {
		c.mu.Lock()
		delete(c.wtHashes, wsURL)
		c.mu.Unlock()
		_ = tr.Close()
		return nil, err
	}
	sess, err := dialRefusedRetry(ctx, func() (*webtransport.Session, error) {
		_, sess, err := tr.Dial(ctx, target, nil)
		return sess, err
	})
	if err != nil {
		return fail(err)
	}
	str, err := sess.OpenStreamSync(ctx)
	if err != nil {
		_ = sess.CloseWithError(0, "")
		return fail(err)
	}
	t := &wtTransport{sess: sess, str: str, tr: tr, max: c.opts.MaxFrame}
	t.start()
	return t, nil
}

// quicTransport is the one quic.Transport on Options.PacketConn, shared
// by every connection of the client (nil without a PacketConn). run closes
// it when the client is finished; that ends only quic-go's use of the
// PacketConn, which the caller owns.
func (c *Client) quicTransport() *quic.Transport {
	if c.opts.PacketConn == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.qtr == nil {
		c.qtr = &quic.Transport{Conn: c.opts.PacketConn}
	}
	return c.qtr
}

// wtDialRetries is how many times a WebTransport dial is tried again when
// the edge refuses the connection.
const wtDialRetries = 4

// dialRefusedRetry dials, and dials again (up to wtDialRetries times, after
// 50, 100, 200, 400 ms and a random part as long) while the edge answers
// CONNECTION_REFUSED. quic-go refuses a connection whose handshake is done
// while 32 others wait for the server to accept them: a burst of logins on
// a busy edge, not a dead one, so the next try usually gets in.
func dialRefusedRetry(ctx context.Context, dial func() (*webtransport.Session, error)) (*webtransport.Session, error) {
	backoff := 50 * time.Millisecond
	for try := 0; ; try++ {
		sess, err := dial()
		if err == nil || !connRefused(err) || try == wtDialRetries {
			return sess, err
		}
		t := time.NewTimer(backoff + rand.N(backoff))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, err
		case <-t.C:
		}
		backoff *= 2
	}
}

// connRefused reports whether err is the server's CONNECTION_REFUSED.
func connRefused(err error) bool {
	var te *quic.TransportError
	return errors.As(err, &te) && te.ErrorCode == quic.ConnectionRefused
}
