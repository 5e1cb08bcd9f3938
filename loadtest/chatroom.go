package loadtest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/relaymesh/relaymesh/client"
)

// Priority classes as the chatroom scenario indexes them.
const (
	prioHigh = iota
	prioNormal
	prioLow
	numPrio
)

// prioNames are the classes' names: JSON keys, --priority-mix keys and
// the edge's metrics labels.
var prioNames = [numPrio]string{"high", "normal", "low"}

// prioWire is the LeanCloud GenericCommand.priority of each class.
var prioWire = [numPrio]int32{client.PriorityHigh, client.PriorityNormal, client.PriorityLow}

// PriorityMix is the share of chatroom sends of each class, indexed high,
// normal, low; it sums to 1.
type PriorityMix [numPrio]float64

// ParsePriorityMix parses "high=0.1,normal=0.6,low=0.3" (missing classes
// are 0; the weights are normalised to sum to 1).
func ParsePriorityMix(s string) (PriorityMix, error) {
	var m PriorityMix
	var sum float64
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		i := prioIndex(strings.TrimSpace(k))
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if !ok || i < 0 || err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) {
			return PriorityMix{}, fmt.Errorf("loadtest: --priority-mix %q: want high=W,normal=W,low=W with W ≥ 0", part)
		}
		m[i] = f
	}
	for _, f := range m {
		sum += f
	}
	if sum <= 0 {
		return PriorityMix{}, fmt.Errorf("loadtest: --priority-mix %q has no positive weight", s)
	}
	for i := range m {
		m[i] /= sum
	}
	return m, nil
}

func prioIndex(name string) int {
	for i, n := range prioNames {
		if n == name {
			return i
		}
	}
	return -1
}

// String formats m as ParsePriorityMix reads it.
func (m PriorityMix) String() string {
	parts := make([]string, 0, numPrio)
	for i, f := range m {
		parts = append(parts, prioNames[i]+"="+strconv.FormatFloat(f, 'g', 4, 64))
	}
	return strings.Join(parts, ",")
}

// pick returns the class of message seq: a low-discrepancy sequence
// (golden-ratio steps) against the cumulative shares, so every prefix of
// the run has close to the configured mix.
func (m PriorityMix) pick(seq uint64) int {
	x := math.Mod(float64(seq)*0.6180339887498949, 1)
	acc := 0.0
	for i, f := range m {
		acc += f
		if x < acc {
			return i
		}
	}
	for i := numPrio - 1; i >= 0; i-- {
		if m[i] > 0 {
			return i
		}
	}
	return prioNormal
}

// chatTag is appended to a chatroom message's ledger id: the class and the
// send time, so a receiver in any worker process can attribute the copy
// and measure its latency (all workers share the machine's clock).
func chatTag(prio int, at time.Time) string {
	return " p=" + prioNames[prio][:1] + " t=" + strconv.FormatInt(at.UnixNano(), 10)
}

// maxPayloadBytes bounds Config.PayloadBytes below the edge's default
// message limit (5120 bytes of content, JSON envelope included).
const maxPayloadBytes = 4096

// chatText is a chatroom message's text: the ledger id and tag, padded
// with filler after a space to about pad bytes.
func chatText(id, tag string, pad int) string {
	t := id + tag
	if n := pad - len(t) - 1; n > 0 {
		t += " " + strings.Repeat("x", n)
	}
	return t
}

// parseChatTag reads the class and send time after the ledger id.
func parseChatTag(text string) (prio int, sent time.Time, ok bool) {
	i := strings.Index(text, " p=")
	if i < 0 || i+4 > len(text) {
		return 0, time.Time{}, false
	}
	switch text[i+3] {
	case 'h':
		prio = prioHigh
	case 'n':
		prio = prioNormal
	case 'l':
		prio = prioLow
	default:
		return 0, time.Time{}, false
	}
	rest, found := strings.CutPrefix(text[i+4:], " t=")
	if !found {
		return 0, time.Time{}, false
	}
	n := 0
	for n < len(rest) && rest[n] >= '0' && rest[n] <= '9' {
		n++
	}
	ns, err := strconv.ParseInt(rest[:n], 10, 64)
	if err != nil {
		return 0, time.Time{}, false
	}
	return prio, time.Unix(0, ns), true
}

