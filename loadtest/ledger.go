package loadtest

import (
	"fmt"
	"math/bits"
	"strconv"
	"strings"
	"sync"
	"time"
)

// textPrefix starts the ledger id carried in every message the load tester
// sends: "lt:<worker>:<seq>".
const textPrefix = "lt:"

// LedgerID is the id of one sent message: which worker sent it and its
// sequence number there.
func LedgerID(worker int, seq uint64) string {
	return textPrefix + strconv.Itoa(worker) + ":" + strconv.FormatUint(seq, 10)
}

// parseLedgerID extracts (worker, seq) from the _lctext of a received
// message; ok is false for text the load tester did not send.
func parseLedgerID(text string) (worker int, seq uint64, ok bool) {
	i := strings.Index(text, textPrefix)
	if i < 0 {
		return 0, 0, false
	}
	rest := text[i+len(textPrefix):]
	w, rest, found := strings.Cut(rest, ":")
	if !found {
		return 0, 0, false
	}
	n := 0
	for n < len(rest) && rest[n] >= '0' && rest[n] <= '9' {
		n++
	}
	wi, err1 := strconv.Atoi(w)
	s, err2 := strconv.ParseUint(rest[:n], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, false
	}
	return wi, s, true
}

// bitset is a set of member positions in a conversation.
type bitset []uint64

func newBitset(n int) bitset    { return make(bitset, (n+63)/64) }
func (b bitset) has(i int) bool { return b[i/64]&(1<<(i%64)) != 0 }
func (b bitset) set(i int)      { b[i/64] |= 1 << (i % 64) }

// posSet is a set of member positions in a conversation, as bitset, with
// the first 64 held inline: a ledger keeps one record per message sent,
// and with the sets (and the first copy's) in the record, a one-to-one or
// small group message is one object for the collector to mark, not seven
// (at 5,000 sends a second the load tester's collections marked hundreds
// of MB of records, 0.2-0.4 s each, on the cores the server runs on).
type posSet struct {
	w    uint64
	more []uint64 // positions 64 and up
}

func newPosSet(n int) posSet {
	if n <= 64 {
		return posSet{}
	}
	return posSet{more: make([]uint64, (n-1)/64)}
}

// words is how many words of 64 positions the set has.
func (b *posSet) words() int { return 1 + len(b.more) }

func (b *posSet) word(i int) uint64 {
	if i == 0 {
		return b.w
	}
	return b.more[i-1]
}

func (b *posSet) has(i int) bool {
	if i < 64 {
		return b.w&(1<<i) != 0
	}
	i -= 64
	return b.more[i/64]&(1<<(i%64)) != 0
}

func (b *posSet) set(i int) {
	if i < 64 {
		b.w |= 1 << i
		return
	}
	i -= 64
	b.more[i/64] |= 1 << (i % 64)
}

// uidCopies are the recipients that got a message under one server id.
type uidCopies struct {
	uid string
	got posSet
}

// msgRec is the ledger entry of one sent message.
type msgRec struct {
	cid       string
	sentAt    time.Time
	ackedAt   time.Time
	uid       string // server id from the ack
	acked     bool
	expect    posSet      // positions of the recipients that must get it
	live      posSet      // positions that got it live (first copy)
	late      posSet      // positions that got it only through sync
	copies    []uidCopies // per server id, usually one (in copy0)
	copy0     [1]uidCopies
	rawDups   int    // live copies beyond the first per recipient
	syncAgain int    // sync copies of a message already received live
	label     string // Label: e.g. the region pair "r1→r2"; "" for none
}

// Ledger records every message a worker sends, its ack, and every copy
// its sessions receive, and settles them at the end (see the package doc
// for the rules). It is safe for concurrent use.
type Ledger struct {
	worker int

	recvHook func(d Duration) // immutable; called with each first live copy's latency

	mu      sync.Mutex
	msgs    []*msgRec          // guarded by mu; index = seq-1
	acked   int                // guarded by mu
	copies  int                // guarded by mu; every copy received
	last    map[string]lastAck // guarded by mu; per conversation
	foreign int                // guarded by mu; copies with an id this ledger did not issue
	unknown int                // guarded by mu; copies at a position that was not expected
}

// Duration is a latency in nanoseconds.
type Duration = time.Duration

// NewLedger returns the ledger of worker; onDelivery, when not nil, gets the
// latency (send start to arrival) of each first live copy.
func NewLedger(worker int, onDelivery func(Duration)) *Ledger {
	return &Ledger{worker: worker, recvHook: onDelivery}
}

