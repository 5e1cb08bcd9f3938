// Package query evaluates LeanCloud's (Parse-style) conversation queries
// over rows: the where clause of conv/query (decoded, checked against its
// bounds, its $regex compiled, then matched row by row), the sort spec, and
// the per-app meter that bounds what queries may examine. It is pure: the
// core renders conversations as rows (core/query.go, convRow), narrows the
// scan by the shard's indexes and maps every error here to 4310
// CONVERSATION_QUERY_FAILED.
//
// Bounds (a query past one is refused and nothing else happens): a where
// clause over MaxWhereBytes (checked by the caller before Decode), nesting
// deeper than MaxWhereDepth or with more than MaxWhereTerms terms (every
// field condition, operator and list element counts one); a sort by more
// than MaxSortKeys keys; a $regex over MaxRegexBytes, that does not compile
// (RE2 syntax; JS's \Q…\E quoting works) or compiles to more than
// MaxRegexInsts instructions, or $options other than i, m, s; regexes that
// would read more than MaxRegexInput bytes in one query (Matcher). RE2 runs
// in time linear in its input, so no pattern backtracks exponentially; the
// instruction and input caps bound the linear factor. The per-app budget is
// Meter's.
//
// Errors carry no prefix: the core wraps them ("core: conversation query
// failed: …"), which is the reason the client reads.
package query

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"
)

// Bounds of a where clause and a sort spec (package doc).
const (
	MaxWhereBytes = 16 << 10
	MaxWhereDepth = 10
	MaxWhereTerms = 256
	MaxRegexBytes = 256
	MaxRegexInsts = 300
	MaxRegexInput = 1 << 20
	MaxSortKeys   = 8
)

// Decode decodes a where clause (a JSON object; numbers stay json.Number).
func Decode(b []byte) (map[string]any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		return nil, err
	}
	return m, nil
}

// regexCond is a compiled $regex (with its $options) in a where clause.
type regexCond struct{ re *regexp.Regexp }

