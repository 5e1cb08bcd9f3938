package moderation

import (
	"bufio"
	_ "embed"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
)

//go:embed default_words.txt
var defaultList string

// DefaultWords returns the list shipped with relaymesh (default_words.txt).
func DefaultWords() []string {
	words, err := ParseWords(strings.NewReader(defaultList))
	if err != nil {
		panic(err) // unreachable: the embedded list is checked by tests
	}
	return words
}

var (
	defaultOnce   sync.Once
	defaultFilter *Filter
)

// Default returns the compiled default list, built once and shared.
func Default() *Filter {
	defaultOnce.Do(func() { defaultFilter = MustCompile(DefaultWords()) })
	return defaultFilter
}

// ParseWords reads a word list: one word per line, surrounding white space
// trimmed, blank lines and lines whose first non-blank character is '#'
// skipped. A UTF-8 byte order mark at the start is ignored.
func ParseWords(r io.Reader) ([]string, error) {
	var words []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	first := true
	for sc.Scan() {
		line := sc.Text()
		if first {
			line = strings.TrimPrefix(line, "\ufeff")
			first = false
		}
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		words = append(words, line)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("moderation: reading word list: %w", err)
	}
	return words, nil
}

// LoadWords reads the word list in the file at path (see ParseWords).
func LoadWords(path string) ([]string, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("moderation: %w", err)
	}
	defer fh.Close()
	words, err := ParseWords(fh)
	if err != nil {
		return nil, fmt.Errorf("%w (%s)", err, path)
	}
	return words, nil
}
