package e2e

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/relaymesh/relaymesh/client"
)

// Linearizability of membership operations (issue 9), checked with
// porcupine. While a fault runs (TestLabFaults: a leader killed, a region
// partitioned away), ten clients of both regions operate on two
// conversations, one homed in each region: the two owners (one per
// region, each the creator of one conversation) add and remove workers
// of their own conversation and read the members of both; eight workers
// (four per region, two per edge) join and quit either conversation
// themselves and read its members (conv/query by objectId, the "m"
// column). Each client does one operation about every 2.2 s, under the
// edge's 30 conversation operations a minute per session; a rejection by
// that quota (4116) is certain not to have been applied and is left out. Every operation is
// recorded with its call and return time. The model is one set of workers
// per conversation (the owners are always members and left out); an
// operation that failed (an error, a timeout) may or may not have been
// applied, so it is recorded with its return at infinity: porcupine may
// then place it anywhere after its call, including never (a failed read
// says nothing and is left out).

const (
	memAdd = iota
	memRemove
	memRead
)

// memIn is an operation's input: the conversation, the kind and the
// workers (a bit per worker) it adds or removes.
type memIn struct {
	Cid  string
	Kind int
	Mask uint64
}

// memOut is a read's answer (the workers that were members).
type memOut struct {
	Mask    uint64
	Unknown bool // the operation failed: its effect is unknown
}

// membershipModel is a set of members per conversation.
var membershipModel = porcupine.Model{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		by := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range h {
			c := op.Input.(memIn).Cid
			if by[c] == nil {
				keys = append(keys, c)
			}
			by[c] = append(by[c], op)
		}
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, by[k])
		}
		return out
	},
	Init: func() any { return uint64(0) },
	Step: func(state, input, output any) (bool, any) {
		s, in, out := state.(uint64), input.(memIn), output.(memOut)
		switch in.Kind {
		case memAdd:
			return true, s | in.Mask
		case memRemove:
			return true, s &^ in.Mask
		default:
			return out.Mask == s, s
		}
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(memIn), output.(memOut)
		name := [...]string{"add", "remove", "read"}[in.Kind]
		if in.Kind == memRead {
			return fmt.Sprintf("read %s → %08b", in.Cid[len(in.Cid)-4:], out.Mask)
		}
		u := ""
		if out.Unknown {
			u = " (failed: unknown)"
		}
		return fmt.Sprintf("%s %08b %s%s", name, in.Mask, in.Cid[len(in.Cid)-4:], u)
	},
	DescribeState: func(state any) string { return fmt.Sprintf("%08b", state.(uint64)) },
}

// membershipRecorder drives the six clients and records their operations.
type membershipRecorder struct {
	t      *testing.T
	base   time.Time
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu    sync.Mutex
	ops   []porcupine.Operation // guarded by mu
	errs  []string              // guarded by mu; the first few errors
	quota int                   // guarded by mu; operations refused by the edge's quota
}

// pause waits between two operations of a client: 1.8–2.6 s, so a
// session stays under the edge's 30 operations a minute.
func (r *membershipRecorder) pause(ctx context.Context) {
	select {
	case <-ctx.Done():
	case <-time.After(1800*time.Millisecond + rand.N(800*time.Millisecond)):
	}
}

