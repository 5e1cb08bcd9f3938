package netem

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"
)

// ErrRules marks invalid rules (a bad file, a link naming no group).
var ErrRules = errors.New("netem: invalid rules")

// Any matches every group in a link's From or To.
const Any = "*"

// Link is what happens to datagrams from one group to another.
type Link struct {
	Latency time.Duration // one-way delay
	Jitter  time.Duration // each datagram's delay is uniform in Latency ± Jitter (at least 0)
	Loss    float64       // probability in [0, 1] that a datagram is dropped
	Down    bool          // partition: every datagram is dropped
}

// Zero reports whether l changes nothing.
func (l Link) Zero() bool { return l == Link{} }

func (l Link) String() string {
	s := fmt.Sprintf("%v±%v loss %.4g", l.Latency, l.Jitter, l.Loss)
	if l.Down {
		s += " DOWN"
	}
	return s
}

// Check reports a link whose values are out of range.
func (l Link) Check() error {
	if l.Latency < 0 || l.Jitter < 0 || !(l.Loss >= 0 && l.Loss <= 1) {
		return fmt.Errorf("%w: link %v: latency and jitter must not be negative, loss must be in [0, 1]", ErrRules, l)
	}
	return nil
}

// Group is a named set of addresses.
type Group struct {
	Name     string
	Prefixes []netip.Prefix
}

type pair struct{ from, to string }

// Rules is one immutable snapshot: groups, and links between them.
// Build it with NewRules and the Set methods before handing it to a
// Table; never change it afterwards.
type Rules struct {
	// Generation numbers snapshots; Watcher acknowledges the generation
	// it applied.
	Generation uint64
	groups     []Group
	links      map[pair]Link
}

// NewRules returns rules with the given groups and no links.
func NewRules(groups ...Group) *Rules {
	r := &Rules{links: make(map[pair]Link)}
	for _, g := range groups {
		ps := make([]netip.Prefix, len(g.Prefixes))
		for i, p := range g.Prefixes {
			ps[i] = p.Masked()
		}
		r.groups = append(r.groups, Group{Name: g.Name, Prefixes: ps})
	}
	return r
}

// Clone returns a copy that may be changed.
func (r *Rules) Clone() *Rules {
	c := &Rules{Generation: r.Generation, groups: append([]Group(nil), r.groups...), links: make(map[pair]Link, len(r.links))}
	for k, v := range r.links {
		c.links[k] = v
	}
	return c
}

// Groups returns the groups.
func (r *Rules) Groups() []Group { return append([]Group(nil), r.groups...) }

// Set sets the link from group from to group to (either may be Any).
// A zero Link removes it.
func (r *Rules) Set(from, to string, l Link) *Rules {
	if l.Zero() {
		delete(r.links, pair{from, to})
	} else {
		r.links[pair{from, to}] = l
	}
	return r
}

// SetPair sets the link both ways between a and b.
func (r *Rules) SetPair(a, b string, l Link) *Rules {
	r.Set(a, b, l)
	return r.Set(b, a, l)
}

// Link returns the link from group from to group to: the most specific
// of (from, to), (from, Any), (Any, to), (Any, Any); zero when none is set.
func (r *Rules) Link(from, to string) Link {
	for _, p := range [...]pair{{from, to}, {from, Any}, {Any, to}, {Any, Any}} {
		if l, ok := r.links[p]; ok {
			return l
		}
	}
	return Link{}
}

// GroupOf returns the name of the first group holding ip, "" if none.
func (r *Rules) GroupOf(ip netip.Addr) string {
	ip = ip.Unmap()
	for _, g := range r.groups {
		for _, p := range g.Prefixes {
			if p.Contains(ip) {
				return g.Name
			}
		}
	}
	return ""
}

// linkTo returns the link from group src to the address addr.
func (r *Rules) linkTo(src string, addr net.Addr) Link {
	if len(r.links) == 0 {
		return Link{}
	}
	return r.Link(src, r.GroupOf(addrIP(addr)))
}

