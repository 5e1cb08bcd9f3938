package rest

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/relaymesh/relaymesh/proto/meshpb"
)

// TestImportAPI: the import routes need the master key, forward rows to
// the core as one IMPORT request in the core's field names (routed by the
// messages' conversation, or the first imported one), and answer with its
// outcome; malformed bodies, too many rows and oversized bodies are
// refused before the core is asked.
func TestImportAPI(t *testing.T) {
	e := newEnv(t, Limits{})
	e.be.reply = func(req *meshpb.ClientRequest) *meshpb.ClientReply {
		if req.GetAdmin().GetCid() == "" {
			return &meshpb.ClientReply{Admin: &meshpb.AdminReply{ImportJson: []byte(`{"new":3,"dup":2}`)}}
		}
		return &meshpb.ClientReply{Admin: &meshpb.AdminReply{ImportJson: []byte(
			`{"created":["c1"],"existing":["c2"],"refused":[{"id":"c3","code":4304,"error":"full"}],"new":3,"dup":2}`)}}
	}
	const convs = "/1.2/rtm/import/conversations"
	body := `{"conversations":[{"objectId":"c1","c":"alice","m":["alice","bob"],"mu":["bob"],"unique":true,
		"attributes":{"name":"g","attr":{"k":1}},"createdAt":1500000000000,"updatedAt":1500000000001},
		{"objectId":"c2","createdAt":1},{"objectId":"c3","createdAt":1}]}`
	app := []string{"X-LC-Id: " + testApp, "X-LC-Key: " + testKey}
	status, v := e.do("POST", convs, body, app...)
	wantError(t, "app key", status, v, http.StatusForbidden, codeMasterOnly)

	status, v = e.do("POST", convs, body, master...)
	if status != 200 {
		t.Fatalf("import conversations: got %d %v", status, v)
	}
	got, _ := json.Marshal(v)
	if want := `{"created":["c1"],"existing":["c2"],"refused":[{"code":4304,"error":"full","objectId":"c3"}]}`; string(got) != want {
		t.Fatalf("reply: got %s, want %s", got, want)
	}
	req, _ := e.be.last(t)
	if req.GetAdmin().GetOp() != meshpb.AdminRequest_IMPORT || req.GetAdmin().GetCid() != "c1" {
		t.Fatalf("request: got %v", req.GetAdmin())
	}
	var in struct {
		Convs []map[string]any `json:"convs"`
	}
	if err := json.Unmarshal(req.GetAdmin().GetImportJson(), &in); err != nil || len(in.Convs) != 3 {
		t.Fatalf("import_json %s: %v", req.GetAdmin().GetImportJson(), err)
	}
	c1, _ := json.Marshal(in.Convs[0])
	if want := `{"attr":{"attr":{"k":1},"name":"g"},"c":"alice","ca":1500000000000,"id":"c1","m":["alice","bob"],"mu":["bob"],"ua":1500000000001,"unique":true}`; string(c1) != want {
		t.Fatalf("import_json conversation: got %s, want %s", c1, want)
	}

	status, v = e.do("POST", convs+"/c1/messages", `{"messages":[{"msg-id":"m1","from":"bob","timestamp":5,"data":"x","bin":true}]}`, master...)
	if m, _ := v.(map[string]any); status != 200 || m["imported"] != 3.0 || m["duplicates"] != 2.0 {
		t.Fatalf("import messages: got %d %v", status, v)
	}
	req, _ = e.be.last(t)
	if req.GetAdmin().GetCid() != "c1" || string(req.GetAdmin().GetImportJson()) != `{"msgs":[{"id":"m1","from":"bob","t":5,"data":"x","bin":true}]}` {
		t.Fatalf("messages request: got cid %q %s", req.GetAdmin().GetCid(), req.GetAdmin().GetImportJson())
	}

	n := len(e.be.reqs)
	many := `{"conversations":[` + strings.TrimSuffix(strings.Repeat(`{"objectId":"x","createdAt":1},`, maxImportConvs+1), ",") + `]}`
	deep := `{"messages":` + strings.Repeat("[", 100000) + strings.Repeat("]", 100000) + `}`
	for name, tc := range map[string]struct{ path, body string }{
		"garbage":         {convs, `{"conversations":[{`},
		"not an object":   {convs, `[1,2]`},
		"none":            {convs, `{"conversations":[]}`},
		"too many":        {convs, many},
		"attributes list": {convs, `{"conversations":[{"objectId":"x","attributes":[1],"createdAt":1}]}`},
		"wrong types":     {convs + "/c1/messages", `{"messages":[{"msg-id":5}]}`},
		"deep":            {convs + "/c1/messages", deep},
		"huge":            {convs + "/c1/messages", `{"messages":[{"data":"` + strings.Repeat("x", maxImportBody) + `"}]}`},
	} {
		if status, v := e.do("POST", tc.path, tc.body, master...); status < 400 {
			t.Errorf("%s: got %d %v, want a refusal", name, status, v)
		}
	}
	if len(e.be.reqs) != n {
		t.Errorf("refused bodies reached the core: %d requests, want %d", len(e.be.reqs), n)
	}
}
