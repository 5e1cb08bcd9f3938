package shard

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

// fill sets v (a settable value) to random contents, every field of every
// struct reached: a field added to Command later is filled too, so the
// round trip below fails until the binary form carries it.
func fill(r *rand.Rand, v reflect.Value, depth int) {
	switch v.Kind() {
	case reflect.String:
		v.SetString(randStr(r))
	case reflect.Bool:
		v.SetBool(r.IntN(2) == 0)
	case reflect.Int, reflect.Int64:
		v.SetInt(randInt(r))
	case reflect.Int32:
		v.SetInt(int64(int32(randInt(r))))
	case reflect.Uint64:
		v.SetUint(r.Uint64() >> r.UintN(64))
	case reflect.Pointer:
		if r.IntN(3) == 0 {
			return // nil
		}
		p := reflect.New(v.Type().Elem())
		fill(r, p.Elem(), depth)
		v.Set(p)
	case reflect.Slice:
		if v.Type() == reflect.TypeFor[json.RawMessage]() {
			texts := []string{``, `{}`, `{"a":1}`, ` { "name" : "x y" , "n" : [1, 2.5, null, true] } `, `"s"`, `{"k":{"z":"\u00e9\ud83d\ude00"}}`}
			v.SetBytes([]byte(texts[r.IntN(len(texts))]))
			return
		}
		if v.Type() == reflect.TypeFor[[]*Command]() {
			if depth > 0 || r.IntN(2) == 0 {
				return // no batch in a batch
			}
			n := 1 + r.IntN(3)
			l := make([]*Command, n) // never a nil command: no proposer makes one
			for i := range l {
				l[i] = new(Command)
				fill(r, reflect.ValueOf(l[i]).Elem(), depth+1)
			}
			v.Set(reflect.ValueOf(l))
			return
		}
		n := r.IntN(4)
		if n == 0 {
			return
		}
		s := reflect.MakeSlice(v.Type(), n, n)
		for i := range n {
			fill(r, s.Index(i), depth+1)
		}
		v.Set(s)
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() && r.IntN(3) > 0 {
				fill(r, v.Field(i), depth)
			}
		}
	default:
		panic("fill: add kind " + v.Kind().String())
	}
}

func randStr(r *rand.Rand) string {
	switch r.IntN(6) {
	case 0:
		return ""
	case 1:
		return strings.Repeat("x", r.IntN(300)) // a length prefix of two bytes
	case 2:
		return "bad\xff\xfe utf-8 \xc3" // invalid UTF-8: JSON writes U+FFFD
	case 3:
		return "中文 \u2028 \"quoted\" \\ <tag> & \x00\x1f"
	}
	b := make([]byte, r.IntN(12))
	for i := range b {
		b[i] = byte('a' + r.IntN(26))
	}
	return string(b)
}

func randInt(r *rand.Rand) int64 {
	switch r.IntN(5) {
	case 0:
		return 0
	case 1:
		return -r.Int64N(1 << 40)
	case 2:
		return math.MaxInt64 - r.Int64N(3)
	case 3:
		return math.MinInt64 + r.Int64N(3)
	}
	return r.Int64N(1 << 42)
}

// viaJSON is what a replica applies of c proposed as JSON (c's version as
// it is: Encode would stamp one on a decoded command that has none).
func viaJSON(t *testing.T, c *Command) *Command {
	t.Helper()
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	d, err := DecodeCommand(b)
	if err != nil {
		t.Fatalf("JSON %s: %v", b, err)
	}
	return d
}

// TestBinCommandMeansJSON: for random commands with every field in play,
// the binary form decodes to what the JSON form decodes to (strings with
// invalid UTF-8, attributes with spaces, extreme integers, batches), and
// its envelope is JSON that an earlier release reads its version from.
func TestBinCommandMeansJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for n := range 3000 {
		c := new(Command)
		fill(r, reflect.ValueOf(c).Elem(), 0)
		c.V = Version5
		for _, sub := range c.Batch {
			sub.V = 0
		}
		b, err := c.EncodeBinary()
		if err != nil {
			t.Fatalf("command %d: %v", n, err)
		}
		got, err := DecodeCommand(b)
		if err != nil {
			t.Fatalf("command %d: decode %s: %v", n, b, err)
		}
		want := viaJSON(t, c)
		if !reflect.DeepEqual(got, want) {
			gj, _ := json.Marshal(got)
			wj, _ := json.Marshal(want)
			t.Fatalf("command %d: binary decodes to\n%s\nJSON to\n%s", n, gj, wj)
		}
		var old struct {
			V  int `json:"v"`
			Op Op  `json:"op"`
		}
		if err := json.Unmarshal(b, &old); err != nil || old.V != Version5 || old.Op != "" || peekVersion(b) != Version5 {
			t.Fatalf("command %d: the envelope %q reads as version %d (%v)", n, b[:min(len(b), 40)], old.V, err)
		}
	}
}

