package edge

import (
	"context"

	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/proto/lcpb"
)

// Drain takes the edge out of service gently (issue 9: an edge being
// drained sends goaway first):
//
//  1. at once, /healthz answers 503 and new WebSockets get 503, so load
//     balancers and SDKs stop sending clients here;
//  2. every session gets goaway (with its peerId, HIGH priority, after
//     what is already queued for it; a session that logs in during the
//     drain gets it after its session/opened). The SDKs reconnect elsewhere at once
//     (the Go SDK to its next server, the JS SDK after asking the router
//     again) and close this connection themselves; until they do, the
//     connection is served as before, so replies to requests in flight
//     still reach them;
//  3. when ctx ends, the connections still open are closed as Close
//     closes them (queue flushed, close code 1001).
//
// Drain returns after every connection goroutine has exited: nil if every
// client had left by then, ctx's error if some were closed at the
// deadline. Close after Drain returns at once.
func (s *Server) Drain(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.wg.Wait()
		return nil
	}
	s.closed = true
	conns := make([]*conn, 0, len(s.conns))
	for _, c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		for _, b := range c.goAwayFrames() {
			c.enqueue(outFrame{b: b, p: PriorityHigh})
		}
		s.metrics.Drained.Add(1)
	}
	left := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(left)
	}()
	select {
	case <-left:
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	rest := make([]*conn, 0, len(s.conns))
	for _, c := range s.conns {
		rest = append(rest, c)
	}
	s.mu.Unlock()
	s.metrics.DrainForced.Add(int64(len(rest)))
	for _, c := range rest {
		c.closeQueue() // the writer flushes the queue, then closes with 1001
	}
	<-left
	return ctx.Err()
}

// goAwayIfDraining tells a session that logs in while the edge drains to
// leave as well: its goaway is held until its session/opened is queued.
func (s *Server) goAwayIfDraining(ss *session) {
	s.mu.Lock()
	draining := s.closed
	s.mu.Unlock()
	if !draining {
		return
	}
	b, err := proto.Marshal(&lcpb.GenericCommand{
		Cmd:     lcpb.CommandType_goaway.Enum(),
		PeerId:  proto.String(ss.peerID),
		Service: proto.Int32(lcpb.ServiceIM),
	})
	if err == nil {
		ss.c.deliver(ss, outFrame{b: b, p: PriorityHigh}, false)
	}
}