// startMembershipRecorder logs the clients in, creates the two
// conversations and starts operating until stop.
func startMembershipRecorder(t *testing.T, l *labProc) *membershipRecorder {
	ctx, cancel := context.WithCancel(context.Background())
	rec := &membershipRecorder{t: t, base: time.Now(), cancel: cancel}
	tag := fmt.Sprintf("lin%x", time.Now().UnixNano()%(1<<24))
	r1, r2 := l.top.Regions[0], l.top.Regions[1]
	dial := func(url, id string) *client.Client {
		dctx, c := context.WithTimeout(ctx, 30*time.Second)
		defer c()
		return dialLabClient(t, dctx, url, id)
	}
	owners := []*client.Client{dial(r1.Edges[0], tag+"-owner1"), dial(r2.Edges[0], tag+"-owner2")}
	var workers []string
	var wcl []*client.Client
	for i, url := range []string{r1.Edges[0], r1.Edges[1], r1.Edges[0], r1.Edges[1], r2.Edges[0], r2.Edges[1], r2.Edges[0], r2.Edges[1]} {
		id := fmt.Sprintf("%s-w%d", tag, i)
		workers = append(workers, id)
		wcl = append(wcl, dial(url, id))
	}
	var cids []string
	for i, o := range owners {
		cctx, c := context.WithTimeout(ctx, 30*time.Second)
		cid, err := o.CreateConversation(cctx, []string{owners[1-i].ID()}, tag+"-lin", nil, false)
		c()
		if err != nil {
			t.Fatal(err)
		}
		cids = append(cids, cid)
	}
	maskOf := func(ids []string) uint64 {
		var m uint64
		for i, w := range workers {
			if slices.Contains(ids, w) {
				m |= 1 << i
			}
		}
		return m
	}
	read := func(c *client.Client, cid string, ctx context.Context) (uint64, error) {
		rows, err := c.QueryConversations(ctx, map[string]any{"objectId": cid}, "", 1, 0)
		if err != nil {
			return 0, err
		}
		if len(rows) != 1 {
			return 0, fmt.Errorf("conv/query of %s: %d rows", cid, len(rows))
		}
		ms, _ := rows[0]["m"].([]any)
		var ids []string
		for _, m := range ms {
			if s, ok := m.(string); ok {
				ids = append(ids, s)
			}
		}
		return maskOf(ids), nil
	}
	run := func(clientID int, op func(ctx context.Context) (memIn, memOut, error)) {
		for ctx.Err() == nil {
			call := time.Since(rec.base).Nanoseconds()
			octx, c := context.WithTimeout(ctx, 6*time.Second)
			in, out, err := op(octx)
			c()
			ret := time.Since(rec.base).Nanoseconds()
			if ctx.Err() != nil && err != nil {
				return // stopped mid-operation: not recorded
			}
			if err != nil {
				rec.mu.Lock()
				if len(rec.errs) < 5 {
					rec.errs = append(rec.errs, err.Error())
				}
				var le *client.Error
				if errors.As(err, &le) && le.Code == 4116 {
					rec.quota++
				}
				rec.mu.Unlock()
			}
			if err != nil {
				var le *client.Error
				if in.Kind == memRead || errors.As(err, &le) && le.Code == 4116 {
					rec.pause(ctx)
					continue
				}
				out.Unknown, ret = true, math.MaxInt64
			}
			rec.mu.Lock()
			rec.ops = append(rec.ops, porcupine.Operation{ClientId: clientID, Input: in, Call: call, Output: out, Return: ret})
			rec.mu.Unlock()
			rec.pause(ctx)
		}
	}
	for i, o := range owners {
		rec.wg.Go(func() {
			run(i, func(ctx context.Context) (memIn, memOut, error) {
				switch k := rand.IntN(3); k {
				case memAdd, memRemove:
					m := uint64(1 + rand.IntN(255))
					var ids []string
					for j, w := range workers {
						if m&(1<<j) != 0 {
							ids = append(ids, w)
						}
					}
					var r client.MembersResult
					var err error
					if k == memAdd {
						r, err = o.AddMembers(ctx, cids[i], ids)
					} else {
						r, err = o.RemoveMembers(ctx, cids[i], ids)
					}
					if err == nil && len(r.Failed) > 0 {
						err = r.Failed[0]
					}
					return memIn{cids[i], k, m}, memOut{}, err
				default:
					cid := cids[rand.IntN(2)]
					m, err := read(o, cid, ctx)
					return memIn{cid, memRead, 0}, memOut{Mask: m}, err
				}
			})
		})
	}
	for j, w := range wcl {
		rec.wg.Go(func() {
			run(2+j, func(ctx context.Context) (memIn, memOut, error) {
				cid := cids[rand.IntN(2)]
				switch rand.IntN(3) {
				case 0:
					return memIn{cid, memAdd, 1 << j}, memOut{}, w.Join(ctx, cid)
				case 1:
					return memIn{cid, memRemove, 1 << j}, memOut{}, w.Quit(ctx, cid)
				default:
					m, err := read(w, cid, ctx)
					return memIn{cid, memRead, 0}, memOut{Mask: m}, err
				}
			})
		})
	}
	return rec
}

