package edge

import (
	"net/http"
	"net/netip"
	"strings"
)

// The client's address (hooks' sourceIP): the TCP peer of the WebSocket,
// unless that peer is one of Config.TrustedProxies — a load balancer or TLS
// terminator in front of the edge — in which case X-Forwarded-For names
// it. (The same helpers as the security branch's edge/guard.go, which also
// uses them for connections per IP; keep that file's version on merge.)

// addrIP parses the IP of a host:port (the zero Addr when it does not).
func addrIP(hostport string) netip.Addr {
	ap, err := netip.ParseAddrPort(hostport)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// trusted reports whether ip is one of Config.TrustedProxies.
func (s *Server) trusted(ip netip.Addr) bool {
	for _, p := range s.proxies {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// clientIP is the IP a request comes from: the peer's address, or, when
// the peer is a trusted proxy, the rightmost X-Forwarded-For entry that is
// not itself a trusted proxy (entries further left are the client's own
// claims and could be anything).
func (s *Server) clientIP(r *http.Request) netip.Addr {
	ip := addrIP(r.RemoteAddr)
	if !ip.IsValid() || !s.trusted(ip) {
		return ip
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		h, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			return ip // malformed: stop at the proxy we know
		}
		h = h.Unmap()
		if !s.trusted(h) {
			return h
		}
		ip = h
	}
	return ip
}

// ParseTrustedProxies parses CIDRs or single IPs (Config.TrustedProxies).
func ParseTrustedProxies(list []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	for _, v := range list {
		if p, err := netip.ParsePrefix(v); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(v)
		if err != nil {
			return nil, err
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}
