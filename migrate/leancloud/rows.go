package leancloud

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// MaxRowBytes bounds one row of an export or history file.
const MaxRowBytes = 1 << 20

// errRowTooLarge: a row of a JSON array over MaxRowBytes; the array cannot
// be read past it.
var errRowTooLarge = errors.New("row over 1 MiB")

// rowReader yields the rows of a JSON Lines file, a JSON array, or an
// object {"results":[…]}, one at a time with the line each starts on.
type rowReader struct {
	name string
	br   *bufio.Reader

	// JSON Lines
	lines bool
	line  int

	// array
	dec  *json.Decoder
	cnt  *countReader
	done bool
}

// newRowReader detects the format from the first bytes of r.
func newRowReader(name string, r io.Reader) (*rowReader, error) {
	br := bufio.NewReaderSize(r, MaxRowBytes+1) // a JSON Lines row must fit
	rr := &rowReader{name: name, br: br}
	// Skip a UTF-8 BOM and leading space to see the first character.
	if b, _ := br.Peek(3); bytes.Equal(b, []byte{0xEF, 0xBB, 0xBF}) {
		br.Discard(3)
	}
	skipped := 0
	for {
		b, err := br.Peek(skipped + 1)
		if len(b) <= skipped {
			if err == io.EOF {
				rr.lines = true // empty: no rows
				return rr, nil
			}
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		c := b[skipped]
		if c == ' ' || c == '\t' || c == '\r' || c == '\n' {
			skipped++
			if skipped > 4096 {
				return nil, fmt.Errorf("%s: no JSON in the first 4 KiB", name)
			}
			continue
		}
		switch c {
		case '[':
			return rr, rr.startArray(false)
		case '{':
			if rr.isWrapper(skipped) {
				return rr, rr.startArray(true)
			}
			rr.lines = true
			return rr, nil
		}
		return nil, fmt.Errorf("%s: neither JSON Lines nor a JSON array (starts with %q)", name, c)
	}
}

// isWrapper reports whether the object starting at offset skip is
// {"results":[…]} rather than the first row of a JSON Lines file.
func (rr *rowReader) isWrapper(skip int) bool {
	b, _ := rr.br.Peek(min(skip+64, rr.br.Size()))
	b = bytes.TrimLeft(b[skip+1:], " \t\r\n")
	if !bytes.HasPrefix(b, []byte(`"results"`)) {
		return false
	}
	b = bytes.TrimLeft(b[len(`"results"`):], " \t\r\n")
	if !bytes.HasPrefix(b, []byte(":")) {
		return false
	}
	return bytes.HasPrefix(bytes.TrimLeft(b[1:], " \t\r\n"), []byte("["))
}

func (rr *rowReader) startArray(wrapped bool) error {
	rr.cnt = &countReader{r: rr.br, limit: -1}
	rr.dec = json.NewDecoder(rr.cnt)
	want := []json.Token{json.Delim('[')}
	if wrapped {
		want = []json.Token{json.Delim('{'), "results", json.Delim('[')}
	}
	for _, w := range want {
		tok, err := rr.dec.Token()
		if err != nil || tok != w {
			return fmt.Errorf("%s:%d: want %v, got %v (%v)", rr.name, rr.cnt.lineAt(rr.dec.InputOffset()), w, tok, err)
		}
	}
	return nil
}

// next returns the next row and the line it starts on; io.EOF at the end.
// A row that is not JSON comes back as a *rowError: with JSON Lines the
// reader goes on after it, with an array it cannot (fatal is set).
func (rr *rowReader) next() (json.RawMessage, int, error) {
	if rr.lines {
		return rr.nextLine()
	}
	if rr.done {
		return nil, 0, io.EOF
	}
	if !rr.dec.More() {
		rr.done = true
		return nil, 0, io.EOF
	}
	start := rr.dec.InputOffset()
	rr.cnt.limit = start + 2*MaxRowBytes + 64<<10 // the row, and what the decoder reads ahead
	line := rr.cnt.lineAt(start + 1)              // the row begins after the separator
	var raw json.RawMessage
	if err := rr.dec.Decode(&raw); err != nil {
		rr.done = true
		if errors.Is(err, errRowTooLarge) {
			return nil, line, &rowError{Line: line, Msg: "a row over 1 MiB; the rest of the array is not read", Fatal: true}
		}
		return nil, line, &rowError{Line: line, Msg: "malformed JSON (the rest of the array is not read): " + err.Error(), Fatal: true}
	}
	line = rr.cnt.lineAt(rr.dec.InputOffset() - int64(len(raw)))
	if len(raw) > MaxRowBytes {
		return nil, line, &rowError{Line: line, Msg: "a row over 1 MiB"}
	}
	return raw, line, nil
}

func (rr *rowReader) nextLine() (json.RawMessage, int, error) {
	for {
		b, err := rr.br.ReadSlice('\n')
		if len(b) == 0 && err == io.EOF {
			return nil, 0, io.EOF
		}
		rr.line++
		if errors.Is(err, bufio.ErrBufferFull) {
			// A line over MaxRowBytes: skip it without keeping it.
			n := len(b)
			for errors.Is(err, bufio.ErrBufferFull) {
				b, err = rr.br.ReadSlice('\n')
				n += len(b)
			}
			return nil, rr.line, &rowError{Line: rr.line, Msg: fmt.Sprintf("a row of %d bytes, over 1 MiB", n)}
		}
		if err != nil && err != io.EOF {
			return nil, rr.line, fmt.Errorf("%s:%d: %w", rr.name, rr.line, err)
		}
		b = bytes.TrimSpace(b)
		if len(b) == 0 {
			if err == io.EOF {
				return nil, 0, io.EOF
			}
			continue
		}
		if !json.Valid(b) {
			return nil, rr.line, &rowError{Line: rr.line, Msg: "malformed JSON"}
		}
		return append(json.RawMessage(nil), b...), rr.line, nil
	}
}

// rowError is a row that could not be read.
type rowError struct {
	Line  int
	Msg   string
	Fatal bool // the file cannot be read further
}

func (e *rowError) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Msg) }

// countReader counts the lines of what it reads (to name the line of an
// offset) and refuses to read past limit (-1: no limit).
type countReader struct {
	r     io.Reader
	off   int64   // bytes read
	limit int64   // refuse to read at or past this offset; -1: none
	nl    []int64 // offsets of newlines not yet passed by lineAt
	base  int     // newlines before nl[0]
}

func (c *countReader) Read(p []byte) (int, error) {
	if c.limit >= 0 {
		if c.off >= c.limit {
			return 0, errRowTooLarge
		}
		if room := c.limit - c.off; int64(len(p)) > room {
			p = p[:room]
		}
	}
	n, err := c.r.Read(p)
	for i, b := range p[:n] {
		if b == '\n' {
			c.nl = append(c.nl, c.off+int64(i))
		}
	}
	c.off += int64(n)
	return n, err
}

// lineAt returns the 1-based line of offset off; offsets must not go
// backwards between calls by more than the decoder's buffer.
func (c *countReader) lineAt(off int64) int {
	i := 0
	for i < len(c.nl) && c.nl[i] < off {
		i++
	}
	// Keep the newlines at or after off: a later offset may be before them.
	c.base += i
	c.nl = c.nl[i:]
	return c.base + 1
}
