package moderation

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func TestRegistry(t *testing.T) {
	r := NewRegistry(nil)
	if got, n := r.Replace("app1", "傻逼"); got != "***" || n != 1 {
		t.Errorf("default list: got %q, %d; want %q, 1", got, n, "***")
	}
	if err := r.Set("app1", []string{"widget"}); err != nil {
		t.Fatal(err)
	}
	if !r.Custom("app1") || r.Custom("app2") {
		t.Errorf("Custom: got %v/%v, want true/false", r.Custom("app1"), r.Custom("app2"))
	}
	if got, _ := r.Replace("app1", "傻逼 widget"); got != "傻逼 ***" {
		t.Errorf("custom list replaces the default: got %q, want %q", got, "傻逼 ***")
	}
	if got, _ := r.Replace("app2", "傻逼 widget"); got != "*** widget" {
		t.Errorf("other app keeps the default: got %q, want %q", got, "*** widget")
	}
	if err := r.Set("app1", nil); err != nil {
		t.Fatal(err)
	}
	if got, n := r.Replace("app1", "傻逼"); n != 0 {
		t.Errorf("empty custom list: got %q, %d hits; want no filtering", got, n)
	}
	r.Reset("app1")
	if _, n := r.Replace("app1", "傻逼"); n != 1 {
		t.Errorf("after Reset: %d hits, want 1", n)
	}
	if err := r.Set("app1", []string{"\xff"}); !errors.Is(err, ErrInvalidWord) {
		t.Errorf("Set invalid word: got %v, want ErrInvalidWord", err)
	}
	if err := r.SetDefault([]string{"gadget"}); err != nil {
		t.Fatal(err)
	}
	if got, _ := r.FilterMessage("app3", `{"_lctext":"Gadget"}`); got != `{"_lctext":"***"}` {
		t.Errorf("SetDefault: got %s", got)
	}
}

func TestRegistryLoadFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "words.txt")
	content := "\ufeff# comment\n\n  alpha  \r\n  # indented comment\nβeta\n中文\n"
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	r := NewRegistry(MustCompile(nil))
	if err := r.LoadFile("app", path); err != nil {
		t.Fatal(err)
	}
	got := r.For("app").Words()
	want := []string{"alpha", "βeta", "中文"}
	if len(got) != len(want) {
		t.Fatalf("words: got %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("words: got %q, want %q", got, want)
		}
	}
	if err := r.LoadFile("app", filepath.Join(t.TempDir(), "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: got %v, want ErrNotExist", err)
	}
}

// TestRegistryConcurrent swaps lists while readers filter; run with -race.
func TestRegistryConcurrent(t *testing.T) {
	r := NewRegistry(nil)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for i := 0; i < 4; i++ {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				out, n := r.Replace("app", "one two three")
				if n > 1 || (n == 1 && out == "one two three") {
					t.Errorf("inconsistent result %q, %d", out, n)
					return
				}
			}
		})
	}
	for i := 0; i < 200; i++ {
		words := []string{"two"}
		if i%2 == 0 {
			words = []string{"three"}
		}
		if err := r.Set("app", words); err != nil {
			t.Fatal(err)
		}
		if i%10 == 0 {
			r.Reset("app")
		}
	}
	close(stop)
	wg.Wait()
}
