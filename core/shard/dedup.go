package shard

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"sync"
)

// Send dedup. A send with a dedup token (Command.DT: the client's dt, or
// the edge's idempotency key for a client that sends none) that repeats
// one the same sender made in the same conversation gets the original's id
// and time back (Result.Dup) instead of storing a second message: the edge
// retries a send across a leader change, and the SDKs resend a failed
// message with its dt.
//
// Before Version7 the entry ('D' app sender cid dt, keys.go) was kept
// forever: ~60 bytes a message beside the history, not deleted even with
// its conversation, and every send looked it up in Pebble, a lookup that
// nearly always misses and so probes every memtable and every L0 table
// (docs/BENCHMARKS.md, stop 33: 6.4 % of the server's CPU in one-to-one
// sends).
//
// From Version7 on the entries live in a window of time:
//
//	'd'                      -> floor(8) first(8)
//	'd' bucket(8) digest(16) -> t(8) mid
//
// digest is the first 16 bytes of the SHA-256 of app, sender, cid and dt
// (length-prefixed as in keys): an entry is ~50 bytes whatever the ids'
// lengths (a uuid dt alone is 36), and two sends of a window share a digest
// only if they share all four (a collision takes ~2^64 tries to find, and
// a second preimage of another sender's digest ~2^128).
//
// A send's bucket is its command's time (Now) divided by DedupWindowMS,
// and never below the floor, the highest bucket a send has used (a leader
// whose clock is behind uses the floor's). A send looks in its bucket and
// the one before, so a resend within DedupWindowMS of the original's
// command is always found, one within twice that may be, and one later is
// stored as a new message. When a send moves the floor to bucket n, the
// buckets before n-1 go in one range deletion. first is the bucket of the
// first Version7 send: the entries of the earlier form are still looked up
// while the bucket is at most first+1, and deleted by range when it moves
// past that, so that a resend across the upgrade is found too.
//
// Window entries are keyed by time, not by conversation, so deleting a
// conversation leaves its entries to expire with their bucket.
//
// The FSM keeps the floor and a Bloom filter of each live bucket's keys in
// memory (dedupWindow), and whether any entry of the earlier form is left,
// so that a send with a new token, nearly every one, is decided without
// reading Pebble. A bucket's filter has every key the
// state holds in that bucket (and perhaps more: the writes of a batch that
// was thrown away), so its "no" is exact and its "maybe" is checked in the
// state: what a send gets depends only on the state, as on every replica.
const DedupWindowMS = 10 * 60 * 1000

const tagDedupWin = 'd'

// dedupFloorKey is the window's state: the floor and first buckets.
var dedupFloorKey = []byte{tagDedupWin}

func dedupBucketPrefix(bucket int64) []byte {
	return newKey(tagDedupWin).ts(bucket)
}

// dedupDigest names (app, sender, cid, dt) in the window.
func dedupDigest(app, sender, cid, dt string) [16]byte {
	in := make(keyBuf, 0, strLen(app)+strLen(sender)+strLen(cid)+strLen(dt))
	sum := sha256.Sum256(in.str(app).str(sender).str(cid).str(dt))
	return [16]byte(sum[:16])
}

func dedupWinKey(bucket int64, digest [16]byte) []byte {
	k := make(keyBuf, 0, 9+16)
	k = append(k, tagDedupWin)
	return append(k.ts(bucket), digest[:]...)
}

// digestHash is a digest's hash in a bucket's filter: the digest is
// already uniform.
func digestHash(digest []byte) uint64 { return binary.BigEndian.Uint64(digest) }

// dedupWindow is the FSM's memory of the window: the floor and first
// buckets as stored, and the live buckets' filters. Only Apply uses it;
// the mutex keeps Reset, which raftstore may call from elsewhere, safe.
type dedupWindow struct {
	mu    sync.Mutex
	known bool // floor, first and set are the state's
	set   bool // the floor key exists (a Version7 send was applied)
	floor int64
	first int64
	// noLegacy: the state holds no entry of the earlier form, so a send
	// need not look for one (set by load, cleared by a Version6 send's
	// write, set again by the range deletion).
	noLegacy bool
	filters  map[int64]*bloom
}

