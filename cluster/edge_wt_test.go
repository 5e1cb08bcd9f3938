package cluster

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go/http3"

	"github.com/relaymesh/relaymesh/edge"
	"github.com/relaymesh/relaymesh/mesh"
)

func TestLoadConfigWebTransportPair(t *testing.T) {
	for _, body := range []string{"[edge]\nwt_cert = \"a.crt\"\n", "[edge]\nwt_key = \"a.key\"\n", "[edge]\ntls = true\n"} {
		if _, err := LoadConfig(writeConfig(t, body)); !errors.Is(err, ErrConfig) {
			t.Errorf("%q: got %v, want ErrConfig", body, err)
		}
	}
}

// TestEdgeWebTransportFromConfig: [edge] wt_cert/wt_key give the edge a
// WebTransport listener on the UDP twin of its HTTP port, presenting the
// configured certificate (no hashes announced: browsers trust it by its
// chain).
func TestEdgeWebTransportFromConfig(t *testing.T) {
	dir := t.TempDir()
	if _, err := mesh.EnsureDevPKI(filepath.Join(dir, "pki"), "edge-1"); err != nil {
		t.Fatal(err)
	}
	// Any PEM pair serves as "the configured certificate"; a dev one is at hand.
	if _, err := edge.DevWTCert(filepath.Join(dir, "tls")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "token.key"), make([]byte, 32), 0o600); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "relaymesh.toml")
	if err := os.WriteFile(p, []byte(`
session_token_key_file = "token.key"
[[apps]]
id = "app-1"
master_key = "m"
[tls]
ca = "pki/ca.crt"
cert = "pki/edge-1.crt"
key = "pki/edge-1.key"
[edge]
edge_id = "edge-1"
listen = "127.0.0.1:0"
mesh_addr = "127.0.0.1:0"
cores = ["127.0.0.1:9"]
wt_cert = "tls/wt.crt"
wt_key = "tls/wt.key"
admin_addr = "127.0.0.1:0"
`), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := LoadConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	ec, err := c.EdgeConfig()
	if err != nil {
		t.Fatal(err)
	}
	if ec.AdminAddr != "127.0.0.1:0" {
		t.Errorf("[edge] admin_addr: EdgeConfig.AdminAddr %q", ec.AdminAddr)
	}
	if ec.WebTransport == nil || ec.WebTransport.SelfSigned() || ec.WebTransport.Hashes() != nil {
		t.Fatalf("WebTransport %+v: want the configured certificate, no hashes", ec.WebTransport)
	}
	e, err := StartEdge(ec)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	host := strings.TrimSuffix(strings.TrimPrefix(e.URL, "ws://"), "/")
	if e.WTURL != "https://"+host+"/wt" {
		t.Fatalf("WTURL %q, want https://%s/wt", e.WTURL, host)
	}
	// HTTP/3 answers on the same port over UDP (healthz: the cores are
	// unreachable, so 503).
	h := ec.WebTransport.Hash()
	tr := &http3.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} // the hash is checked below
	defer tr.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+host+"/healthz", nil)
	rsp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	rsp.Body.Close()
	if rsp.StatusCode != http.StatusServiceUnavailable || rsp.TLS == nil {
		t.Fatalf("healthz over HTTP/3: %d", rsp.StatusCode)
	}
	if got := rsp.TLS.PeerCertificates[0].Raw; sha256.Sum256(got) != h {
		t.Fatal("HTTP/3 presented another certificate")
	}
	// /v1/webtransport names the URL without hashes.
	rsp, err = http.Get("http://" + host + "/v1/webtransport")
	if err != nil {
		t.Fatal(err)
	}
	defer rsp.Body.Close()
	body, err := io.ReadAll(rsp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"url":"` + e.WTURL + `","certificateHashes":[]}`; strings.TrimSpace(string(body)) != want {
		t.Fatalf("/v1/webtransport: %s, want %s", body, want)
	}
	// The UDP port is taken by the edge.
	if pc, err := net.ListenPacket("udp", host); err == nil {
		pc.Close()
		t.Fatal("the edge's UDP port is free")
	}
}
