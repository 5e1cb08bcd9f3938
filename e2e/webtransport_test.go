package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/quic-go/quic-go/http3"
	"github.com/quic-go/webtransport-go"
	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/client"
	"github.com/relaymesh/relaymesh/edge"
	"github.com/relaymesh/relaymesh/proto/lcpb"
)

// wtPeer is a WebTransport client of the test, written against the wire
// format alone: protodelim frames on one stream, datagrams on the side.
type wtPeer struct {
	t    *testing.T
	tr   *webtransport.Transport
	sess *webtransport.Session
	str  *webtransport.Stream
	in   chan *lcpb.GenericCommand
	dgs  chan *lcpb.GenericCommand
	done chan struct{}
	wg   sync.WaitGroup
}

// wtInfo is /v1/webtransport.
type wtInfo struct {
	URL    string `json:"url"`
	Hashes []struct {
		Algorithm string `json:"algorithm"`
		Value     []byte `json:"value"`
	} `json:"certificateHashes"`
}

func getWTInfo(t *testing.T, httpAddr string) wtInfo {
	t.Helper()
	rsp, err := http.Get("http://" + httpAddr + "/v1/webtransport")
	if err != nil {
		t.Fatal(err)
	}
	defer rsp.Body.Close()
	var in wtInfo
	if err := json.NewDecoder(rsp.Body).Decode(&in); err != nil {
		t.Fatal(err)
	}
	if len(in.Hashes) != 1 || in.Hashes[0].Algorithm != "sha-256" || len(in.Hashes[0].Value) != sha256.Size {
		t.Fatalf("/v1/webtransport: %+v, want one sha-256 hash", in)
	}
	return in
}

