package moderation

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// benchWords returns n distinct pseudo-random words, half ASCII (4–10
// letters) and half CJK (2–4 characters), the same on every run. None of
// them occurs in benchText.
func benchWords(n int) []string {
	rng := rand.New(rand.NewPCG(7, 7))
	seen := make(map[string]bool, n)
	var words []string
	for len(words) < n {
		var b strings.Builder
		if len(words)%2 == 0 {
			for k := 4 + rng.IntN(7); k > 0; k-- {
				b.WriteByte(byte('a' + rng.IntN(26)))
			}
			b.WriteString("q") // 'q' never appears in benchText
		} else {
			b.WriteRune(0x9fa0) // U+9FA0 never appears in benchText
			for k := 1 + rng.IntN(3); k > 0; k-- {
				b.WriteRune(rune(0x4e00 + rng.IntN(0x5000)))
			}
		}
		if w := b.String(); !seen[w] {
			seen[w] = true
			words = append(words, w)
		}
	}
	return words
}

// benchText is a 200-byte message of mixed English and Chinese.
var benchText = func() string {
	s := strings.Repeat("Hello there, meet me at the station at seven tonight. 今晚七点在车站见面，别迟到。", 4)
	return s[:200]
}()

func benchTextWithHits(words []string) string {
	// Three hits spread over the message, keeping it about 200 bytes.
	s := benchText[:60] + words[10] + benchText[60:120] + words[11] + benchText[120:170] + words[12]
	return s
}

func BenchmarkReplace(b *testing.B) {
	f := MustCompile(benchWords(1000))
	hit := benchTextWithHits(f.Words())
	if _, n := f.Replace(benchText); n != 0 {
		b.Fatal("bench text has hits")
	}
	if _, n := f.Replace(hit); n != 3 {
		b.Fatalf("hit text: %d hits, want 3", n)
	}
	b.Run("1k-words/200B/no-hit", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(benchText)))
		for b.Loop() {
			f.Replace(benchText)
		}
	})
	b.Run("1k-words/200B/3-hits", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(hit)))
		for b.Loop() {
			f.Replace(hit)
		}
	})
	msg := `{"_lctype":-1,"_lctext":"` + benchText + `","_lcattrs":{"from":"web"}}`
	hitMsg := `{"_lctype":-1,"_lctext":"` + hit + `","_lcattrs":{"from":"web"}}`
	b.Run("1k-words/typed-msg/no-hit", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(msg)))
		for b.Loop() {
			f.FilterMessage(msg)
		}
	})
	b.Run("1k-words/typed-msg/3-hits", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(hitMsg)))
		for b.Loop() {
			f.FilterMessage(hitMsg)
		}
	})
}

func BenchmarkCompile1k(b *testing.B) {
	words := benchWords(1000)
	b.ReportAllocs()
	for b.Loop() {
		MustCompile(words)
	}
}
