package corelink

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/mesh"
	"github.com/relaymesh/relaymesh/proto/lcpb"
	"github.com/relaymesh/relaymesh/proto/meshpb"
)

// Delivery streams: the link keeps one stream (meshpb.MethodDeliveries)
// open to every core of its region, reconnecting with backoff. On each it
// sends EdgeHello, then the edge's presence (presence.go, from a writer
// goroutine of the stream's own), and reads Delivery frames: a LinkLeader
// moves the link to the leader it names (corelink.go); a replayed push
// loses the targets that already had its message (replay.go); the rest go
// to the edge server (Start's deliver).

// streamOpenTimeout bounds one attempt to open a delivery stream (mesh
// dials give up sooner on a dead address).
const streamOpenTimeout = 5 * time.Second

// Start opens the delivery streams to every core; deliver is called, from
// one goroutine per core, for each delivery that arrives. Close stops them.
// Call it once.
func (l *Link) Start(deliver func(*meshpb.Delivery)) {
	ctx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	for _, addr := range l.cores {
		l.streams.Go(func() { l.deliveryLoop(ctx, addr, deliver) })
	}
}

// deliveryLoop keeps a delivery stream open to one core, reconnecting with
// backoff, and hands every Delivery to deliver.
func (l *Link) deliveryLoop(ctx context.Context, addr string, deliver func(*meshpb.Delivery)) {
	hello, _ := proto.Marshal(&meshpb.EdgeHello{EdgeId: l.edgeID})
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		err := l.streamOnce(ctx, addr, hello, deliver)
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, mesh.ErrForbidden) {
			// The core refuses this edge's certificate a delivery
			// stream (not of role edge): no delivery would ever
			// arrive, so say so loudly and in NotReady.
			if l.setRefused(addr, err) {
				l.log.Error("the core refuses this edge's delivery stream: no delivery can reach this edge's clients; its mesh certificate must be of role edge (relaymesh pki issue --role edge)",
					"core", addr, "err", err)
			}
		} else {
			l.setRefused(addr, nil)
			l.log.Debug("delivery stream ended", "core", addr, "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 2*time.Second)
	}
}

// streamOnce runs one delivery stream to core addr: hello, then presence
// frames out (writePresence, on its own goroutine) and deliveries in, until
// the stream fails or ctx ends.
func (l *Link) streamOnce(ctx context.Context, addr string, hello []byte, deliver func(*meshpb.Delivery)) error {
	octx, cancel := context.WithTimeout(ctx, streamOpenTimeout)
	s, err := l.node.OpenStream(octx, addr, meshpb.MethodDeliveries)
	cancel()
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { s.Close() })
	defer stop()
	defer s.Close()
	s.SetSendTimeout(time.Duration(l.sendTimeout.Load()))
	if err := s.Send(hello); err != nil {
		return err
	}
	q := l.attachPresence(addr)
	done := make(chan struct{})
	var writer sync.WaitGroup
	writer.Go(func() { l.writePresence(s, q, done) })
	defer func() {
		l.detachPresence(addr, q)
		close(done)
		writer.Wait()
	}()
	for {
		b, err := s.Recv()
		if err != nil {
			return err
		}
		l.setRefused(addr, nil)
		d := new(meshpb.Delivery)
		if err := proto.Unmarshal(b, d); err != nil {
			return fmt.Errorf("corelink: bad delivery: %w", err)
		}
		if ll := d.GetLeader(); ll != nil {
			l.follow(ll.GetAddr(), ll.GetTerm(), true)
			continue
		}
		if l.dropAt > 0 && l.dropHook(d) {
			continue // test hook: lose this delivery on purpose
		}
		if !l.replays.filter(d) { // replay.go
			continue
		}
		l.ended(d)
		deliver(d)
	}
}

// dropHook counts direct-message deliveries and reports whether this one is
// the one Config.DropDelivery asks to lose.
func (l *Link) dropHook(d *meshpb.Delivery) bool {
	cmd := new(lcpb.GenericCommand)
	if proto.Unmarshal(d.Command, cmd) != nil || cmd.GetCmd() != lcpb.CommandType_direct {
		return false
	}
	return l.deliveries.Add(1) == l.dropAt
}

// setRefused records that core addr refused this edge's delivery stream
// (why non-nil) or no longer does (nil); it reports whether that is news.
func (l *Link) setRefused(addr string, why error) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, had := l.refused[addr]
	if why == nil {
		delete(l.refused, addr)
		return had
	}
	l.refused[addr] = why.Error()
	return !had
}

// refusedStreams lists the cores refusing this edge's delivery stream,
// for NotReady.
func (l *Link) refusedStreams() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, addr := range l.cores {
		if why, ok := l.refused[addr]; ok {
			out = append(out, fmt.Sprintf("core link: core %s refuses this edge's delivery stream (%s)", addr, why))
		}
	}
	return out
}
