// Package apps holds the apps a cluster serves. All state is namespaced by
// appId; a production cluster lists its apps with their keys and refuses any
// other appId with LeanCloud's APP_NOT_AVAILABLE (4100), while `relaymesh dev`
// accepts any appId and creates it on first use.
package apps

import (
	"errors"
	"sync"
	"unicode"
)

// App is one LeanCloud application.
type App struct {
	ID        string `json:"id" toml:"id"`
	Key       string `json:"key" toml:"key"`
	MasterKey string `json:"master_key" toml:"master_key"`
	// SignatureRequired makes session/open and conversation changes require
	// an HMAC-SHA1 signature keyed with MasterKey.
	SignatureRequired bool `json:"signature_required" toml:"signature_required"`
	// ConversationSignatureRequired makes conv/start, add/join (invite),
	// remove/quit (kick) and blacklist block/unblock require a signature
	// too. LeanCloud has separate console switches for logins and for
	// conversation operations, each off by default.
	ConversationSignatureRequired bool `json:"conversation_signature_required" toml:"conversation_signature_required"`
}

// ErrUnknownApp is returned for an appId the registry does not serve.
var ErrUnknownApp = errors.New("apps: unknown app")

// MaxIDLen bounds an appId; LeanCloud ids are 24-32 characters.
const MaxIDLen = 64

// ValidID reports whether id may name an app: 1..MaxIDLen bytes without ':'
// or control characters (an appId leads every signed string, whose fields
// ':' separates).
func ValidID(id string) bool {
	if id == "" || len(id) > MaxIDLen {
		return false
	}
	for _, r := range id {
		if r == ':' || unicode.IsControl(r) {
			return false
		}
	}
	return true
}

// Registry resolves appIds. It is safe for concurrent use.
type Registry struct {
	open bool // create unknown apps on first use (dev)

	mu   sync.RWMutex
	apps map[string]App // guarded by mu
}

// NewStatic serves exactly the given apps.
func NewStatic(list []App) *Registry {
	r := &Registry{apps: make(map[string]App, len(list))}
	for _, a := range list {
		r.apps[a.ID] = a
	}
	return r
}

// NewDev serves any appId, creating it without keys on first use.
func NewDev() *Registry {
	return &Registry{open: true, apps: make(map[string]App)}
}

// Lookup returns the app for id, or ErrUnknownApp.
func (r *Registry) Lookup(id string) (App, error) {
	if !ValidID(id) {
		return App{}, ErrUnknownApp
	}
	r.mu.RLock()
	a, ok := r.apps[id]
	r.mu.RUnlock()
	if ok {
		return a, nil
	}
	if !r.open {
		return App{}, ErrUnknownApp
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if a, ok := r.apps[id]; ok {
		return a, nil
	}
	a = App{ID: id}
	r.apps[id] = a
	return a, nil
}

// Put adds or replaces an app (the catalog's settings, cluster/appsync.go).
// An invalid id is ignored: Lookup could never return it.
func (r *Registry) Put(a App) {
	if !ValidID(a.ID) {
		return
	}
	r.mu.Lock()
	r.apps[a.ID] = a
	r.mu.Unlock()
}

// Delete removes an app: Lookup refuses it from now on (an open registry
// creates it again on its next use).
func (r *Registry) Delete(id string) {
	r.mu.Lock()
	delete(r.apps, id)
	r.mu.Unlock()
}

// List returns every app the registry serves now, in no order.
func (r *Registry) List() []App {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]App, 0, len(r.apps))
	for _, a := range r.apps {
		out = append(out, a)
	}
	return out
}

// Open reports whether the registry creates unknown apps (NewDev).
func (r *Registry) Open() bool { return r.open }
