package client

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"github.com/quic-go/webtransport-go"
)

// refusingWTServer is a WebTransport server whose QUIC listener refuses
// (CONNECTION_REFUSED, as quic-go does when its accept queue is full) the
// first `refuse` connections.
func refusingWTServer(t *testing.T, refuse int64) (url string, hash []byte, tries *atomic.Int64) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(der)
	tc := &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		NextProtos: []string{http3.NextProtoH3}}
	mux := http.NewServeMux()
	s := &webtransport.Server{H3: &http3.Server{TLSConfig: tc, Handler: mux}}
	mux.HandleFunc("/wt", func(w http.ResponseWriter, r *http.Request) {
		sess, err := s.Upgrade(w, r)
		if err != nil {
			return
		}
		str, err := sess.AcceptStream(context.Background())
		if err != nil {
			return
		}
		buf := make([]byte, 64)
		for {
			if _, err := str.Read(buf); err != nil {
				return
			}
		}
	})
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	tries = new(atomic.Int64)
	base := &quic.Config{EnableDatagrams: true, EnableStreamResetPartialDelivery: true}
	conf := base.Clone()
	// A ClientHello may span two Initial packets, and each reaches this
	// callback: attempts are counted by the client's address (each dial
	// opens a new socket).
	var mu sync.Mutex
	seen := map[string]int64{}
	conf.GetConfigForClient = func(ci *quic.ClientInfo) (*quic.Config, error) {
		mu.Lock()
		n, ok := seen[ci.RemoteAddr.String()]
		if !ok {
			n = tries.Add(1)
			seen[ci.RemoteAddr.String()] = n
		}
		mu.Unlock()
		if n <= refuse {
			return nil, errors.New("refused")
		}
		return base, nil
	}
	ln, err := quic.ListenEarly(udp, tc, conf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(); ln.Close(); udp.Close() })
	go func() {
		for {
			c, err := ln.Accept(context.Background())
			if err != nil {
				return
			}
			go s.ServeQUICConn(c)
		}
	}()
	return fmt.Sprintf("https://%s/wt", udp.LocalAddr()), sum[:], tries
}

// TestWebTransportDialRetriesRefused: an edge that refuses a burst of
// connections (quic-go's accept queue of 32) does not fail a client's
// first connect; one that keeps refusing does, after wtDialRetries.
func TestWebTransportDialRetriesRefused(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	url, hash, tries := refusingWTServer(t, 2)
	c := &Client{opts: Options{WebTransportURL: url, CertHashes: [][]byte{hash}}}
	tr, err := c.dialWebTransport(ctx, "ws://unused/")
	if err != nil {
		t.Fatalf("dial after 2 refusals: %v", err)
	}
	tr.sess.CloseWithError(0, "")
	if n := tries.Load(); n != 3 {
		t.Errorf("server saw %d connection attempts, want 3 (2 refused, then in)", n)
	}

	url, hash, tries = refusingWTServer(t, 1000)
	c = &Client{opts: Options{WebTransportURL: url, CertHashes: [][]byte{hash}}}
	_, err = c.dialWebTransport(ctx, "ws://unused/")
	if !connRefused(err) {
		t.Fatalf("dial to an edge that always refuses: %v, want CONNECTION_REFUSED", err)
	}
	if n := tries.Load(); n != 1+wtDialRetries {
		t.Errorf("server saw %d attempts, want %d", n, 1+wtDialRetries)
	}

	// Other errors are not retried: a server that is not there.
	url, hash, tries = refusingWTServer(t, 0)
	c = &Client{opts: Options{WebTransportURL: url, CertHashes: [][]byte{{1, 2, 3}}}} // wrong certificate hash
	short, cancel2 := context.WithTimeout(ctx, 5*time.Second)
	defer cancel2()
	if _, err := c.dialWebTransport(short, "ws://unused/"); err == nil || connRefused(err) {
		t.Fatalf("dial with a wrong certificate hash: %v, want a TLS error", err)
	}
	if n := tries.Load(); n > 1 {
		t.Errorf("a TLS failure was tried %d times, want once", n)
	}
	_ = hash
}
