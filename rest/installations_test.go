package rest

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/relaymesh/relaymesh/proto/meshpb"
)

var appKeyHdr = []string{"X-LC-Id: " + testApp, "X-LC-Key: " + testKey}

const hexTok = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// deviceBackend answers DEVICE_* with rec (created for a save).
func deviceBackend(e *env, rec *meshpb.DeviceRecord, created bool) {
	e.be.reply = func(req *meshpb.ClientRequest) *meshpb.ClientReply {
		return &meshpb.ClientReply{Admin: &meshpb.AdminReply{Devices: []*meshpb.DeviceRecord{rec}, DeviceCreated: created}}
	}
}

func TestInstallationSaveRequest(t *testing.T) {
	e := newEnv(t, Limits{})
	rec := &meshpb.DeviceRecord{ObjectId: "6543210fedcba9876543210f", DeviceType: "ios", DeviceToken: hexTok,
		Channels: []string{"public"}, Clients: []string{"bob"}, Badge: 2, Extra: []byte(`{"userObjectId":"u1"}`),
		CreatedAt: 1700000000000, UpdatedAt: 1700000000500}
	deviceBackend(e, rec, true)
	status, body := e.do("POST", "/1.1/installations", `{"deviceType":"ios","deviceToken":"`+hexTok+`","channels":["public"],
		"badge":2,"userObjectId":"u1","objectId":"ignored","@type":"java.util.HashMap","_version":"5","ACL":{}}`, appKeyHdr...)
	if status != http.StatusCreated {
		t.Fatalf("POST: got %d %v", status, body)
	}
	if m := body.(map[string]any); m["objectId"] != rec.ObjectId || m["createdAt"] != "2023-11-14T22:13:20.000Z" || len(m) != 2 {
		t.Errorf("POST body: got %v, want {objectId, createdAt}", m)
	}
	req, _ := e.be.last(t)
	a := req.GetAdmin()
	slices.Sort(a.DeviceFields)
	if a.GetOp() != meshpb.AdminRequest_DEVICE_SAVE || a.GetDeviceTrusted() || a.GetDeviceId() != "" ||
		strings.Join(a.GetDeviceFields(), ",") != "badge,device_token,device_type,extra" ||
		a.GetDeviceChannelsOp() != "set" || !slices.Equal(a.GetDevice().GetChannels(), []string{"public"}) ||
		string(a.GetDevice().GetExtra()) != `{"userObjectId":"u1"}` {
		t.Errorf("save request: got %v", a)
	}

	// The master key's save is trusted; Remove is a channel op; Increment
	// adds to the badge; fetchWhenSave answers with the row.
	deviceBackend(e, rec, false)
	status, body = e.do("PUT", "/1.1/installations/"+rec.ObjectId+"?fetchWhenSave=true",
		`{"channels":{"__op":"Remove","objects":["public"]},"badge":{"__op":"Increment","amount":3}}`, master...)
	if status != http.StatusOK {
		t.Fatalf("PUT: got %d %v", status, body)
	}
	req, _ = e.be.last(t)
	a = req.GetAdmin()
	if !a.GetDeviceTrusted() || a.GetDeviceId() != rec.ObjectId || a.GetDeviceChannelsOp() != "remove" || a.GetDeviceBadgeAdd() != 3 || len(a.GetDeviceFields()) != 0 {
		t.Errorf("PUT request: got %v", a)
	}
	m := body.(map[string]any)
	if chs, _ := m["channels"].([]any); len(chs) != 2 || chs[0] != "bob" || chs[1] != "public" || m["userObjectId"] != "u1" ||
		m["deviceToken"] != hexTok || m["badge"] != 2.0 || m["updatedAt"] != "2023-11-14T22:13:20.500Z" {
		t.Errorf("row: got %v, want channels [bob public] and the columns", m)
	}
}