// Check enforces the where bounds on a decoded clause and compiles its
// regexes in place ($regex strings become compiled values): call it once
// before matching.
func Check(where map[string]any) error {
	terms := 0
	var walk func(v any, depth int) error
	walk = func(v any, depth int) error {
		if depth > MaxWhereDepth {
			return fmt.Errorf("where nests deeper than %d", MaxWhereDepth)
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
					return fmt.Errorf("where has more than %d terms", MaxWhereTerms)
				}
				if err := walk(e, depth+1); err != nil {
					return err
				}
			}
		case []any:
			for _, e := range x {
				if terms++; terms > MaxWhereTerms {
					return fmt.Errorf("where has more than %d terms", MaxWhereTerms)
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
		return regexCond{}, errors.New("$regex must be a string")
	}
	if len(pat) > MaxRegexBytes {
		return regexCond{}, fmt.Errorf("$regex over %d bytes", MaxRegexBytes)
	}
	flags := ""
	if opts != nil {
		o, ok := opts.(string)
		if !ok || strings.Trim(o, "ims") != "" {
			return regexCond{}, errors.New("$options may only hold i, m and s")
		}
		flags = o
	}
	if flags != "" {
		pat = "(?" + flags + ")" + pat
	}
	re, err := syntax.Parse(pat, syntax.Perl)
	if err != nil {
		return regexCond{}, fmt.Errorf("$regex: %v", err)
	}
	prog, err := syntax.Compile(re.Simplify())
	if err != nil || len(prog.Inst) > MaxRegexInsts {
		return regexCond{}, errors.New("$regex too complex")
	}
	compiled, err := regexp.Compile(pat)
	if err != nil {
		return regexCond{}, fmt.Errorf("$regex: %v", err)
	}
	return regexCond{re: compiled}, nil
}

// Matcher matches rows against one checked where clause for one query,
// charging what its regexes read to the query's input budget
// (MaxRegexInput). Once the budget is spent nothing matches and Err says
// why.
type Matcher struct {
	Where map[string]any // checked by Check

	regexBytes int // input given to $regex so far
	err        error
}

// Err is why the matcher stopped matching (the regex input budget), nil
// while it matches.
func (q *Matcher) Err() error { return q.err }

// Match evaluates the where clause against row.
func (q *Matcher) Match(row map[string]any) bool {
	return q.matchWhere(row, q.Where) && q.err == nil
}

// Field looks a dotted key up in a row.
func Field(row map[string]any, key string) (any, bool) {
	var cur any = row
	for _, part := range strings.Split(key, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[part]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// matchWhere evaluates a LeanCloud (Parse-style) where clause against a row.
func (q *Matcher) matchWhere(row map[string]any, where map[string]any) bool {
	for k, cond := range where {
		switch k {
		case "$and", "$or":
			subs, _ := cond.([]any)
			any1 := false
			for _, s := range subs {
				sm, _ := s.(map[string]any)
				ok := q.matchWhere(row, sm)
				if k == "$and" && !ok {
					return false
				}
				any1 = any1 || ok
			}
			if k == "$or" && !any1 {
				return false
			}
			continue
		}
		v, has := Field(row, k)
		if !q.matchCond(v, has, cond) {
			return false
		}
	}
	return true
}

func isOperatorMap(cond any) (map[string]any, bool) {
	m, ok := cond.(map[string]any)
	if !ok || len(m) == 0 {
		return nil, false
	}
	for k := range m {
		if !strings.HasPrefix(k, "$") {
			return nil, false
		}
	}
	return m, true
}

func (q *Matcher) matchCond(v any, has bool, cond any) bool {
	ops, ok := isOperatorMap(cond)
	if !ok {
		return has && equalOrContains(v, cond)
	}
	for op, arg := range ops {
		switch op {
		case "$eq":
			if !has || !equalOrContains(v, arg) {
				return false
			}
		case "$ne":
			if has && equalOrContains(v, arg) {
				return false
			}
		case "$exists":
			want, _ := arg.(bool)
			if has != want {
				return false
			}
		case "$in":
			list, _ := arg.([]any)
			found := false
			for _, x := range list {
				if has && equalOrContains(v, x) {
					found = true
					break
				}
			}
			if !found {
				return false
			}
		case "$nin":
			list, _ := arg.([]any)
			for _, x := range list {
				if has && equalOrContains(v, x) {
					return false
				}
			}
		case "$all":
			list, _ := arg.([]any)
			arr, ok := v.([]string)
			if !ok {
				return false
			}
			for _, x := range list {
				s, _ := x.(string)
				if !slices.Contains(arr, s) {
					return false
				}
			}
		case "$size":
			n, _ := toFloat(arg)
			switch a := v.(type) {
			case []string:
				if float64(len(a)) != n {
					return false
				}
			case []any:
				if float64(len(a)) != n {
					return false
				}
			default:
				return false
			}
		case "$regex":
			rc, _ := arg.(regexCond) // compiled by Check
			if !has || rc.re == nil || !q.matchRegex(rc, v) {
				return false
			}
		case "$options": // read with $regex
		case "$gt", "$gte", "$lt", "$lte":
			if !has {
				return false
			}
			c, ok := compare(v, arg)
			if !ok {
				return false
			}
			if (op == "$gt" && c <= 0) || (op == "$gte" && c < 0) || (op == "$lt" && c >= 0) || (op == "$lte" && c > 0) {
				return false
			}
		default:
			return false // unsupported operator: match nothing rather than everything
		}
	}
	return true
}

// matchRegex matches a string field, or any string of an array field,
// charging what it reads to the query's regex input budget.
func (q *Matcher) matchRegex(rc regexCond, v any) bool {
	try := func(s string) bool {
		if q.regexBytes += len(s); q.regexBytes > MaxRegexInput {
			if q.err == nil {
				q.err = fmt.Errorf("$regex would read more than %d bytes", MaxRegexInput)
			}
			return false
		}
		return rc.re.MatchString(s)
	}
	switch x := v.(type) {
	case string:
		return try(x)
	case []string:
		for _, s := range x {
			if try(s) {
				return true
			}
		}
	case []any:
		for _, e := range x {
			if s, ok := e.(string); ok && try(s) {
				return true
			}
		}
	}
	return false
}

// norm turns Date objects into their ISO string and numbers into float64.
func norm(v any) any {
	switch x := v.(type) {
	case map[string]any:
		if x["__type"] == "Date" {
			if iso, ok := x["iso"].(string); ok {
				return iso
			}
		}
	case json.Number:
		f, _ := x.Float64()
		return f
	case int64:
		return float64(x)
	case int:
		return float64(x)
	}
	return v
}

func toFloat(v any) (float64, bool) {
	f, ok := norm(v).(float64)
	return f, ok
}

// equalOrContains is equality, or membership when the field is an array.
func equalOrContains(v, want any) bool {
	if arr, ok := v.([]string); ok {
		if s, ok := want.(string); ok {
			return slices.Contains(arr, s)
		}
	}
	a, b := norm(v), norm(want)
	switch a.(type) {
	case map[string]any, []any, []string:
		ja, _ := json.Marshal(a)
		jb, _ := json.Marshal(b)
		return bytes.Equal(ja, jb)
	}
	return a == b
}

// compare orders two scalar values of the same kind.
func compare(a, b any) (int, bool) {
	a, b = norm(a), norm(b)
	switch x := a.(type) {
	case float64:
		y, ok := b.(float64)
		if !ok {
			return 0, false
		}
		switch {
		case x < y:
			return -1, true
		case x > y:
			return 1, true
		}
		return 0, true
	case string:
		y, ok := b.(string)
		if !ok {
			return 0, false
		}
		return strings.Compare(x, y), true
	case bool:
		y, ok := b.(bool)
		if !ok {
			return 0, false
		}
		switch {
		case x == y:
			return 0, true
		case !x:
			return -1, true
		}
		return 1, true
	}
	return 0, false
}
