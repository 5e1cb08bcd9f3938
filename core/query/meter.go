package query

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/relaymesh/relaymesh/metric"
)

// Refusal is why a query was refused, for
// relaymesh_core_queries_refused_total.
type Refusal int

const (
	RefusedWhere  Refusal = iota // where or sort over its bounds
	RefusedScan                  // too many conversations (or regex bytes) to examine
	RefusedBudget                // the app's examine budget is spent
	numRefused
)

var refusedNames = [numRefused]string{"where", "scan", "budget"}

// Meter counts, per app, the conversations queries examine, and holds each
// app's examine budget: a token bucket of rate rows a second and capacity
// burst. A query starts only while the app's bucket is above zero (Admit)
// and is charged what it examined when it ends (Charge; the bucket may go
// below zero: the next queries wait for it to refill), so one app's
// queries cannot monopolise a core. It also counts refusals by reason.
type Meter struct {
	rate, burst float64 // read-only after NewMeter

	refused [numRefused]atomic.Int64

	mu   sync.Mutex
	apps map[string]*bucket // guarded by mu
}

type bucket struct {
	tokens   float64
	last     time.Time
	examined int64 // conversations examined, ever
}

// NewMeter returns a meter granting each app perSecond conversations a
// second with a burst of burst.
func NewMeter(perSecond, burst float64) *Meter {
	return &Meter{rate: perSecond, burst: burst, apps: make(map[string]*bucket)}
}

// Refuse counts a query refused for why.
func (m *Meter) Refuse(why Refusal) { m.refused[why].Add(1) }

// bucketLocked returns app's bucket refilled to now.
func (m *Meter) bucketLocked(app string, now time.Time) *bucket {
	b := m.apps[app]
	if b == nil {
		b = &bucket{tokens: m.burst, last: now}
		m.apps[app] = b
	}
	if d := now.Sub(b.last).Seconds(); d > 0 {
		b.tokens = min(m.burst, b.tokens+d*m.rate)
		b.last = now
	}
	return b
}

// Admit reports whether app may start a query now.
func (m *Meter) Admit(app string, now time.Time) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.bucketLocked(app, now).tokens > 0
}

// Charge records that a query of app examined n conversations.
func (m *Meter) Charge(app string, n int, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b := m.bucketLocked(app, now)
	b.tokens -= float64(n)
	b.examined += int64(n)
}

// Examined returns how many conversations app's queries examined.
func (m *Meter) Examined(app string) int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if b := m.apps[app]; b != nil {
		return b.examined
	}
	return 0
}

var (
	descExamined = metric.Counter("relaymesh_core_query_examined_total", "Conversations examined by conv/query, by app.", "app")
	descRefused  = metric.Counter("relaymesh_core_queries_refused_total", "conv/query refused with 4310: where over its bounds, too many conversations to examine, or the app's budget spent.", "reason")

	// Descs are the series Sample gives.
	Descs = []metric.Desc{descExamined, descRefused}
)

// Sample gives the query series to s: examined conversations by app,
// refused queries by reason. (A core sums its shards' meters.)
func (m *Meter) Sample(s metric.Sink) {
	m.mu.Lock()
	apps := make([]string, 0, len(m.apps))
	for a := range m.apps {
		apps = append(apps, a)
	}
	slices.Sort(apps)
	examined := make([]int64, len(apps))
	for i, a := range apps {
		examined[i] = m.apps[a].examined
	}
	m.mu.Unlock()
	for i, a := range apps {
		s.Add(descExamined, float64(examined[i]), a)
	}
	for i, name := range refusedNames {
		s.Add(descRefused, float64(m.refused[i].Load()), name)
	}
}

// Collector returns the collector of this meter's series alone.
func (m *Meter) Collector() prometheus.Collector {
	return metric.NewCollector(Descs, func(ch chan<- prometheus.Metric) { m.Sample(metric.Chan(ch)) })
}
