package edge

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/quic-go/webtransport-go"
	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/proto/lcpb"
	"github.com/relaymesh/relaymesh/proto/meshpb"
)

// runCore answers a COMMAND's first answer commands (at most) with an ack
// each, as a core answering a prefix of a run; answer 1 with done 0 is a
// core of an earlier release, which reads command alone.
func runCore(t *testing.T, answer int, done int32) func(*meshpb.ClientRequest) (*meshpb.ClientReply, error) {
	return func(req *meshpb.ClientRequest) (*meshpb.ClientReply, error) {
		if req.GetKind() != meshpb.ClientRequest_COMMAND {
			return &meshpb.ClientReply{}, nil
		}
		raws := append([][]byte{req.GetCommand()}, req.GetMoreCommands()...)
		rep := &meshpb.ClientReply{CommandsDone: done}
		for _, b := range raws[:min(answer, len(raws))] {
			cmd := new(lcpb.GenericCommand)
			if err := proto.Unmarshal(b, cmd); err != nil {
				t.Errorf("backend got an undecodable command: %v", err)
				continue
			}
			ack := &lcpb.GenericCommand{Cmd: lcpb.CommandType_ack.Enum(), I: cmd.I,
				AckMessage: &lcpb.AckCommand{Uid: proto.String(fmt.Sprintf("m%d", cmd.GetI()))}}
			b, _ := proto.Marshal(ack)
			rep.Commands = append(rep.Commands, b)
		}
		return rep, nil
	}
}

// loginRaw opens a session of peer on a raw client.
func loginRaw(t *testing.T, c *rawClient, peer string) {
	t.Helper()
	c.write(clientFrame(true, opBinary, encodeCmd(t, openCmd(1, peer))))
	if r := c.recvCmd(); r.GetCmd() != lcpb.CommandType_session || r.GetOp() != lcpb.OpType_opened {
		t.Fatalf("login: got %v/%v", r.GetCmd(), r.GetOp())
	}
}

// sendsAtOnce writes directs i = from..to (into cid) in one socket write,
// so the edge reads them together.
func sendsAtOnce(t *testing.T, c *rawClient, cid string, from, to int32, edit func(*lcpb.GenericCommand)) {
	t.Helper()
	var b []byte
	for i := from; i <= to; i++ {
		cmd := directCmd(i, fmt.Sprintf("m%d", i))
		cmd.DirectMessage.Cid = proto.String(cid)
		if edit != nil {
			edit(cmd)
		}
		b = append(b, clientFrame(true, opBinary, encodeCmd(t, cmd))...)
	}
	c.write(b)
}

// requestIs lists, per COMMAND request, the i of each command it carried.
func requestIs(t *testing.T, be *fakeBackend) [][]int32 {
	t.Helper()
	var reqs [][]int32
	for _, req := range be.requests(meshpb.ClientRequest_COMMAND) {
		var is []int32
		for _, raw := range append([][]byte{req.GetCommand()}, req.GetMoreCommands()...) {
			cmd := new(lcpb.GenericCommand)
			if err := proto.Unmarshal(raw, cmd); err != nil {
				t.Fatal(err)
			}
			is = append(is, cmd.GetI())
		}
		reqs = append(reqs, is)
	}
	return reqs
}

