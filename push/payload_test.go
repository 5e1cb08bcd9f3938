package push

import (
	"encoding/json"
	"reflect"
	"testing"
)

func TestBuildPayload(t *testing.T) {
	v := Vars{ConvID: "conv1", Timestamp: 1700000000123, FromClientID: `Tom "T" \ <b>`}
	tests := []struct {
		name    string
		src     Sources
		want    string // JSON, compared by value; "" means no payload
		wantSrc Source
	}{
		{"nothing", Sources{}, "", SourceNone},
		{"hook first", Sources{PushData: `{"alert":"p"}`, Template: `{"alert":"t"}`, Hook: json.RawMessage(`{"alert":"h"}`)},
			`{"alert":"h"}`, SourceHook},
		{"pushData object before template", Sources{PushData: `{"alert":"hi","badge":"Increment"}`, Template: `{"alert":"t"}`},
			`{"alert":"hi","badge":"Increment"}`, SourcePushData},
		{"hook unusable falls to pushData", Sources{PushData: `{"alert":"p"}`, Hook: json.RawMessage(`[1]`)}, `{"alert":"p"}`, SourcePushData},
		{"pushData string holding an object", Sources{PushData: `"{\"alert\":\"hi\"}"`}, `{"alert":"hi"}`, SourcePushData},
		{"pushData plain text", Sources{PushData: "new message"}, `{"alert":"new message"}`, SourcePushData},
		{"pushData unusable JSON", Sources{PushData: `[1,2]`, Template: `{"alert":"t"}`}, `{"alert":"t"}`, SourceTemplate},
		{"hook before template", Sources{Template: `{"alert":"t"}`, Hook: json.RawMessage(`{"alert":"h"}`)}, `{"alert":"h"}`, SourceHook},
		{"blank pushData falls to template", Sources{PushData: "  ", Template: `{"alert":"t"}`}, `{"alert":"t"}`, SourceTemplate},
		{"hook string", Sources{Hook: json.RawMessage(`"ping"`)}, `{"alert":"ping"}`, SourceHook},
		{"hook unusable", Sources{Hook: json.RawMessage(`42`)}, "", SourceNone},
		{"template in strings", Sources{Template: `{"alert":"${fromClientId} wrote in ${convId} at ${timestamp}","conv":"${convId}"}`},
			`{"alert":"Tom \"T\" \\ <b> wrote in conv1 at 1700000000123","conv":"conv1"}`, SourceTemplate},
		{"template outside strings", Sources{Template: `{"ts":${timestamp},"from":${fromClientId},"c":${convId}}`},
			`{"ts":1700000000123,"from":"Tom \"T\" \\ <b>","c":"conv1"}`, SourceTemplate},
		{"template escaped quote before placeholder", Sources{Template: `{"alert":"\"${convId}\"","x":"a\\"}`},
			`{"alert":"\"conv1\"","x":"a\\"}`, SourceTemplate},
		{"template unknown placeholder kept", Sources{Template: `{"alert":"${other} ${convId}"}`}, `{"alert":"${other} conv1"}`, SourceTemplate},
		{"template plain text", Sources{Template: `New message from ${fromClientId}`}, `{"alert":"New message from Tom \"T\" \\ <b>"}`, SourceTemplate},
		{"template broken JSON is text", Sources{Template: `{"alert": ${convId`}, `{"alert":"{\"alert\": ${convId"}`, SourceTemplate},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, src := BuildPayload(tc.src, v)
			if src != tc.wantSrc {
				t.Errorf("source: got %v, want %v", src, tc.wantSrc)
			}
			if tc.want == "" {
				if got != nil {
					t.Errorf("payload: got %s, want none", got)
				}
				return
			}
			var g, w any
			if err := json.Unmarshal(got, &g); err != nil {
				t.Fatalf("payload %s is not JSON: %v", got, err)
			}
			if err := json.Unmarshal([]byte(tc.want), &w); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(g, w) {
				t.Errorf("payload: got %s, want %s", got, tc.want)
			}
		})
	}
}

func FuzzTemplate(f *testing.F) {
	f.Add(`{"alert":"${fromClientId}: ${convId}","ts":${timestamp}}`, `a"b\c`, "conv")
	f.Add(`{"a":"\"${convId}"}`, "\x00\n", "\u2028")
	f.Fuzz(func(t *testing.T, tmpl, from, conv string) {
		p, src := BuildPayload(Sources{Template: tmpl}, Vars{ConvID: conv, FromClientID: from, Timestamp: 1})
		if p == nil {
			if src != SourceNone {
				t.Fatalf("nil payload from %v", src)
			}
			return
		}
		var obj map[string]any
		if err := json.Unmarshal(p, &obj); err != nil {
			t.Fatalf("template %q: payload %s is not a JSON object: %v", tmpl, p, err)
		}
	})
}
