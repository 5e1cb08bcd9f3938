package mesh

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Identity is what a node presents to its peers and trusts in them.
type Identity struct {
	Name  string          // the node's name: certificate CommonName
	Role  Role            // the node's role: the certificate's role URI SAN (role.go)
	Cert  tls.Certificate // the node's certificate chain and private key
	Roots *x509.CertPool  // the cluster CA
}

const (
	caCertFile = "ca.crt"
	caKeyFile  = "ca.key"

	caValidity   = 10 * 365 * 24 * time.Hour
	nodeValidity = 5 * 365 * 24 * time.Hour
)

// EnsureDevPKI returns an identity for each name, backed by files under dir:
// ca.crt/ca.key for the cluster CA and <name>.crt/<name>.key per node. Missing
// files are created (ECDSA P-256; node certs valid for the name, 127.0.0.1 and
// ::1, with the role DevRole(name)); existing ones are loaded, so a restart
// keeps its CA. A node certificate from before roles is issued anew.
func EnsureDevPKI(dir string, names ...string) (map[string]*Identity, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("mesh: pki dir: %w", err)
	}
	if _, _, err := loadOrCreateCA(dir); err != nil {
		return nil, err
	}
	ids := make(map[string]*Identity, len(names))
	for _, name := range names {
		certFile, keyFile := nodeFiles(dir, name)
		var id *Identity
		var err error
		if fileExists(certFile) {
			id, err = LoadIdentity(certFile, keyFile, filepath.Join(dir, caCertFile))
		}
		if !fileExists(certFile) || errors.Is(err, ErrNoRole) {
			id, err = IssueNodeRole(dir, name, DevRole(name), []string{"127.0.0.1", "::1"})
		}
		if err != nil {
			return nil, err
		}
		ids[name] = id
	}
	return ids, nil
}

// IssueNode is IssueNodeRole with the role DevRole(name): names starting
// "edge" are edges, "admin" admins, the rest cores.
func IssueNode(caDir, name string, hosts []string) (*Identity, error) {
	return IssueNodeRole(caDir, name, DevRole(name), hosts)
}

// IssueNodeRole signs a new certificate for name in role with the CA in
// caDir and writes it to caDir/<name>.crt and caDir/<name>.key. Each host is
// added as an IP or DNS SAN besides name itself; the role is the URI SAN
// relaymesh://role/<role>.
func IssueNodeRole(caDir, name string, role Role, hosts []string) (*Identity, error) {
	if name == "" || strings.ContainsAny(name, `/\`) || name == "." || name == ".." || name == "ca" {
		return nil, fmt.Errorf("mesh: invalid node name %q", name)
	}
	if _, err := ParseRole(string(role)); err != nil {
		return nil, err
	}
	ca, caKey, err := loadOrCreateCA(caDir)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("mesh: node key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: randSerial(),
		Subject:      pkix.Name{CommonName: name, Organization: []string{"relaymesh"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(nodeValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     []string{name},
		URIs:         []*url.URL{roleURI(role)},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != name {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("mesh: sign %s: %w", name, err)
	}
	certFile, keyFile := nodeFiles(caDir, name)
	if err := writeKeyPair(certFile, keyFile, der, key); err != nil {
		return nil, err
	}
	return LoadIdentity(certFile, keyFile, filepath.Join(caDir, caCertFile))
}

// LoadIdentity loads a node certificate and key (PEM) and the cluster CA
// bundle that peers must chain to.
func LoadIdentity(certFile, keyFile, caFile string) (*Identity, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("mesh: load identity: %w", err)
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("mesh: load identity: %w", err)
		}
	}
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("mesh: load CA: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("mesh: load CA: no certificates in %s", caFile)
	}
	name := certName(cert.Leaf)
	if name == "" {
		return nil, fmt.Errorf("mesh: load identity: %s has no CommonName or DNS name", certFile)
	}
	role, err := CertRole(cert.Leaf)
	if err != nil {
		return nil, fmt.Errorf("mesh: load identity %s: %w", certFile, err)
	}
	return &Identity{Name: name, Role: role, Cert: cert, Roots: roots}, nil
}

// loadOrCreateCA loads the CA from dir, creating it if neither file exists.
func loadOrCreateCA(dir string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	certFile, keyFile := filepath.Join(dir, caCertFile), filepath.Join(dir, caKeyFile)
	if !fileExists(certFile) && !fileExists(keyFile) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, nil, fmt.Errorf("mesh: CA key: %w", err)
		}
		tmpl := &x509.Certificate{
			SerialNumber:          randSerial(),
			Subject:               pkix.Name{CommonName: "relaymesh cluster CA", Organization: []string{"relaymesh"}},
			NotBefore:             time.Now().Add(-time.Hour),
			NotAfter:              time.Now().Add(caValidity),
			KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
			BasicConstraintsValid: true,
			IsCA:                  true,
			MaxPathLenZero:        true,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			return nil, nil, fmt.Errorf("mesh: create CA: %w", err)
		}
		if err := writeKeyPair(certFile, keyFile, der, key); err != nil {
			return nil, nil, err
		}
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("mesh: load CA: %w", err)
	}
	key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		return nil, nil, fmt.Errorf("mesh: load CA: key in %s is not ECDSA", keyFile)
	}
	ca, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, nil, fmt.Errorf("mesh: load CA: %w", err)
	}
	return ca, key, nil
}

// writeKeyPair writes a certificate (0644) and its key (0600) as PEM, each via
// a temporary file and rename so a crash never leaves half a file.
func writeKeyPair(certFile, keyFile string, der []byte, key *ecdsa.PrivateKey) error {
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("mesh: marshal key: %w", err)
	}
	if err := writeFileAtomic(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return err
	}
	return writeFileAtomic(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

func writeFileAtomic(path string, data []byte, perm fs.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("mesh: write %s: %w", path, err)
	}
	defer os.Remove(f.Name()) // no-op after a successful rename
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("mesh: write %s: %w", path, err)
	}
	return nil
}

func nodeFiles(dir, name string) (certFile, keyFile string) {
	return filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return !errors.Is(err, fs.ErrNotExist)
}

func randSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail
	}
	return n
}

// certName is the node name a certificate stands for.
func certName(c *x509.Certificate) string {
	if c.Subject.CommonName != "" {
		return c.Subject.CommonName
	}
	if len(c.DNSNames) > 0 {
		return c.DNSNames[0]
	}
	return ""
}