// TestRunAnsweredInPrefixes: whatever prefix of a run the backend answers,
// each send is answered once, in order, and the rest go again starting
// right after what was answered, never out of order: a core of an earlier
// release (the first alone, commands_done 0), a core answering two at a
// time, a core answering the whole run.
func TestRunAnsweredInPrefixes(t *testing.T) {
	for _, tc := range []struct {
		name   string
		answer int
		done   int32
	}{
		{"earlier release", 1, 0},
		{"two at a time", 2, 2},
		{"whole runs", 64, 64},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := newEnv(t, func(c *Config) { c.Limits.SendsPerMinute = -1 })
			env.be.setFn(runCore(t, tc.answer, tc.done))
			c := env.dialRaw(t, nil)
			loginRaw(t, c, "alice")
			const n = 40
			sendsAtOnce(t, c, "c1", 2, n+1, nil)
			for i := int32(2); i <= n+1; i++ {
				r := c.recvCmd()
				if r.GetCmd() != lcpb.CommandType_ack || r.GetI() != i || r.GetAckMessage().GetUid() != fmt.Sprintf("m%d", i) {
					t.Fatalf("reply %d: got %v i=%d uid %q, want the ack of %d", i, r.GetCmd(), r.GetI(), r.GetAckMessage().GetUid(), i)
				}
			}
			// Each request carries consecutive sends and starts right
			// after the last one answered.
			reqs := requestIs(t, env.be)
			next := int32(2)
			for _, is := range reqs {
				for k, i := range is {
					if i != next+int32(k) {
						t.Fatalf("a request carried %v, want consecutive sends from %d (requests %v)", is, next, reqs)
					}
				}
				next += int32(min(max(int(tc.done), 1), tc.answer, len(is)))
			}
			if next != n+2 {
				t.Fatalf("requests %v answered up to %d, want %d", reqs, next-1, n+1)
			}
			if env.srv.metrics.Runs.Load() == 0 {
				t.Fatalf("no run forwarded: requests %v", reqs)
			}
		})
	}
}

// TestRunChecksEach: the edge's own checks run on each send of a run in
// order; one refused is answered at once and never reaches the backend,
// the others still go, in order. Sends into another conversation, a
// transient one and another command split the run.
func TestRunChecksEach(t *testing.T) {
	env := newEnv(t, func(c *Config) { c.Limits.SendsPerMinute = -1 })
	env.be.setFn(runCore(t, 64, 64))
	c := env.dialRaw(t, nil)
	loginRaw(t, c, "alice")
	var b []byte
	add := func(i int32, cid, msg string, edit func(*lcpb.DirectCommand)) {
		cmd := directCmd(i, msg)
		cmd.DirectMessage.Cid = proto.String(cid)
		if edit != nil {
			edit(cmd.DirectMessage)
		}
		b = append(b, clientFrame(true, opBinary, encodeCmd(t, cmd))...)
	}
	add(2, "c1", "a", nil)
	add(3, "c1", "b", nil)
	add(4, "c1", strings.Repeat("x", 6000), nil) // over MaxMessageBytes
	add(5, "c1", "c", nil)
	add(6, "c2", "d", nil)
	add(7, "c2", "e", nil)
	add(8, "c2", "f", func(d *lcpb.DirectCommand) { d.Transient = proto.Bool(true) })
	add(9, "c2", "g", nil)
	b = append(b, clientFrame(true, opBinary, encodeCmd(t, echoCmd(10)))...)
	add(11, "c2", "h", nil)
	add(12, "c2", "i", nil)
	c.write(b)
	got := map[int32]*lcpb.GenericCommand{}
	var order []int32
	for len(got) < 11 {
		r := c.recvCmd()
		got[r.GetI()] = r
		order = append(order, r.GetI())
	}
	wantError(t, got[4], lcpb.ErrFrameTooLong, proto.Int32(4))
	if got[10].GetCmd() != lcpb.CommandType_echo {
		t.Fatalf("echo: got %v", got[10].GetCmd())
	}
	for _, i := range []int32{2, 3, 5, 6, 7, 8, 9, 11, 12} {
		if got[i].GetCmd() != lcpb.CommandType_ack {
			t.Fatalf("send %d: got %v", i, got[i].GetCmd())
		}
	}
	// The oversize send was refused before the run went; every other
	// reply came in the order of the commands.
	if want := []int32{4, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12}; !slices.Equal(order, want) {
		t.Fatalf("replies in order %v, want %v", order, want)
	}
	reqs := requestIs(t, env.be)
	want := [][]int32{{2, 3, 5}, {6, 7}, {8}, {9}, {11, 12}}
	if fmt.Sprint(reqs) != fmt.Sprint(want) {
		t.Fatalf("requests %v, want %v", reqs, want)
	}
}

