package cluster

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/relaymesh/relaymesh/edge"
	"github.com/relaymesh/relaymesh/mesh"
)

// CheckConfig checks the configuration file at path for role ("core" or
// "edge") as that role's startup would, and more, without starting
// anything: no listener, no mesh node, nothing written (`relaymesh core|edge
// --check-config`). It returns every problem found, none when the file is
// fit to run. Beyond LoadConfig and CoreConfig/EdgeConfig it checks that
// the files named exist and parse (mesh certificate, key and CA, the
// session-token key, the WebTransport certificate, word lists, push
// keys), that the mesh certificate was issued for this role by one of the
// CA file's certificates and is valid now, that every address is a
// host:port, and that the data directory, if it exists, is a directory.
func CheckConfig(path, role string) []error {
	if role != "core" && role != "edge" {
		return []error{fmt.Errorf("%w: role %q: want core or edge", ErrConfig, role)}
	}
	var out []error
	var add func(errs ...error)
	add = func(errs ...error) {
		for _, err := range errs {
			if err == nil {
				continue
			}
			// A joined error is its problems, each once.
			if j, ok := err.(interface{ Unwrap() []error }); ok {
				add(j.Unwrap()...)
				continue
			}
			// The same problem found twice, once with more context
			// ("[tls]: mesh: …" and "mesh: …"), is told once, with it.
			msg, dup := err.Error(), false
			for i, o := range out {
				switch om := o.Error(); {
				case strings.Contains(om, msg):
					dup = true
				case strings.Contains(msg, om):
					out[i], dup = err, true
				}
			}
			if !dup {
				out = append(out, err)
			}
		}
	}
	c, err := LoadConfig(path)
	if c == nil {
		add(err)
		// LoadConfig reports every problem of a file that parses; the
		// role's checks need the parsed file, so decode it again as is.
		if c = decodeOnly(path); c == nil {
			return out
		}
	}
	if role == "core" {
		add(c.checkCore()...)
	} else {
		add(c.checkEdge()...)
	}
	return out
}

// decodeOnly is the file decoded without LoadConfig's checks, nil when it
// does not parse.
func decodeOnly(path string) *Config {
	c := new(Config)
	if _, err := toml.DecodeFile(path, c); err != nil {
		return nil
	}
	c.dir = filepath.Dir(path)
	return c
}

func (c *Config) checkCore() []error {
	var errs []error
	cc, err := c.CoreConfig()
	errs = append(errs, err)
	if err == nil {
		cc.Integrations.Close() // built, never started
	}
	// CoreConfig stops at its first problem; the checks it makes after it
	// run again here on their own.
	_, err = c.Registry()
	errs = append(errs, err)
	errs = append(errs, c.checkIdentity("core")...)
	if in, err := c.Integrations(nil); err != nil {
		errs = append(errs, err)
	} else {
		in.Close()
	}
	s := c.Core
	errs = append(errs, checkAddr("core.mesh_addr", s.MeshAddr, true))
	errs = append(errs, checkAddr("core.metrics_addr", s.MetricsAddr, false))
	for id, a := range s.Peers {
		errs = append(errs, checkAddr("core.peers."+id, a, true))
	}
	for _, r := range s.RemoteRegions {
		for _, a := range r.Cores {
			errs = append(errs, checkAddr(fmt.Sprintf("core.remote_regions[%d].cores", r.Number), a, true))
		}
	}
	if fi, err := os.Stat(c.DataDir()); err == nil && !fi.IsDir() {
		errs = append(errs, fmt.Errorf("%w: data %s is not a directory", ErrConfig, c.DataDir()))
	}
	return errs
}

func (c *Config) checkEdge() []error {
	var errs []error
	_, err := c.EdgeConfig()
	errs = append(errs, err)
	_, err = c.Registry()
	errs = append(errs, err)
	errs = append(errs, c.checkIdentity("edge")...)
	_, err = c.TokenKey()
	errs = append(errs, err)
	if _, err := c.Routes(c.Edge.Region); err != nil {
		errs = append(errs, err)
	}
	s := c.Edge
	if s.WTCert != "" && s.WTKey != "" {
		if _, err := edge.LoadWTCert(c.Path(s.WTCert), c.Path(s.WTKey)); err != nil {
			errs = append(errs, fmt.Errorf("%w: edge.wt_cert: %v", ErrConfig, err))
		}
	}
	errs = append(errs, checkAddr("edge.listen", s.Listen, false))
	errs = append(errs, checkAddr("edge.mesh_addr", s.MeshAddr, false))
	errs = append(errs, checkAddr("edge.admin_addr", s.AdminAddr, false))
	for _, a := range s.Cores {
		errs = append(errs, checkAddr("edge.cores", a, true))
	}
	for _, u := range s.PublicURLs {
		if p, err := url.Parse(u); err != nil || (p.Scheme != "ws" && p.Scheme != "wss") || p.Host == "" {
			errs = append(errs, fmt.Errorf("%w: edge.public_urls: %q is not a ws:// or wss:// URL", ErrConfig, u))
		}
	}
	return errs
}

// checkIdentity loads the mesh certificate of [tls] and checks it was
// issued for role by a CA of the CA file and is valid now.
func (c *Config) checkIdentity(role string) []error {
	id, err := c.Identity()
	if err != nil {
		if !errors.Is(err, ErrConfig) {
			err = fmt.Errorf("%w: [tls]: %v", ErrConfig, err)
		}
		return []error{err}
	}
	var errs []error
	if id.Role != mesh.Role(role) {
		errs = append(errs, fmt.Errorf("%w: [tls] cert %s is a %s certificate, not a %s one (relaymesh pki issue --role %s)",
			ErrConfig, c.TLS.Cert, id.Role, role, role))
	}
	leaf := id.Cert.Leaf
	now := time.Now()
	if now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
		errs = append(errs, fmt.Errorf("%w: [tls] cert %s is valid from %s to %s, not now", ErrConfig, c.TLS.Cert,
			leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339)))
	} else if _, err := leaf.Verify(x509.VerifyOptions{Roots: id.Roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		errs = append(errs, fmt.Errorf("%w: [tls] cert %s is not signed by the CA file %s: %v", ErrConfig, c.TLS.Cert, c.TLS.CA, err))
	}
	return errs
}

// checkAddr checks that a is host:port with a numeric port (fixed: not
// 0). An empty a passes: a missing required address is the role config's
// problem (CoreConfig, EdgeConfig).
func checkAddr(key, a string, fixed bool) error {
	if a == "" {
		return nil
	}
	_, port, err := net.SplitHostPort(a)
	if err != nil {
		return fmt.Errorf("%w: %s: %q is not host:port", ErrConfig, key, a)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 || (fixed && p == 0) {
		return fmt.Errorf("%w: %s: %q has no usable port", ErrConfig, key, a)
	}
	return nil
}
