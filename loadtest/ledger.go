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

// arena keeps values of a type without pointers in chunks, each one heap
// object the collector never scans: the ledger keeps a record, four
// member sets and a server id for every message sent, millions in a long
// run, and as heap objects with pointers (stop 35: 5.25 objects, 325 B a
// message) the load tester's collections marked hundreds of MB of them,
// 0.1-0.4 s each on the cores the server runs on.
type arena[T any] struct {
	chunks [][]T
	size   int // values a chunk holds
}

// aref locates a run of values in an arena.
type aref struct{ chunk, off uint32 }

// alloc returns n zero values, contiguous, and where they are.
func (a *arena[T]) alloc(n int) (aref, []T) {
	last := len(a.chunks) - 1
	if last < 0 || len(a.chunks[last])+n > cap(a.chunks[last]) {
		a.chunks = append(a.chunks, make([]T, 0, max(a.size, n)))
		last++
	}
	c := a.chunks[last]
	off := len(c)
	a.chunks[last] = c[:off+n]
	return aref{uint32(last), uint32(off)}, a.chunks[last][off : off+n : off+n]
}

// at returns the n values alloc placed at r.
func (a *arena[T]) at(r aref, n int) []T {
	return a.chunks[r.chunk][int(r.off) : int(r.off)+n : int(r.off)+n]
}

// strRef is a string kept in an arena of bytes; the zero strRef is "".
type strRef struct {
	aref
	n uint32
}

func (l *Ledger) keep(s string) strRef {
	if s == "" {
		return strRef{}
	}
	r, b := l.bytes.alloc(len(s))
	copy(b, s)
	return strRef{r, uint32(len(s))}
}

func (l *Ledger) str(r strRef) []byte {
	if r.n == 0 {
		return nil
	}
	return l.bytes.at(r.aref, int(r.n))
}

// name interns s (a conversation id or a label, a few per worker); name 0
// is "".
func (l *Ledger) name(s string) uint32 {
	if i, ok := l.nameIdx[s]; ok {
		return i
	}
	if l.nameIdx == nil {
		l.nameIdx = map[string]uint32{"": 0}
		l.names = []string{""}
		if s == "" {
			return 0
		}
	}
	i := uint32(len(l.names))
	l.names = append(l.names, s)
	l.nameIdx[s] = i
	return i
}

// Sets of a record, each nw words in the words arena, one after another.
const (
	setExpect = iota // positions of the recipients that must get it
	setLive          // positions that got it live (first copy)
	setLate          // positions that got it only through sync
	setGot0          // positions that got a copy under uid0
	numSets
)

// uidCopies are the recipients that got a message under one server id:
// the second and later ids of a message, which are rare (l.extra).
type uidCopies struct {
	uid string
	got bitset
}

// msgRec is the ledger entry of one sent message. It holds no pointer (see
// arena; TestLedgerRecordPointerFree).
type msgRec struct {
	sentAt    Duration // since the ledger's base
	ackedAt   Duration
	uid       strRef // server id from the ack
	uid0      strRef // server id of the first copy received (set got0)
	sets      aref   // numSets sets of nw words
	cid       uint32 // l.names
	label     uint32 // l.names; Label: e.g. the region pair "r1→r2"; 0 for none
	rawDups   int32  // live copies beyond the first per recipient
	syncAgain int32  // sync copies of a message already received live
	nw        uint32 // words a set
	acked     bool
	copied    bool // a copy came: uid0 and got0 hold it; more ids in l.extra
}

// recChunk is how many records an arena chunk holds.
const recChunk = 4096

// Ledger records every message a worker sends, its ack, and every copy
// its sessions receive, and settles them at the end (see the package doc
// for the rules). It is safe for concurrent use.
type Ledger struct {
	worker int

	recvHook func(d Duration) // immutable; called with each first live copy's latency

	mu      sync.Mutex
	base    time.Time              // guarded by mu; the first send's time, records count from it
	recs    arena[msgRec]          // guarded by mu; seq-1 is the index
	n       int                    // guarded by mu; records
	words   arena[uint64]          // guarded by mu; the records' sets
	bytes   arena[byte]            // guarded by mu; the records' server ids
	names   []string               // guarded by mu; cid and labels (name)
	nameIdx map[string]uint32      // guarded by mu
	extra   map[uint64][]uidCopies // guarded by mu; per seq, copies under a second id and more
	acked   int                    // guarded by mu
	copies  int                    // guarded by mu; every copy received
	last    map[string]lastAck     // guarded by mu; per conversation
	foreign int                    // guarded by mu; copies with an id this ledger did not issue
	unknown int                    // guarded by mu; copies at a position that was not expected
}

