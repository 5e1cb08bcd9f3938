package e2e

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/client"
	"github.com/relaymesh/relaymesh/cluster"
	"github.com/relaymesh/relaymesh/edge"
	"github.com/relaymesh/relaymesh/proto/lcpb"
)

// tcpWS is a WebSocket written by hand over TCP, so that many frames go in
// one socket write and the edge reads them together (a run, edge/batch.go).
type tcpWS struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

func dialTCPWS(t *testing.T, addr string) *tcpWS {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	req := "GET / HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" +
		"Sec-WebSocket-Protocol: " + lcpb.SubprotocolBinary3 + "\r\n\r\n"
	if _, err := nc.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(nc)
	_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	return &tcpWS{t: t, nc: nc, br: br}
}

// frames encodes cmds as masked binary frames, back to back.
func (w *tcpWS) frames(cmds ...*lcpb.GenericCommand) []byte {
	var out []byte
	for _, c := range cmds {
		p, err := proto.Marshal(c)
		if err != nil {
			w.t.Fatal(err)
		}
		out = append(out, 0x82)
		switch n := len(p); {
		case n < 126:
			out = append(out, 0x80|byte(n))
		case n <= 0xffff:
			out = binary.BigEndian.AppendUint16(append(out, 0x80|126), uint16(n))
		default:
			out = binary.BigEndian.AppendUint64(append(out, 0x80|127), uint64(n))
		}
		var key [4]byte
		_, _ = rand.Read(key[:])
		out = append(out, key[:]...)
		for i, b := range p {
			out = append(out, b^key[i%4])
		}
	}
	return out
}

// write sends cmds in one socket write.
func (w *tcpWS) write(cmds ...*lcpb.GenericCommand) {
	w.t.Helper()
	if _, err := w.nc.Write(w.frames(cmds...)); err != nil {
		w.t.Fatal(err)
	}
}

// next reads the next command, skipping control frames and login
// notifications.
func (w *tcpWS) next() *lcpb.GenericCommand {
	w.t.Helper()
	for {
		if c := w.nextAny(); c.GetCmd() != lcpb.CommandType_unread {
			return c
		}
	}
}

// nextAny reads the next command, skipping control frames.
func (w *tcpWS) nextAny() *lcpb.GenericCommand {
	w.t.Helper()
	for {
		_ = w.nc.SetReadDeadline(time.Now().Add(20 * time.Second))
		var h [2]byte
		if _, err := io.ReadFull(w.br, h[:]); err != nil {
			w.t.Fatalf("read: %v", err)
		}
		n := uint64(h[1] & 0x7f)
		switch n {
		case 126:
			var e [2]byte
			if _, err := io.ReadFull(w.br, e[:]); err != nil {
				w.t.Fatal(err)
			}
			n = uint64(binary.BigEndian.Uint16(e[:]))
		case 127:
			var e [8]byte
			if _, err := io.ReadFull(w.br, e[:]); err != nil {
				w.t.Fatal(err)
			}
			n = binary.BigEndian.Uint64(e[:])
		}
		p := make([]byte, n)
		if _, err := io.ReadFull(w.br, p); err != nil {
			w.t.Fatal(err)
		}
		if h[0]&0x0f != 0x2 {
			continue // ping, pong: not a command
		}
		c := new(lcpb.GenericCommand)
		if err := proto.Unmarshal(p, c); err != nil {
			w.t.Fatalf("server sent an undecodable frame: %v", err)
		}
		return c
	}
}

// openCmd is a raw client's session/open (i 1) for peer in app.
func openCmd(app, peer string) *lcpb.GenericCommand {
	return &lcpb.GenericCommand{Cmd: lcpb.CommandType_session.Enum(), Op: lcpb.OpType_open.Enum(), I: proto.Int32(1),
		AppId: proto.String(app), PeerId: proto.String(peer), SessionMessage: &lcpb.SessionCommand{Ua: proto.String("raw")}}
}

func (w *tcpWS) login(app, peer string) {
	w.t.Helper()
	w.write(openCmd(app, peer))
	if c := w.next(); c.GetCmd() != lcpb.CommandType_session || c.GetOp() != lcpb.OpType_opened {
		w.t.Fatalf("login %s: got %v/%v %v", peer, c.GetCmd(), c.GetOp(), c.GetErrorMessage())
	}
}