// ChatSent is one chatroom message a worker sent; its sequence number is
// its index in ChatReport.Sent plus one.
type ChatSent struct {
	Room  int  `json:"r"`
	Prio  int  `json:"p"`
	Acked bool `json:"a"`
}

// ChatReport is a worker's share of the chatroom ledger. Members of a room
// are spread over every worker, so a message is sent in one worker and
// received in all; the coordinator joins the senders' ChatSent with every
// worker's Recv (see mergeChat).
type ChatReport struct {
	Joined     []int      `json:"joined"` // per room: this worker's sessions that joined it
	JoinFailed int        `json:"join_failed"`
	Sent       []ChatSent `json:"sent"`
	// Recv maps a sending worker to, per sequence number − 1, how many of
	// this worker's sessions received a copy (first copy per session).
	Recv    map[int][]int32 `json:"recv"`
	Deliver [numPrio]*Hist  `json:"deliver"` // send → first copy at a session, per class
	// Slow readers (Config.SlowReaders): per room, the slow readers that
	// joined and those of them whose connection the server closed during
	// the run (their copies are neither expected nor counted in Recv);
	// RecvSlow is the part of Recv received by slow readers.
	SlowJoined []int           `json:"slow_joined,omitempty"`
	SlowGone   []int           `json:"slow_gone,omitempty"`
	RecvSlow   map[int][]int32 `json:"recv_slow,omitempty"`
	NormalGone int             `json:"normal_gone,omitempty"` // other sessions whose connection the server closed
	Duplicates int64           `json:"duplicates"`
	Unexpected int64           `json:"unexpected"` // copies without a chatroom ledger tag or in another room
	// DeliverSpanS is from the start of sending to the last first copy
	// this worker's sessions received.
	DeliverSpanS float64 `json:"deliver_span_s"`
}

// chatKey names a message: sending worker and sequence number.
type chatKey struct {
	worker int
	seq    uint64
}

// chatLedger is a worker's chatroom bookkeeping: what it sent and what its
// sessions received. It is safe for concurrent use.
type chatLedger struct {
	n       int // local sessions: bit positions of got
	deliver [numPrio]*Hist

	copies     atomic.Int64 // every chatroom copy received
	lastCopy   atomic.Int64 // unix ns of the latest first copy
	duplicates atomic.Int64
	unexpected atomic.Int64

	mu   sync.Mutex
	sent map[uint64]ChatSent // guarded by mu; by ledger seq
	got  map[chatKey]bitset  // guarded by mu; receiving local sessions per message
}

func newChatLedger(n int) *chatLedger {
	l := &chatLedger{n: n, sent: make(map[uint64]ChatSent), got: make(map[chatKey]bitset)}
	for i := range l.deliver {
		l.deliver[i] = NewHist()
	}
	return l
}

func (l *chatLedger) noteSent(seq uint64, s ChatSent) {
	l.mu.Lock()
	l.sent[seq] = s
	l.mu.Unlock()
}

// received records a copy of (worker, seq) at local session idx; first
// reports whether it is that session's first copy.
func (l *chatLedger) received(worker int, seq uint64, idx int) (first bool) {
	l.copies.Add(1)
	k := chatKey{worker, seq}
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.got[k]
	if b == nil {
		b = newBitset(l.n)
		l.got[k] = b
	}
	if b.has(idx) {
		l.duplicates.Add(1)
		return false
	}
	b.set(idx)
	l.lastCopy.Store(time.Now().UnixNano())
	return true
}

// readerKind is how a chatroom session reads, for the ledger's split.
type readerKind uint8

const (
	readerNormal   readerKind = iota
	readerSlow                // reads with Config.SlowReadDelay
	readerSlowGone            // a slow reader whose connection the server closed: nothing expected
)

