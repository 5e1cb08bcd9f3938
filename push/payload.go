package push

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
)

// Sources are the candidates for a push payload (see the package
// documentation for the order and the rules).
type Sources struct {
	PushData string          // the message's pushData, as sent; "" if none
	Template string          // the app's static template; "" if none
	Hook     json.RawMessage // the _receiversOffline pushMessage; nil if none
}

// Vars are the values substituted into a template.
type Vars struct {
	ConvID       string // ${convId}
	Timestamp    int64  // ${timestamp}, ms
	FromClientID string // ${fromClientId}
}

// Source says where a payload came from.
type Source uint8

const (
	SourceNone Source = iota
	SourcePushData
	SourceTemplate
	SourceHook
)

func (s Source) String() string {
	switch s {
	case SourcePushData:
		return "pushData"
	case SourceTemplate:
		return "template"
	case SourceHook:
		return "hook"
	}
	return "none"
}

// BuildPayload returns the push payload, a JSON object, and its source; nil
// and SourceNone when no source is usable.
func BuildPayload(src Sources, v Vars) (json.RawMessage, Source) {
	for _, s := range [...]Source{SourceHook, SourcePushData, SourceTemplate} {
		var p json.RawMessage
		switch s {
		case SourcePushData:
			p = fromText(src.PushData)
		case SourceTemplate:
			p = fromTemplate(src.Template, v)
		case SourceHook:
			p = fromJSON(src.Hook)
		}
		if p != nil {
			return p, s
		}
	}
	return nil, SourceNone
}

// fromText is pushData: JSON per fromJSON, other text an alert.
func fromText(s string) json.RawMessage {
	t := strings.TrimSpace(s)
	if t == "" {
		return nil
	}
	if json.Valid([]byte(t)) {
		return fromJSON(json.RawMessage(t))
	}
	return alert(s)
}

// fromJSON is an object as is, a string holding an object that object, any
// other string an alert, anything else nil.
func fromJSON(raw json.RawMessage) json.RawMessage {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || !json.Valid(raw) {
		return nil
	}
	switch raw[0] {
	case '{':
		return raw
	case '"':
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return nil
		}
		if t := bytes.TrimSpace([]byte(s)); len(t) > 0 && t[0] == '{' && json.Valid(t) {
			return t
		}
		return alert(s)
	}
	return nil
}

func alert(text string) json.RawMessage {
	b, _ := json.Marshal(map[string]string{"alert": text})
	return b
}

// fromTemplate substitutes v into tmpl: JSON-aware when the result is a JSON
// object, else as plain text made an alert.
func fromTemplate(tmpl string, v Vars) json.RawMessage {
	if strings.TrimSpace(tmpl) == "" {
		return nil
	}
	if out := substituteJSON(tmpl, v); json.Valid(out) && bytes.TrimSpace(out)[0] == '{' {
		return bytes.TrimSpace(out)
	}
	return alert(substituteText(tmpl, v))
}

var placeholders = []string{"${convId}", "${timestamp}", "${fromClientId}"}

func (v Vars) value(ph string) string {
	switch ph {
	case "${convId}":
		return v.ConvID
	case "${timestamp}":
		return strconv.FormatInt(v.Timestamp, 10)
	default:
		return v.FromClientID
	}
}

func substituteText(tmpl string, v Vars) string {
	r := strings.NewReplacer(
		"${convId}", v.ConvID,
		"${timestamp}", strconv.FormatInt(v.Timestamp, 10),
		"${fromClientId}", v.FromClientID,
	)
	return r.Replace(tmpl)
}

// substituteJSON replaces placeholders in a JSON template: inside a string
// literal by the escaped value, outside by a JSON value.
func substituteJSON(tmpl string, v Vars) []byte {
	out := make([]byte, 0, len(tmpl)+64)
	inString := false
	for i := 0; i < len(tmpl); {
		c := tmpl[i]
		if c == '$' {
			if ph := placeholderAt(tmpl, i); ph != "" {
				val := v.value(ph)
				switch {
				case inString:
					out = appendEscaped(out, val)
				case ph == "${timestamp}":
					out = append(out, val...)
				default:
					out = append(out, '"')
					out = appendEscaped(out, val)
					out = append(out, '"')
				}
				i += len(ph)
				continue
			}
		}
		out = append(out, c)
		switch {
		case inString && c == '\\' && i+1 < len(tmpl):
			out = append(out, tmpl[i+1])
			i += 2
			continue
		case c == '"':
			inString = !inString
		}
		i++
	}
	return out
}

func placeholderAt(s string, i int) string {
	for _, ph := range placeholders {
		if strings.HasPrefix(s[i:], ph) {
			return ph
		}
	}
	return ""
}

// appendEscaped appends s escaped for the inside of a JSON string literal.
func appendEscaped(buf []byte, s string) []byte {
	q, _ := json.Marshal(s) // strings always marshal
	return append(buf, q[1:len(q)-1]...)
}
