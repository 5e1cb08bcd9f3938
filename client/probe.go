package client

import (
	"cmp"
	"context"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"
)

// Nearest server (Options.Nearest, issue 9). Before Dial connects, and
// again whenever the router answered anew or a round of reconnects failed
// on every server, the client measures the round-trip time to each server
// of its list: GET /healthz on the server's host, probeRequests times on
// one connection, keeping the fastest (the first request also pays for the
// TCP and TLS handshakes; the later ones are one round trip each). It then
// tries servers in this order: those that answered 200 by RTT, then those
// that answered anything else (503: up but no shard leader; 404: not a
// relaymesh edge) or were not measured, then those that did not answer,
// each group in list order. Reconnects walk the same order, so a client
// whose nearest edge died goes to the next nearest.

// probeRequests is how many requests measure one server.
const probeRequests = 3

// probe tiers: lower is tried first.
const (
	tierHealthy     = 0 // 200
	tierAnswered    = 1 // another status, or not measured
	tierUnreachable = 2 // no answer
)

// probeResult is what one server's probe found.
type probeResult struct {
	tier int
	rtt  time.Duration // tierHealthy only
}

// healthURL is the /healthz URL of the host serving WebSocket URL u.
func healthURL(u string) (string, bool) {
	p, err := url.Parse(u)
	if err != nil || p.Host == "" {
		return "", false
	}
	switch p.Scheme {
	case "ws":
		p.Scheme = "http"
	case "wss":
		p.Scheme = "https"
	default:
		return "", false
	}
	return (&url.URL{Scheme: p.Scheme, Host: p.Host, Path: "/healthz"}).String(), true
}

// probeOne measures one server.
func probeOne(ctx context.Context, hc *http.Client, u string) probeResult {
	hu, ok := healthURL(u)
	if !ok {
		return probeResult{tier: tierUnreachable}
	}
	res := probeResult{tier: tierUnreachable}
	for i := range probeRequests {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, hu, nil)
		if err != nil {
			return res
		}
		req.Close = i == probeRequests-1 // leave no idle connection behind
		t0 := time.Now()
		resp, err := hc.Do(req)
		if err != nil {
			return res
		}
		rtt := time.Since(t0)
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<10))
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return probeResult{tier: tierAnswered}
		}
		if res.tier != tierHealthy || rtt < res.rtt {
			res = probeResult{tier: tierHealthy, rtt: rtt}
		}
	}
	return res
}

// reprobe measures every server of the list at once (bounded by
// Options.ProbeTimeout) and records the order to try them in. It does
// nothing without Options.Nearest.
func (c *Client) reprobe(ctx context.Context) {
	if !c.opts.Nearest {
		return
	}
	c.mu.Lock()
	urls := c.srv.list()
	c.mu.Unlock()
	if len(urls) < 2 {
		return
	}
	hc := c.opts.HTTPClient
	if hc == nil {
		hc = &http.Client{Transport: &http.Transport{Proxy: http.ProxyFromEnvironment}}
		defer hc.CloseIdleConnections()
	}
	ctx, cancel := context.WithTimeout(ctx, c.opts.ProbeTimeout)
	defer cancel()
	found := make(map[string]probeResult, len(urls))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, u := range urls {
		wg.Go(func() {
			r := probeOne(ctx, hc, u)
			mu.Lock()
			found[u] = r
			mu.Unlock()
		})
	}
	wg.Wait()
	c.log.Debug("client: probed servers", "rtt", found)
	c.mu.Lock()
	c.srv.probed = found
	c.mu.Unlock()
}

// byProbe orders urls as the package comment says (stable within a tier).
func byProbe(urls []string, probed map[string]probeResult) []string {
	if probed == nil {
		return urls
	}
	out := slices.Clone(urls)
	rank := func(u string) probeResult {
		if r, ok := probed[u]; ok {
			return r
		}
		return probeResult{tier: tierAnswered}
	}
	slices.SortStableFunc(out, func(a, b string) int {
		ra, rb := rank(a), rank(b)
		if c := cmp.Compare(ra.tier, rb.tier); c != 0 {
			return c
		}
		if ra.tier == tierHealthy {
			return cmp.Compare(ra.rtt, rb.rtt)
		}
		return 0
	})
	return out
}

// Servers returns the client's servers in the order it tries them (with
// Options.Nearest, nearest first).
func (c *Client) Servers() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.srv.list()
}