// chatReaders describes the worker's slow readers for report; nil when
// there are none.
type chatReaders struct {
	kind       []readerKind // by chat ledger index
	slowJoined []int        // per room
	slowGone   []int        // per room
	normalGone int
}

// report settles the worker's share; sent is the ledger's message count.
func (l *chatLedger) report(sent int, joined []int, joinFailed int, readers *chatReaders) *ChatReport {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := &ChatReport{Joined: joined, JoinFailed: joinFailed, Sent: make([]ChatSent, sent),
		Recv: make(map[int][]int32), Deliver: l.deliver,
		Duplicates: l.duplicates.Load(), Unexpected: l.unexpected.Load()}
	for seq, s := range l.sent {
		if seq >= 1 && seq <= uint64(sent) {
			r.Sent[seq-1] = s
		}
	}
	var slow, gone bitset // slow readers, and the gone ones among them
	if readers != nil {
		r.SlowJoined, r.SlowGone, r.NormalGone = readers.slowJoined, readers.slowGone, readers.normalGone
		r.RecvSlow = make(map[int][]int32)
		slow, gone = newBitset(l.n), newBitset(l.n)
		for i, k := range readers.kind {
			if i < l.n && k != readerNormal {
				slow.set(i)
				if k == readerSlowGone {
					gone.set(i)
				}
			}
		}
	}
	put := func(m map[int][]int32, k chatKey, n int32) {
		v := m[k.worker]
		if need := int(k.seq); len(v) < need {
			v = append(v, make([]int32, need-len(v))...)
		}
		v[k.seq-1] = n
		m[k.worker] = v
	}
	for k, b := range l.got {
		var n, ns int32
		for i, x := range b {
			if gone != nil {
				x &^= gone[i]
				ns += int32(popcount(x & slow[i]))
			}
			n += int32(popcount(x))
		}
		put(r.Recv, k, n)
		if r.RecvSlow != nil {
			put(r.RecvSlow, k, ns)
		}
	}
	return r
}

func popcount(x uint64) int {
	n := 0
	for ; x != 0; x &= x - 1 {
		n++
	}
	return n
}

// chatroomScenario: every session joins room (global index mod Rooms);
// after every worker joined (Config.Gate), senders in each room send at
// the worker's share of Rate with priorities from PriorityMix.
type chatroomScenario struct {
	w          *worker
	ss         []*session
	joined     []int // per room
	joinFailed int
	senders    []*session
	slowJoined []int        // per room; nil without slow readers
	joinedOK   []bool       // per c.ss index: joined its room
	snap       *chatReaders // taken by teardown before it closes the sessions
}

// chatroomQuiet ends the chatroom drain: no copy arrived for this long.
// Longer than the one-to-one drain's second because copies of other
// workers' last messages may still be on their way.
const chatroomQuiet = 2 * time.Second

