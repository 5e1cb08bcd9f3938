package loadtest

import (
	"context"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/relaymesh/relaymesh/client"
	"github.com/relaymesh/relaymesh/netem"
)

// conv is a conversation the worker created: its members in the order
// the ledger uses as positions.
type conv struct {
	cid     string
	members []*session
	pos     map[*session]int // immutable after creation
}

func newConv(cid string, members []*session) *conv {
	c := &conv{cid: cid, members: members, pos: make(map[*session]int, len(members))}
	for i, m := range members {
		c.pos[m] = i
	}
	return c
}

// others returns every position but p.
func (c *conv) others(p int) []int {
	out := make([]int, 0, len(c.members)-1)
	for i := range c.members {
		if i != p {
			out = append(out, i)
		}
	}
	return out
}

// session is one logged-in client and the goroutine that drains its
// events into the ledger.
type session struct {
	id      string
	target  string
	servers []string // the other targets (client.Options.Servers)
	region  string   // cross-region: the topology region of target
	router  string   // Config.ViaRouter: the region's router (client.Options.Router)
	w       *worker
	cl      *client.Client // set by login, then immutable
	cf      *cfConn        // Config.Peer centrifugo: instead of cl

	// chatroom scenario, set before login: the room's cid and this
	// session's index in its worker (its bit in the chat ledger)
	chatRoom string
	chatIdx  int
	slow     bool // a slow reader (Config.SlowReaders)
	// pc is the session's lossy QUIC socket (Config.Loss), closed after
	// the client.
	pc *lossyConn

	done chan struct{} // closed when the event loop exited

	mu       sync.Mutex
	convs    map[string]*conv // guarded by mu
	unread   *client.Unread   // guarded by mu; the last unread push since resetUnread
	unreadCh chan struct{}    // guarded by mu; closed when unread is set

	closed       atomic.Bool // the server ended the session (Closed event)
	disconnected atomic.Bool // the connection was lost at least once (Disconnected event)
	down         atomic.Bool // lost and not reconnected yet
}

func (s *session) addConv(c *conv) {
	s.mu.Lock()
	if s.convs == nil {
		s.convs = make(map[string]*conv)
	}
	s.convs[c.cid] = c
	s.mu.Unlock()
}

func (s *session) conv(cid string) *conv {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.convs[cid]
}

// resetUnread forgets the last unread push; waitUnread then waits for the
// next one.
func (s *session) resetUnread() {
	s.mu.Lock()
	s.unread = nil
	s.unreadCh = make(chan struct{})
	s.mu.Unlock()
}

