package loadtest

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// rssProbe measures the server's resident memory: the standard
// process_resident_memory_bytes of each edge's /metrics when it exports
// it, else VmRSS of /proc/<pid>/status for --server-pid.
type rssProbe struct {
	metrics []string // /metrics URL per distinct edge host
	pid     int
	http    *http.Client

	mu     sync.Mutex
	source string // guarded by mu; what the last successful sample used
}

func (p *rssProbe) setSource(s string) {
	p.mu.Lock()
	p.source = s
	p.mu.Unlock()
}

// Source names where the last sample came from.
func (p *rssProbe) Source() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.source
}

func newRSSProbe(targets []string, pid int) *rssProbe {
	p := &rssProbe{pid: pid, http: &http.Client{Timeout: 2 * time.Second}}
	seen := map[string]bool{}
	for _, t := range targets {
		u, err := url.Parse(t)
		if err != nil || seen[u.Host] {
			continue
		}
		seen[u.Host] = true
		scheme := "http"
		if u.Scheme == "wss" {
			scheme = "https"
		}
		p.metrics = append(p.metrics, scheme+"://"+u.Host+"/metrics")
	}
	return p
}

// sample returns the summed RSS in bytes, or 0 when it cannot be measured.
func (p *rssProbe) sample() (int64, error) {
	var sum int64
	for _, m := range p.metrics {
		v, err := p.fromMetrics(m)
		if err != nil || v == 0 {
			sum = 0
			break
		}
		sum += v
	}
	if sum > 0 {
		p.setSource("metrics:process_resident_memory_bytes")
		return sum, nil
	}
	if p.pid > 0 {
		v, err := procRSS(p.pid)
		if err != nil {
			return 0, err
		}
		p.setSource(fmt.Sprintf("/proc/%d/status", p.pid))
		return v, nil
	}
	return 0, nil
}

func (p *rssProbe) fromMetrics(u string) (int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, err
	}
	resp, err := p.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	return parseMetricsRSS(bufio.NewScanner(resp.Body))
}

// parseMetricsRSS finds process_resident_memory_bytes in Prometheus text.
func parseMetricsRSS(sc *bufio.Scanner) (int64, error) {
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "process_resident_memory_bytes"); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err != nil {
				return 0, fmt.Errorf("loadtest: metrics: %q: %w", line, err)
			}
			return int64(f), nil
		}
	}
	return 0, sc.Err()
}

// procRSS reads VmRSS of pid, in bytes.
func procRSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("loadtest: server rss: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("loadtest: server rss: %w", err)
			}
			return kb * 1024, nil
		}
	}
	return 0, fmt.Errorf("loadtest: server rss: no VmRSS in /proc/%d/status", pid)
}