// TestRunBackendFails: a run whose request fails is answered 4200 for
// every send in it, and the connection goes on.
func TestRunBackendFails(t *testing.T) {
	env := newEnv(t, func(c *Config) { c.Limits.SendsPerMinute = -1 })
	env.be.setFn(func(req *meshpb.ClientRequest) (*meshpb.ClientReply, error) {
		if req.GetKind() == meshpb.ClientRequest_COMMAND {
			return nil, errors.New("core gone")
		}
		return &meshpb.ClientReply{}, nil
	})
	c := env.dialRaw(t, nil)
	loginRaw(t, c, "alice")
	sendsAtOnce(t, c, "c1", 2, 9, nil)
	for i := int32(2); i <= 9; i++ {
		wantError(t, c.recvCmd(), lcpb.ErrInternal, proto.Int32(i))
	}
	c.write(clientFrame(true, opBinary, encodeCmd(t, echoCmd(20))))
	c.wantEcho(20)
}

// heldAcks is an edge whose backend holds every ack until release is
// closed (counting them in acksIn), answers logs with an empty page and
// anything else as runCore does.
func heldAcks(t *testing.T) (env *testEnv, release chan struct{}, acksIn *atomic.Int64) {
	env = newEnv(t, func(c *Config) { c.Limits.SendsPerMinute = -1 })
	release, acksIn = make(chan struct{}), new(atomic.Int64)
	core := runCore(t, 64, 64)
	env.be.setFn(func(req *meshpb.ClientRequest) (*meshpb.ClientReply, error) {
		cmd := new(lcpb.GenericCommand)
		_ = proto.Unmarshal(req.GetCommand(), cmd)
		switch cmd.GetCmd() {
		case lcpb.CommandType_ack:
			acksIn.Add(1)
			<-release
			return &meshpb.ClientReply{}, nil
		case lcpb.CommandType_logs:
			return &meshpb.ClientReply{Commands: [][]byte{encodeCmd(t, &lcpb.GenericCommand{
				Cmd: lcpb.CommandType_logs.Enum(), I: cmd.I, LogsMessage: &lcpb.LogsCommand{}})}}, nil
		}
		return core(req)
	})
	return env, release, acksIn
}

// TestAcksOffTheLine: a client's acks (no i, no reply) do not hold the
// connection's next send while the core applies them, at most maxAsync
// wait at a time (then the reader waits), and any other command waits
// until the acks before it are done.
func TestAcksOffTheLine(t *testing.T) {
	env, release, acksIn := heldAcks(t)
	c := env.dialRaw(t, nil)
	loginRaw(t, c, "alice")
	ack := func() []byte {
		return clientFrame(true, opBinary, encodeCmd(t, &lcpb.GenericCommand{Cmd: lcpb.CommandType_ack.Enum(),
			AckMessage: &lcpb.AckCommand{Cid: proto.String("c1"), Mid: proto.String("m")}}))
	}
	var b []byte
	for range 3 {
		b = append(b, ack()...)
	}
	c.write(append(b, clientFrame(true, opBinary, encodeCmd(t, directCmd(5, "hi")))...))
	if r := c.recvCmd(); r.GetCmd() != lcpb.CommandType_ack || r.GetI() != 5 {
		t.Fatalf("the send behind three acks: got %v i=%d, want its ack", r.GetCmd(), r.GetI())
	}
	waitFor(t, "the three acks at the core", func() bool { return acksIn.Load() == 3 })
	// A query waits for them.
	c.write(clientFrame(true, opBinary, encodeCmd(t, &lcpb.GenericCommand{Cmd: lcpb.CommandType_logs.Enum(), I: proto.Int32(6),
		LogsMessage: &lcpb.LogsCommand{Cid: proto.String("c1")}})))
	time.Sleep(50 * time.Millisecond)
	if n := len(env.be.requests(meshpb.ClientRequest_COMMAND)); n != 4 { // 3 acks, 1 send
		t.Fatalf("%d requests before the acks were done, want 4 (the query waits)", n)
	}
	close(release)
	if r := c.recvCmd(); r.GetCmd() != lcpb.CommandType_logs || r.GetI() != 6 {
		t.Fatalf("the query: got %v i=%d", r.GetCmd(), r.GetI())
	}
	if got := env.srv.metrics.AsyncCommands.Load(); got != 3 {
		t.Fatalf("async commands %d, want 3", got)
	}
}

