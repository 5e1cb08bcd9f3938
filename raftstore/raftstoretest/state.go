package raftstoretest

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/cockroachdb/pebble"
)

// Dump returns every key and value of db, the reserved ones included.
func Dump(db *pebble.DB) (map[string]string, error) {
	it, err := db.NewIter(nil)
	if err != nil {
		return nil, err
	}
	m := make(map[string]string)
	for ok := it.First(); ok; ok = it.Next() {
		m[string(it.Key())] = string(it.Value())
	}
	return m, errors.Join(it.Error(), it.Close())
}

// WaitConverged waits until every live replica has applied the same index
// and holds identical state, and returns that state.
func (c *Cluster) WaitConverged(timeout time.Duration) map[string]string {
	c.t.Helper()
	var state map[string]string
	WaitFor(c.t, timeout, func() error {
		live := c.Live()
		if len(live) == 0 {
			return errors.New("no live replica")
		}
		var first int
		state = nil
		for _, i := range live {
			n := c.Node(i)
			if n == nil {
				return fmt.Errorf("replica %d went down", i)
			}
			m, err := Dump(n.State())
			if err != nil {
				return fmt.Errorf("dump %d: %w", i, err)
			}
			if state == nil {
				first, state = i, m
				continue
			}
			if d := diff(state, m); d != "" {
				return fmt.Errorf("replicas %d and %d differ: %s", first, i, d)
			}
		}
		return nil
	})
	return state
}

func diff(a, b map[string]string) string {
	var keys []string
	for k, v := range a {
		if bv, ok := b[k]; !ok || bv != v {
			keys = append(keys, k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return ""
	}
	slices.Sort(keys)
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "%d keys differ, first %q: %q vs %q", len(keys), keys[0], a[keys[0]], b[keys[0]])
	return buf.String()
}
