package raftstore_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble"
	"go.uber.org/goleak"

	"github.com/relaymesh/relaymesh/raftstore"
	"github.com/relaymesh/relaymesh/raftstore/raftstoretest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, raftstoretest.LeakOptions()...)
}

// counterSM is a test state machine that detects double application.
// For each command it
//   - increments "count", read through the batch (so it also checks that
//     reads see earlier writes of the same raft batch),
//   - records the raft index under "i/<index>"; finding it already there
//     means the entry was applied twice, which sets "dup",
//   - increments "v/<cmd>", the number of times this command was applied,
//
// and returns the new count. A command starting with "fail" returns an error
// value and writes nothing.
type counterSM struct{}

var errFail = errors.New("counterSM: fail")

func (counterSM) Apply(b *pebble.Batch, index uint64, cmd []byte) any {
	if len(cmd) >= 4 && string(cmd[:4]) == "fail" {
		return errFail
	}
	ik := []byte(fmt.Sprintf("i/%020d", index))
	if _, c, err := b.Get(ik); err == nil {
		c.Close()
		must(b.Set([]byte("dup"), ik, nil))
	}
	must(b.Set(ik, cmd, nil))
	count := getU64(b, []byte("count")) + 1
	must(b.Set([]byte("count"), u64(count), nil))
	vk := append([]byte("v/"), cmd...)
	must(b.Set(vk, u64(getU64(b, vk)+1), nil))
	return count
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func getU64(r pebble.Reader, k []byte) uint64 {
	v, c, err := r.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return 0
	}
	must(err)
	defer c.Close()
	return binary.BigEndian.Uint64(v)
}

func newCounter(int) raftstore.StateMachine { return counterSM{} }

// checkNoDup fails t if state (a raftstoretest.Dump) shows a double
// application, and returns the count.
func checkNoDup(t *testing.T, state map[string]string) uint64 {
	t.Helper()
	if d, ok := state["dup"]; ok {
		t.Fatalf("entry applied twice: %q", d)
	}
	c, ok := state["count"]
	if !ok {
		return 0
	}
	return binary.BigEndian.Uint64([]byte(c))
}