// TestAcksOffTheLineBounded: at most maxAsync acks wait at once; the
// reader waits for a slot, so a send behind more acks than that waits too.
func TestAcksOffTheLineBounded(t *testing.T) {
	env, release, acksIn := heldAcks(t)
	c := env.dialRaw(t, nil)
	loginRaw(t, c, "alice")
	var b []byte
	for range maxAsync + 5 {
		b = append(b, clientFrame(true, opBinary, encodeCmd(t, &lcpb.GenericCommand{Cmd: lcpb.CommandType_ack.Enum(),
			AckMessage: &lcpb.AckCommand{Cid: proto.String("c1"), Mid: proto.String("m")}}))...)
	}
	c.write(append(b, clientFrame(true, opBinary, encodeCmd(t, directCmd(7, "hi")))...))
	waitFor(t, "maxAsync acks at the core", func() bool { return acksIn.Load() == maxAsync })
	time.Sleep(50 * time.Millisecond)
	if n := acksIn.Load(); n != maxAsync {
		t.Fatalf("%d acks in flight, want at most %d", n, maxAsync)
	}
	close(release)
	if r := c.recvCmd(); r.GetCmd() != lcpb.CommandType_ack || r.GetI() != 7 {
		t.Fatalf("the send: got %v i=%d", r.GetCmd(), r.GetI())
	}
	waitFor(t, "every ack at the core", func() bool { return acksIn.Load() == maxAsync+5 })
}

// TestRunOverWebTransport: sends a browser writes on its WebTransport
// stream at once go as runs too (what the stream's read buffer holds
// whole), answered in order; a frame cut across two writes waits for its
// end, and a prefix over the limit still closes the session.
func TestRunOverWebTransport(t *testing.T) {
	e := newWTEnv(t, func(c *Config) { c.Limits.SendsPerMinute = -1 })
	e.be.setFn(runCore(t, 64, 64))
	c := e.dialWT(t, wtDialOpts{})
	c.login(1, "alice")
	var b []byte
	for i := int32(2); i <= 21; i++ {
		raw, err := proto.Marshal(directCmd(i, fmt.Sprintf("m%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		b = appendDelimited(b, raw)
	}
	cut := len(b) - 3 // the last frame's end comes in a second write
	c.sendRaw(b[:cut])
	time.Sleep(20 * time.Millisecond)
	c.sendRaw(b[cut:])
	for i := int32(2); i <= 21; i++ {
		if r := c.recv(); r.GetCmd() != lcpb.CommandType_ack || r.GetI() != i {
			t.Fatalf("reply %d: got %v i=%d", i, r.GetCmd(), r.GetI())
		}
	}
	if e.srv.metrics.Runs.Load() == 0 {
		t.Fatalf("no run over WebTransport: requests %v", requestIs(t, e.be))
	}
	next := int32(2)
	for _, is := range requestIs(t, e.be) {
		for k, i := range is {
			if i != next+int32(k) {
				t.Fatalf("requests %v: not in the order sent", requestIs(t, e.be))
			}
		}
		next += int32(len(is))
	}
	// A frame, then a prefix over MaxFrameBytes in the same write: the
	// frame is answered, then the session closes with 1009.
	raw, _ := proto.Marshal(directCmd(30, "last"))
	c.sendRaw(append(appendDelimited(nil, raw), 0x81, 0x80, 0x04))
	if r := c.recv(); r.GetCmd() != lcpb.CommandType_ack || r.GetI() != 30 {
		t.Fatalf("the frame before the bad prefix: got %v i=%d", r.GetCmd(), r.GetI())
	}
	if code, _ := c.closeCode(); code != webtransport.SessionErrorCode(websocket.StatusMessageTooBig) {
		t.Fatalf("closed with %d, want 1009", code)
	}
}
