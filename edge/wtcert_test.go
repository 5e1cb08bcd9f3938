package edge

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// fakeClock is a settable clock for the certificate tests.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func servedCert(t *testing.T, c *WTCert) *x509.Certificate {
	t.Helper()
	tc, err := c.TLSConfig().GetCertificate(&tls.ClientHelloInfo{})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(tc.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(tc.Certificate[0]) != c.Hash() {
		t.Fatal("Hash is not the served certificate's")
	}
	if h := c.Hashes(); len(h) != 1 || [sha256.Size]byte(h[0]) != c.Hash() {
		t.Fatalf("Hashes %x, want the served certificate's", h)
	}
	return leaf
}

func TestDevWTCert(t *testing.T) {
	dir := t.TempDir()
	clk := &fakeClock{t: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)}
	c, err := devWTCert(dir, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	leaf := servedCert(t, c)
	pub, ok := leaf.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		t.Fatalf("key %T, want ECDSA P-256", leaf.PublicKey)
	}
	if span := leaf.NotAfter.Sub(leaf.NotBefore); span > 14*24*time.Hour {
		t.Fatalf("valid for %v, want at most 14 days (serverCertificateHashes)", span)
	}
	if !leaf.NotBefore.Before(clk.now()) || leaf.NotAfter.Sub(clk.now()) < 12*24*time.Hour {
		t.Fatalf("valid %v..%v at %v", leaf.NotBefore, leaf.NotAfter, clk.now())
	}
	if fi, err := os.Stat(filepath.Join(dir, "wt.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v, want mode 0600", fi, err)
	}
	first := c.Hash()

	// A restart keeps the certificate (pages keep a working hash).
	c2, err := devWTCert(dir, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	if c2.Hash() != first {
		t.Fatal("restart made a new certificate with 13 days left")
	}
	// Refresh keeps it while 2 days or more remain...
	clk.add(10*24*time.Hour + 23*time.Hour) // 2 days + 1 h left (notAfter = start + 13 d)
	if changed, err := c.Refresh(); err != nil || changed || c.Hash() != first {
		t.Fatalf("Refresh with 2 days left: changed %v, %v", changed, err)
	}
	// ...and renews it when less remains, while running.
	clk.add(2 * time.Hour)
	if changed, err := c.Refresh(); err != nil || !changed || c.Hash() == first {
		t.Fatalf("Refresh with under 2 days left: changed %v, %v", changed, err)
	}
	renewed := servedCert(t, c)
	if renewed.NotAfter.Sub(clk.now()) < 12*24*time.Hour {
		t.Fatalf("renewed certificate ends %v", renewed.NotAfter)
	}
	// A start with under 2 days left renews too; so does one long after expiry.
	clk.add(11*24*time.Hour + 12*time.Hour)
	c3, err := devWTCert(dir, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	if c3.Hash() == c.Hash() {
		t.Fatal("start with under 2 days left kept the certificate")
	}
	clk.add(365 * 24 * time.Hour)
	c4, err := devWTCert(dir, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	if c4.NotAfter().Before(clk.now()) {
		t.Fatal("expired certificate kept")
	}
}

// TestDevWTCertReplacesUnusable: a certificate a browser would not pin (RSA,
// valid 90 days) or garbage in the files is replaced at start.
func TestDevWTCertReplacesUnusable(t *testing.T) {
	dir := t.TempDir()
	key, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "x"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(90 * 24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	os.WriteFile(filepath.Join(dir, "wt.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(filepath.Join(dir, "wt.key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	c, err := DevWTCert(dir)
	if err != nil {
		t.Fatal(err)
	}
	if leaf := servedCert(t, c); leaf.NotAfter.Sub(leaf.NotBefore) > 14*24*time.Hour || leaf.PublicKey.(*ecdsa.PublicKey).Curve != elliptic.P256() {
		t.Fatal("a 90-day P-384 certificate was kept")
	}
	os.WriteFile(filepath.Join(dir, "wt.crt"), []byte("garbage"), 0o644)
	if _, err := DevWTCert(dir); err != nil {
		t.Fatalf("garbage certificate file: %v, want a new certificate", err)
	}
}

// TestLoadWTCertReloads: a configured certificate is reloaded when its files
// change; a broken replacement keeps the old one.
func TestLoadWTCertReloads(t *testing.T) {
	dir := t.TempDir()
	src, err := DevWTCert(filepath.Join(dir, "a"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := LoadWTCert(src.certFile, src.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if c.SelfSigned() || c.Hashes() != nil {
		t.Fatal("a configured certificate announces hashes")
	}
	if changed, err := c.Refresh(); err != nil || changed {
		t.Fatalf("Refresh of unchanged files: %v %v", changed, err)
	}
	// Replace the files (a renewed certificate), with a newer mtime.
	other, err := DevWTCert(filepath.Join(dir, "b"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range [][2]string{{other.certFile, src.certFile}, {other.keyFile, src.keyFile}} {
		b, _ := os.ReadFile(f[0])
		os.WriteFile(f[1], b, 0o600)
		future := time.Now().Add(time.Minute)
		os.Chtimes(f[1], future, future)
	}
	if changed, err := c.Refresh(); err != nil || !changed || c.Hash() != other.Hash() {
		t.Fatalf("Refresh after a renewal: changed %v, %v", changed, err)
	}
	os.WriteFile(src.certFile, []byte("broken"), 0o600)
	later := time.Now().Add(2 * time.Minute)
	os.Chtimes(src.certFile, later, later)
	if _, err := c.Refresh(); err == nil {
		t.Fatal("a broken certificate file was accepted")
	}
	if c.Hash() != other.Hash() {
		t.Fatal("a broken replacement dropped the served certificate")
	}
	if _, err := LoadWTCert(src.certFile, src.keyFile); err == nil {
		t.Fatal("LoadWTCert accepted a broken file")
	}
}