func (s *session) waitUnread(ctx context.Context) (*client.Unread, error) {
	s.mu.Lock()
	ch := s.unreadCh
	s.mu.Unlock()
	if ch == nil {
		return nil, context.Canceled
	}
	select {
	case <-ch:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.unread, nil
}

// login dials the session and starts its event loop.
func (s *session) login(ctx context.Context, opts client.Options) error {
	if s.w.cfg.Peer == PeerCentrifugo {
		return s.cfLogin(ctx)
	}
	grp := groupOf(s.target)
	if opts.Transport == TransportWebTransport && (s.w.cfg.Loss > 0 || grp == dropGroup) && s.pc == nil {
		pc, err := lossyPacketConn(s.w.cfg.Loss)
		if err != nil {
			return err
		}
		if grp == dropGroup {
			// The reconnect scenario's network switch (netdial.go).
			pc.d, pc.group = s.w.dialer, grp
			s.w.dialer.trackWT(s)
		}
		s.pc = pc
	}
	if s.pc != nil {
		opts.PacketConn = s.pc
	}
	cl, err := client.Dial(ctx, s.target, opts)
	if err != nil {
		s.closePC()
		return err
	}
	s.cl = cl
	s.done = make(chan struct{})
	go s.loop()
	return nil
}

func (s *session) loop() {
	defer close(s.done)
	for ev := range s.cl.Events() {
		switch e := ev.(type) {
		case client.Message:
			if s.chatRoom != "" {
				s.onChatMessage(e)
			} else {
				s.onMessage(e)
			}
		case client.Unread:
			s.mu.Lock()
			if s.unreadCh != nil && s.unread == nil {
				s.unread = &e
				close(s.unreadCh)
			}
			s.mu.Unlock()
		case client.Disconnected:
			if !s.disconnected.Swap(true) {
				s.w.disconnected.Add(1)
			}
			s.down.Store(true)
		case client.Reconnected:
			s.down.Store(false)
			s.w.reconnects.Add(1)
			s.w.downH.Record(e.Down)
		case client.Closed:
			s.closed.Store(true)
			s.w.sessionsClosed.Add(1)
		}
	}
}

func (s *session) onMessage(m client.Message) {
	now := time.Now()
	w, seq, ok := parseLedgerID(m.Text)
	c := s.conv(m.ConvID)
	if !ok || c == nil {
		s.w.ledger.Delivered(-1, 0, m.ID, -1, m.Offline, now)
		return
	}
	if lat, label := s.w.ledger.Delivered(w, seq, m.ID, c.pos[s], m.Offline || m.Resynced, now); lat >= 0 && label != "" {
		s.w.pair(label).Deliver.Record(lat)
	}
}

// syncFrom records the messages of cid fetched from history after a
// reconnect as sync copies.
func (s *session) syncFrom(ctx context.Context, cid string, n int) error {
	c := s.conv(cid)
	if c == nil {
		return nil
	}
	msgs, err := s.cl.History(ctx, cid, client.HistoryQuery{Limit: min(max(n, 1), 100)})
	if err != nil {
		return err
	}
	now := time.Now()
	for _, m := range msgs {
		if m.From == s.id {
			continue
		}
		if w, seq, ok := parseLedgerID(m.Text); ok {
			s.w.ledger.Delivered(w, seq, m.ID, c.pos[s], true, now)
		}
	}
	return nil
}

func (s *session) close() {
	if s.cf != nil {
		s.cf.Close()
		return
	}
	if s.cl == nil {
		s.closePC()
		return
	}
	_ = s.cl.Close()
	s.closePC()
	<-s.done
	if d := s.cl.Dropped(); d > 0 {
		s.w.eventsDropped.Add(int64(d))
	}
}

func (s *session) closePC() {
	if s.pc != nil {
		st := s.pc.Stats()
		s.w.lossWritten.Add(st.Written + s.pc.read.Load())
		s.w.lossDropped.Add(st.Lost + s.pc.readLost.Load())
		_ = s.pc.Close()
		s.pc = nil
	}
}

// lossyPacketConn is a loopback UDP socket that drops each datagram with
// probability loss in both directions: written ones (client → edge) in a
// netem.Conn, read ones (edge → client) as they are read, which is the
// same to QUIC as a loss on the way.
func lossyPacketConn(loss float64) (*lossyConn, error) {
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	rules := netem.NewRules().Set(netem.Any, netem.Any, netem.Link{Loss: loss})
	return &lossyConn{Conn: netem.NewConn(udp, netem.Config{Table: netem.NewTable(rules)}), loss: loss}, nil
}

type lossyConn struct {
	*netem.Conn
	loss           float64
	read, readLost atomic.Int64
	// d and group: while the group is down (netDialer.drop) every
	// datagram is dropped and writes fail, so dials fail as the TCP
	// dials of the group do.
	d     *netDialer
	group string
}

// ReadFrom drops inbound datagrams with probability loss, and all of
// them while the group is down.
func (c *lossyConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.Conn.ReadFrom(b)
		if err != nil {
			return n, addr, err
		}
		if c.d != nil && c.d.isDown(c.group) {
			continue
		}
		c.read.Add(1)
		if c.loss > 0 && rand.Float64() < c.loss {
			c.readLost.Add(1)
			continue
		}
		return n, addr, nil
	}
}

// WriteTo fails while the group is down.
func (c *lossyConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	if c.d != nil && c.d.isDown(c.group) {
		return 0, errGroupDown
	}
	return c.Conn.WriteTo(b, addr)
}
