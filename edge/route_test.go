package edge

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func threeRegions() []Region {
	p := netip.MustParsePrefix
	return []Region{
		{Name: "eu", CIDRs: []netip.Prefix{p("10.1.0.0/16")}, PublicURLs: []string{"wss://eu-1/", "wss://eu-2/"}, Nearest: []string{"us"}},
		{Name: "us", CIDRs: []netip.Prefix{p("10.2.0.0/16"), p("10.1.9.0/24")}, PublicURLs: []string{"wss://us-1/"}},
		{Name: "ap", CIDRs: []netip.Prefix{p("10.3.0.0/16")}, PublicURLs: []string{"wss://ap-1/", "wss://ap-2/"}, Nearest: []string{"us", "eu"}},
	}
}

func TestRouteTable(t *testing.T) {
	rt, err := NewRouteTable("ap", threeRegions())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		ip               string
		region           string
		servers, seconds []string // the answer must be one of these
	}{
		{"10.1.2.3", "eu", []string{"wss://eu-1/", "wss://eu-2/"}, []string{"wss://us-1/"}}, // eu's nearest is us
		{"10.1.9.7", "us", []string{"wss://us-1/"}, []string{"wss://eu-1/", "wss://eu-2/"}}, // longest prefix wins; us lists none: config order
		{"10.2.0.1", "us", []string{"wss://us-1/"}, []string{"wss://eu-1/", "wss://eu-2/"}},
		{"10.3.4.5", "ap", []string{"wss://ap-1/", "wss://ap-2/"}, []string{"wss://us-1/"}},
		{"192.0.2.1", "ap", []string{"wss://ap-1/", "wss://ap-2/"}, []string{"wss://us-1/"}}, // unknown caller: this edge's region
		{"::ffff:10.2.0.1", "us", []string{"wss://us-1/"}, []string{"wss://eu-1/", "wss://eu-2/"}},
	} {
		srv, sec, reg := rt.Route(netip.MustParseAddr(tc.ip))
		if reg != tc.region || !slices.Contains(tc.servers, srv) || !slices.Contains(tc.seconds, sec) {
			t.Errorf("Route(%s) = %s, %s in %s; want server in %v, secondary in %v, region %s",
				tc.ip, srv, sec, reg, tc.servers, tc.seconds, tc.region)
		}
	}
	if got := rt.Region(netip.Addr{}); got != "ap" {
		t.Errorf("Region(invalid) = %s, want the edge's own", got)
	}

	// A region's callers spread over its URLs; one caller always gets the same.
	seen := map[string]bool{}
	for i := range 64 {
		ip := netip.AddrFrom4([4]byte{10, 1, byte(10 + i), 1}) // not 10.1.9.x: that is us
		a, _, _ := rt.Route(ip)
		b, _, _ := rt.Route(ip)
		if a != b {
			t.Fatalf("Route(%s) answered %s then %s", ip, a, b)
		}
		seen[a] = true
	}
	if len(seen) != 2 {
		t.Errorf("64 eu callers got servers %v, want both eu URLs", seen)
	}

	// One region: secondary is another URL of it, and never empty.
	eu := threeRegions()[:1]
	eu[0].Nearest = nil
	one, err := NewRouteTable("eu", eu)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 16 {
		srv, sec, _ := one.Route(netip.AddrFrom4([4]byte{10, 1, 0, byte(i)}))
		if sec == "" || sec == srv {
			t.Errorf("one region of two URLs: server %s secondary %q", srv, sec)
		}
	}
	single, _ := NewRouteTable("x", []Region{{Name: "x", PublicURLs: []string{"wss://only/"}}})
	if srv, sec, _ := single.Route(netip.MustParseAddr("1.2.3.4")); srv != "wss://only/" || sec != "wss://only/" {
		t.Errorf("one URL: %s, %s; want it twice", srv, sec)
	}
}

func TestRouteTableRefused(t *testing.T) {
	for name, f := range map[string]func([]Region) (string, []Region){
		"unknown local":   func(r []Region) (string, []Region) { return "mars", r },
		"no urls":         func(r []Region) (string, []Region) { r[1].PublicURLs = nil; return "eu", r },
		"empty url":       func(r []Region) (string, []Region) { r[1].PublicURLs = []string{""}; return "eu", r },
		"no name":         func(r []Region) (string, []Region) { r[1].Name = ""; return "eu", r },
		"duplicate":       func(r []Region) (string, []Region) { r[1].Name = "eu"; return "eu", r },
		"unknown nearest": func(r []Region) (string, []Region) { r[0].Nearest = []string{"mars"}; return "eu", r },
		"no regions":      func([]Region) (string, []Region) { return "eu", nil },
	} {
		if _, err := NewRouteTable(f(threeRegions())); !errors.Is(err, ErrRoutes) {
			t.Errorf("%s: got %v, want ErrRoutes", name, err)
		}
	}
}

// TestRouteByCallerAddress: /v1/route answers the edges of the caller's
// region, the caller being the peer or, behind a trusted proxy, the
// client X-Forwarded-For names; an untrusted peer's X-Forwarded-For is
// ignored.
func TestRouteByCallerAddress(t *testing.T) {
	rt, err := NewRouteTable("ap", threeRegions())
	if err != nil {
		t.Fatal(err)
	}
	proxies, _ := ParseTrustedProxies([]string{"192.0.2.0/24"})
	env := newEnv(t, func(c *Config) {
		c.Routes = rt
		c.PublicURLs = []string{"wss://ignored/"}
		c.TrustedProxies = proxies
	})
	for _, tc := range []struct {
		name, peer, xff, region string
	}{
		{"caller in eu", "10.1.7.7:5000", "", "eu"},
		{"proxy for a us client", "192.0.2.10:5000", "10.2.3.4", "us"},
		{"proxy chain: rightmost untrusted hop", "192.0.2.10:5000", "10.1.1.1, 10.2.3.4, 192.0.2.11", "us"},
		{"untrusted peer's forwarded-for ignored", "10.3.0.9:5000", "10.1.1.1", "ap"},
		{"unknown caller: the edge's region", "203.0.113.9:5000", "", "ap"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/v1/route?appId=x", nil)
			r.RemoteAddr = tc.peer
			if tc.xff != "" {
				r.Header.Set("X-Forwarded-For", tc.xff)
			}
			w := httptest.NewRecorder()
			env.srv.Handler().ServeHTTP(w, r)
			var ans struct {
				Server, Secondary string
				TTL               int
			}
			if err := json.Unmarshal(w.Body.Bytes(), &ans); err != nil || w.Code != 200 {
				t.Fatalf("%d %s %v", w.Code, w.Body, err)
			}
			if got := w.Header().Get("X-Relaymesh-Region"); got != tc.region {
				t.Errorf("region %q, want %q", got, tc.region)
			}
			if !strings.Contains(ans.Server, tc.region+"-") || ans.Secondary == "" || strings.Contains(ans.Secondary, tc.region+"-") || ans.TTL != RouteTTL {
				t.Errorf("answer %+v: want a %s server and a secondary in another region", ans, tc.region)
			}
		})
	}
}
