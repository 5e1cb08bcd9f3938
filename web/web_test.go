package web

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, method, path string) (*http.Response, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	rsp := rec.Result()
	b, _ := io.ReadAll(rsp.Body)
	return rsp, string(b)
}

func TestDemoFiles(t *testing.T) {
	h := Handler()
	rsp, body := get(t, h, "GET", "/demo/")
	if rsp.StatusCode != 200 || !strings.Contains(body, `<script src="demo.js">`) || !strings.HasPrefix(rsp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("/demo/: %d %s %q", rsp.StatusCode, rsp.Header.Get("Content-Type"), body[:min(len(body), 200)])
	}
	rsp, body = get(t, h, "GET", "/demo/demo.js")
	if rsp.StatusCode != 200 || !strings.Contains(rsp.Header.Get("Content-Type"), "javascript") || len(body) < 100_000 {
		t.Fatalf("/demo/demo.js: %d %s, %d bytes", rsp.StatusCode, rsp.Header.Get("Content-Type"), len(body))
	}
	// The bundle is the official SDK with sdk/js in its WebSocket slot.
	for _, want := range []string{"relaymeshDemo", "WebTransport failed", "serverCertificateHashes", "lc.protobuf2.3"} {
		if !strings.Contains(body, want) {
			t.Errorf("demo.js lacks %q", want)
		}
	}
	if rsp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Error("no nosniff")
	}
	rsp, _ = get(t, h, "GET", "/demo/demo.css")
	if rsp.StatusCode != 200 || !strings.HasPrefix(rsp.Header.Get("Content-Type"), "text/css") {
		t.Fatalf("/demo/demo.css: %d %s", rsp.StatusCode, rsp.Header.Get("Content-Type"))
	}
}

func TestDemoRedirectAndRefusals(t *testing.T) {
	h := Handler()
	rsp, _ := get(t, h, "GET", "/demo")
	if rsp.StatusCode != http.StatusMovedPermanently || rsp.Header.Get("Location") != "/demo/" {
		t.Fatalf("/demo: %d %q", rsp.StatusCode, rsp.Header.Get("Location"))
	}
	if rsp, _ := get(t, h, "POST", "/demo/"); rsp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST: %d", rsp.StatusCode)
	}
	// The sources are not served, nor anything outside static/.
	for _, p := range []string{"/demo/src/demo.js", "/demo/../web.go", "/demo/%2e%2e/web.go", "/demo/nope.js", "/demo/..%2fweb.go"} {
		rsp, body := get(t, h, "GET", p)
		if rsp.StatusCode == 200 && !strings.Contains(body, "<title>relaymesh chat demo") {
			t.Errorf("%s: %d served %q", p, rsp.StatusCode, body[:min(len(body), 80)])
		}
		if strings.Contains(body, "package web") {
			t.Errorf("%s served Go source", p)
		}
	}
}
