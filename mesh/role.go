package mesh

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// Node roles (issue 8: mesh roles).
//
// Every node certificate says which role its node plays, as one URI SAN
//
//	relaymesh://role/<core|edge|admin>
//
// `relaymesh pki issue --role` and the dev PKI (EnsureDevPKI) write it. The
// mesh reads the role of each peer from its verified certificate and
// enforces it:
//
//   - A certificate without a role is refused in the TLS handshake, on
//     both sides, with a log line naming it (certificates issued before
//     roles existed: reissue them, docs/OPERATIONS.md).
//   - Raft streams are accepted only from cores, and a node only dials raft
//     to a core: an edge or admin certificate can never append to, vote in,
//     or snapshot a shard.
//   - RPC and stream methods name the roles that may call them
//     (HandleRPC, HandleStream); a caller of another role gets ErrForbidden
//     and the handler never runs. Without a list, any role may call.

// Role is what a node is allowed to do in the mesh.
type Role string

// The roles.
const (
	RoleCore  Role = "core"  // holds shard replicas: raft, core RPCs
	RoleEdge  Role = "edge"  // serves clients; calls cores
	RoleAdmin Role = "admin" // operator tooling; calls cores
)

// roleURIScheme and roleURIHost make the URI SAN relaymesh://role/<role>.
const (
	roleURIScheme = "relaymesh"
	roleURIHost   = "role"
)

// ErrNoRole marks a certificate that carries no (or an unknown) role.
var ErrNoRole = errors.New("mesh: certificate carries no relaymesh role (relaymesh://role/core|edge|admin URI SAN); reissue it with `relaymesh pki issue --role`")

// ErrForbidden is returned to a peer whose role may not use a method.
var ErrForbidden = errors.New("mesh: role not allowed")

// ParseRole parses a role name.
func ParseRole(s string) (Role, error) {
	switch r := Role(s); r {
	case RoleCore, RoleEdge, RoleAdmin:
		return r, nil
	}
	return "", fmt.Errorf("mesh: unknown role %q (want core, edge or admin)", s)
}

// roleURI is the SAN that carries r.
func roleURI(r Role) *url.URL {
	return &url.URL{Scheme: roleURIScheme, Host: roleURIHost, Path: "/" + string(r)}
}

// CertRole returns the role a certificate carries, or ErrNoRole. A
// certificate with two different roles has none.
func CertRole(c *x509.Certificate) (Role, error) {
	var found Role
	for _, u := range c.URIs {
		if u.Scheme != roleURIScheme || u.Host != roleURIHost {
			continue
		}
		r, err := ParseRole(strings.TrimPrefix(u.Path, "/"))
		if err != nil || (found != "" && found != r) {
			return "", ErrNoRole
		}
		found = r
	}
	if found == "" {
		return "", ErrNoRole
	}
	return found, nil
}

// DevRole is the role the dev PKI gives a node name: "edge…" is an edge,
// "admin…" an admin, anything else a core.
func DevRole(name string) Role {
	switch {
	case strings.HasPrefix(name, "edge"):
		return RoleEdge
	case strings.HasPrefix(name, "admin"):
		return RoleAdmin
	}
	return RoleCore
}

// allowed reports whether a peer of role r may use a method restricted to
// roles (none: any role).
func allowed(roles []Role, r Role) bool {
	if len(roles) == 0 {
		return true
	}
	for _, x := range roles {
		if x == r {
			return true
		}
	}
	return false
}
