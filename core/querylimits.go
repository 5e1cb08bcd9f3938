package core

import (
	"errors"
	"fmt"
	"io"
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Bounds of conv/query (query.go). A query is refused with 4310
// CONVERSATION_QUERY_FAILED (LeanCloud's "slow query") and nothing else
// happens when
//
//   - its where clause is over MaxWhereBytes, nests deeper than
//     MaxWhereDepth, or has more than MaxWhereTerms terms (every field
//     condition, operator and list element counts one), or sorts by more
//     than maxSortKeys keys;
//   - a $regex is over MaxRegexBytes, does not compile (RE2 syntax; JS's
//     \Q…\E quoting works) or compiles to more than maxRegexInsts
//     instructions, or has $options other than i, m, s;
//   - it would examine more than Limits.MaxQueryScan conversations (an
//     unindexed scan of a large app: add an objectId or m condition), or
//     its regexes would read more than maxRegexInput bytes;
//   - the app's examine budget is spent (queryMeter): each app may examine
//     Limits.QueryScanPerSecond conversations a second, with a burst of
//     2 × MaxQueryScan, so one app's queries cannot monopolise a core.
//
// RE2 runs in time linear in its input, so no pattern backtracks
// exponentially; the instruction and input caps bound the linear factor.
const (
	MaxWhereBytes = 16 << 10
	MaxWhereDepth = 10
	MaxWhereTerms = 256
	MaxRegexBytes = 256
	maxRegexInsts = 300
	maxRegexInput = 1 << 20
	maxSortKeys   = 8
)

// Defaults of Limits.MaxQueryScan and Limits.QueryScanPerSecond.
const (
	DefaultMaxQueryScan       = 10000
	DefaultQueryScanPerSecond = 50000
)

// Why a query was refused, for relaymesh_core_queries_refused_total.
const (
	refusedWhere  = iota // where or sort over its bounds
	refusedScan          // too many conversations (or regex bytes) to examine
	refusedBudget        // the app's examine budget is spent
	numRefused
)

var refusedNames = [numRefused]string{"where", "scan", "budget"}

var errQueryBudget = errors.New("core: the app's conversation-query budget is spent, retry later")

// regexCond is a compiled $regex (with its $options) in a where clause.
type regexCond struct{ re *regexp.Regexp }

// checkWhere enforces the where bounds on a decoded clause and compiles
// its regexes in place ($regex strings become regexCond values).
func checkWhere(where map[string]any) error {
	terms := 0
	var walk func(v any, depth int) error
	walk = func(v any, depth int) error {
		if depth > MaxWhereDepth {
			return fmt.Errorf("%w: where nests deeper than %d", errQueryFailed, MaxWhereDepth)
		}
		switch x := v.(type) {
		case map[string]any:
			if s, ok := x["$regex"]; ok {
				rc, err := compileRegex(s, x["$options"])
				if err != nil {
					return err
				}
				x["$regex"] = rc
			}
			for _, e := range x {
				if terms++; terms > MaxWhereTerms {
					return fmt.Errorf("%w: where has more than %d terms", errQueryFailed, MaxWhereTerms)
				}
				if err := walk(e, depth+1); err != nil {
					return err
				}
			}
		case []any:
			for _, e := range x {
				if terms++; terms > MaxWhereTerms {
					return fmt.Errorf("%w: where has more than %d terms", errQueryFailed, MaxWhereTerms)
				}
				if err := walk(e, depth+1); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return walk(where, 1)
}

// compileRegex compiles a $regex pattern with its $options.
func compileRegex(p, opts any) (regexCond, error) {
	pat, ok := p.(string)
	if !ok {
		return regexCond{}, fmt.Errorf("%w: $regex must be a string", errQueryFailed)
	}
	if len(pat) > MaxRegexBytes {
		return regexCond{}, fmt.Errorf("%w: $regex over %d bytes", errQueryFailed, MaxRegexBytes)
	}
	flags := ""
	if opts != nil {
		o, ok := opts.(string)
		if !ok || strings.Trim(o, "ims") != "" {
			return regexCond{}, fmt.Errorf("%w: $options may only hold i, m and s", errQueryFailed)
		}
		flags = o
	}
	if flags != "" {
		pat = "(?" + flags + ")" + pat
	}
	re, err := syntax.Parse(pat, syntax.Perl)
	if err != nil {
		return regexCond{}, fmt.Errorf("%w: $regex: %v", errQueryFailed, err)
	}
	prog, err := syntax.Compile(re.Simplify())
	if err != nil || len(prog.Inst) > maxRegexInsts {
		return regexCond{}, fmt.Errorf("%w: $regex too complex", errQueryFailed)
	}
	compiled, err := regexp.Compile(pat)
	if err != nil {
		return regexCond{}, fmt.Errorf("%w: $regex: %v", errQueryFailed, err)
	}
	return regexCond{re: compiled}, nil
}

// queryMeter counts, per app, the conversations conv/query examines, and
// holds each app's examine budget: a token bucket of rate rows a second
// and capacity burst. A query starts only while the app's bucket is above
// zero and is charged what it examined when it ends (the bucket may go
// below zero: the next queries wait for it to refill).
type queryMeter struct {
	rate, burst float64 // read-only after init

	refused [numRefused]atomic.Int64

	mu   sync.Mutex
	apps map[string]*queryBucket // guarded by mu
}

type queryBucket struct {
	tokens   float64
	last     time.Time
	examined int64 // conversations examined, ever
}

func (m *queryMeter) init(l Limits) {
	m.rate = float64(l.QueryScanPerSecond)
	m.burst = 2 * float64(l.MaxQueryScan)
	m.apps = make(map[string]*queryBucket)
}

// bucketLocked returns app's bucket refilled to now.
func (m *queryMeter) bucketLocked(app string, now time.Time) *queryBucket {
	b := m.apps[app]
	if b == nil {
		b = &queryBucket{tokens: m.burst, last: now}
		m.apps[app] = b
	}
	if d := now.Sub(b.last).Seconds(); d > 0 {
		b.tokens = min(m.burst, b.tokens+d*m.rate)
		b.last = now
	}
	return b
}

// admit reports whether app may start a query now.
func (m *queryMeter) admit(app string, now time.Time) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.bucketLocked(app, now).tokens > 0
}

// charge records that a query of app examined n conversations.
func (m *queryMeter) charge(app string, n int, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b := m.bucketLocked(app, now)
	b.tokens -= float64(n)
	b.examined += int64(n)
}

// Examined returns how many conversations app's queries examined.
func (m *queryMeter) Examined(app string) int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if b := m.apps[app]; b != nil {
		return b.examined
	}
	return 0
}

// writeMetrics writes the query series: examined conversations by app,
// refused queries by reason.
func (m *queryMeter) writeMetrics(w io.Writer) error {
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
