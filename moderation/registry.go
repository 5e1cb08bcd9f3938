package moderation

import (
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
)

// Registry holds the Filter of every app: the app's custom list when it has
// one, else the default. Reads are lock-free; writers compile outside any
// lock and then swap the app table copy-on-write.
type Registry struct {
	def  atomic.Pointer[Filter]
	apps atomic.Pointer[map[string]*Filter] // never modified once stored

	mu sync.Mutex // serialises writers of apps
}

// NewRegistry returns a Registry whose default is def; a nil def means the
// shipped list (Default).
func NewRegistry(def *Filter) *Registry {
	if def == nil {
		def = Default()
	}
	r := &Registry{}
	r.def.Store(def)
	r.apps.Store(&map[string]*Filter{})
	return r
}

// For returns the Filter for appID; it is never nil.
func (r *Registry) For(appID string) *Filter {
	if f, ok := (*r.apps.Load())[appID]; ok {
		return f
	}
	return r.def.Load()
}

// Custom reports whether appID has its own list.
func (r *Registry) Custom(appID string) bool {
	_, ok := (*r.apps.Load())[appID]
	return ok
}

// Set gives appID its own list, replacing the default for that app. An empty
// list turns filtering off for the app; Reset returns it to the default.
func (r *Registry) Set(appID string, words []string) error {
	f, err := Compile(words)
	if err != nil {
		return fmt.Errorf("moderation: set list of app %q: %w", appID, err)
	}
	r.store(appID, f)
	return nil
}

// LoadFile sets appID's list from the file at path (see ParseWords).
func (r *Registry) LoadFile(appID, path string) error {
	words, err := LoadWords(path)
	if err != nil {
		return err
	}
	return r.Set(appID, words)
}

// Reset drops appID's own list; the app uses the default again.
func (r *Registry) Reset(appID string) { r.store(appID, nil) }

// SetDefault replaces the list used by apps without their own.
func (r *Registry) SetDefault(words []string) error {
	f, err := Compile(words)
	if err != nil {
		return fmt.Errorf("moderation: set default list: %w", err)
	}
	r.def.Store(f)
	return nil
}

// Replace filters text with appID's list (Filter.Replace).
func (r *Registry) Replace(appID, text string) (string, int) {
	return r.For(appID).Replace(text)
}

// FilterMessage filters a message payload with appID's list
// (Filter.FilterMessage).
func (r *Registry) FilterMessage(appID, data string) (string, int) {
	return r.For(appID).FilterMessage(data)
}

// store sets (f != nil) or removes (f == nil) appID's filter.
func (r *Registry) store(appID string, f *Filter) {
	r.mu.Lock()
	defer r.mu.Unlock()
	next := maps.Clone(*r.apps.Load())
	if f == nil {
		delete(next, appID)
	} else {
		next[appID] = f
	}
	r.apps.Store(&next)
}
