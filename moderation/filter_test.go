package moderation

import (
	"math/rand/v2"
	"strings"
	"testing"
)

func TestReplace(t *testing.T) {
	tests := []struct {
		name  string
		words []string
		text  string
		want  string
		hits  int
	}{
		{"no words", nil, "anything", "anything", 0},
		{"no hit", []string{"spam"}, "hello world", "hello world", 0},
		{"empty text", []string{"spam"}, "", "", 0},
		{"one hit", []string{"spam"}, "no spam here", "no *** here", 1},
		{"whole text", []string{"spam"}, "spam", "***", 1},
		{"adjacent hits", []string{"foo"}, "foofoo", "******", 2},
		{"ascii case", []string{"Spam"}, "SPAM, sPaM and spam", "***, *** and ***", 3},
		{"overlap: first start wins", []string{"abc", "bcd"}, "abcd", "***d", 1},
		{"same start: longest wins", []string{"ab", "abcd"}, "abcde", "***e", 1},
		{"longest even when found later", []string{"bc", "abcd"}, "abcd!", "***!", 1},
		{"shorter kept when longer fails", []string{"ab", "abcd"}, "abcx", "***cx", 1},
		{"inner word in failed prefix", []string{"abcd", "b"}, "abcx", "a***cx", 1},
		{"classic he/she/hers", []string{"he", "she", "hers", "his"}, "ushers", "u***rs", 1},
		{"failure chain", []string{"aab", "ab"}, "aaab", "a***", 1},
		{"cjk", []string{"傻逼"}, "你是傻逼吗", "你是***吗", 1},
		{"cjk overlapping", []string{"他妈", "妈的"}, "他妈的", "***的", 1},
		{"cjk longest", []string{"他妈", "他妈的"}, "他妈的!", "***!", 1},
		{"cjk and ascii mixed", []string{"spam广告"}, "这是SPAM广告。", "这是***。", 1},
		{"cjk no partial char", []string{"中"}, "串", "串", 0},
		{"non-ascii not folded", []string{"äbc"}, "ÄBC äBC", "ÄBC ***", 1},
		{"full-width not folded", []string{"spam"}, "ｓｐａｍ", "ｓｐａｍ", 0},
		{"phrase with space", []string{"free bitcoin"}, "Get FREE Bitcoin now", "Get *** now", 1},
		{"trimmed word", []string{"  spam \t"}, "spam", "***", 1},
		{"invalid utf-8 text", []string{"中"}, "\xe4中\xff", "\xe4***\xff", 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := MustCompile(tc.words)
			got, hits := f.Replace(tc.text)
			if got != tc.want || hits != tc.hits {
				t.Errorf("Replace(%q) = %q, %d; want %q, %d", tc.text, got, hits, tc.want, tc.hits)
			}
			if c := f.Contains(tc.text); c != (tc.hits > 0) {
				t.Errorf("Contains(%q) = %v, want %v", tc.text, c, tc.hits > 0)
			}
		})
	}
}

func TestCompile(t *testing.T) {
	f, err := Compile([]string{"B", "b", " ", "", "a"})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(f.Words(), ","); got != "a,b" {
		t.Errorf("Words() = %q, want %q", got, "a,b")
	}
	for _, bad := range []string{"\xff", strings.Repeat("x", MaxWordBytes+1)} {
		if _, err := Compile([]string{bad}); err == nil {
			t.Errorf("Compile(%q...) succeeded, want ErrInvalidWord", truncate(bad))
		}
	}
	var nilFilter *Filter
	if got, n := nilFilter.Replace("spam"); got != "spam" || n != 0 {
		t.Errorf("nil Filter: got %q, %d", got, n)
	}
}

func TestNoHitDoesNotAllocate(t *testing.T) {
	f := MustCompile(benchWords(1000))
	text := strings.Repeat("an innocent message 一条无害的消息 ", 6)
	msg := `{"_lctype":-1,"_lctext":"` + text + `","_lcattrs":{"k":"v"}}`
	if _, n := f.Replace(text); n != 0 {
		t.Fatalf("unexpected hit in %q", text)
	}
	if a := testing.AllocsPerRun(100, func() { f.Replace(text) }); a != 0 {
		t.Errorf("Replace without hits: %v allocs, want 0", a)
	}
	if a := testing.AllocsPerRun(100, func() { f.FilterMessage(msg) }); a != 0 {
		t.Errorf("FilterMessage without hits: %v allocs, want 0", a)
	}
}

// naiveReplace is the reference: at each position take the longest word that
// starts there, else move one byte on.
func naiveReplace(words []string, text string) (string, int) {
	folded := foldString(text)
	var b strings.Builder
	hits := 0
	for i := 0; i < len(text); {
		best := 0
		for _, w := range words {
			if len(w) > best && strings.HasPrefix(folded[i:], w) {
				best = len(w)
			}
		}
		if best > 0 {
			b.WriteString(Mask)
			hits++
			i += best
			continue
		}
		b.WriteByte(text[i])
		i++
	}
	return b.String(), hits
}

// TestReplaceMatchesModel checks the automaton against naiveReplace on random
// lists and texts over a small alphabet, where overlaps are frequent.
func TestReplaceMatchesModel(t *testing.T) {
	alphabet := []string{"a", "b", "A", "c", "中", "文", " "}
	rng := rand.New(rand.NewPCG(1, 2))
	randStr := func(maxParts int) string {
		var b strings.Builder
		for n := 1 + rng.IntN(maxParts); n > 0; n-- {
			b.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		return b.String()
	}
	for iter := 0; iter < 3000; iter++ {
		var words []string
		for n := 1 + rng.IntN(6); n > 0; n-- {
			words = append(words, randStr(4))
		}
		f, err := Compile(words)
		if err != nil {
			t.Fatal(err)
		}
		text := randStr(30)
		got, hits := f.Replace(text)
		want, wantHits := naiveReplace(f.Words(), text)
		if got != want || hits != wantHits {
			t.Fatalf("words %q, text %q: got %q, %d; want %q, %d", f.Words(), text, got, hits, want, wantHits)
		}
	}
}

func TestDefaultList(t *testing.T) {
	words := DefaultWords()
	if len(words) == 0 || Default().Len() != len(words) {
		t.Fatalf("default list: %d words, compiled %d", len(words), Default().Len())
	}
	for _, w := range words {
		if strings.Contains(w, "*") || strings.HasPrefix(w, "#") {
			t.Errorf("default word %q: must not contain '*' or start with '#'", w)
		}
	}
	for _, innocent := range []string{"classic assessment", "我妈的手机", "Scunthorpe", "shiitake"} {
		if got, n := Default().Replace(innocent); n != 0 {
			t.Errorf("default list hits innocent %q: %q", innocent, got)
		}
	}
	if got, n := Default().Replace("你个傻逼, FUCK off"); n != 2 {
		t.Errorf("default list: got %q, %d hits; want 2", got, n)
	}
}
