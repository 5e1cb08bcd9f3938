package moderation

import (
	"encoding/json"
	"strings"
)

// FilterMessage filters a message payload and returns it with the number of
// hits. A JSON object has only its top-level "_lctext" string filtered, the
// rest of its bytes kept as they are; any other payload is filtered as plain
// text (see the package documentation). With no hit it returns data itself.
func (f *Filter) FilterMessage(data string) (string, int) {
	if f == nil || f.a == nil {
		return data, 0
	}
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' || !json.Valid([]byte(data)) {
		return f.Replace(data)
	}
	// Fast path: a payload with no escapes and no hit anywhere cannot hide a
	// hit in _lctext. This keeps the common case free of allocations.
	if !strings.Contains(data, `\`) && !f.Contains(data) {
		return data, 0
	}
	vs, ve, ok := lctextSpan(data, i)
	if !ok {
		return data, 0
	}
	var text string
	if raw := data[vs+1 : ve-1]; !strings.Contains(raw, `\`) {
		text = raw // no escapes: the literal is the text
	} else if err := json.Unmarshal([]byte(data[vs:ve]), &text); err != nil {
		return data, 0 // unreachable: the payload is valid JSON
	}
	out, hits := f.Replace(text)
	if hits == 0 {
		return data, 0
	}
	buf := make([]byte, 0, len(data)+len(out)-len(text)+8)
	buf = append(buf, data[:vs]...)
	buf = appendQuoted(buf, out)
	buf = append(buf, data[ve:]...)
	return string(buf), hits
}

// appendQuoted appends s as a JSON string literal. It escapes only what JSON
// requires ('"', '\\' and control characters) so that the rest of the text
// keeps the form the client sent.
func appendQuoted(buf []byte, s string) []byte {
	const hex = "0123456789abcdef"
	buf = append(buf, '"')
	last := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		buf = append(buf, s[last:i]...)
		switch c {
		case '"', '\\':
			buf = append(buf, '\\', c)
		case '\n':
			buf = append(buf, '\\', 'n')
		case '\r':
			buf = append(buf, '\\', 'r')
		case '\t':
			buf = append(buf, '\\', 't')
		default:
			buf = append(buf, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		last = i + 1
	}
	buf = append(buf, s[last:]...)
	return append(buf, '"')
}

// lctextSpan finds the value of the top-level key "_lctext" in the valid JSON
// object starting at data[i] ('{'), and returns its byte range when it is a
// string. When the key repeats, the last one counts, as encoding/json and
// JavaScript's JSON.parse do.
func lctextSpan(data string, i int) (vs, ve int, ok bool) {
	i++ // '{'
	for {
		i = skipSpace(data, i)
		if data[i] == '}' {
			return vs, ve, ok
		}
		if data[i] == ',' {
			i = skipSpace(data, i+1)
		}
		ks := i
		i = skipString(data, i)
		key := data[ks:i]
		i = skipSpace(data, i) + 1 // ':'
		i = skipSpace(data, i)
		start := i
		i = skipValue(data, i)
		if isLCText(key) {
			ok = data[start] == '"'
			vs, ve = start, i
		}
	}
}

func isLCText(rawKey string) bool {
	if rawKey == `"_lctext"` {
		return true
	}
	if !strings.Contains(rawKey, `\`) {
		return false
	}
	var k string
	return json.Unmarshal([]byte(rawKey), &k) == nil && k == "_lctext"
}

// The skip functions walk JSON already known to be valid.

func skipSpace(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index after the string literal starting at s[i].
func skipString(s string, i int) int {
	for i++; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return i
}

// skipValue returns the index after the value starting at s[i].
func skipValue(s string, i int) int {
	switch s[i] {
	case '"':
		return skipString(s, i)
	case '{', '[':
		depth := 0
		for ; i < len(s); i++ {
			switch s[i] {
			case '"':
				i = skipString(s, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
		}
		return i
	default: // number, true, false, null
		for i < len(s) && !strings.ContainsRune(",}] \t\r\n", rune(s[i])) {
			i++
		}
		return i
	}
}