func sendCmd(i int32, cid, msg, dt string) *lcpb.GenericCommand {
	d := &lcpb.DirectCommand{Cid: proto.String(cid), Msg: proto.String(msg)}
	if dt != "" {
		d.Dt = proto.String(dt)
	}
	return &lcpb.GenericCommand{Cmd: lcpb.CommandType_direct.Enum(), I: proto.Int32(i), DirectMessage: d}
}

// replies reads n replies, by i.
func (w *tcpWS) replies(n int) map[int32]*lcpb.GenericCommand {
	w.t.Helper()
	got := map[int32]*lcpb.GenericCommand{}
	for len(got) < n {
		c := w.next()
		if c.GetCmd() == lcpb.CommandType_direct {
			continue // a push of its own conversations' messages
		}
		if _, dup := got[c.GetI()]; dup {
			w.t.Fatalf("two replies with i=%d", c.GetI())
		}
		got[c.GetI()] = c
	}
	return got
}

// TestPipelinedSends: a session's sends that reach the edge together go to
// the core as runs (edge/batch.go, core/batch.go), and each is stored,
// acked, pushed and kept in history exactly as if sent one at a time, in
// the order sent, over the raw protocol: 300 sends in one socket write;
// then one write mixing a repeated dt, a transient send, another
// conversation, a conversation the sender is not in, a malformed frame and
// an echo; then more sends than the session's quota in one write.
func TestPipelinedSends(t *testing.T) { withShards(t, testPipelinedSends) }

// withShards runs f in a subtest with 1 shard, then with 3.
func withShards(t *testing.T, f func(t *testing.T, shards int)) {
	for _, shards := range []int{1, 3} {
		t.Run(fmt.Sprintf("shards=%d", shards), func(t *testing.T) { f(t, shards) })
	}
}

// startUnlimited starts a dev region of shards shards, without
// WebTransport, with the sessions' send, history and op limits off.
func startUnlimited(t *testing.T, shards int) (*cluster.Dev, string) {
	t.Helper()
	return startDevWith(t, cluster.DevConfig{NoWebTransport: true, Shards: shards,
		Limits: edge.Limits{SendsPerMinute: -1, LogsPerMinute: -1, OpsPerMinute: -1}})
}

