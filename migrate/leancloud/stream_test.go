package leancloud

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"testing"
)

// genReader produces a JSON array (or JSON Lines) of n conversation rows
// without holding it: a 100 MiB export costs no memory to make.
type genReader struct {
	n, i  int
	lines bool
	buf   []byte
	pad   string
}

func (g *genReader) Read(p []byte) (int, error) {
	for len(g.buf) == 0 {
		switch {
		case g.i > g.n:
			return 0, io.EOF
		case g.i == g.n:
			if !g.lines {
				g.buf = []byte("\n]\n")
			}
		default:
			sep := ",\n"
			switch {
			case g.lines:
				sep = "\n"
			case g.i == 0:
				sep = "[\n"
			}
			g.buf = fmt.Appendf(nil, `%s{"objectId":"5f%022x","c":"u%d","m":["u%d","v%d"],"createdAt":"2021-01-01T00:00:00.000Z","attr":{"pad":%q}}`,
				sep, g.i, g.i, g.i, g.i, g.pad)
		}
		g.i++
	}
	n := copy(p, g.buf)
	g.buf = g.buf[n:]
	return n, nil
}

// TestStreamsBigExports reads a 44 MiB export, as an array and as JSON
// Lines, a row at a time: the live heap (after a GC, over what the test
// binary held before) stays a few MiB (the row buffers), not the size of
// the file.
func TestStreamsBigExports(t *testing.T) {
	if testing.Short() {
		t.Skip("reads 88 MiB")
	}
	padding := strings.Repeat("x", 1000)
	const n = 40_000 // ~1.1 KB a row: ~44 MiB
	for _, lines := range []bool{false, true} {
		var peak uint64
		var ms runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms)
		base := ms.HeapAlloc // what the rest of the test binary holds
		rr, err := newRowReader("big", &genReader{n: n, lines: lines, pad: padding})
		if err != nil {
			t.Fatal(err)
		}
		rows := 0
		for {
			raw, _, err := rr.next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("row %d: %v", rows, err)
			}
			if _, _, err := parseConversation(raw, MaxMembers); err != nil {
				t.Fatalf("row %d: %v", rows, err)
			}
			rows++
			if rows%10_000 == 0 {
				runtime.GC()
				runtime.ReadMemStats(&ms)
				peak = max(peak, ms.HeapAlloc-min(base, ms.HeapAlloc))
			}
		}
		if rows != n {
			t.Fatalf("lines=%v: %d rows, want %d", lines, rows, n)
		}
		if peak > 16<<20 {
			t.Errorf("lines=%v: live heap reached %d MiB reading a 44 MiB export", lines, peak>>20)
		}
		t.Logf("lines=%v: %d rows, live heap at most %.1f MiB", lines, rows, float64(peak)/(1<<20))
	}
}

// TestDryRunBigExport runs a whole dry run over a generated export of
// 20,000 conversations from a file, as the command does.
func TestDryRunBigExport(t *testing.T) {
	path := t.TempDir() + "/_Conversation.jsonl"
	w, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(w, &genReader{n: 20_000, lines: true, pad: "p"}); err != nil {
		t.Fatal(err)
	}
	w.Close()
	sum, err := Run(context.Background(), Config{Conversations: path, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if sum.ConvRows != 20_000 || sum.MemberEntries != 40_000 || sum.Distinct != 40_000 || sum.ProblemCount != 0 {
		t.Fatalf("summary: %+v", sum)
	}
}