func (c *chatroomScenario) setup(ctx context.Context) error {
	w := c.w
	ids := w.cfg.ChatRoomIDs
	if len(ids) != w.cfg.Rooms {
		return fmt.Errorf("loadtest: chatroom: %d room ids for %d rooms", len(ids), w.cfg.Rooms)
	}
	w.chat = newChatLedger(w.n)
	all := w.newSessions("m", w.first, w.n, "")
	for i, s := range all {
		s.chatIdx, s.chatRoom = i, ids[(w.first+i)%w.cfg.Rooms]
		if isSlowReader(w.first+i, w.cfg.SlowReaders) {
			s.slow = true
			s.target = withGroup(s.target, slowGroup)
		}
	}
	c.ss = w.loginAll(ctx, all)
	if len(c.ss) == 0 {
		return errNoSessions
	}
	w.setPhase("setup")
	ok := make([]bool, len(c.ss))
	w.parallel(ctx, len(c.ss), func(i int) {
		s := c.ss[i]
		jctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		join := func() error { return s.cl.Join(jctx, s.chatRoom) }
		if s.cf != nil {
			join = func() error { return s.cf.subscribe(jctx, s.chatRoom) }
		}
		if err := join(); err != nil {
			w.noteErr("join %s to %s: %v", s.id, s.chatRoom, err)
			return
		}
		ok[i] = true
	})
	c.joined = make([]int, w.cfg.Rooms)
	c.joinedOK = ok
	if w.cfg.SlowReaders > 0 {
		c.slowJoined = make([]int, w.cfg.Rooms)
	}
	perRoom := max(1, (w.cfg.Senders*w.n+w.cfg.Sessions-1)/w.cfg.Sessions) // ceil(Senders·share)
	picked := make([]int, w.cfg.Rooms)
	for i, s := range c.ss {
		if !ok[i] {
			c.joinFailed++
			continue
		}
		r := (w.first + s.chatIdx) % w.cfg.Rooms
		c.joined[r]++
		if s.slow {
			c.slowJoined[r]++
			continue // a slow reader never sends: its replies would wait behind its backlog
		}
		if picked[r] < perRoom {
			picked[r]++
			c.senders = append(c.senders, s)
		}
	}
	if len(c.senders) == 0 {
		return errors.New("loadtest: chatroom: no session that reads normally could join")
	}
	w.setPhase("ready")
	return waitGate(ctx, w.cfg.Gate)
}

