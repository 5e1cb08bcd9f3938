package catalog

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Input checks. Each returns nil or the refusal, naming the field. They
// depend only on their input (no DNS, no environment), so every replica
// decides alike.

// checkName accepts a region name or node id: 1..MaxNameLen of
// [A-Za-z0-9._-].
func checkName(field, s string) *Error {
	if s == "" {
		return fail(ErrInvalid, "%s: empty", field)
	}
	if len(s) > MaxNameLen {
		return fail(ErrTooLong, "%s: %d bytes, at most %d", field, len(s), MaxNameLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fail(ErrInvalid, "%s %q: character %q", field, s, c)
		}
	}
	return nil
}

// checkAppID accepts what apps.ValidID does: 1..MaxNameLen bytes of UTF-8
// without ':' or control characters.
func checkAppID(s string) *Error {
	if s == "" {
		return fail(ErrInvalid, "app: empty")
	}
	if len(s) > MaxNameLen {
		return fail(ErrTooLong, "app: %d bytes, at most %d", len(s), MaxNameLen)
	}
	if !utf8.ValidString(s) {
		return fail(ErrInvalid, "app %q: not UTF-8", s)
	}
	for _, r := range s {
		if r == ':' || unicode.IsControl(r) {
			return fail(ErrInvalid, "app %q: character %q", s, r)
		}
	}
	return nil
}

// checkClient accepts a clientId: 1..MaxClientIDLen bytes. The core
// validates clientIds before they reach a shard; the catalog only bounds
// them, so that no conversation a shard holds is refused its index entry.
func checkClient(s string) *Error {
	if s == "" {
		return fail(ErrInvalid, "clientId: empty")
	}
	if len(s) > MaxClientIDLen {
		return fail(ErrTooLong, "clientId: %d bytes, at most %d", len(s), MaxClientIDLen)
	}
	return nil
}

// checkPrintable accepts 1..MaxAddrLen printable ASCII characters without
// spaces.
func checkPrintable(field, s string) *Error {
	if s == "" {
		return fail(ErrInvalid, "%s: empty", field)
	}
	if len(s) > MaxAddrLen {
		return fail(ErrTooLong, "%s: %d bytes, at most %d", field, len(s), MaxAddrLen)
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return fail(ErrInvalid, "%s %q: character %q", field, s, s[i])
		}
	}
	return nil
}

// checkHostPort accepts host:port with a port 1..65535.
func checkHostPort(field, s string) *Error {
	if serr := checkPrintable(field, s); serr != nil {
		return serr
	}
	i := strings.LastIndexByte(s, ':')
	if i <= 0 {
		return fail(ErrInvalid, "%s %q: not host:port", field, s)
	}
	host, port := s[:i], s[i+1:]
	if strings.HasPrefix(host, "[") != strings.HasSuffix(host, "]") || (!strings.HasPrefix(host, "[") && strings.Contains(host, ":")) {
		return fail(ErrInvalid, "%s %q: not host:port", field, s)
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 || port[0] == '0' {
		return fail(ErrInvalid, "%s %q: bad port", field, s)
	}
	return nil
}

// checkURL accepts an http(s) or ws(s) URL with a host.
func checkURL(field, s string) *Error {
	if serr := checkPrintable(field, s); serr != nil {
		return serr
	}
	for _, scheme := range []string{"https://", "http://", "wss://", "ws://"} {
		if rest, ok := strings.CutPrefix(s, scheme); ok {
			if rest == "" || rest[0] == '/' {
				return fail(ErrInvalid, "%s %q: no host", field, s)
			}
			return nil
		}
	}
	return fail(ErrInvalid, "%s %q: not an http, https, ws or wss URL", field, s)
}

// checkCIDR accepts an IPv4 or IPv6 prefix.
func checkCIDR(field, s string) *Error {
	if serr := checkPrintable(field, s); serr != nil {
		return serr
	}
	if _, err := netip.ParsePrefix(s); err != nil {
		return fail(ErrInvalid, "%s %q: not a CIDR", field, s)
	}
	return nil
}

// checkList bounds a list and checks each item.
func checkList(field string, list []string, max int, check func(string, string) *Error) *Error {
	if len(list) > max {
		return fail(ErrTooMany, "%s: %d, at most %d", field, len(list), max)
	}
	for _, s := range list {
		if serr := check(field, s); serr != nil {
			return serr
		}
	}
	return nil
}

// checkHash accepts a UniqueHash: 64 lowercase hex characters.
func checkHash(s string) *Error {
	if len(s) != UniqueHashLen {
		return fail(ErrInvalid, "hash: %d characters, want %d", len(s), UniqueHashLen)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return fail(ErrInvalid, "hash: character %q", c)
		}
	}
	return nil
}

// checkCid accepts a conversation id as the catalog registers it: 24
// lowercase hex characters (ours, LeanCloud's or pre-mesh).
func checkCid(field, s string) *Error {
	if len(s) > 2*ConvIDLen {
		return fail(ErrInvalid, "%s: %d bytes, want %d hex characters", field, len(s), ConvIDLen)
	}
	if !IsHexID(s) {
		return fail(ErrInvalid, "%s %q: not %d lowercase hex characters", field, s, ConvIDLen)
	}
	return nil
}

// checkSettings accepts a JSON object of at most MaxSettingsBytes and
// returns it compacted.
func checkSettings(raw json.RawMessage) ([]byte, *Error) {
	if len(raw) > MaxSettingsBytes {
		return nil, fail(ErrTooLong, "settings: %d bytes, at most %d", len(raw), MaxSettingsBytes)
	}
	t := bytes.TrimSpace(raw)
	if len(t) == 0 || t[0] != '{' || !json.Valid(t) {
		return nil, fail(ErrInvalid, "settings: not a JSON object")
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, t); err != nil {
		return nil, fail(ErrInvalid, "settings: %v", err)
	}
	return buf.Bytes(), nil
}

// normalize sorts and deduplicates a list.
func normalize(list []string) []string {
	out := slices.Clone(list)
	slices.Sort(out)
	return slices.Compact(out)
}
