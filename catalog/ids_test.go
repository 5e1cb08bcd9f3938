package catalog

import (
	"encoding/hex"
	"strings"
	"testing"
)

func TestConvIDRoundTrip(t *testing.T) {
	for _, w := range []ConvID{{1, 0}, {1, 1}, {7, 300}, {255, 65535}} {
		seen := map[string]bool{}
		for range 100 {
			id, err := NewConvID(w.Region, w.Shard)
			if err != nil {
				t.Fatal(err)
			}
			if len(id) != 24 || strings.ToLower(id) != id {
				t.Fatalf("id %q: want 24 lowercase hex", id)
			}
			if seen[id] {
				t.Fatalf("id %q minted twice", id)
			}
			seen[id] = true
			got, ok := ParseConvID(id)
			if !ok || got != w {
				t.Fatalf("ParseConvID(%q) = %v, %v; want %v", id, got, ok, w)
			}
			if got, ok := ParseConvID(TempPrefix + id); !ok || got != w {
				t.Fatalf("ParseConvID(_tmp:%q) = %v, %v", id, got, ok)
			}
			if HomeOf(id) != w {
				t.Fatalf("HomeOf(%q) = %v", id, HomeOf(id))
			}
		}
	}
	if _, err := NewConvID(0, 1); err == nil {
		t.Fatal("region 0 minted an id")
	}
}

func TestConvIDNotOurs(t *testing.T) {
	good, _ := NewConvID(3, 9)
	for _, id := range []string{
		"",
		"5f6d0c1e8a3b2c0012345678", // a LeanCloud ObjectId
		strings.ToUpper(good),
		good[:23],
		good + "0",
		"zz" + good[2:],
		"f100" + good[4:], // region 0 (check recomputed below would still fail)
		TempPrefix,
		"_tmp:_tmp:" + good,
	} {
		if w, ok := ParseConvID(id); ok {
			t.Errorf("ParseConvID(%q) = %v, ok; want not ours", id, w)
		}
		if HomeOf(id) != LegacyShard {
			t.Errorf("HomeOf(%q) = %v; want the legacy shard", id, HomeOf(id))
		}
	}
	// Any flipped bit in any byte breaks the id: marker, region, shard,
	// random or check.
	raw, _ := hex.DecodeString(good)
	for i := range raw {
		for bit := range 8 {
			b := append([]byte(nil), raw...)
			b[i] ^= 1 << bit
			if w, ok := ParseConvID(hex.EncodeToString(b)); ok {
				t.Fatalf("byte %d bit %d flipped: still parses as %v", i, bit, w)
			}
		}
	}
}

func FuzzParseConvID(f *testing.F) {
	good, _ := NewConvID(1, 2)
	for _, s := range []string{good, "5f6d0c1e8a3b2c0012345678", TempPrefix + good, "", "f1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		w, ok := ParseConvID(s)
		if !ok {
			return
		}
		id := strings.TrimPrefix(s, TempPrefix)
		b, err := hex.DecodeString(id)
		if err != nil || len(b) != 12 || b[0] != 0xF1 || b[1] != w.Region || uint16(b[2])<<8|uint16(b[3]) != w.Shard || w.Region == 0 {
			t.Fatalf("ParseConvID(%q) = %v, ok: bytes disagree", s, w)
		}
		if hex.EncodeToString(b) != id {
			t.Fatalf("ParseConvID(%q): not canonical", s)
		}
	})
}
