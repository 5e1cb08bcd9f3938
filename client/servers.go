package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Servers. A Client knows a list of WebSocket URLs of the same service
// (edges): the URL given to Dial, then Options.Servers, and, with
// Options.Router, the router's server and secondary (GET
// {Router}/v1/route?appId=…, LeanCloud's router call, cached for its ttl)
// in front of them. Dial tries them in order, each once. After a lost
// connection every reconnect attempt goes to the next URL of the list, so a
// client whose edge died is back on another one at the first attempt, and
// backoff (ReconnectMin·2^n up to ReconnectMax, with jitter) only grows
// while every URL fails. The router is asked again at the start of each
// round through the list once its ttl passed, or when the round before
// failed everywhere.

// routeTimeout bounds one router call.
const routeTimeout = 2 * time.Second

// ErrNoServer is returned by Dial when it has no URL to dial.
var ErrNoServer = errors.New("client: no server: give Dial a URL, Options.Servers or Options.Router")

// servers is the client's list of URLs and where it is in it. Guarded by
// Client.mu.
type servers struct {
	static   []string  // Dial's URL and Options.Servers, deduplicated
	routed   []string  // the router's server and secondary
	routeExp time.Time // when routed is stale
	cur      int       // index in list() of the URL in use (or last tried)
	// probed is the last RTT probe (Options.Nearest, probe.go); nil
	// keeps the list's order.
	probed map[string]probeResult
}

// list is the router's URLs, then the static ones, each once; with a
// probe, nearest first (probe.go).
func (s *servers) list() []string {
	out := make([]string, 0, len(s.routed)+len(s.static))
	for _, l := range [][]string{s.routed, s.static} {
		for _, u := range l {
			if u != "" && !contains(out, u) {
				out = append(out, u)
			}
		}
	}
	return byProbe(out, s.probed)
}

func contains(s []string, x string) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}

// route asks the router for server and secondary.
func (c *Client) route(ctx context.Context) ([]string, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, routeTimeout)
	defer cancel()
	u := strings.TrimSuffix(c.opts.Router, "/") + "/v1/route?appId=" + url.QueryEscape(c.opts.AppID)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, 0, fmt.Errorf("client: router: %w", err)
	}
	hc := c.opts.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("client: router: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, 0, fmt.Errorf("client: router: %s", resp.Status)
	}
	var r struct {
		Server    string  `json:"server"`
		Secondary string  `json:"secondary"`
		TTL       float64 `json:"ttl"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&r); err != nil {
		return nil, 0, fmt.Errorf("client: router: %w", err)
	}
	if r.Server == "" {
		return nil, 0, errors.New("client: router: no server in the answer")
	}
	return []string{r.Server, r.Secondary}, time.Duration(r.TTL * float64(time.Second)), nil
}

// refreshRoute asks the router (when there is one and force is set or its
// answer is stale) and updates the list; a failed call keeps the old one.
// It reports whether the router answered.
func (c *Client) refreshRoute(ctx context.Context, force bool) bool {
	if c.opts.Router == "" {
		return false
	}
	c.mu.Lock()
	stale := force || time.Now().After(c.srv.routeExp)
	c.mu.Unlock()
	if !stale {
		return false
	}
	urls, ttl, err := c.route(ctx)
	if err != nil {
		c.log.Info("client: router", "err", err)
		return false
	}
	c.mu.Lock()
	c.srv.routed, c.srv.routeExp = urls, time.Now().Add(ttl)
	c.mu.Unlock()
	return true
}

// target returns the URL for reconnect attempt n (0-based) after losing
// the connection to the current one: the next URLs in turn.
func (c *Client) target(n int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.srv.list()
	if len(l) == 0 {
		return ""
	}
	c.srv.cur = (c.srv.cur + 1) % len(l)
	return l[c.srv.cur]
}

// setCurrent records u as the URL in use.
func (c *Client) setCurrent(u string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if i := indexOf(c.srv.list(), u); i >= 0 {
		c.srv.cur = i
	}
	c.url = u
}

func indexOf(s []string, x string) int {
	for i, v := range s {
		if v == x {
			return i
		}
	}
	return -1
}

// URL returns the server URL the session is open on now (or was last).
func (c *Client) URL() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.url
}

// serverCount is the length of the URL list.
func (c *Client) serverCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.srv.list())
}
