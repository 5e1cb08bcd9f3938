package edge

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// The certificate of the WebTransport listener (QUIC needs TLS at the edge
// even where a load balancer terminates TLS for WebSocket).
//
// In production it is the configured certificate and key ([edge] wt_cert,
// wt_key): browsers trust it by its chain, and /v1/webtransport sends no
// hashes. Refresh reloads the files when they change (a renewed Let's
// Encrypt certificate needs no restart).
//
// `relaymesh dev` makes its own: ECDSA P-256, self-signed, valid for
// DevCertValidity (browsers accept a certificate by its hash,
// serverCertificateHashes, only when it is valid for at most 14 days), kept
// in the data directory so that its hash survives restarts, and renewed
// when less than DevCertRenewBefore remains: at start, and by the
// WebTransport listener's hourly Refresh while it runs. Pages get the
// current hash from /v1/webtransport or /v1/route; after a renewal a page
// holding the old hash fails to connect and must fetch it again.

// Dev certificate lifetimes.
const (
	DevCertValidity    = 13 * 24 * time.Hour // + 1 h of clock skew before now: under 14 days
	DevCertRenewBefore = 2 * 24 * time.Hour
	devCertBackdate    = time.Hour
	maxHashCertSpan    = 14 * 24 * time.Hour // browsers' limit for serverCertificateHashes
)

// WTCertRefreshEvery is how often the WebTransport listener calls Refresh.
const WTCertRefreshEvery = time.Hour

// WTCert is the certificate a WebTransport listener presents. Safe for
// concurrent use.
type WTCert struct {
	certFile, keyFile string // the files: configured, or dev's in its dir
	dev               bool   // self-signed, renewed here; hashes announced
	now               func() time.Time

	mu     sync.Mutex // serializes Refresh
	cur    atomic.Pointer[wtCertState]
	loaded time.Time // guarded by mu; newest mtime of the files when loaded
}

type wtCertState struct {
	cert     *tls.Certificate
	leaf     *x509.Certificate
	hash     [sha256.Size]byte
	notAfter time.Time
}

// LoadWTCert loads a configured certificate chain and key (PEM files).
func LoadWTCert(certFile, keyFile string) (*WTCert, error) {
	c := &WTCert{certFile: certFile, keyFile: keyFile, now: time.Now}
	if err := c.load(); err != nil {
		return nil, err
	}
	return c, nil
}

// DevWTCert returns the dev certificate kept in dir (dir/wt.crt,
// dir/wt.key), making a new one when there is none, when it is unusable
// (not ECDSA P-256, valid for more than 14 days), or when less than
// DevCertRenewBefore of it remains.
func DevWTCert(dir string) (*WTCert, error) {
	return devWTCert(dir, time.Now)
}

func devWTCert(dir string, now func() time.Time) (*WTCert, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("edge: wt cert dir: %w", err)
	}
	c := &WTCert{certFile: filepath.Join(dir, "wt.crt"), keyFile: filepath.Join(dir, "wt.key"), dev: true, now: now}
	if err := c.load(); err != nil || !c.usableDev() {
		if err := c.renew(); err != nil {
			return nil, err
		}
	}
	if _, err := c.Refresh(); err != nil {
		return nil, err
	}
	return c, nil
}

// usableDev reports whether the loaded certificate can serve as the dev
// one: a hash-pinnable ECDSA P-256 certificate.
func (c *WTCert) usableDev() bool {
	st := c.cur.Load()
	if st == nil {
		return false
	}
	pub, ok := st.leaf.PublicKey.(*ecdsa.PublicKey)
	return ok && pub.Curve == elliptic.P256() && st.leaf.NotAfter.Sub(st.leaf.NotBefore) <= maxHashCertSpan
}

// load reads the files.
func (c *WTCert) load() error {
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("edge: wt cert: %w", err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return fmt.Errorf("edge: wt cert: %w", err)
	}
	cert.Leaf = leaf
	c.cur.Store(&wtCertState{cert: &cert, leaf: leaf, hash: sha256.Sum256(cert.Certificate[0]), notAfter: leaf.NotAfter})
	c.loaded = c.mtime()
	return nil
}

// mtime is the newest modification time of the files.
func (c *WTCert) mtime() time.Time {
	var t time.Time
	for _, f := range []string{c.certFile, c.keyFile} {
		if fi, err := os.Stat(f); err == nil && fi.ModTime().After(t) {
			t = fi.ModTime()
		}
	}
	return t
}

// renew makes a new dev certificate and key, writes them and serves them.
func (c *WTCert) renew() error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return err
	}
	from := c.now().Add(-devCertBackdate).Truncate(time.Second)
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "relaymesh dev WebTransport"},
		NotBefore:             from,
		NotAfter:              from.Add(devCertBackdate + DevCertValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("edge: wt cert: %w", err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
	if err := writeFileAtomic(c.keyFile, keyPEM, 0o600); err != nil {
		return err
	}
	if err := writeFileAtomic(c.certFile, certPEM, 0o644); err != nil {
		return err
	}
	return c.load()
}

// writeFileAtomic writes b to path through a temporary file and a rename.
func writeFileAtomic(path string, b []byte, perm os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, perm); err != nil {
		return fmt.Errorf("edge: wt cert: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("edge: wt cert: %w", err)
	}
	return nil
}

// Refresh renews a dev certificate with less than DevCertRenewBefore left,
// or reloads configured files that changed; it reports whether the
// certificate changed. On an error the current certificate stays.
func (c *WTCert) Refresh() (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dev {
		if st := c.cur.Load(); st != nil && st.notAfter.Sub(c.now()) >= DevCertRenewBefore {
			return false, nil
		}
		return true, c.renew()
	}
	if m := c.mtime(); m.Equal(c.loaded) || m.IsZero() {
		return false, nil
	}
	old := c.cur.Load()
	if err := c.load(); err != nil {
		return false, err
	}
	return !bytes.Equal(old.cert.Certificate[0], c.cur.Load().cert.Certificate[0]), nil
}

// TLSConfig presents the current certificate (renewals included).
func (c *WTCert) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			if st := c.cur.Load(); st != nil {
				return st.cert, nil
			}
			return nil, errors.New("edge: no wt certificate")
		},
	}
}

// Hashes returns the SHA-256 hash of the current certificate for the
// browsers' serverCertificateHashes: dev only (nil for a configured one).
func (c *WTCert) Hashes() [][]byte {
	if !c.dev {
		return nil
	}
	st := c.cur.Load()
	return [][]byte{bytes.Clone(st.hash[:])}
}

// Hash returns the SHA-256 hash of the current certificate.
func (c *WTCert) Hash() [sha256.Size]byte { return c.cur.Load().hash }

// NotAfter returns when the current certificate expires.
func (c *WTCert) NotAfter() time.Time { return c.cur.Load().notAfter }

// SelfSigned reports whether this is a dev certificate.
func (c *WTCert) SelfSigned() bool { return c.dev }