type lastAck struct {
	ts  int64
	uid string
}

// Sent registers a message before it is sent to conversation cid of n
// members; expect lists the member positions that must receive it. It
// returns the ledger id to put in the text.
func (l *Ledger) Sent(cid string, n int, expect []int, at time.Time) (id string, seq uint64) {
	r := &msgRec{cid: cid, sentAt: at, expect: newPosSet(n), live: newPosSet(n), late: newPosSet(n)}
	for _, p := range expect {
		r.expect.set(p)
	}
	l.mu.Lock()
	l.msgs = append(l.msgs, r)
	seq = uint64(len(l.msgs))
	l.mu.Unlock()
	return LedgerID(l.worker, seq), seq
}

// Label tags message seq (cross-region: its region pair); Delivered
// returns the tag with a copy's latency and SettleLabels counts by it.
func (l *Ledger) Label(seq uint64, label string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if r := l.recLocked(seq); r != nil {
		r.label = label
	}
}

// Acked records the server's ack of message seq: its id and server
// timestamp (ms).
func (l *Ledger) Acked(seq uint64, uid string, ts int64, at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.recLocked(seq)
	if r == nil || r.acked {
		return
	}
	r.acked, r.uid, r.ackedAt = true, uid, at
	l.acked++
	if l.last == nil {
		l.last = make(map[string]lastAck)
	}
	if ts >= l.last[r.cid].ts {
		l.last[r.cid] = lastAck{ts: ts, uid: uid}
	}
}

// LastAcked returns the id of the newest acked message of cid, "" if none.
func (l *Ledger) LastAcked(cid string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last[cid].uid
}

func (l *Ledger) recLocked(seq uint64) *msgRec {
	if seq == 0 || seq > uint64(len(l.msgs)) {
		return nil
	}
	return l.msgs[seq-1]
}

// Delivered records a copy of message (worker, seq) with server id uid that
// reached the member at position pos, live (pushed while online) or, with
// sync, fetched after a reconnect (offline push or history). For the first
// live copy of a message at pos it returns the latency (send start to
// arrival) and the message's label; otherwise latency -1.
func (l *Ledger) Delivered(worker int, seq uint64, uid string, pos int, sync bool, at time.Time) (latency Duration, label string) {
	l.mu.Lock()
	l.copies++
	r := l.recLocked(seq)
	if worker != l.worker || r == nil {
		l.foreign++
		l.mu.Unlock()
		return -1, ""
	}
	if pos < 0 || pos >= r.expect.words()*64 {
		l.unknown++
		l.mu.Unlock()
		return -1, ""
	}
	if !r.expect.has(pos) {
		l.unknown++
	}
	var lat Duration = -1
	if sync {
		if r.live.has(pos) {
			r.syncAgain++
		} else {
			r.late.set(pos)
		}
		l.markCopyLocked(r, uid, pos)
		l.mu.Unlock()
		return -1, ""
	}
	if r.live.has(pos) {
		r.rawDups++
	} else {
		r.live.set(pos)
		lat = at.Sub(r.sentAt)
	}
	label = r.label
	l.markCopyLocked(r, uid, pos)
	l.mu.Unlock()
	if lat >= 0 && l.recvHook != nil {
		l.recvHook(lat)
	}
	return lat, label
}

func (l *Ledger) markCopyLocked(r *msgRec, uid string, pos int) {
	for i := range r.copies {
		if r.copies[i].uid == uid {
			r.copies[i].got.set(pos)
			return
		}
	}
	if uid == r.uid {
		uid = r.uid // keep one string alive, not the copy's as well
	}
	c := uidCopies{uid: uid, got: newPosSet(r.expect.words() * 64)}
	c.got.set(pos)
	if r.copies == nil {
		r.copies = r.copy0[:0]
	}
	r.copies = append(r.copies, c)
}

