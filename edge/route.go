package edge

import (
	"errors"
	"fmt"
	"hash/fnv"
	"net/netip"
	"slices"
)

// Nearest edge (issue 9). /v1/route answers with edges of the caller's
// region: the region whose client networks (CIDRs) hold the caller's
// address (Server.clientIP: the peer, or X-Forwarded-For behind a trusted
// proxy), by longest prefix; a caller in no region's networks gets the
// edge's own region. `server` is one of that region's public URLs and
// `secondary` one of the next-nearest region's, so a client whose region
// is lost still knows somewhere to go; with one region, secondary is
// another URL of the same region (never empty: the Java SDK alternates
// server and secondary and hangs on a missing one). Which URL of a region
// a caller gets is a hash of its address: stable for one client, spread
// over the region's edges. In production latency-based DNS usually picks
// the edge first; the router is the SDKs' way to a second choice.

// ErrRoutes marks an invalid region table.
var ErrRoutes = errors.New("edge: invalid regions")

// Region is one region as the router sees it.
type Region struct {
	Name string
	// CIDRs are the client networks this region serves.
	CIDRs []netip.Prefix
	// PublicURLs are its edges' WebSocket URLs.
	PublicURLs []string
	// Nearest names other regions, nearest first: the first is where a
	// caller of this region gets its secondary. Regions left out follow
	// in configuration order.
	Nearest []string
}

// RouteTable picks /v1/route answers by the caller's address. Immutable.
type RouteTable struct {
	local   int // index of the edge's own region
	regions []Region
	order   [][]int // per region: the other regions, nearest first
}

// NewRouteTable checks regions and returns the table of an edge in region
// local.
func NewRouteTable(local string, regions []Region) (*RouteTable, error) {
	t := &RouteTable{local: -1}
	index := map[string]int{}
	for i, r := range regions {
		switch {
		case r.Name == "":
			return nil, fmt.Errorf("%w: region %d has no name", ErrRoutes, i)
		case len(r.PublicURLs) == 0:
			return nil, fmt.Errorf("%w: region %q has no public_urls", ErrRoutes, r.Name)
		case slices.Contains(r.PublicURLs, ""):
			return nil, fmt.Errorf("%w: region %q has an empty public URL", ErrRoutes, r.Name)
		}
		if _, dup := index[r.Name]; dup {
			return nil, fmt.Errorf("%w: region %q listed twice", ErrRoutes, r.Name)
		}
		index[r.Name] = i
		r.CIDRs = slices.Clone(r.CIDRs)
		for j, p := range r.CIDRs {
			r.CIDRs[j] = p.Masked()
		}
		t.regions = append(t.regions, r)
	}
	li, ok := index[local]
	if !ok {
		return nil, fmt.Errorf("%w: this edge's region %q is not among the regions", ErrRoutes, local)
	}
	t.local = li
	for i, r := range t.regions {
		var order []int
		for _, n := range r.Nearest {
			j, ok := index[n]
			if !ok {
				return nil, fmt.Errorf("%w: region %q: nearest names unknown region %q", ErrRoutes, r.Name, n)
			}
			if j != i && !slices.Contains(order, j) {
				order = append(order, j)
			}
		}
		for j := range t.regions {
			if j != i && !slices.Contains(order, j) {
				order = append(order, j)
			}
		}
		t.order = append(t.order, order)
	}
	return t, nil
}

// Region returns the name of the region serving ip: the longest CIDR
// holding it, else the edge's own region.
func (t *RouteTable) Region(ip netip.Addr) string { return t.regions[t.regionOf(ip)].Name }

func (t *RouteTable) regionOf(ip netip.Addr) int {
	best, bits := t.local, -1
	if !ip.IsValid() {
		return best
	}
	ip = ip.Unmap()
	for i, r := range t.regions {
		for _, p := range r.CIDRs {
			if p.Bits() > bits && p.Contains(ip) {
				best, bits = i, p.Bits()
			}
		}
	}
	return best
}

// Route returns the answer for a caller at ip: server in its region,
// secondary in the next-nearest one, and the region's name.
func (t *RouteTable) Route(ip netip.Addr) (server, secondary, region string) {
	ri := t.regionOf(ip)
	r := t.regions[ri]
	h := hashIP(ip)
	server = r.PublicURLs[h%uint64(len(r.PublicURLs))]
	if o := t.order[ri]; len(o) > 0 {
		s := t.regions[o[0]].PublicURLs
		return server, s[h%uint64(len(s))], r.Name
	}
	return server, r.PublicURLs[(h+1)%uint64(len(r.PublicURLs))], r.Name
}

func hashIP(ip netip.Addr) uint64 {
	h := fnv.New64a()
	b, _ := ip.Unmap().MarshalBinary()
	h.Write(b)
	return h.Sum64()
}
