package moderation

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// Mask replaces every hit.
const Mask = "***"

// Limits on one word list. They bound the memory of a compiled Filter (a few
// dozen bytes per byte of word text).
const (
	MaxWords     = 200_000
	MaxWordBytes = 256
	MaxListBytes = 4 << 20 // total bytes of all words
)

var (
	// ErrInvalidWord is returned for a word that is not valid UTF-8 or is
	// longer than MaxWordBytes.
	ErrInvalidWord = errors.New("moderation: invalid word")
	// ErrListTooLarge is returned for a list over MaxWords or MaxListBytes.
	ErrListTooLarge = errors.New("moderation: word list too large")
)

// Filter is a compiled, immutable word list. The zero value and nil match
// nothing. It is safe for concurrent use.
type Filter struct {
	a     *automaton // nil when there are no words
	words []string   // normalised, sorted
}

// Compile builds a Filter from words. Each word is trimmed of surrounding
// white space and folded to ASCII lower case; empty words and duplicates are
// dropped.
func Compile(words []string) (*Filter, error) {
	norm := make([]string, 0, len(words))
	total := 0
	for _, w := range words {
		w = strings.TrimSpace(w)
		if w == "" {
			continue
		}
		if len(w) > MaxWordBytes || !utf8.ValidString(w) {
			return nil, fmt.Errorf("%w: %q", ErrInvalidWord, truncate(w))
		}
		norm = append(norm, foldString(w))
		total += len(w)
	}
	slices.Sort(norm)
	norm = slices.Compact(norm)
	if len(norm) > MaxWords || total > MaxListBytes {
		return nil, fmt.Errorf("%w: %d words, %d bytes", ErrListTooLarge, len(norm), total)
	}
	f := &Filter{words: norm}
	if len(norm) > 0 {
		f.a = buildAutomaton(norm)
	}
	return f, nil
}

// MustCompile is Compile for lists known to be valid; it panics on error.
func MustCompile(words []string) *Filter {
	f, err := Compile(words)
	if err != nil {
		panic(err)
	}
	return f
}

// Words returns the normalised words, sorted. The caller must not modify the
// result.
func (f *Filter) Words() []string {
	if f == nil {
		return nil
	}
	return f.words
}

// Len is the number of distinct words.
func (f *Filter) Len() int { return len(f.Words()) }

// Replace returns text with every hit replaced by Mask, and the number of
// hits. With no hit it returns text itself and does not allocate.
func (f *Filter) Replace(text string) (out string, hits int) {
	if f == nil || f.a == nil {
		return text, 0
	}
	start, end := f.a.find(text, 0)
	if start < 0 {
		return text, 0
	}
	var b strings.Builder
	b.Grow(len(text))
	last := 0
	for start >= 0 {
		b.WriteString(text[last:start])
		b.WriteString(Mask)
		hits++
		last = end
		start, end = f.a.find(text, end)
	}
	b.WriteString(text[last:])
	return b.String(), hits
}

// Contains reports whether text has any hit.
func (f *Filter) Contains(text string) bool {
	if f == nil || f.a == nil {
		return false
	}
	start, _ := f.a.find(text, 0)
	return start >= 0
}

func foldString(s string) string {
	for i := 0; i < len(s); i++ {
		if fold[s[i]] != s[i] {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				b[j] = fold[b[j]]
			}
			return string(b)
		}
	}
	return s
}

func truncate(s string) string {
	if len(s) > 32 {
		return s[:32] + "…"
	}
	return s
}