func TestInstallationRefusals(t *testing.T) {
	e := newEnv(t, Limits{})
	deviceBackend(e, &meshpb.DeviceRecord{ObjectId: "x"}, true)
	deep := strings.Repeat(`{"a":`, 20000) + "1" + strings.Repeat("}", 20000)
	nested := strings.Repeat("[", 11000) + strings.Repeat("]", 11000) // 22 KB, deeper than any decoder here takes
	tests := []struct {
		name, method, path, body string
		headers                  []string
		status                   int
		code                     float64
	}{
		{"no key", "POST", "/1.1/installations", `{"deviceType":"ios","deviceToken":"` + hexTok + `"}`, []string{"X-LC-Id: " + testApp}, 401, 401},
		{"wrong key", "POST", "/1.1/installations", `{"deviceType":"ios"}`, []string{"X-LC-Id: " + testApp, "X-LC-Key: nope"}, 401, 401},
		{"list needs the master key", "GET", "/1.1/installations", "", appKeyHdr, 403, 119},
		{"delete needs the master key", "DELETE", "/1.1/installations/x", "", appKeyHdr, 403, 119},
		{"not an object", "POST", "/1.1/installations", `[1]`, appKeyHdr, 400, 107},
		{"huge body", "POST", "/1.1/installations", `{"x":` + deep + `}`, appKeyHdr, 413, 1},
		{"deep JSON within the size limit", "POST", "/1.1/installations", `{"deviceType":"android","x":` + nested + `}`, appKeyHdr, 400, 107},
		{"no deviceType", "POST", "/1.1/installations", `{"deviceToken":"` + hexTok + `"}`, appKeyHdr, 400, 113},
		{"deviceType a number", "POST", "/1.1/installations", `{"deviceType":7}`, appKeyHdr, 400, 111},
		{"bad deviceType", "POST", "/1.1/installations", `{"deviceType":"iOS phone","installationId":"i"}`, appKeyHdr, 400, 1},
		{"ios token not hex", "POST", "/1.1/installations", `{"deviceType":"ios","deviceToken":"../../evil"}`, appKeyHdr, 400, 114},
		{"channels not strings", "POST", "/1.1/installations", `{"deviceType":"android","installationId":"i","channels":[1]}`, appKeyHdr, 400, 111},
		{"channel with a newline", "POST", "/1.1/installations", `{"deviceType":"android","installationId":"i","channels":["a\nb"]}`, appKeyHdr, 400, 112},
		{"bad column name", "POST", "/1.1/installations", `{"deviceType":"android","installationId":"i","a.b":1}`, appKeyHdr, 400, 105},
		{"other columns too big", "POST", "/1.1/installations", `{"deviceType":"android","installationId":"i","big":"` + strings.Repeat("x", 5000) + `"}`, appKeyHdr, 400, 116},
		{"badge negative", "PUT", "/1.1/installations/x", `{"badge":-1}`, appKeyHdr, 400, 111},
		{"where on another column", "GET", "/1.1/installations?where=%7B%22badge%22%3A%221%22%7D", "", master, 400, 1},
		{"limit too big", "GET", "/1.1/installations?limit=5000", "", master, 400, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e.be.mu.Lock()
			e.be.reqs = nil
			e.be.mu.Unlock()
			status, body := e.do(tc.method, tc.path, tc.body, tc.headers...)
			wantError(t, tc.name, status, body, tc.status, tc.code)
			e.be.mu.Lock()
			n := len(e.be.reqs)
			e.be.mu.Unlock()
			if n != 0 {
				t.Errorf("%s reached the backend", tc.name)
			}
		})
	}
	// The core's 101 is a 404.
	e.be.reply = func(*meshpb.ClientRequest) *meshpb.ClientReply {
		return &meshpb.ClientReply{ErrorCode: 101, ErrorReason: "core: device not found"}
	}
	status, body := e.do("GET", "/1.1/installations/nope", "", appKeyHdr...)
	wantError(t, "unknown id", status, body, 404, 101)
}

func TestInstallationQuery(t *testing.T) {
	e := newEnv(t, Limits{})
	deviceBackend(e, &meshpb.DeviceRecord{ObjectId: "a", DeviceType: "android"}, false)
	status, body := e.do("GET", `/1.1/installations?limit=5&skip=2&where=%7B%22channels%22%3A%22bob%22%2C%22deviceType%22%3A%22android%22%7D`, "", master...)
	if status != 200 {
		t.Fatalf("got %d %v", status, body)
	}
	rows, _ := body.(map[string]any)["results"].([]any)
	if len(rows) != 1 || rows[0].(map[string]any)["objectId"] != "a" {
		t.Errorf("results: got %v", body)
	}
	req, _ := e.be.last(t)
	a := req.GetAdmin()
	slices.Sort(a.DeviceWhereFields)
	if a.GetLimit() != 5 || a.GetDeviceSkip() != 2 || strings.Join(a.GetDeviceWhereFields(), ",") != "channels,device_type" ||
		a.GetDeviceWhere().GetChannels()[0] != "bob" || a.GetDeviceWhere().GetDeviceType() != "android" {
		t.Errorf("list request: got %v", a)
	}
}