func testPipelinedSends(t *testing.T, shards int) {
	d, addr := startUnlimited(t, shards)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const app = "pipeline"
	dial := func(id string) *client.Client {
		c, err := client.Dial(ctx, d.Edge.URL, client.Options{AppID: app, ClientID: id})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	aliceSDK, bob, carol := dial("alice"), dial("bob"), dial("carol")
	c1, err := aliceSDK.CreateConversation(ctx, []string{"bob"}, "c1", nil, false)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := aliceSDK.CreateConversation(ctx, []string{"carol"}, "c2", nil, false)
	if err != nil {
		t.Fatal(err)
	}
	notMine, err := bob.CreateConversation(ctx, []string{"carol"}, "not alice's", nil, false)
	if err != nil {
		t.Fatal(err)
	}
	alice := dialTCPWS(t, addr)
	alice.login(app, "alice")
	runsBefore := edgeMetric(t, addr, "relaymesh_edge_send_run_sends_total")
	coreBefore := edgeMetric(t, addr, "relaymesh_core_run_sends_total")

	// 300 sends in one write.
	const n = 300
	var cmds []*lcpb.GenericCommand
	for i := range int32(n) {
		cmds = append(cmds, sendCmd(10+i, c1, fmt.Sprintf("m%03d", i), fmt.Sprintf("dt-%d", i)))
	}
	alice.write(cmds...)
	got := alice.replies(n)
	ids := map[string]bool{}
	var lastT int64
	for i := range int32(n) {
		r := got[10+i]
		if r.GetCmd() != lcpb.CommandType_ack || r.GetAckMessage().GetUid() == "" {
			t.Fatalf("send %d: got %v %v, want an ack", i, r.GetCmd(), r.GetErrorMessage())
		}
		if ids[r.GetAckMessage().GetUid()] {
			t.Fatalf("send %d: id %s acked twice", i, r.GetAckMessage().GetUid())
		}
		ids[r.GetAckMessage().GetUid()] = true
		if ts := r.GetAckMessage().GetT(); ts <= lastT {
			t.Fatalf("send %d stored at %d, not after the one before (%d): out of order", i, ts, lastT)
		} else {
			lastT = ts
		}
	}
	if runs := edgeMetric(t, addr, "relaymesh_edge_send_run_sends_total") - runsBefore; runs < 2 {
		t.Fatalf("the edge forwarded %v sends in runs, want the burst's sends in runs", runs)
	}
	if runs := edgeMetric(t, addr, "relaymesh_core_run_sends_total") - coreBefore; runs < 2 {
		t.Fatalf("the core queued %v sends of runs, want the burst's sends queued as runs", runs)
	}
	wantPushes := func(who *client.Client, cid string, want []string) {
		t.Helper()
		for k := 0; k < len(want); {
			select {
			case ev := <-who.Events():
				m, ok := ev.(client.Message)
				if !ok || m.ConvID != cid {
					continue
				}
				if m.Text != want[k] {
					t.Fatalf("%s got %q, want %q (in order, once)", who.ID(), m.Text, want[k])
				}
				k++
			case <-ctx.Done():
				t.Fatalf("%s: got %d of %d pushes", who.ID(), k, len(want))
			}
		}
	}
	var texts []string
	for i := range n {
		texts = append(texts, fmt.Sprintf("m%03d", i))
	}
	wantPushes(bob, c1, texts)
	var hist []string
	for q := (client.HistoryQuery{Limit: 100, Direction: client.New, StartTS: 1}); ; {
		page, err := bob.History(ctx, c1, q)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range page {
			hist = append(hist, m.Text)
		}
		if len(page) < 100 {
			break
		}
		last := page[len(page)-1]
		q.StartTS, q.StartMID, q.StartIncluded = last.Timestamp, last.ID, false
	}
	if strings.Join(hist, ",") != strings.Join(texts, ",") {
		t.Fatalf("history has %d messages %v…, want the %d sent in order", len(hist), hist[:min(5, len(hist))], n)
	}

	// One write of everything a run must split on or answer alone.
	mixed := []*lcpb.GenericCommand{
		sendCmd(1000, c1, "a", "same-dt"),
		sendCmd(1001, c1, "a again", "same-dt"), // the same dt: the first's id, stored once
		sendCmd(1002, c1, "b", ""),
		sendCmd(1003, c1, "t", ""),
		sendCmd(1004, c2, "to carol", ""),
		sendCmd(1005, notMine, "not a member", ""),
		sendCmd(1006, "no-such-conversation", "nowhere", ""),
		sendCmd(1007, c1, "c", ""),
		{Cmd: lcpb.CommandType_echo.Enum(), I: proto.Int32(1008)},
		sendCmd(1009, c1, "d", ""),
	}
	mixed[3].DirectMessage.Transient = proto.Bool(true)
	b := alice.frames(mixed...)
	b = append(b, 0x82, 0x83, 1, 2, 3, 4, 0x0f^1, 0xff^2, 0xff^3) // a malformed command: an i-less error
	b = append(b, alice.frames(sendCmd(1010, c1, "e", ""))...)
	if _, err := alice.nc.Write(b); err != nil {
		t.Fatal(err)
	}
	got = alice.replies(len(mixed) + 2)
	for _, i := range []int32{1000, 1001, 1002, 1003, 1004, 1007, 1009, 1010} {
		if got[i].GetCmd() != lcpb.CommandType_ack {
			t.Fatalf("send %d: got %v %v, want an ack", i, got[i].GetCmd(), got[i].GetErrorMessage())
		}
	}
	if a, b := got[1000].GetAckMessage().GetUid(), got[1001].GetAckMessage().GetUid(); a != b {
		t.Fatalf("the same dt twice in a run: ids %s and %s, want the first's", a, b)
	}
	for _, i := range []int32{1005, 1006} {
		if got[i].GetCmd() != lcpb.CommandType_error || got[i].GetErrorMessage().GetCode() != lcpb.ErrInvalidMessagingTarget {
			t.Fatalf("send %d: got %v %v, want error %d", i, got[i].GetCmd(), got[i].GetErrorMessage(), lcpb.ErrInvalidMessagingTarget)
		}
	}
	if got[1008].GetCmd() != lcpb.CommandType_echo {
		t.Fatalf("echo: got %v", got[1008].GetCmd())
	}
	if e := got[0]; e.GetCmd() != lcpb.CommandType_error || e.I != nil {
		t.Fatalf("malformed frame: got %v (i=%v), want an i-less error", e.GetCmd(), e.I)
	}
	order := []int32{1000, 1002, 1007, 1009, 1010}
	for k := 1; k < len(order); k++ {
		if got[order[k]].GetAckMessage().GetT() <= got[order[k-1]].GetAckMessage().GetT() {
			t.Fatalf("send %d stored before %d", order[k], order[k-1])
		}
	}
	wantPushes(bob, c1, []string{"a", "b", "t", "c", "d", "e"})
	wantPushes(carol, c2, []string{"to carol"})

	if shards > 1 {
		return
	}
	// Over the quota in one write: what passes is acked in order, the rest
	// refused with 4116, each once. A fresh region with the default limits.
	d2, addr2 := startDevWith(t, cluster.DevConfig{NoWebTransport: true})
	owner, err := client.Dial(ctx, d2.Edge.URL, client.Options{AppID: app, ClientID: "owner"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { owner.Close() })
	c3, err := owner.CreateConversation(ctx, []string{"alice"}, "c3", nil, false)
	if err != nil {
		t.Fatal(err)
	}
	limited := dialTCPWS(t, addr2)
	limited.login(app, "alice")
	cmds = cmds[:0]
	const over = 90
	for i := range int32(over) {
		cmds = append(cmds, sendCmd(i+2, c3, fmt.Sprintf("q%d", i), ""))
	}
	limited.write(cmds...)
	got = limited.replies(over)
	acked, refused := 0, 0
	lastT = 0
	for i := range int32(over) {
		r := got[i+2]
		switch {
		case r.GetCmd() == lcpb.CommandType_ack:
			acked++
			if r.GetAckMessage().GetT() <= lastT {
				t.Fatalf("send %d stored out of order", i)
			}
			lastT = r.GetAckMessage().GetT()
		case r.GetCmd() == lcpb.CommandType_error && r.GetErrorMessage().GetCode() == lcpb.ErrMessageSentQuotaExceeded:
			refused++
		default:
			t.Fatalf("send %d: got %v %v", i, r.GetCmd(), r.GetErrorMessage())
		}
	}
	if acked < 60 || refused == 0 {
		t.Fatalf("over the quota: %d acked, %d refused; want the 60 of the burst acked and the rest refused", acked, refused)
	}
}

// TestTwoRegionsRun: a run of sends into a conversation homed in the other
// region crosses as one request and is stored in the order sent: alice's
// burst on region 1's edge into bob's conversation of region 2, where dave
// reads it.
func TestTwoRegionsRun(t *testing.T) {
	w := startTwoRegions(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const app = "regions-run"
	bob := dial(t, ctx, w.edges[1].URL, app, "bob")
	dave := dial(t, ctx, w.edges[1].URL, app, "dave")
	cid, err := bob.CreateConversation(ctx, []string{"alice", "dave"}, "r2", nil, false)
	if err != nil {
		t.Fatal(err)
	}
	edge1 := strings.TrimSuffix(strings.TrimPrefix(w.edges[0].URL, "ws://"), "/")
	alice := dialTCPWS(t, edge1)
	alice.login(app, "alice")
	const n = 120
	var cmds []*lcpb.GenericCommand
	for i := range int32(n) {
		cmds = append(cmds, sendCmd(10+i, cid, fmt.Sprintf("x%03d", i), ""))
	}
	alice.write(cmds...)
	got := alice.replies(n)
	var lastT int64
	for i := range int32(n) {
		r := got[10+i]
		if r.GetCmd() != lcpb.CommandType_ack || r.GetAckMessage().GetT() <= lastT {
			t.Fatalf("send %d: got %v %v at %d (the one before at %d): want an ack, in order", i, r.GetCmd(), r.GetErrorMessage(), r.GetAckMessage().GetT(), lastT)
		}
		lastT = r.GetAckMessage().GetT()
	}
	for k := 0; k < n; {
		m := nextEvent(t, dave, func(m client.Message) bool { return m.ConvID == cid })
		if want := fmt.Sprintf("x%03d", k); m.Text != want {
			t.Fatalf("dave got %q, want %q (in order, once)", m.Text, want)
		}
		k++
	}
	if runs := edgeMetric(t, edge1, "relaymesh_edge_send_run_sends_total"); runs < 2 {
		t.Fatalf("region 1's edge sent %v sends in runs, want the burst's", runs)
	}
	var buf strings.Builder
	if err := w.cores[1].WriteMetrics(&buf); err != nil {
		t.Fatal(err)
	}
	var queued float64
	for _, line := range strings.Split(buf.String(), "\n") {
		if v, ok := strings.CutPrefix(line, "relaymesh_core_run_sends_total"); ok {
			f, _ := strconv.ParseFloat(strings.TrimSpace(v[strings.LastIndex(v, " "):]), 64)
			queued += f
		}
	}
	if queued < 2 {
		t.Fatalf("region 2's core queued %v sends of runs, want the burst's", queued)
	}
}
