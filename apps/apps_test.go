package apps

import (
	"errors"
	"fmt"
	"sync"
	"testing"
)

func TestRegistryPutDelete(t *testing.T) {
	r := NewStatic([]App{{ID: "a", Key: "k"}})
	if r.Open() {
		t.Fatal("a static registry says it is open")
	}
	r.Put(App{ID: "b", MasterKey: "m"})
	r.Put(App{ID: "a", Key: "k2"})
	r.Put(App{ID: "bad:id"}) // ignored: Lookup could never find it
	r.Put(App{ID: ""})
	if a, err := r.Lookup("a"); err != nil || a.Key != "k2" {
		t.Errorf("Lookup(a) after Put: got %+v, %v, want key k2", a, err)
	}
	if a, err := r.Lookup("b"); err != nil || a.MasterKey != "m" {
		t.Errorf("Lookup(b) after Put: got %+v, %v", a, err)
	}
	if got := len(r.List()); got != 2 {
		t.Errorf("List: got %d apps, want 2", got)
	}
	r.Delete("a")
	r.Delete("never-there")
	if _, err := r.Lookup("a"); !errors.Is(err, ErrUnknownApp) {
		t.Errorf("Lookup(a) after Delete: got %v, want ErrUnknownApp", err)
	}
	if l := r.List(); len(l) != 1 || l[0].ID != "b" {
		t.Errorf("List after Delete: got %+v, want [b]", l)
	}

	// An open registry (dev) is unchanged by them: it still creates apps.
	d := NewDev()
	if !d.Open() {
		t.Fatal("a dev registry says it is not open")
	}
	d.Put(App{ID: "x", Key: "k"})
	d.Delete("x")
	if a, err := d.Lookup("x"); err != nil || a.Key != "" {
		t.Errorf("dev Lookup after Delete: got %+v, %v, want a new keyless app", a, err)
	}
}

// TestRegistryConcurrent: Put, Delete, List and Lookup at once (run with
// -race); every Lookup sees a whole app, never a mix of two.
func TestRegistryConcurrent(t *testing.T) {
	r := NewStatic(nil)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 2000 {
				id := fmt.Sprintf("app-%d", i%16)
				switch (i + w) % 4 {
				case 0:
					r.Put(App{ID: id, Key: id + "-key", MasterKey: id + "-master"})
				case 1:
					r.Delete(id)
				case 2:
					r.List()
				default:
					if a, err := r.Lookup(id); err == nil && (a.Key != id+"-key" || a.MasterKey != id+"-master") {
						t.Errorf("Lookup(%s): got %+v", id, a)
						return
					}
				}
			}
		})
	}
	wg.Wait()
}
