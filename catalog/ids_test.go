package catalog_test

import (
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/relaymesh/relaymesh/catalog"
)

func TestConvIDRoundTrip(t *testing.T) {
	seen := map[string]bool{}
	for _, c := range []catalog.ConvID{{1, 0}, {1, 1}, {2, 7}, {255, 65535}, {128, 256}, {9, 0x1234}} {
		for range 50 {
			id, err := catalog.NewConvID(c.Region, c.Shard)
			if err != nil {
				t.Fatal(err)
			}
			if len(id) != catalog.ConvIDLen || strings.ToLower(id) != id || !catalog.IsHexID(id) {
				t.Fatalf("NewConvID(%d, %d) = %q: not 24 lowercase hex", c.Region, c.Shard, id)
			}
			if !strings.HasPrefix(id, "f1") {
				t.Fatalf("id %q does not start with the marker f1", id)
			}
			if seen[id] {
				t.Fatalf("id %q made twice", id)
			}
			seen[id] = true
			got, ok := catalog.ParseConvID(id)
			if !ok || got != c {
				t.Fatalf("ParseConvID(%q) = %v, %v; want %v, true", id, got, ok, c)
			}
			got, ok = catalog.ParseConvID(catalog.TempPrefix + id)
			if !ok || got != c {
				t.Fatalf("ParseConvID(_tmp:%q) = %v, %v; want %v, true", id, got, ok, c)
			}
		}
	}
}

func TestConvIDRegionZero(t *testing.T) {
	if id, err := catalog.NewConvID(0, 3); !errors.Is(err, catalog.ErrBadRegion) || id != "" {
		t.Fatalf("NewConvID(0, 3) = %q, %v; want ErrBadRegion", id, err)
	}
}

// TestConvIDLayout checks the bytes against docs/MESH.md by hand: marker,
// region, big-endian shard, 6 random bytes, and a check that is the
// first two bytes of SHA-256("relaymesh-cid" || bytes 0-9) (checked
// against sha256sum for f1 02 01 02 00 00 00 00 00 00).
func TestConvIDLayout(t *testing.T) {
	id, err := catalog.NewConvID(2, 0x0102)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := hex.DecodeString(id)
	if b[0] != 0xf1 || b[1] != 2 || b[2] != 1 || b[3] != 2 {
		t.Fatalf("id %x: header %x, want f1 02 01 02", b, b[:4])
	}
	// A fixed id built from the spec with sha256sum:
	// printf 'relaymesh-cid\xf1\x02\x01\x02\x00\x00\x00\x00\x00\x00' | sha256sum
	const fixed = "f10201020000000000005ba2"
	want := catalog.ConvID{Region: 2, Shard: 0x0102}
	if got, ok := catalog.ParseConvID(fixed); !ok || got != want {
		t.Fatalf("ParseConvID(%s) = %v, %v; want %v, true", fixed, got, ok, want)
	}
}

func TestConvIDMalformed(t *testing.T) {
	good, err := catalog.NewConvID(3, 42)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := hex.DecodeString(good)
	withRegion0 := func() string {
		// A region-0 id with a correct check: the check alone is not enough.
		c := append([]byte(nil), b...)
		c[1] = 0
		return catalog.EncodeConvIDForTest(c)
	}()
	i := strings.LastIndexAny(good, "abcdef") // at worst the f of the marker
	oneUpper := good[:i] + strings.ToUpper(good[i:i+1]) + good[i+1:]
	withMarker := func(m byte) string {
		c := append([]byte(nil), b...)
		c[0] = m
		return catalog.EncodeConvIDForTest(c)
	}
	for _, tc := range []struct{ name, id string }{
		{"empty", ""},
		{"temp prefix only", catalog.TempPrefix},
		{"short", good[:22]},
		{"long", good + "00"},
		{"uppercase", strings.ToUpper(good)},
		{"one uppercase", oneUpper},
		{"not hex", "f1" + strings.Repeat("g", 22)},
		{"space", good[:23] + " "},
		{"unicode", good[:22] + "é"},
		{"leancloud objectId", "5f6d0c1e8a3b2c0012345678"},
		{"leancloud 2026 objectId", "69a1b2c3d4e5f60718293a4b"},
		{"all zero", strings.Repeat("0", 24)},
		{"all f", strings.Repeat("f", 24)},
		{"region 0 with a good check", withRegion0},
		{"other marker, good check", withMarker(0xf2)},
		{"marker 0x4f, good check", withMarker(0x4f)},
		{"double temp prefix", catalog.TempPrefix + catalog.TempPrefix + good},
		{"other prefix", "_sys:" + good},
		{"prefix after", good + catalog.TempPrefix},
	} {
		if got, ok := catalog.ParseConvID(tc.id); ok {
			t.Errorf("%s: ParseConvID(%q) = %v, true; want false", tc.name, tc.id, got)
		}
	}
}

// TestConvIDBitFlips: flipping any bit of an id breaks it (the marker,
// the region, the check), or, in the shard or random bytes, fails the
// check, but for the 1 in 65536 flips the 16-bit check cannot see: none
// of the 96 single-bit flips of a few hundred ids may parse more than
// that rate allows.
func TestConvIDBitFlips(t *testing.T) {
	parsed, total := 0, 0
	for range 300 {
		id, err := catalog.NewConvID(7, 300)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := hex.DecodeString(id)
		for i := range 12 {
			for bit := range 8 {
				c := append([]byte(nil), b...)
				c[i] ^= 1 << bit
				total++
				if _, ok := catalog.ParseConvID(hex.EncodeToString(c)); ok {
					parsed++
					if i == 0 || i >= 10 {
						t.Errorf("flip of byte %d bit %d in %s parses", i, bit, id)
					}
				}
			}
		}
	}
	// A flip of bytes 1–9 parses when the 16-bit check happens to match:
	// about 300·72/65536 ≈ 0.33 expected, Poisson. More than 3 came about
	// once in 10,000 runs (one CI run saw 4); more than 8 has a chance of
	// about 1e-10, while a check of 8 bits would let ~84 through.
	if parsed > 8 {
		t.Errorf("%d of %d single-bit flips parse as ours", parsed, total)
	}
}

func FuzzParseConvID(f *testing.F) {
	for _, s := range []string{
		"", "f10201020000000000005ba2", "_tmp:f10201020000000000005ba2", "5f6d0c1e8a3b2c0012345678",
		"F10201020000000000006B8F", "f10001020000000000005ba2", "_tmp:", "_tmp:_tmp:f10201020000000000005ba2",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, ok := catalog.ParseConvID(s)
		if !ok {
			if c != (catalog.ConvID{}) {
				t.Fatalf("ParseConvID(%q) = %v, false; want the zero ConvID", s, c)
			}
			return
		}
		if c.Region == 0 {
			t.Fatalf("ParseConvID(%q): region 0", s)
		}
		id := strings.TrimPrefix(s, catalog.TempPrefix)
		b, err := hex.DecodeString(id)
		if err != nil || len(b) != 12 {
			t.Fatalf("ParseConvID(%q) ok, but it is not 12 hex bytes", s)
		}
		if again := catalog.EncodeConvIDForTest(b); again != id {
			t.Fatalf("ParseConvID(%q) ok, but re-encoding its bytes gives %q", s, again)
		}
		if b[1] != c.Region || uint16(b[2])<<8|uint16(b[3]) != c.Shard {
			t.Fatalf("ParseConvID(%q) = %v: not the id's bytes", s, c)
		}
		if !catalog.IsHexID(id) {
			t.Fatalf("ParseConvID(%q) ok, IsHexID false", s)
		}
	})
}