func (w *dedupWindow) reset() {
	w.mu.Lock()
	w.known, w.set, w.floor, w.first, w.noLegacy, w.filters = false, false, 0, 0, false, nil
	w.mu.Unlock()
}

// load reads the floor key through the batch the first time after a
// Reset.
func (w *dedupWindow) load(r Reader) error {
	if w.known {
		return nil
	}
	w.set, w.floor, w.first = false, 0, 0
	ok, err := getDecoded(r, dedupFloorKey, func(b []byte) error {
		floor, rest, ok1 := readTS(b)
		first, _, ok2 := readTS(rest)
		if !ok1 || !ok2 {
			return fmt.Errorf("dedup floor: %d bytes", len(b))
		}
		w.floor, w.first = floor, first
		return nil
	})
	if err != nil {
		return err
	}
	legacy, err := hasPrefix(r, []byte{tagDedup})
	if err != nil {
		return fmt.Errorf("%w: dedup: %w", ErrStorage, err)
	}
	w.set, w.noLegacy, w.known = ok, !legacy, true
	if w.filters == nil {
		w.filters = make(map[int64]*bloom)
	}
	return nil
}

// filter returns bucket's filter, built from the state the first time.
func (w *dedupWindow) filter(r Reader, bucket int64) (*bloom, error) {
	if f := w.filters[bucket]; f != nil {
		return f, nil
	}
	f := new(bloom)
	err := scan(r, dedupBucketPrefix(bucket), func(digest, _ []byte) bool {
		if len(digest) >= 8 { // a shorter one is no send's key
			f.add(digestHash(digest))
		}
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrStorage, err)
	}
	w.filters[bucket] = f
	return f, nil
}

// bucket is where a Version7 send at now reads and writes.
func (w *dedupWindow) bucket(now int64) int64 {
	b := max(now, 0) / DedupWindowMS
	if w.set {
		b = max(b, w.floor)
	}
	return b
}

// legacy reports whether entries of the earlier form may still be read.
func (w *dedupWindow) legacy(bucket int64) bool {
	return !w.set || bucket <= w.first+1
}

// dedupFind looks the command's token up: the original send's entry, or
// ok false.
func (a *applier) dedupFind() (d DedupEntry, ok bool) {
	c := a.c
	if a.v < Version7 {
		return a.dedupFindLegacy()
	}
	w := a.dedup
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.load(a.b); err != nil {
		a.err = err
		return d, false
	}
	bucket := w.bucket(c.Now)
	digest := dedupDigest(c.App, c.From, c.CID, c.DT)
	a.winDigest = digest // dedupPut's, when the send is new
	h := digestHash(digest[:])
	for _, b := range [2]int64{bucket, bucket - 1} {
		if b < 0 {
			continue
		}
		f, err := w.filter(a.b, b)
		if err != nil {
			a.err = err
			return d, false
		}
		if !f.has(h) {
			continue
		}
		k := dedupWinKey(b, digest)
		ok, err := getDecoded(a.b, k, func(v []byte) error {
			t, id, ok := readTS(v)
			if !ok {
				return fmt.Errorf("dedup entry: %d bytes", len(v))
			}
			d = DedupEntry{ID: string(id), T: t}
			return nil
		})
		if err != nil {
			a.err = err
			return d, false
		}
		if ok {
			return d, true
		}
	}
	if w.legacy(bucket) && !w.noLegacy {
		return a.dedupFindLegacy()
	}
	return d, false
}

// dedupFindLegacy looks the command's token up in the earlier form.
func (a *applier) dedupFindLegacy() (d DedupEntry, ok bool) {
	c := a.c
	ok, err := getJSON(a.b, dedupKey(c.App, c.From, c.CID, c.DT), &d)
	if err != nil {
		a.err = err
	}
	return d, ok
}

