package moderation

import (
	"strings"
	"testing"
)

// FuzzReplace checks that Replace and FilterMessage never panic, that Replace
// agrees with the naive model, and that its output contains no listed word
// (words with '*' excepted: the mask can recreate them).
func FuzzReplace(f *testing.F) {
	f.Add("spam\nabc\nbcd", "abcd SPAM spam")
	f.Add("傻逼\n他妈的", "你是傻逼吗？他妈的")
	f.Add("a\naa\naaa", "aaaaaaa")
	f.Add("\xe4\xb8", "\xe4\xb8\xad")
	f.Add("x", `{"_lctext":"x\u0078","_lcattrs":{"x":1}}`)
	f.Fuzz(func(t *testing.T, list, text string) {
		words := strings.Split(list, "\n")
		if len(words) > 64 {
			words = words[:64]
		}
		flt, err := Compile(words)
		if err != nil {
			return
		}
		out, hits := flt.Replace(text)
		want, wantHits := naiveReplace(flt.Words(), text)
		if out != want || hits != wantHits {
			t.Fatalf("words %q, text %q: got %q, %d; model %q, %d", flt.Words(), text, out, hits, want, wantHits)
		}
		folded := foldString(out)
		for _, w := range flt.Words() {
			if !strings.Contains(w, "*") && strings.Contains(folded, w) {
				t.Fatalf("words %q, text %q: output %q still contains %q", flt.Words(), text, out, w)
			}
		}
		if hits == 0 && out != text {
			t.Fatalf("no hits but output %q differs from %q", out, text)
		}
		flt.FilterMessage(text)
	})
}
