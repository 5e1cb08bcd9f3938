package query

import (
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"
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

// WriteMetrics writes the query series: examined conversations by app,
// refused queries by reason.
func (m *Meter) WriteMetrics(w io.Writer) error {
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
	const ex = "relaymesh_core_query_examined_total"
	if _, err := fmt.Fprintf(w, "# HELP %s Conversations examined by conv/query, by app.\n# TYPE %s counter\n", ex, ex); err != nil {
		return err
	}
	for i, a := range apps {
		if _, err := fmt.Fprintf(w, "%s{app=%q} %d\n", ex, a, examined[i]); err != nil {
			return err
		}
	}
	const rf = "relaymesh_core_queries_refused_total"
	if _, err := fmt.Fprintf(w, "# HELP %s conv/query refused with 4310: where over its bounds, too many conversations to examine, or the app's budget spent.\n# TYPE %s counter\n", rf, rf); err != nil {
		return err
	}
	for i, name := range refusedNames {
		if _, err := fmt.Fprintf(w, "%s{reason=%q} %d\n", rf, name, m.refused[i].Load()); err != nil {
			return err
		}
	}
	return nil
}