// dedupPut records m as the outcome of the command's token, moving the
// window's floor (and deleting what falls out of the window) first when
// the command's bucket is past it.
func (a *applier) dedupPut(m *Message) {
	c := a.c
	if a.v < Version7 {
		a.set(dedupKey(c.App, c.From, c.CID, c.DT), DedupEntry{ID: m.ID, T: m.T})
		a.dedup.mu.Lock()
		a.dedup.noLegacy = false
		a.dedup.mu.Unlock()
		return
	}
	w := a.dedup
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.load(a.b); err != nil {
		a.err = err
		return
	}
	bucket := w.bucket(c.Now)
	if !w.set || bucket > w.floor {
		first := w.first
		if !w.set {
			first = bucket
		}
		if w.set && bucket > 1 {
			// Buckets before bucket-1 are out of every later send's reach.
			a.rangeDel(dedupBucketPrefix(0), dedupBucketPrefix(bucket-1))
		}
		dropLegacy := w.set && w.legacy(w.floor) && !w.legacy(bucket)
		if dropLegacy {
			a.delRange([]byte{tagDedup})
		}
		a.set(dedupFloorKey, keyBuf(nil).ts(bucket).ts(first))
		if a.err != nil {
			return
		}
		w.set, w.floor, w.first = true, bucket, first
		w.noLegacy = w.noLegacy || dropLegacy
		for b := range w.filters {
			if b < bucket-1 {
				delete(w.filters, b)
			}
		}
	}
	f, err := w.filter(a.b, bucket)
	if err != nil {
		a.err = err
		return
	}
	k := dedupWinKey(bucket, a.winDigest)
	v := make([]byte, 0, 8+len(m.ID))
	a.set(k, append(binary.BigEndian.AppendUint64(v, uint64(m.T)), m.ID...))
	f.add(digestHash(a.winDigest[:]))
}

// bloom is a Bloom filter that grows: a chain of split-block filters
// (one 256-bit block per key, eight bits set in it, as Parquet's), each
// four times the capacity of the one before, so that a bucket of any size
// costs ~2–8 bytes a key and a lookup touches one cache line a part
// (4 parts for a million keys).
type bloom struct {
	parts []sbbf
}

type sbbf struct {
	blocks []sbbfBlock
	n, cap int
}

type sbbfBlock [8]uint32

const (
	bloomFirstCap = 16384
	bloomBitsKey  = 16 // ~0.1 % false positives at capacity
)

var sbbfSalt = [8]uint32{0x47b6137b, 0x44974d91, 0x8824ad5b, 0xa2b7289d,
	0x705495c7, 0x2df1424b, 0x9efc4947, 0x5c6bfb31}

func (f *bloom) add(h uint64) {
	if len(f.parts) == 0 || f.parts[len(f.parts)-1].n >= f.parts[len(f.parts)-1].cap {
		c := bloomFirstCap
		if len(f.parts) > 0 {
			c = 4 * f.parts[len(f.parts)-1].cap
		}
		f.parts = append(f.parts, sbbf{blocks: make([]sbbfBlock, c*bloomBitsKey/256), cap: c})
	}
	p := &f.parts[len(f.parts)-1]
	p.n++
	blk := p.block(h)
	x := uint32(h)
	for i, s := range sbbfSalt {
		blk[i] |= 1 << ((x * s) >> 27)
	}
}

func (f *bloom) has(h uint64) bool {
	x := uint32(h)
	for i := range f.parts {
		blk := f.parts[i].block(h)
		all := true
		for j, s := range sbbfSalt {
			if blk[j]&(1<<((x*s)>>27)) == 0 {
				all = false
				break
			}
		}
		if all {
			return true
		}
	}
	return false
}

func (p *sbbf) block(h uint64) *sbbfBlock {
	return &p.blocks[(h>>32)*uint64(len(p.blocks))>>32]
}

// keys is how many keys the filter holds.
func (f *bloom) keys() int {
	n := 0
	for _, p := range f.parts {
		n += p.n
	}
	return n
}