// waitGate blocks until a line can be read from gate (nil: no gate).
func waitGate(ctx context.Context, gate io.Reader) error {
	if gate == nil {
		return nil
	}
	done := make(chan error, 1)
	go func() { // ends when the coordinator writes or closes stdin
		_, err := bufio.NewReader(gate).ReadString('\n')
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("loadtest: wait for the coordinator: %w", err)
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *chatroomScenario) steady(ctx context.Context) {
	w := c.w
	w.pace(ctx, w.cfg.Rate*w.share, w.cfg.Duration, w.messageLimit(), func(i int) {
		c.sendOne(c.senders[i%len(c.senders)])
	})
}

// drain waits after sending stopped until no chatroom copy arrived for
// chatroomQuiet, or cfg.Drain passed.
func (l *chatLedger) drain(ctx context.Context, w *worker) {
	deadline := time.Now().Add(w.cfg.Drain)
	last, lastChange := l.copies.Load(), time.Now()
	for time.Now().Before(deadline) && ctx.Err() == nil && time.Since(lastChange) < chatroomQuiet {
		w.idle(ctx, 100*time.Millisecond)
		if r := l.copies.Load(); r != last {
			last, lastChange = r, time.Now()
		}
	}
}

// sendOne sends one tagged chatroom message from s and records its ack.
func (c *chatroomScenario) sendOne(s *session) {
	w := c.w
	if s.closed.Load() {
		return
	}
	t0 := time.Now()
	id, seq := w.ledger.Sent(s.chatRoom, 1, nil, t0)
	prio := w.cfg.PriorityMix.pick(seq + uint64(w.index)*7919)
	room := (w.first + s.chatIdx) % w.cfg.Rooms
	w.chat.noteSent(seq, ChatSent{Room: room, Prio: prio})
	if s.cf != nil {
		c.cfSend(s, id, seq, room, prio, t0)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sent, err := s.cl.Send(ctx, s.chatRoom, client.TextMessage(chatText(id, chatTag(prio, t0), w.cfg.PayloadBytes)), client.SendOptions{Priority: prioWire[prio]})
	now := time.Now()
	if err != nil {
		w.sendErrors.Add(1)
		var le *client.Error
		if errors.As(err, &le) {
			w.countCode(le.Code)
		}
		w.noteErr("send %s from %s: %v", id, s.id, err)
		return
	}
	w.chat.noteSent(seq, ChatSent{Room: room, Prio: prio, Acked: true})
	w.ledger.Acked(seq, sent.ID, sent.Timestamp, now)
	w.ackH.Record(now.Sub(t0))
	w.ackS.Record(now, now.Sub(t0))
}

func (c *chatroomScenario) teardown() {
	c.snap = c.readers()
	c.w.closeAll(c.ss)
}

// readers snapshots the slow readers for the report (teardown calls it
// before closing the sessions): a session whose connection the server closed during
// the run (the edge's overflow rule) reconnected or ended, and has left
// the room.
func (c *chatroomScenario) readers() *chatReaders {
	if c.slowJoined == nil {
		return nil
	}
	rs := &chatReaders{kind: make([]readerKind, c.w.n), slowJoined: c.slowJoined, slowGone: make([]int, len(c.slowJoined))}
	for i, s := range c.ss {
		if !c.joinedOK[i] {
			continue
		}
		gone := s.disconnected.Load() || s.closed.Load()
		switch {
		case s.slow && gone:
			rs.kind[s.chatIdx] = readerSlowGone
			rs.slowGone[(c.w.first+s.chatIdx)%c.w.cfg.Rooms]++
		case s.slow:
			rs.kind[s.chatIdx] = readerSlow
		case gone:
			rs.normalGone++
		}
	}
	return rs
}

// slowGroup is the network group (netdial.go) of slow readers: their
// sockets get a small receive buffer.
const slowGroup = "slow"

// isSlowReader says whether chatroom session g (global index) is one of
// the share f of slow readers: a golden-ratio sequence, so they are spread
// evenly over the workers and rooms.
func isSlowReader(g int, f float64) bool {
	return f > 0 && math.Mod(float64(g)*0.6180339887498949+0.5, 1) < f
}

// onChatMessage records a copy received by a chatroom session.
func (s *session) onChatMessage(m client.Message) {
	now := time.Now()
	l := s.w.chat
	wk, seq, ok1 := parseLedgerID(m.Text)
	prio, sentAt, ok2 := parseChatTag(m.Text)
	if !ok1 || !ok2 || m.ConvID != s.chatRoom {
		l.unexpected.Add(1)
		return
	}
	if !l.received(wk, seq, s.chatIdx) {
		return
	}
	d := now.Sub(sentAt)
	l.deliver[prio].Record(d)
	s.w.deliverH.Record(d)
	s.w.deliverS.Record(now, d)
}

// deliverSpan is from sendStart to the latest first copy, in seconds.
func (l *chatLedger) deliverSpan(sendStart time.Time) float64 {
	last := l.lastCopy.Load()
	if last == 0 || sendStart.IsZero() {
		return 0
	}
	return max(0, time.Unix(0, last).Sub(sendStart).Seconds())
}

// createChatRooms logs in one owner session, creates n chatrooms and
// leaves (closing the session ends its membership).
func createChatRooms(ctx context.Context, cfg Config) ([]string, error) {
	if cfg.Peer == PeerCentrifugo {
		return cfChannels(cfg.RunID, cfg.Rooms), nil
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cl, err := client.Dial(ctx, cfg.Targets[0], client.Options{AppID: cfg.AppID,
		ClientID: fmt.Sprintf("lt-%s-owner", cfg.RunID), RequestTimeout: 20 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("loadtest: chatroom owner login: %w", err)
	}
	defer cl.Close()
	go func() { // the owner reads nothing; keep its event channel moving
		for range cl.Events() {
		}
	}()
	ids := make([]string, cfg.Rooms)
	for i := range ids {
		ids[i], err = cl.CreateChatRoom(ctx, fmt.Sprintf("lt %s room %d", cfg.RunID, i), nil)
		if err != nil {
			return nil, fmt.Errorf("loadtest: create chatroom %d: %w", i, err)
		}
	}
	return ids, nil
}

// PriorityStats are the chatroom figures of one priority class.
type PriorityStats struct {
	Share    float64 `json:"share"` // configured share of sends
	Sent     int64   `json:"sent"`
	Acked    int64   `json:"acked"`
	Failed   int64   `json:"failed"`
	Expected int64   `json:"expected"` // (acked message, joined member other than the sender) pairs
	// Delivered pairs got a copy; Missing = Expected − Delivered: shed
	// (allowed) for NORMAL and LOW, lost (a failure) for HIGH.
	Delivered         int64     `json:"delivered"`
	Missing           int64     `json:"missing"`
	DeliveredRatio    float64   `json:"delivered_ratio"` // delivered / expected
	DeliveriesPerS    float64   `json:"deliveries_per_s"`
	DeliveryLatencyMS Quantiles `json:"delivery_latency_ms"`
	// DroppedFrames is the growth of the edges'
	// relaymesh_edge_dropped_frames_total{priority} over the run (-1: not
	// measured).
	DroppedFrames int64 `json:"dropped_frames"`
}

// ChatroomSummary is the chatroom part of Summary.
type ChatroomSummary struct {
	Rooms       int                       `json:"rooms"`
	Members     []int                     `json:"members"` // joined sessions per room
	JoinFailed  int                       `json:"join_failed"`
	PriorityMix string                    `json:"priority_mix"`
	Priorities  map[string]*PriorityStats `json:"priorities"` // high, normal, low
	// FanoutPerS is delivered copies per second from the start of sending
	// to the last copy (with a backlog, deliveries go on after sending
	// stopped: Summary.DeliveriesPerS, per second of sending, is then the
	// offered rate rather than what the server achieved).
	FanoutPerS float64 `json:"fanout_deliveries_per_s"`
	// FanoutAllPerS is the same over every copy received, of acked sends
	// or not (DeliveredAllSends): what the server delivered per second
	// when sends it did not acknowledge in time were delivered anyway.
	FanoutAllPerS float64 `json:"fanout_all_deliveries_per_s"`
	// HighLost is the headline check: acked HIGH messages' missing copies.
	HighLost int64 `json:"high_lost"`
	// ExpectedAllSends and DeliveredAllSends count every message sent,
	// acked or not: (members but the sender) per send, and the copies
	// that arrived. A send whose ack failed may still have been delivered
	// (a Centrifugo publish the API did not answer in time), so this is
	// what the members saw of everything offered.
	ExpectedAllSends  int64 `json:"expected_all_sends"`
	DeliveredAllSends int64 `json:"delivered_all_sends"`
	// EdgeOverflowCloses is the growth of the edges'
	// relaymesh_edge_overflow_closes_total over the run: connections
	// closed because a HIGH frame did not fit their queue (-1: not
	// measured).
	EdgeOverflowCloses int64 `json:"edge_overflow_closes"`
	// SlowReaders splits the figures by reader kind (Config.SlowReaders).
	SlowReaders   *SlowReaderStats `json:"slow_readers,omitempty"`
	MetricsSource string           `json:"metrics_source,omitempty"`
}

// SlowReaderStats are the chatroom figures with slow readers: per
// priority, delivered / expected at the slow readers and at the others.
// A slow reader whose connection the server closed during the run (the
// edge's overflow rule: a HIGH frame did not fit) is counted in
// Disconnected and nothing is expected at it; a HIGH copy missing at a
// slow reader still connected is lost and fails the run.
type SlowReaderStats struct {
	Share       float64 `json:"share"` // configured share of members
	ReadDelayMS float64 `json:"read_delay_ms"`
	Members     int     `json:"members"` // slow readers that joined
	// Disconnected slow readers; NormalDisconnected other members whose
	// connection was lost (their missing HIGH copies are losses).
	Disconnected       int                         `json:"disconnected"`
	NormalDisconnected int                         `json:"normal_disconnected"`
	Slow               map[string]*ReaderPrioStats `json:"slow"`   // by priority: high, normal, low
	Normal             map[string]*ReaderPrioStats `json:"normal"` // the members that read normally
}

// ReaderPrioStats are one priority's copies at one kind of reader.
type ReaderPrioStats struct {
	Expected       int64   `json:"expected"`
	Delivered      int64   `json:"delivered"`
	Missing        int64   `json:"missing"`
	DeliveredRatio float64 `json:"delivered_ratio"`
}

func (r *ReaderPrioStats) add(want, got int64) {
	got = min(got, want)
	r.Expected += want
	r.Delivered += got
	r.Missing = r.Expected - r.Delivered
	if r.Expected > 0 {
		r.DeliveredRatio = float64(r.Delivered) / float64(r.Expected)
	}
}

// mergeChat joins every worker's chat report into s (Counts' expected,
// delivered and lost, and s.Chatroom).
func (s *Summary) mergeChat(cfg Config, reports []*Report, sendSec float64) {
	cs := &ChatroomSummary{Rooms: cfg.Rooms, Members: make([]int, cfg.Rooms), PriorityMix: cfg.PriorityMix.String(),
		Priorities: make(map[string]*PriorityStats)}
	var st [numPrio]PriorityStats
	hs := [numPrio]*Hist{NewHist(), NewHist(), NewHist()}
	var span float64
	// Slow readers per room: joined, and disconnected (not expected).
	slowJoined, slowGone := make([]int, cfg.Rooms), make([]int, cfg.Rooms)
	var sr *SlowReaderStats
	var slowSt, normalSt [numPrio]ReaderPrioStats
	if cfg.SlowReaders > 0 {
		sr = &SlowReaderStats{Share: cfg.SlowReaders, ReadDelayMS: float64(cfg.SlowReadDelay) / 1e6,
			Slow: make(map[string]*ReaderPrioStats), Normal: make(map[string]*ReaderPrioStats)}
	}
	for _, r := range reports {
		if r.Chat == nil {
			continue
		}
		span = max(span, r.Chat.DeliverSpanS)
		for i, n := range r.Chat.Joined {
			if i < len(cs.Members) {
				cs.Members[i] += n
			}
		}
		for i := range min(len(r.Chat.SlowJoined), len(r.Chat.SlowGone), cfg.Rooms) {
			slowJoined[i] += r.Chat.SlowJoined[i]
			slowGone[i] += r.Chat.SlowGone[i]
		}
		if sr != nil {
			sr.NormalDisconnected += r.Chat.NormalGone
		}
		cs.JoinFailed += r.Chat.JoinFailed
		s.Duplicates += r.Chat.Duplicates
		s.DuplicatesAfterDedup += r.Chat.Duplicates
		s.Unexpected += r.Chat.Unexpected
		for i, h := range r.Chat.Deliver {
			hs[i].Merge(h)
		}
	}
	s.Expected, s.Delivered, s.Lost, s.LostAfterDedup = 0, 0, 0, 0
	for _, r := range reports {
		if r.Chat == nil {
			continue
		}
		for i, m := range r.Chat.Sent {
			if m.Prio < 0 || m.Prio >= numPrio || m.Room < 0 || m.Room >= len(cs.Members) {
				continue
			}
			p := &st[m.Prio]
			p.Sent++
			// The sender reads normally; disconnected slow readers are
			// not expected.
			want := int64(max(cs.Members[m.Room]-1-slowGone[m.Room], 0))
			wantSlow := int64(slowJoined[m.Room] - slowGone[m.Room])
			var got, gotSlow int64
			for _, o := range reports {
				if o.Chat != nil && i < len(o.Chat.Recv[r.Worker]) {
					got += int64(o.Chat.Recv[r.Worker][i])
				}
				if o.Chat != nil && i < len(o.Chat.RecvSlow[r.Worker]) {
					gotSlow += int64(o.Chat.RecvSlow[r.Worker][i])
				}
			}
			cs.ExpectedAllSends += want
			cs.DeliveredAllSends += min(got, want)
			if !m.Acked {
				p.Failed++
				continue
			}
			p.Acked++
			if sr != nil {
				slowSt[m.Prio].add(wantSlow, gotSlow)
				normalSt[m.Prio].add(want-wantSlow, got-gotSlow)
			}
			got = min(got, want)
			p.Expected += want
			p.Delivered += got
			if m.Prio == prioHigh && got < want && len(s.LostSamples) < maxLostSamples {
				s.LostSamples = append(s.LostSamples, fmt.Sprintf("%s (HIGH, room %d): %d of %d members missed it",
					LedgerID(r.Worker, uint64(i+1)), m.Room, want-got, want))
			}
		}
	}
	for i := range st {
		p := &st[i]
		p.Share = cfg.PriorityMix[i]
		p.Missing = p.Expected - p.Delivered
		if p.Expected > 0 {
			p.DeliveredRatio = float64(p.Delivered) / float64(p.Expected)
		}
		if sendSec > 0 {
			p.DeliveriesPerS = float64(p.Delivered) / sendSec
		}
		p.DeliveryLatencyMS = hs[i].Quantiles()
		p.DroppedFrames = -1
		s.Expected += p.Expected
		s.Delivered += p.Delivered
		cs.Priorities[prioNames[i]] = p
	}
	if span > 0 {
		cs.FanoutPerS = float64(s.Delivered) / span
		cs.FanoutAllPerS = float64(cs.DeliveredAllSends) / span
	}
	cs.HighLost = st[prioHigh].Missing
	cs.EdgeOverflowCloses = -1
	if sr != nil {
		for i := range cs.Members {
			sr.Members += slowJoined[i]
			sr.Disconnected += slowGone[i]
		}
		for i, name := range prioNames {
			sr.Slow[name], sr.Normal[name] = &slowSt[i], &normalSt[i]
		}
		cs.SlowReaders = sr
	}
	s.Lost, s.LostAfterDedup = cs.HighLost, cs.HighLost
	s.Chatroom = cs
}

// edgeCounters are the edge counters the chatroom scenario reads from
// /metrics before and after the run.
type edgeCounters struct {
	dropped        [numPrio]int64 // relaymesh_edge_dropped_frames_total{priority}
	overflowCloses int64          // relaymesh_edge_overflow_closes_total
}

func (c edgeCounters) sub(before edgeCounters) edgeCounters {
	for i := range c.dropped {
		c.dropped[i] -= before.dropped[i]
	}
	c.overflowCloses -= before.overflowCloses
	return c
}

// edgeCounters sums the counters over the edges' /metrics; ok is false
// when an edge could not be read.
func (p *rssProbe) edgeCounters() (c edgeCounters, ok bool) {
	for _, u := range p.metrics {
		v, err := p.edgeCountersAt(u)
		if err != nil {
			return c, false
		}
		for i := range c.dropped {
			c.dropped[i] += v.dropped[i]
		}
		c.overflowCloses += v.overflowCloses
	}
	return c, len(p.metrics) > 0
}

func (p *rssProbe) edgeCountersAt(u string) (edgeCounters, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return edgeCounters{}, err
	}
	resp, err := p.http.Do(req)
	if err != nil {
		return edgeCounters{}, err
	}
	defer resp.Body.Close()
	return parseEdgeCounters(bufio.NewScanner(resp.Body))
}

// parseEdgeCounters reads relaymesh_edge_dropped_frames_total{priority="…"}
// and relaymesh_edge_overflow_closes_total from Prometheus text.
func parseEdgeCounters(sc *bufio.Scanner) (edgeCounters, error) {
	var c edgeCounters
	const dropped = `relaymesh_edge_dropped_frames_total{priority="`
	const overflow = `relaymesh_edge_overflow_closes_total `
	for sc.Scan() {
		line := sc.Text()
		var dst *int64
		var val string
		if rest, ok := strings.CutPrefix(line, dropped); ok {
			label, v, ok := strings.Cut(rest, `"}`)
			i := prioIndex(label)
			if !ok || i < 0 {
				continue
			}
			dst, val = &c.dropped[i], v
		} else if v, ok := strings.CutPrefix(line, overflow); ok {
			dst, val = &c.overflowCloses, v
		} else {
			continue
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil {
			return c, fmt.Errorf("loadtest: metrics: %q: %w", line, err)
		}
		*dst += int64(f)
	}
	return c, sc.Err()
}