// TestBinCommandVersions: below Version5 the command is JSON as before; a
// version newer than this code's does not decode and peekVersion gives it
// (apply then stops, ErrUnknownVersion); a payload's version must be its
// envelope's.
func TestBinCommandVersions(t *testing.T) {
	c := &Command{V: Version4, Op: OpAppend, App: "a", CID: "c", From: "u", Now: 7, MID: "m", Data: "hi"}
	b, err := c.EncodeBinary()
	if err != nil || !bytes.HasPrefix(b, []byte(`{"v":4,"op":"append"`)) {
		t.Fatalf("a Version4 command: %s, %v; want JSON", b, err)
	}
	c.V = 0
	if b, _ = c.EncodeBinary(); !bytes.HasPrefix(b, fmt.Appendf(nil, `{"v":%d,"bin":"`, Version)) || c.V != Version {
		t.Fatalf("an unstamped command: %s (v %d); want the binary form at Version", b, c.V)
	}
	c.V = Version + 1
	p, _ := appendBinCommand(nil, c)
	newer := fmt.Appendf(nil, `{"v":%d,"bin":"%s"}`, Version+1, base64.StdEncoding.EncodeToString(p))
	if _, err := DecodeCommand(newer); !errors.Is(err, ErrBadCommand) || peekVersion(newer) != Version+1 {
		t.Fatalf("a newer version: %v, peeked %d", err, peekVersion(newer))
	}
	f := New()
	if res := f.apply(nil, 9, newer); !isFatal(res, ErrUnknownVersion) {
		t.Fatalf("apply of a newer version: %v, want fatal ErrUnknownVersion", res)
	}
	mismatch := bytes.Replace(newer, []byte(`{"v":6`), []byte(`{"v":5`), 1) // payload says 6
	if _, err := DecodeCommand(mismatch); err == nil {
		t.Fatal("a payload of another version than its envelope decoded")
	}
}

func isFatal(res any, target error) bool {
	var fe *FatalError
	if e, ok := res.(error); ok && errors.As(e, &fe) {
		return errors.Is(fe.Err, target)
	}
	return false
}

// TestBinCommandRefusesMalformed: truncated, reordered, repeated, unknown
// and oversized fields, and batches nested too deep, are errors, not
// panics or guesses.
func TestBinCommandRefusesMalformed(t *testing.T) {
	good, _ := appendBinCommand(nil, &Command{V: 5, Op: OpBatch, Batch: []*Command{{Op: OpAppend, App: "a", Data: "x"}}, FanoutDone: []uint64{1, 2}})
	for i := 1; i < len(good); i++ {
		if _, err := decodeBinCommand(good[:i], 0); err == nil {
			// A cut between fields is a shorter command, not an error.
			if c, _ := decodeBinCommand(good[:i], 0); c != nil && reflect.DeepEqual(c.Batch, []*Command{{Op: OpAppend, App: "a", Data: "x"}}) && len(c.FanoutDone) == 2 {
				t.Fatalf("a cut at %d decoded as the whole command", i)
			}
		}
	}
	for name, p := range map[string][]byte{
		"unknown field":   {200, 1},
		"field twice":     {bApp, 1, 'a', bApp, 1, 'b'},
		"out of order":    {bApp, 1, 'a', bOp, 1, 'b'},
		"length too long": {bApp, 9, 'a'},
		"count too big":   {bMembers, 0xff, 0xff, 0xff, 0x7f, 1, 'a'},
		"bad varint":      {bNow, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
		"int32 overflow":  append([]byte{bPriority}, binaryVarint(1<<40)...),
		"bad JSON":        {bDevice, 2, '{', '['},
		"deep batch":      deepBatch(4),
	} {
		if c, err := decodeBinCommand(p, 0); err == nil {
			t.Errorf("%s: decoded %+v", name, c)
		}
	}
	if _, err := decodeBinCommand(deepBatch(3), 0); err != nil {
		t.Errorf("a batch in a batch (which apply refuses, as JSON's): %v", err)
	}
}

func binaryVarint(v int64) []byte {
	p, _ := appendBinCommand(nil, &Command{Now: v})
	return p[1:]
}

// deepBatch is a payload of batches nested levels deep.
func deepBatch(levels int) []byte {
	p := []byte{bOp, 5, 'b', 'a', 't', 'c', 'h'}
	for range levels - 1 {
		q := []byte{bOp, 5, 'b', 'a', 't', 'c', 'h', bBatch, 1, byte(len(p))}
		p = append(q, p...)
	}
	return p
}

func FuzzBinCommand(f *testing.F) {
	for _, c := range []*Command{
		{V: 5, Op: OpAppend, App: "a", CID: "c", From: "u", Now: 1, MID: "m", Data: "hi", DT: "d", Edge: "e", Conn: 3},
		{V: 5, Op: OpBatch, Batch: []*Command{{Op: OpAck, App: "a", CID: "c", From: "u", T: 9}}, FanoutDone: []uint64{4}},
		{V: 5, Op: OpStart, Attr: json.RawMessage(`{"name":"x"}`), Members: []string{"a", "b"}, Device: &DeviceOp{ID: "d"}},
	} {
		p, _ := appendBinCommand(nil, c)
		f.Add(p)
	}
	// Decoding takes any bytes; encoding writes a command as JSON would
	// carry it (invalid UTF-8 as U+FFFD), so one round trip normalizes and
	// the next changes nothing.
	f.Fuzz(func(t *testing.T, p []byte) {
		c, err := decodeBinCommand(p, 0)
		if err != nil {
			return
		}
		q, err := appendBinCommand(nil, c)
		if err != nil {
			return // a JSON field that does not encode again (e.g. attr of spaces): the proposer's encode fails alike
		}
		d, err := decodeBinCommand(q, 0)
		if err != nil {
			t.Fatalf("re-encoded command does not decode: %v", err)
		}
		q2, err := appendBinCommand(nil, d)
		if err != nil || !bytes.Equal(q, q2) {
			t.Fatalf("a second round trip changed the payload (%v):\n%x\n%x", err, q, q2)
		}
		if want := viaJSON(t, d); !reflect.DeepEqual(d, want) && !bytes.Equal(mustJSON(t, d), mustJSON(t, want)) {
			t.Fatalf("the binary command means something else as JSON:\n%s\n%s", mustJSON(t, d), mustJSON(t, want))
		}
	})
}

func mustJSON(t *testing.T, c *Command) []byte {
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
