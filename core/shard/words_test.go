package shard

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// TestSetWords: every set or reset bumps the version (so a core's compiled
// list goes stale even across reset-then-set), a reset removes the list,
// an empty list is stored as a list, and bad lists change nothing.
func TestSetWords(t *testing.T) {
	h := newHarness(t)
	if _, ok, _ := WordsVersion(h.db, app); ok {
		t.Fatal("a new app has a word-list version")
	}
	versions := []int64{}
	check := func(want []string, wantOK bool) {
		t.Helper()
		got, ok, err := Words(h.db, app)
		if err != nil || ok != wantOK || !slices.Equal(got, want) {
			t.Fatalf("Words = %v %v %v, want %v %v", got, ok, err, want, wantOK)
		}
		v, ok, err := WordsVersion(h.db, app)
		if err != nil || !ok {
			t.Fatalf("WordsVersion: %v %v", ok, err)
		}
		if len(versions) > 0 && v <= versions[len(versions)-1] {
			t.Fatalf("version %d after %v: not increasing", v, versions)
		}
		versions = append(versions, v)
	}
	h.must(&Command{Op: OpSetWords, App: app, Words: []string{"spam"}, Now: 1})
	check([]string{"spam"}, true)
	h.must(&Command{Op: OpSetWords, App: app, Reset: true, Now: 2})
	check(nil, false)
	h.must(&Command{Op: OpSetWords, App: app, Words: []string{"spam"}, Now: 3})
	check([]string{"spam"}, true)
	h.must(&Command{Op: OpSetWords, App: app, Words: []string{}, Now: 4})
	check([]string{}, true)

	for _, c := range []*Command{
		{Op: OpSetWords, App: app, Words: []string{strings.Repeat("x", MaxWordBytes+1)}, Now: 5},
		{Op: OpSetWords, App: app, Words: make([]string, MaxWords+1), Now: 5},
		{Op: OpSetWords, Words: []string{"a"}, Now: 5},
	} {
		if _, err := h.apply(c); !errors.Is(err, ErrBadCommand) {
			t.Errorf("%d words: got %v, want ErrBadCommand", len(c.Words), err)
		}
	}
	got, ok, _ := Words(h.db, app)
	v, _, _ := WordsVersion(h.db, app)
	if !ok || len(got) != 0 || v != versions[len(versions)-1] {
		t.Errorf("after refused sets: words %v %v, version %d; want [] and version %d", got, ok, v, versions[len(versions)-1])
	}
}
