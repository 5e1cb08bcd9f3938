// Package web is the chat demo that `relaymesh dev` serves at /demo/: a page
// on the official LeanCloud realtime SDK whose WebSocket slot is
// sdk/js (@relaymesh/realtime-transport), so it chats over WebTransport
// and falls back to WebSocket.
//
// static/demo.js is built from src/demo.js, the SDK and sdk/js by
// `make js` (esbuild) and committed: serving it needs no Node.
package web

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed static
var files embed.FS

// Path is where the demo is served.
const Path = "/demo/"

// Handler serves the demo's files under Path, and redirects /demo to it.
func Handler() http.Handler {
	sub, err := fs.Sub(files, "static")
	if err != nil {
		panic(err) // the embedded tree always has static/
	}
	fsrv := http.StripPrefix(Path, http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/demo" {
			http.Redirect(w, r, Path, http.StatusMovedPermanently)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		fsrv.ServeHTTP(w, r)
	})
}
