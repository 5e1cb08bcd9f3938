package moderation

import (
	"encoding/json"
	"testing"
)

func TestFilterMessage(t *testing.T) {
	f := MustCompile([]string{"spam", "傻逼", "<b>"})
	tests := []struct {
		name, in, want string
		hits           int
	}{
		{"plain text", "buy spam now", "buy *** now", 1},
		{"plain no hit", "hello", "hello", 0},
		{"not json", "{spam", "{***", 1},
		{"json array is text", `["spam"]`, `["***"]`, 1},
		{"json string is text", `"spam"`, `"***"`, 1},
		{"typed message",
			`{"_lctype":-1,"_lctext":"SPAM 傻逼!","_lcattrs":{"a":[1,{"b":"}"}]}}`,
			`{"_lctype":-1,"_lctext":"*** ***!","_lcattrs":{"a":[1,{"b":"}"}]}}`, 2},
		{"attrs untouched",
			`{"_lcattrs":{"note":"spam"},"_lctext":"ok","_lctype":-1}`,
			`{"_lcattrs":{"note":"spam"},"_lctext":"ok","_lctype":-1}`, 0},
		{"whitespace and order kept",
			"{ \"z\" : true ,\n \"_lctext\" : \"a spam\" , \"n\": 1.50 }",
			"{ \"z\" : true ,\n \"_lctext\" : \"a ***\" , \"n\": 1.50 }", 1},
		{"escaped hit",
			`{"_lctext":"\u50bb\u903c and sp\u0061m","_lctype":-1}`,
			`{"_lctext":"*** and ***","_lctype":-1}`, 2},
		{"escapes elsewhere survive",
			`{"_lctext":"line1\nspam \"q\" <b>","x":"\u00e9"}`,
			`{"_lctext":"line1\n*** \"q\" ***","x":"\u00e9"}`, 2},
		{"html kept unescaped",
			`{"_lctext":"a<i>&spam"}`,
			`{"_lctext":"a<i>&***"}`, 1},
		{"escaped key", `{"_lc\u0074ext":"spam"}`, `{"_lc\u0074ext":"***"}`, 1},
		{"no _lctext", `{"text":"spam"}`, `{"text":"spam"}`, 0},
		{"non-string _lctext", `{"_lctext":["spam"]}`, `{"_lctext":["spam"]}`, 0},
		{"last duplicate key counts",
			`{"_lctext":"spam","_lctext":"ok"}`, `{"_lctext":"spam","_lctext":"ok"}`, 0},
		{"leading space", ` {"_lctext":"spam"}`, ` {"_lctext":"***"}`, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, hits := f.FilterMessage(tc.in)
			if got != tc.want || hits != tc.hits {
				t.Errorf("FilterMessage(%s) = %s, %d; want %s, %d", tc.in, got, hits, tc.want, tc.hits)
			}
			if json.Valid([]byte(tc.in)) && !json.Valid([]byte(got)) {
				t.Errorf("output %s is not valid JSON", got)
			}
		})
	}
}