// addrIP returns the IP of a UDP or TCP address (the zero Addr otherwise).
func addrIP(a net.Addr) netip.Addr {
	switch v := a.(type) {
	case *net.UDPAddr:
		ip, _ := netip.AddrFromSlice(v.IP)
		return ip.Unmap()
	case *net.TCPAddr:
		ip, _ := netip.AddrFromSlice(v.IP)
		return ip.Unmap()
	}
	if a == nil {
		return netip.Addr{}
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// Table holds the current Rules; Conns read it for every datagram and
// Set replaces it at once for all of them. The zero Table has no rules.
type Table struct {
	cur atomic.Pointer[Rules]
}

// NewTable returns a table holding r (nil: no rules).
func NewTable(r *Rules) *Table {
	t := new(Table)
	t.Set(r)
	return t
}

// Set makes r the current rules (nil: none). r must not change afterwards.
func (t *Table) Set(r *Rules) {
	if r == nil {
		r = NewRules()
	}
	t.cur.Store(r)
}

// Rules returns the current rules (never nil).
func (t *Table) Rules() *Rules {
	if r := t.cur.Load(); r != nil {
		return r
	}
	return NewRules()
}

// The file form of Rules (Watcher, WriteFile):
//
//	{"generation": 3,
//	 "groups": [{"name": "r1", "cidrs": ["127.77.1.0/24"]},
//	            {"name": "r2", "cidrs": ["127.77.2.0/24"]}],
//	 "links": [{"from": "r1", "to": "r2", "latency": "80ms", "jitter": "5ms", "loss": 0.01},
//	           {"from": "r2", "to": "r1", "latency": "80ms", "down": true}]}
type fileRules struct {
	Generation uint64      `json:"generation"`
	Groups     []fileGroup `json:"groups"`
	Links      []fileLink  `json:"links"`
}

type fileGroup struct {
	Name  string   `json:"name"`
	CIDRs []string `json:"cidrs"`
}

type fileLink struct {
	From    string  `json:"from"`
	To      string  `json:"to"`
	Latency string  `json:"latency,omitempty"`
	Jitter  string  `json:"jitter,omitempty"`
	Loss    float64 `json:"loss,omitempty"`
	Down    bool    `json:"down,omitempty"`
}

// MarshalJSON writes the file form, links sorted by (from, to).
func (r *Rules) MarshalJSON() ([]byte, error) {
	f := fileRules{Generation: r.Generation, Groups: []fileGroup{}, Links: []fileLink{}}
	for _, g := range r.groups {
		fg := fileGroup{Name: g.Name, CIDRs: []string{}}
		for _, p := range g.Prefixes {
			fg.CIDRs = append(fg.CIDRs, p.String())
		}
		f.Groups = append(f.Groups, fg)
	}
	for _, p := range sortedPairs(r.links) {
		l := r.links[p]
		fl := fileLink{From: p.from, To: p.to, Loss: l.Loss, Down: l.Down}
		if l.Latency != 0 {
			fl.Latency = l.Latency.String()
		}
		if l.Jitter != 0 {
			fl.Jitter = l.Jitter.String()
		}
		f.Links = append(f.Links, fl)
	}
	return json.Marshal(f)
}

// UnmarshalJSON reads the file form and checks it: groups have distinct
// names, links name known groups (or Any), values are in range.
func (r *Rules) UnmarshalJSON(b []byte) error {
	var f fileRules
	if err := json.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("%w: %v", ErrRules, err)
	}
	var groups []Group
	known := map[string]bool{Any: true}
	for _, fg := range f.Groups {
		if fg.Name == "" || known[fg.Name] {
			return fmt.Errorf("%w: group name %q empty or repeated", ErrRules, fg.Name)
		}
		known[fg.Name] = true
		g := Group{Name: fg.Name}
		for _, c := range fg.CIDRs {
			p, err := netip.ParsePrefix(c)
			if err != nil {
				return fmt.Errorf("%w: group %s: %v", ErrRules, fg.Name, err)
			}
			g.Prefixes = append(g.Prefixes, p)
		}
		groups = append(groups, g)
	}
	n := NewRules(groups...)
	n.Generation = f.Generation
	for _, fl := range f.Links {
		if !known[fl.From] || !known[fl.To] {
			return fmt.Errorf("%w: link %s→%s names an unknown group", ErrRules, fl.From, fl.To)
		}
		l := Link{Loss: fl.Loss, Down: fl.Down}
		for _, d := range []struct {
			s  string
			to *time.Duration
		}{{fl.Latency, &l.Latency}, {fl.Jitter, &l.Jitter}} {
			if d.s == "" {
				continue
			}
			v, err := time.ParseDuration(d.s)
			if err != nil {
				return fmt.Errorf("%w: link %s→%s: %v", ErrRules, fl.From, fl.To, err)
			}
			*d.to = v
		}
		if err := l.Check(); err != nil {
			return err
		}
		n.Set(fl.From, fl.To, l)
	}
	*r = *n
	return nil
}

func sortedPairs(m map[pair]Link) []pair {
	out := make([]pair, 0, len(m))
	for p := range m {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b pair) int {
		if c := cmp.Compare(a.from, b.from); c != 0 {
			return c
		}
		return cmp.Compare(a.to, b.to)
	})
	return out
}