// Counts is the settled ledger; see the package doc for each rule.
type Counts struct {
	Sent      int64 `json:"sent"`      // messages attempted
	Acked     int64 `json:"acked"`     // messages the server acked
	Failed    int64 `json:"failed"`    // sends that got an error or no ack
	Expected  int64 `json:"expected"`  // (acked message, recipient) pairs
	Delivered int64 `json:"delivered"` // expected pairs with a live copy
	Late      int64 `json:"late"`      // expected pairs served only by sync
	// Lost is expected pairs with no copy at all (live or sync); LostAfterDedup
	// also counts pairs whose copies all carry another server id than the ack.
	Lost           int64 `json:"lost"`
	LostAfterDedup int64 `json:"lost_after_dedup"`
	// Duplicates counts copies beyond the first per (message, recipient);
	// DuplicatesAfterDedup only those with a distinct server id, i.e. what an
	// SDK that dedups by message id would still show twice.
	Duplicates           int64 `json:"duplicates"`
	DuplicatesAfterDedup int64 `json:"duplicates_after_dedup"`
	Resynced             int64 `json:"resynced"`   // sync copies of messages already received live
	Unexpected           int64 `json:"unexpected"` // copies at a recipient that should not get it, or with an unknown id
	// LostSamples names a few lost messages (ledger id → missing positions).
	LostSamples []string `json:"lost_samples,omitempty"`
}

// Add merges o into c.
func (c *Counts) Add(o Counts) {
	c.Sent += o.Sent
	c.Acked += o.Acked
	c.Failed += o.Failed
	c.Expected += o.Expected
	c.Delivered += o.Delivered
	c.Late += o.Late
	c.Lost += o.Lost
	c.LostAfterDedup += o.LostAfterDedup
	c.Duplicates += o.Duplicates
	c.DuplicatesAfterDedup += o.DuplicatesAfterDedup
	c.Resynced += o.Resynced
	c.Unexpected += o.Unexpected
	for _, s := range o.LostSamples {
		if len(c.LostSamples) < maxLostSamples {
			c.LostSamples = append(c.LostSamples, s)
		}
	}
}

const maxLostSamples = 20

// Settle counts the ledger. Call it after the drain period.
func (l *Ledger) Settle() Counts {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := Counts{Sent: int64(len(l.msgs)), Unexpected: int64(l.foreign + l.unknown)}
	for i, r := range l.msgs {
		c.settle(LedgerID(l.worker, uint64(i+1)), r)
	}
	return c
}

// SettleLabels counts the labelled messages by label (Label), as Settle
// counts them all; copies with an unknown id are not in any label.
func (l *Ledger) SettleLabels() map[string]Counts {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]Counts{}
	for i, r := range l.msgs {
		if r.label == "" {
			continue
		}
		c := out[r.label]
		c.Sent++
		c.settle(LedgerID(l.worker, uint64(i+1)), r)
		out[r.label] = c
	}
	return out
}

// settle adds message r (ledger id id) to c; Sent is counted by the caller.
func (c *Counts) settle(id string, r *msgRec) {
	c.Resynced += int64(r.syncAgain)
	c.Duplicates += int64(r.rawDups)
	// copies under distinct server ids beyond the first, per recipient
	for p := range r.expect.words() * 64 {
		n := 0
		for _, cp := range r.copies {
			if cp.got.has(p) {
				n++
			}
		}
		if n > 1 {
			c.DuplicatesAfterDedup += int64(n - 1)
		}
	}
	if !r.acked {
		c.Failed++
		return
	}
	c.Acked++
	var missing []int
	for p := range r.expect.words() * 64 {
		if !r.expect.has(p) {
			continue
		}
		c.Expected++
		switch {
		case r.live.has(p):
			c.Delivered++
		case r.late.has(p):
			c.Late++
		default:
			c.Lost++
			missing = append(missing, p)
		}
		if !r.hasCopy(r.uid, p) {
			c.LostAfterDedup++
		}
	}
	if len(missing) > 0 && len(c.LostSamples) < maxLostSamples {
		c.LostSamples = append(c.LostSamples, fmt.Sprintf("%s uid=%s cid=%s positions=%v sent=%s acked after %v", id, r.uid, r.cid, missing,
			r.sentAt.UTC().Format("15:04:05.000"), r.ackedAt.Sub(r.sentAt).Round(time.Millisecond)))
	}
}

func (r *msgRec) hasCopy(uid string, p int) bool {
	for _, cp := range r.copies {
		if cp.uid == uid && cp.got.has(p) {
			return true
		}
	}
	return false
}

// Progress returns how many messages were sent and acked so far.
func (l *Ledger) Progress() (sent, acked int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.msgs), l.acked
}

// Received counts every copy received so far.
func (l *Ledger) Received() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.copies
}

// Outstanding counts (acked message, expected recipient) pairs that have no
// copy yet.
func (l *Ledger) Outstanding() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, r := range l.msgs {
		if !r.acked {
			continue
		}
		for i := range r.expect.words() {
			n += bits.OnesCount64(r.expect.word(i) &^ (r.live.word(i) | r.late.word(i)))
		}
	}
	return n
}