// Duration is a latency in nanoseconds.
type Duration = time.Duration

// NewLedger returns the ledger of worker; onDelivery, when not nil, gets the
// latency (send start to arrival) of each first live copy.
func NewLedger(worker int, onDelivery func(Duration)) *Ledger {
	return &Ledger{
		worker: worker, recvHook: onDelivery,
		recs:  arena[msgRec]{size: recChunk},
		words: arena[uint64]{size: 1 << 16},
		bytes: arena[byte]{size: 1 << 20},
	}
}

type lastAck struct {
	ts  int64
	uid string
}

// Sent registers a message before it is sent to conversation cid of n
// members; expect lists the member positions that must receive it. It
// returns the ledger id to put in the text.
func (l *Ledger) Sent(cid string, n int, expect []int, at time.Time) (id string, seq uint64) {
	nw := max(1, (n+63)/64)
	l.mu.Lock()
	if l.n == 0 {
		l.base = at
	}
	sets, words := l.words.alloc(numSets * nw)
	exp := bitset(words[:nw])
	for _, p := range expect {
		exp.set(p)
	}
	_, rs := l.recs.alloc(1)
	rs[0] = msgRec{sentAt: at.Sub(l.base), sets: sets, nw: uint32(nw), cid: l.name(cid)}
	l.n++
	seq = uint64(l.n)
	l.mu.Unlock()
	return LedgerID(l.worker, seq), seq
}

// Label tags message seq (cross-region: its region pair); Delivered
// returns the tag with a copy's latency and SettleLabels counts by it.
func (l *Ledger) Label(seq uint64, label string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if r := l.recLocked(seq); r != nil {
		r.label = l.name(label)
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
	r.acked, r.ackedAt = true, at.Sub(l.base)
	if r.copied && string(l.str(r.uid0)) == uid {
		r.uid = r.uid0 // one copy of the bytes
	} else {
		r.uid = l.keep(uid)
	}
	l.acked++
	if l.last == nil {
		l.last = make(map[string]lastAck)
	}
	cid := l.names[r.cid]
	if ts >= l.last[cid].ts {
		l.last[cid] = lastAck{ts: ts, uid: uid}
	}
}

// LastAcked returns the id of the newest acked message of cid, "" if none.
func (l *Ledger) LastAcked(cid string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last[cid].uid
}

func (l *Ledger) recLocked(seq uint64) *msgRec {
	if seq == 0 || seq > uint64(l.n) {
		return nil
	}
	i := seq - 1
	return &l.recs.chunks[i/recChunk][i%recChunk]
}

// set returns set k (setExpect...) of r.
func (l *Ledger) set(r *msgRec, k int) bitset {
	nw := int(r.nw)
	return bitset(l.words.at(r.sets, numSets*nw)[k*nw : (k+1)*nw])
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
	if pos < 0 || pos >= int(r.nw)*64 {
		l.unknown++
		l.mu.Unlock()
		return -1, ""
	}
	if !l.set(r, setExpect).has(pos) {
		l.unknown++
	}
	live := l.set(r, setLive)
	var lat Duration = -1
	if sync {
		if live.has(pos) {
			r.syncAgain++
		} else {
			l.set(r, setLate).set(pos)
		}
		l.markCopyLocked(seq, r, uid, pos)
		l.mu.Unlock()
		return -1, ""
	}
	if live.has(pos) {
		r.rawDups++
	} else {
		live.set(pos)
		lat = at.Sub(l.base) - r.sentAt
	}
	label = l.names[r.label]
	l.markCopyLocked(seq, r, uid, pos)
	l.mu.Unlock()
	if lat >= 0 && l.recvHook != nil {
		l.recvHook(lat)
	}
	return lat, label
}

func (l *Ledger) markCopyLocked(seq uint64, r *msgRec, uid string, pos int) {
	switch {
	case !r.copied:
		r.copied = true
		if string(l.str(r.uid)) == uid {
			r.uid0 = r.uid // one copy of the bytes
		} else {
			r.uid0 = l.keep(uid)
		}
		l.set(r, setGot0).set(pos)
		return
	case string(l.str(r.uid0)) == uid:
		l.set(r, setGot0).set(pos)
		return
	}
	more := l.extra[seq]
	for i := range more {
		if more[i].uid == uid {
			more[i].got.set(pos)
			return
		}
	}
	c := uidCopies{uid: uid, got: make(bitset, r.nw)}
	c.got.set(pos)
	if l.extra == nil {
		l.extra = make(map[uint64][]uidCopies)
	}
	l.extra[seq] = append(more, c)
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
	c := Counts{Sent: int64(l.n), Unexpected: int64(l.foreign + l.unknown)}
	for seq := uint64(1); seq <= uint64(l.n); seq++ {
		l.settleLocked(&c, seq)
	}
	return c
}

// SettleLabels counts the labelled messages by label (Label), as Settle
// counts them all; copies with an unknown id are not in any label.
func (l *Ledger) SettleLabels() map[string]Counts {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]Counts{}
	for seq := uint64(1); seq <= uint64(l.n); seq++ {
		r := l.recLocked(seq)
		if r.label == 0 {
			continue
		}
		label := l.names[r.label]
		c := out[label]
		c.Sent++
		l.settleLocked(&c, seq)
		out[label] = c
	}
	return out
}

