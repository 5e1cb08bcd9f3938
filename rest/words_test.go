package rest

import (
	"slices"
	"testing"

	"github.com/relaymesh/relaymesh/proto/meshpb"
)

func TestSensitiveWords(t *testing.T) {
	e := newEnv(t, Limits{})
	e.be.reply = func(req *meshpb.ClientRequest) *meshpb.ClientReply {
		if req.GetAdmin().GetOp() == meshpb.AdminRequest_WORDS_GET {
			return &meshpb.ClientReply{Admin: &meshpb.AdminReply{Words: []string{"spam"}, WordsSet: true}}
		}
		return &meshpb.ClientReply{}
	}
	if status, _ := e.do("PUT", "/1.2/rtm/sensitive-words", `{"words":["spam","eggs"]}`, "X-LC-Id: "+testApp, "X-LC-Key: "+testKey); status != 403 {
		t.Errorf("PUT with the app key: %d, want 403", status)
	}
	if status, _ := e.do("PUT", "/1.2/rtm/sensitive-words", `{}`, master...); status != 400 {
		t.Errorf("PUT without words: %d, want 400", status)
	}
	status, body := e.do("PUT", "/1.2/rtm/sensitive-words", `{"words":["spam","eggs"]}`, master...)
	if status != 200 || !equalJSON(body, map[string]any{}) {
		t.Fatalf("PUT: %d %v", status, body)
	}
	req, _ := e.be.last(t)
	if a := req.GetAdmin(); a.GetOp() != meshpb.AdminRequest_WORDS_SET || !slices.Equal(a.GetWords(), []string{"spam", "eggs"}) || a.GetWordsReset() {
		t.Errorf("PUT sent %v", a)
	}
	if status, _ := e.do("DELETE", "/1.2/rtm/sensitive-words", "", master...); status != 200 {
		t.Errorf("DELETE: %d", status)
	}
	if req, _ := e.be.last(t); !req.GetAdmin().GetWordsReset() {
		t.Errorf("DELETE sent %v, want words_reset", req.GetAdmin())
	}
	status, body = e.do("GET", "/1.2/rtm/sensitive-words", "", master...)
	if want := map[string]any{"words": []any{"spam"}, "custom": true}; status != 200 || !equalJSON(body, want) {
		t.Errorf("GET: %d %v, want %v", status, body, want)
	}
}