// dialWTPeer connects as a browser given serverCertificateHashes would:
// the certificate is accepted by its hash alone.
func dialWTPeer(t *testing.T, in wtInfo) *wtPeer {
	t.Helper()
	hash := in.Hashes[0].Value
	tr := &webtransport.Transport{TLSClientConfig: &tls.Config{
		InsecureSkipVerify: true,
		NextProtos:         []string{http3.NextProtoH3},
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if h := sha256.Sum256(raw[0]); len(raw) == 0 || !bytes.Equal(h[:], hash) {
				return errors.New("certificate hash mismatch")
			}
			return nil
		},
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, sess, err := tr.Dial(ctx, in.URL, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", in.URL, err)
	}
	str, err := sess.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p := &wtPeer{t: t, tr: tr, sess: sess, str: str, in: make(chan *lcpb.GenericCommand, 1024),
		dgs: make(chan *lcpb.GenericCommand, 1024), done: make(chan struct{})}
	p.wg.Add(2)
	go func() {
		defer p.wg.Done()
		defer close(p.done)
		br := bufio.NewReader(str)
		for {
			cmd := new(lcpb.GenericCommand)
			if err := (protodelim.UnmarshalOptions{MaxSize: 1 << 20}).UnmarshalFrom(br, cmd); err != nil {
				return
			}
			p.in <- cmd
		}
	}()
	go func() {
		defer p.wg.Done()
		for {
			b, err := sess.ReceiveDatagram(context.Background())
			if err != nil {
				return
			}
			cmd := new(lcpb.GenericCommand)
			if proto.Unmarshal(b, cmd) == nil {
				p.dgs <- cmd
			}
		}
	}()
	t.Cleanup(func() {
		sess.CloseWithError(0, "")
		tr.Close()
		p.wg.Wait()
	})
	return p
}

func (p *wtPeer) send(cmd *lcpb.GenericCommand) {
	p.t.Helper()
	if _, err := protodelim.MarshalTo(p.str, cmd); err != nil {
		p.t.Fatalf("write: %v", err)
	}
}

// next returns the next stream frame other than the login notifications.
func (p *wtPeer) next() *lcpb.GenericCommand {
	p.t.Helper()
	for {
		select {
		case c := <-p.in:
			if c.GetCmd() == lcpb.CommandType_unread {
				continue
			}
			return c
		case <-p.done:
			p.t.Fatal("stream ended")
		case <-time.After(10 * time.Second):
			p.t.Fatal("timed out waiting for a frame")
		}
	}
}

func (p *wtPeer) request(cmd *lcpb.GenericCommand) *lcpb.GenericCommand {
	p.t.Helper()
	p.send(cmd)
	for {
		r := p.next()
		if r.I != nil && r.GetI() == cmd.GetI() {
			return r
		}
	}
}

func (p *wtPeer) closeCode() webtransport.SessionErrorCode {
	p.t.Helper()
	select {
	case <-p.sess.Context().Done():
	case <-time.After(10 * time.Second):
		p.t.Fatal("session not closed")
	}
	_, err := p.sess.AcceptStream(context.Background())
	var se *webtransport.SessionError
	if !errors.As(err, &se) {
		p.t.Fatalf("session ended with %v, want a session error", err)
	}
	return se.ErrorCode
}

const wtApp = "wt-e2e-app"

func wtOpen(peer string) *lcpb.GenericCommand {
	return &lcpb.GenericCommand{Cmd: lcpb.CommandType_session.Enum(), Op: lcpb.OpType_open.Enum(), I: proto.Int32(1),
		AppId: proto.String(wtApp), PeerId: proto.String(peer), SessionMessage: &lcpb.SessionCommand{Ua: proto.String("wt-test")}}
}

// TestWebTransportWithWebSocket: on a dev region (edge and core over QUIC),
// a WebTransport client and a WebSocket client (the Go SDK) chat both ways,
// with transient messages as datagrams; then bad input on WebTransport
// leaves the region serving both.
func TestWebTransportWithWebSocket(t *testing.T) {
	addr := freeAddr(t)
	d := startDevAt(t, t.TempDir(), addr, edge.Limits{DatagramsPerMinute: 30})
	defer d.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	info := getWTInfo(t, addr)
	if info.URL != "https://"+addr+"/wt" || info.URL != d.Edge.WTURL {
		t.Fatalf("url %q, want https://%s/wt", info.URL, addr)
	}
	if h := d.WTCert.Hash(); !bytes.Equal(info.Hashes[0].Value, h[:]) {
		t.Fatal("/v1/webtransport hash is not the certificate's")
	}

	bob, err := client.Dial(ctx, d.Edge.URL, client.Options{AppID: wtApp, ClientID: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	defer bob.Close()

	alice := dialWTPeer(t, info)
	if r := alice.request(wtOpen("alice")); r.GetOp() != lcpb.OpType_opened {
		t.Fatalf("login: %v", r)
	}
	r := alice.request(&lcpb.GenericCommand{Cmd: lcpb.CommandType_conv.Enum(), Op: lcpb.OpType_start.Enum(), I: proto.Int32(2),
		ConvMessage: &lcpb.ConvCommand{M: []string{"alice", "bob"}, Unique: proto.Bool(true)}})
	cid := r.GetConvMessage().GetCid()
	if r.GetOp() != lcpb.OpType_started || cid == "" {
		t.Fatalf("conv/start: %v", r)
	}

	// WebTransport → WebSocket.
	ack := alice.request(&lcpb.GenericCommand{Cmd: lcpb.CommandType_direct.Enum(), I: proto.Int32(3),
		DirectMessage: &lcpb.DirectCommand{Cid: proto.String(cid), Msg: proto.String(client.TextMessage("hi bob"))}})
	if ack.GetCmd() != lcpb.CommandType_ack || ack.GetAckMessage().GetUid() == "" {
		t.Fatalf("ack: %v", ack)
	}
	m := wtWaitMessage(t, ctx, bob, func(m client.Message) bool { return m.ConvID == cid })
	if m.From != "alice" || m.Text != client.TextMessage("hi bob") || m.ID != ack.GetAckMessage().GetUid() {
		t.Fatalf("bob got %+v", m)
	}

	// WebSocket → WebTransport.
	sent, err := bob.Send(ctx, cid, client.TextMessage("hi alice"), client.SendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for {
		p := alice.next()
		if p.GetCmd() == lcpb.CommandType_direct {
			if p.GetDirectMessage().GetId() != sent.ID || p.GetDirectMessage().GetFromPeerId() != "bob" || p.GetPeerId() != "alice" {
				t.Fatalf("alice got %v", p)
			}
			break
		}
	}

	// A transient message from WebSocket arrives as a datagram.
	if _, err := bob.Send(ctx, cid, "typing", client.SendOptions{Transient: true}); err != nil {
		t.Fatal(err)
	}
	select {
	case dg := <-alice.dgs:
		if dg.GetCmd() != lcpb.CommandType_direct || !dg.GetDirectMessage().GetTransient() || dg.GetDirectMessage().GetMsg() != "typing" {
			t.Fatalf("datagram %v", dg)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no datagram for the transient message")
	}
	// A transient message sent as a datagram reaches the WebSocket client.
	b, _ := proto.Marshal(&lcpb.GenericCommand{Cmd: lcpb.CommandType_direct.Enum(),
		DirectMessage: &lcpb.DirectCommand{Cid: proto.String(cid), Msg: proto.String("alice typing"), Transient: proto.Bool(true)}})
	// A datagram may be lost even on loopback: resend until bob sees one.
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	if err := alice.sess.SendDatagram(b); err != nil {
		t.Fatal(err)
	}
wait:
	for {
		select {
		case ev := <-bob.Events():
			if m, ok := ev.(client.Message); ok && m.Text == "alice typing" {
				if !m.Transient || m.From != "alice" {
					t.Fatalf("bob got %+v, want a transient from alice", m)
				}
				break wait
			}
		case <-tick.C:
			if err := alice.sess.SendDatagram(b); err != nil {
				t.Fatal(err)
			}
		case <-ctx.Done():
			t.Fatal("bob never got the datagram")
		}
	}
	met := d.Edge.Server.Metrics()
	if met.DatagramsIn.Load() < 1 || met.DatagramsOut.Load() < 1 {
		t.Fatalf("datagrams in %d, out %d", met.DatagramsIn.Load(), met.DatagramsOut.Load())
	}
	if n := met.ByTransport[edge.TransportWebTransport].SessionsOpen.Load(); n != 1 {
		t.Fatalf("webtransport sessions %d, want 1", n)
	}
	if n := met.ByTransport[edge.TransportWebSocket].SessionsOpen.Load(); n != 1 {
		t.Fatalf("websocket sessions %d, want 1", n)
	}

	// Bad input. Garbage on the stream: 4114, the session stays.
	if _, err := alice.str.Write([]byte{4, 0xff, 0xff, 0xff, 0xff}); err != nil {
		t.Fatal(err)
	}
	for {
		e := alice.next()
		if e.GetCmd() == lcpb.CommandType_ack && e.I == nil {
			continue // the acks of the transient datagrams above (sent without i)
		}
		if e.GetCmd() != lcpb.CommandType_error || e.GetErrorMessage().GetCode() != edge.ErrUnparseable {
			t.Fatalf("garbage: got %v, want error 4114", e)
		}
		break
	}
	// A flood of datagrams: cut to the rate, dropped and counted.
	dropped := met.DatagramsDropped.Load()
	for range 500 {
		_ = alice.sess.SendDatagram(b)
	}
	if e := alice.request(&lcpb.GenericCommand{Cmd: lcpb.CommandType_echo.Enum(), I: proto.Int32(9)}); e.GetCmd() != lcpb.CommandType_echo {
		t.Fatalf("echo after the flood: %v", e)
	}
	wtWaitFor(t, "datagrams dropped", func() bool { return met.DatagramsDropped.Load() > dropped })
	// An oversize length prefix: the session closes with 1009.
	if _, err := alice.str.Write([]byte{0xff, 0xff, 0xff, 0xff, 0x0f}); err != nil {
		t.Fatal(err)
	}
	if code := alice.closeCode(); code != webtransport.SessionErrorCode(websocket.StatusMessageTooBig) {
		t.Fatalf("oversize prefix: closed with %d, want 1009", code)
	}
	// A stream closed mid-frame: 1002.
	carol := dialWTPeer(t, info)
	if r := carol.request(wtOpen("carol")); r.GetOp() != lcpb.OpType_opened {
		t.Fatalf("login: %v", r)
	}
	carol.str.Write([]byte{50, 1, 2})
	carol.str.Close()
	if code := carol.closeCode(); code != webtransport.SessionErrorCode(websocket.StatusProtocolError) {
		t.Fatalf("cut frame: closed with %d, want 1002", code)
	}

	// The region still serves both transports.
	wtWaitFor(t, "webtransport sessions gone", func() bool {
		return met.ByTransport[edge.TransportWebTransport].SessionsOpen.Load() == 0
	})
	again := dialWTPeer(t, info)
	if r := again.request(wtOpen("alice")); r.GetOp() != lcpb.OpType_opened {
		t.Fatalf("login again: %v", r)
	}
	sent, err = bob.Send(ctx, cid, client.TextMessage("still here"), client.SendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for {
		if p := again.next(); p.GetCmd() == lcpb.CommandType_direct && p.GetDirectMessage().GetId() == sent.ID {
			break
		}
	}
}

func wtWaitMessage(t *testing.T, ctx context.Context, c *client.Client, match func(client.Message) bool) client.Message {
	t.Helper()
	for {
		select {
		case ev := <-c.Events():
			if m, ok := ev.(client.Message); ok && match(m) {
				return m
			}
		case <-ctx.Done():
			t.Fatal("timed out waiting for a message")
		}
	}
}

func wtWaitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