// stop ends the operations and returns the history.
func (r *membershipRecorder) stop() []porcupine.Operation {
	r.cancel()
	r.wg.Wait()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.t.Logf("membership recorder: %d operations refused by the edge's quota; first errors: %q", r.quota, r.errs)
	return r.ops
}

// checkLinearizable fails unless ops are linearizable; it writes
// porcupine's visualization of a failure to a file and names it.
func checkLinearizable(t *testing.T, what string, ops []porcupine.Operation) {
	t.Helper()
	var writes, unknown, reads int
	for _, op := range ops {
		switch {
		case op.Input.(memIn).Kind == memRead:
			reads++
		case op.Output.(memOut).Unknown:
			unknown++
		default:
			writes++
		}
	}
	if reads < 15 || writes < 30 {
		t.Fatalf("%s: only %d reads and %d writes recorded", what, reads, writes)
	}
	t0 := time.Now()
	res, info := porcupine.CheckOperationsVerbose(membershipModel, ops, 2*time.Minute)
	t.Logf("FIGURE linearizability during the %s: %d membership operations (%d writes acked, %d failed and modelled as maybe applied, %d reads), porcupine says %s in %v",
		what, len(ops), writes, unknown, reads, res, time.Since(t0).Round(time.Millisecond))
	if res != porcupine.Ok {
		dir, _ := os.MkdirTemp("", "relaymesh-porcupine-")
		path := filepath.Join(dir, strings.ReplaceAll(what, " ", "-")+".html")
		if f, err := os.Create(path); err == nil {
			porcupine.Visualize(membershipModel, info, f)
			f.Close()
		}
		t.Errorf("%s: membership history is %s (visualization: %s)", what, res, path)
	}
}

// TestMembershipModel checks the checker: the model accepts a history that
// is linearizable only through a failed add placed late, and rejects a
// stale read. It runs in make test (no lab).
func TestMembershipModel(t *testing.T) {
	op := func(c int, kind int, mask uint64, call, ret int64, out memOut) porcupine.Operation {
		return porcupine.Operation{ClientId: c, Input: memIn{"c0000", kind, mask}, Call: call, Output: out, Return: ret}
	}
	ok := []porcupine.Operation{
		op(0, memAdd, 0b01, 0, 10, memOut{}),
		op(1, memRead, 0, 11, 12, memOut{Mask: 0b01}),
		op(2, memAdd, 0b10, 13, math.MaxInt64, memOut{Unknown: true}), // failed: maybe applied
		op(1, memRead, 0, 20, 21, memOut{Mask: 0b01}),
		op(1, memRead, 0, 30, 31, memOut{Mask: 0b11}), // it was, late
		op(0, memRemove, 0b01, 40, 41, memOut{}),
		op(1, memRead, 0, 50, 51, memOut{Mask: 0b10}),
	}
	if !porcupine.CheckOperations(membershipModel, ok) {
		t.Fatal("a linearizable history was rejected")
	}
	stale := append(slices.Clone(ok), op(3, memRead, 0, 60, 61, memOut{Mask: 0b11})) // the remove at 41 is lost
	if porcupine.CheckOperations(membershipModel, stale) {
		t.Fatal("a stale read after a completed remove was accepted")
	}
	undone := append(slices.Clone(ok[:5]), op(1, memRead, 0, 35, 36, memOut{Mask: 0b01})) // the unknown add un-happened
	if porcupine.CheckOperations(membershipModel, undone) {
		t.Fatal("a read undoing an observed add was accepted")
	}
}
