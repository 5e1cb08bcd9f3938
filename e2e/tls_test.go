package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/relaymesh/relaymesh/client"
	"github.com/relaymesh/relaymesh/cluster"
)

// TestDevTLS: with [edge] tls (relaymesh dev --tls) the WebSocket port
// speaks TLS with the WebTransport certificate, so one load-balancer
// listener can pass 443 through for TCP and UDP: a Go SDK client on wss://
// and one on WebTransport chat both ways; plain ws:// to the port fails;
// the REST routes answer over https.
func TestDevTLS(t *testing.T) {
	d, addr := startDevWith(t, cluster.DevConfig{TLS: true})
	if d.Edge.URL != "wss://"+addr+"/" {
		t.Fatalf("edge URL %q, want wss://%s/", d.Edge.URL, addr)
	}
	want := d.WTCert.Hash()
	tc := &tls.Config{
		InsecureSkipVerify: true, // self-signed: the hash below is the check
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return errors.New("no certificate")
			}
			if h := sha256.Sum256(raw[0]); !bytes.Equal(h[:], want[:]) {
				return errors.New("not the WebTransport certificate")
			}
			return nil
		},
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tc}, Timeout: 10 * time.Second}
	rsp, err := hc.Get("https://" + addr + "/v1/route")
	if err != nil {
		t.Fatal(err)
	}
	rsp.Body.Close()
	if rsp.StatusCode != 200 {
		t.Fatalf("GET /v1/route over https: %s", rsp.Status)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	alice, err := client.Dial(ctx, "wss://"+addr+"/", client.Options{AppID: wtApp, ClientID: "tls-alice", HTTPClient: hc})
	if err != nil {
		t.Fatal(err)
	}
	defer alice.Close()
	bo := wtClientOpts("tls-bob")
	bo.HTTPClient = hc // the certificate hash comes from https://…/v1/webtransport
	bob, err := client.Dial(ctx, "wss://"+addr+"/", bo)
	if err != nil {
		t.Fatal(err)
	}
	defer bob.Close()
	cid, err := alice.CreateConversation(ctx, []string{"tls-bob"}, "tls", nil, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Send(ctx, cid, "over wss", client.SendOptions{}); err != nil {
		t.Fatal(err)
	}
	if m := wtWaitMessage(t, ctx, bob, func(m client.Message) bool { return m.ConvID == cid }); m.Text != "over wss" {
		t.Fatalf("bob got %+v", m)
	}
	if _, err := bob.Send(ctx, cid, "over webtransport", client.SendOptions{}); err != nil {
		t.Fatal(err)
	}
	if m := wtWaitMessage(t, ctx, alice, func(m client.Message) bool { return m.ConvID == cid }); m.Text != "over webtransport" {
		t.Fatalf("alice got %+v", m)
	}

	// Plain WebSocket to the TLS port is not served.
	short, cancel2 := context.WithTimeout(ctx, 5*time.Second)
	defer cancel2()
	if c, err := client.Dial(short, "ws://"+addr+"/", client.Options{AppID: wtApp, ClientID: "tls-plain"}); err == nil {
		c.Close()
		t.Fatal("a plain ws:// login on the TLS port worked")
	}
}