// settleLocked adds message seq to c; Sent is counted by the caller.
func (l *Ledger) settleLocked(c *Counts, seq uint64) {
	r := l.recLocked(seq)
	c.Resynced += int64(r.syncAgain)
	c.Duplicates += int64(r.rawDups)
	more := l.extra[seq]
	got0 := l.set(r, setGot0)
	// copies under distinct server ids beyond the first, per recipient
	// (none when the message came under one id at most)
	if len(more) > 0 {
		for p := range len(got0) * 64 {
			n := 0
			if got0.has(p) {
				n++
			}
			for _, cp := range more {
				if cp.got.has(p) {
					n++
				}
			}
			if n > 1 {
				c.DuplicatesAfterDedup += int64(n - 1)
			}
		}
	}
	if !r.acked {
		c.Failed++
		return
	}
	c.Acked++
	uid := l.str(r.uid)
	// the copies under the ack's id
	var ackCopies bitset
	if r.copied && string(l.str(r.uid0)) == string(uid) {
		ackCopies = got0
	}
	for _, cp := range more {
		if cp.uid == string(uid) {
			ackCopies = cp.got
		}
	}
	var missing []int
	expect, live, late := l.set(r, setExpect), l.set(r, setLive), l.set(r, setLate)
	for i, w := range expect {
		for w != 0 {
			p := i*64 + bits.TrailingZeros64(w)
			w &= w - 1
			c.Expected++
			switch {
			case live.has(p):
				c.Delivered++
			case late.has(p):
				c.Late++
			default:
				c.Lost++
				missing = append(missing, p)
			}
			if ackCopies == nil || !ackCopies.has(p) {
				c.LostAfterDedup++
			}
		}
	}
	if len(missing) > 0 && len(c.LostSamples) < maxLostSamples {
		sentAt := l.base.Add(r.sentAt)
		c.LostSamples = append(c.LostSamples, fmt.Sprintf("%s uid=%s cid=%s positions=%v sent=%s acked after %v",
			LedgerID(l.worker, seq), uid, l.names[r.cid], missing,
			sentAt.UTC().Format("15:04:05.000"), (r.ackedAt-r.sentAt).Round(time.Millisecond)))
	}
}

// Progress returns how many messages were sent and acked so far.
func (l *Ledger) Progress() (sent, acked int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n, l.acked
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
	for seq := uint64(1); seq <= uint64(l.n); seq++ {
		r := l.recLocked(seq)
		if !r.acked {
			continue
		}
		expect, live, late := l.set(r, setExpect), l.set(r, setLive), l.set(r, setLate)
		for i := range expect {
			n += bits.OnesCount64(expect[i] &^ (live[i] | late[i]))
		}
	}
	return n
}
