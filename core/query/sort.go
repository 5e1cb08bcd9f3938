package query

import (
	"fmt"
	"sort"
	"strings"
)

// SortKey is one key of a sort spec.
type SortKey struct {
	Name string
	Desc bool
}

// ParseSort parses a LeanCloud sort spec ("-lm", "a,-b"); default "-lm"
// (most recent conversation first); at most MaxSortKeys keys.
func ParseSort(spec string) ([]SortKey, error) {
	if strings.TrimSpace(spec) == "" {
		spec = "-lm"
	}
	var keys []SortKey
	for _, k := range strings.Split(spec, ",") {
		k = strings.TrimSpace(k)
		if k == "" {
			continue
		}
		if len(keys) == MaxSortKeys {
			return nil, fmt.Errorf("sort by more than %d keys", MaxSortKeys)
		}
		desc := strings.HasPrefix(k, "-")
		keys = append(keys, SortKey{strings.TrimPrefix(k, "-"), desc})
	}
	return keys, nil
}

// Sort orders rows by keys. Missing values sort last when descending,
// first when ascending; ties break on objectId (every row has one).
func Sort(rows []map[string]any, keys []SortKey) {
	sort.SliceStable(rows, func(i, j int) bool {
		for _, k := range keys {
			a, ha := Field(rows[i], k.Name)
			b, hb := Field(rows[j], k.Name)
			var c int
			switch {
			case !ha && !hb:
				c = 0
			case !ha:
				c = -1
			case !hb:
				c = 1
			default:
				c, _ = compare(a, b)
			}
			if k.Desc {
				c = -c
			}
			if c != 0 {
				return c < 0
			}
		}
		return rows[i]["objectId"].(string) < rows[j]["objectId"].(string)
	})
}
