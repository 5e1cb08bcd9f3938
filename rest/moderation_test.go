package rest

import (
	"encoding/json"
	"reflect"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/proto/lcpb"
	"github.com/relaymesh/relaymesh/proto/meshpb"
)

// fixedNow is the clock of tests that check an updatedAt.
func fixedNow() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 6e6, time.UTC) }

// equalJSON reports whether got (a decoded answer) is want as JSON.
func equalJSON(got, want any) bool {
	b, err := json.Marshal(want)
	if err != nil {
		return false
	}
	var w any
	if json.Unmarshal(b, &w) != nil {
		return false
	}
	return reflect.DeepEqual(got, w)
}

// TestModerationCommands: each moderation route sends the core the
// command it stands for, as the server, and answers LeanCloud's shape.
func TestModerationCommands(t *testing.T) {
	for _, tc := range []struct {
		name, method, path, body string
		reply                    *lcpb.GenericCommand // the core's answer (nil: empty)
		check                    func(t *testing.T, req *meshpb.ClientRequest, cmd *lcpb.GenericCommand)
		want                     map[string]any
	}{
		{
			name: "permanent-silenceds POST", method: "POST", path: "/1.2/rtm/conversations/c1/permanent-silenceds",
			body:  `{"client_ids":["bob","carol"]}`,
			reply: &lcpb.GenericCommand{Cmd: lcpb.CommandType_conv.Enum(), Op: lcpb.OpType_shutup_added.Enum(), ConvMessage: &lcpb.ConvCommand{}},
			check: func(t *testing.T, req *meshpb.ClientRequest, cmd *lcpb.GenericCommand) {
				if cmd.GetOp() != lcpb.OpType_add_shutup || cmd.GetConvMessage().GetCid() != "c1" ||
					!slices.Equal(cmd.GetConvMessage().GetM(), []string{"bob", "carol"}) || req.GetPeerId() != "" {
					t.Errorf("got %v as %q, want conv/add_shutup c1 [bob carol] as the server", cmd, req.GetPeerId())
				}
			},
			want: map[string]any{},
		},
		{
			name: "permanent-silenceds DELETE on a chatroom", method: "DELETE", path: "/1.2/rtm/chatrooms/r1/permanent-silenceds",
			body:  `{"client_ids":["bob"]}`,
			reply: &lcpb.GenericCommand{Cmd: lcpb.CommandType_conv.Enum(), ConvMessage: &lcpb.ConvCommand{}},
			check: func(t *testing.T, _ *meshpb.ClientRequest, cmd *lcpb.GenericCommand) {
				if cmd.GetOp() != lcpb.OpType_remove_shutup || cmd.GetConvMessage().GetCid() != "r1" {
					t.Errorf("got %v, want conv/remove_shutup r1", cmd)
				}
			},
			want: map[string]any{},
		},
		{
			name: "permanent-silenceds GET pages", method: "GET", path: "/1.2/rtm/conversations/c1/permanent-silenceds?limit=2&next=4",
			reply: &lcpb.GenericCommand{Cmd: lcpb.CommandType_conv.Enum(), ConvMessage: &lcpb.ConvCommand{M: []string{"e", "f"}, Next: proto.String("6")}},
			check: func(t *testing.T, _ *meshpb.ClientRequest, cmd *lcpb.GenericCommand) {
				cm := cmd.GetConvMessage()
				if cmd.GetOp() != lcpb.OpType_query_shutup || cm.GetLimit() != 2 || cm.GetNext() != "4" {
					t.Errorf("got %v, want conv/query_shutup limit 2 next 4", cmd)
				}
			},
			want: map[string]any{"client_ids": []any{"e", "f"}, "next": "6"},
		},
		{
			name: "permanent-silenceds GET defaults", method: "GET", path: "/1.2/rtm/conversations/c1/permanent-silenceds",
			reply: &lcpb.GenericCommand{Cmd: lcpb.CommandType_conv.Enum(), ConvMessage: &lcpb.ConvCommand{}},
			check: func(t *testing.T, _ *meshpb.ClientRequest, cmd *lcpb.GenericCommand) {
				if cm := cmd.GetConvMessage(); cm.GetLimit() != 10 || cm.Next != nil {
					t.Errorf("got %v, want limit 10 and no next", cmd)
				}
			},
			want: map[string]any{"client_ids": []any{}},
		},
		{
			name: "blacklists POST", method: "POST", path: "/1.2/rtm/conversations/c1/blacklists",
			body:  `{"client_ids":["carol"]}`,
			reply: &lcpb.GenericCommand{Cmd: lcpb.CommandType_blacklist.Enum(), BlacklistMessage: &lcpb.BlacklistCommand{}},
			check: func(t *testing.T, _ *meshpb.ClientRequest, cmd *lcpb.GenericCommand) {
				bm := cmd.GetBlacklistMessage()
				if cmd.GetCmd() != lcpb.CommandType_blacklist || cmd.GetOp() != lcpb.OpType_block || bm.GetSrcCid() != "c1" ||
					!slices.Equal(bm.GetToPids(), []string{"carol"}) {
					t.Errorf("got %v, want blacklist/block c1 [carol]", cmd)
				}
			},
			want: map[string]any{},
		},
		{
			name: "blacklists GET", method: "GET", path: "/1.2/rtm/chatrooms/r1/blacklists?limit=1",
			reply: &lcpb.GenericCommand{Cmd: lcpb.CommandType_blacklist.Enum(), BlacklistMessage: &lcpb.BlacklistCommand{BlockedPids: []string{"x"}, Next: proto.String("1")}},
			check: func(t *testing.T, _ *meshpb.ClientRequest, cmd *lcpb.GenericCommand) {
				if cmd.GetOp() != lcpb.OpType_query || cmd.GetBlacklistMessage().GetSrcCid() != "r1" || cmd.GetBlacklistMessage().GetLimit() != 1 {
					t.Errorf("got %v, want blacklist/query r1 limit 1", cmd)
				}
			},
			want: map[string]any{"client_ids": []any{"x"}, "next": "1"},
		},
		{
			name: "clients blacklists DELETE", method: "DELETE", path: "/1.2/rtm/clients/carol/blacklists",
			body:  `{"conv_id":"c9"}`,
			reply: &lcpb.GenericCommand{Cmd: lcpb.CommandType_blacklist.Enum(), BlacklistMessage: &lcpb.BlacklistCommand{}},
			check: func(t *testing.T, _ *meshpb.ClientRequest, cmd *lcpb.GenericCommand) {
				bm := cmd.GetBlacklistMessage()
				if cmd.GetOp() != lcpb.OpType_unblock || bm.GetSrcCid() != "c9" || !slices.Equal(bm.GetToPids(), []string{"carol"}) {
					t.Errorf("got %v, want blacklist/unblock c9 [carol]", cmd)
				}
			},
			want: map[string]any{},
		},
		{
			name: "member-infos POST", method: "POST", path: "/1.2/rtm/conversations/c1/member-infos",
			body:  `{"clientId":"bob","role":"Manager"}`,
			reply: &lcpb.GenericCommand{Cmd: lcpb.CommandType_conv.Enum(), ConvMessage: &lcpb.ConvCommand{}},
			check: func(t *testing.T, _ *meshpb.ClientRequest, cmd *lcpb.GenericCommand) {
				cm := cmd.GetConvMessage()
				if cmd.GetOp() != lcpb.OpType_member_info_update || cm.GetTargetClientId() != "bob" || cm.GetInfo().GetRole() != "Manager" {
					t.Errorf("got %v, want conv/member_info_update bob Manager", cmd)
				}
			},
			want: map[string]any{"updatedAt": "2026-01-02T03:04:05.006Z", "objectId": memberInfoID("c1", "bob")},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, Limits{})
			e.h.cfg.Now = fixedNow
			e.be.reply = func(*meshpb.ClientRequest) *meshpb.ClientReply { return cmdReply(tc.reply) }
			status, body := e.do(tc.method, tc.path, tc.body, master...)
			if status != 200 {
				t.Fatalf("got %d %v, want 200", status, body)
			}
			req, cmd := e.be.last(t)
			if req.GetAdmin().GetOp() != meshpb.AdminRequest_COMMAND {
				t.Errorf("admin op %v, want COMMAND", req.GetAdmin().GetOp())
			}
			tc.check(t, req, cmd)
			if !equalJSON(body, tc.want) {
				t.Errorf("answer: got %v, want %v", body, tc.want)
			}
		})
	}
}

// TestModerationRefusals: bad input never reaches the core, and the core's
// failures (whole or per client) come back as LeanCloud errors.
func TestModerationRefusals(t *testing.T) {
	e := newEnv(t, Limits{})
	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		code                     float64
	}{
		{"no client_ids", "POST", "/1.2/rtm/conversations/c1/permanent-silenceds", `{}`, 400, 1},
		{"client_ids not strings", "POST", "/1.2/rtm/conversations/c1/blacklists", `{"client_ids":[1]}`, 400, 1},
		{"ttl zero", "POST", "/1.2/rtm/conversations/c1/temporary-silenceds", `{"client_id":"bob","ttl":0}`, 400, 1},
		{"ttl over a day", "POST", "/1.2/rtm/conversations/c1/temporary-silenceds", `{"client_id":"bob","ttl":86401}`, 400, 1},
		{"ttl not a number", "POST", "/1.2/rtm/conversations/c1/temporary-silenceds", `{"client_id":"bob","ttl":"x"}`, 400, 107},
		{"temporary without client", "DELETE", "/1.2/rtm/conversations/c1/temporary-silenceds", ``, 400, 1},
		{"role Owner", "POST", "/1.2/rtm/conversations/c1/member-infos", `{"clientId":"bob","role":"Owner"}`, 400, 1},
		{"unknown role", "POST", "/1.2/rtm/conversations/c1/member-infos", `{"clientId":"bob","role":"Boss"}`, 400, 1},
		{"member-infos without clientId", "POST", "/1.2/rtm/conversations/c1/member-infos", `{"role":"Manager"}`, 400, 1},
		{"clients blacklists without conv_id", "POST", "/1.2/rtm/clients/bob/blacklists", `{}`, 400, 1},
		{"clients blacklists GET", "GET", "/1.2/rtm/clients/bob/blacklists", ``, 501, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := len(e.be.reqs)
			status, body := e.do(tc.method, tc.path, tc.body, master...)
			wantError(t, tc.name, status, body, tc.status, tc.code)
			if len(e.be.reqs) != n {
				t.Errorf("the core was asked: %v", e.be.reqs[n:])
			}
		})
	}
	status, body := e.do("POST", "/1.2/rtm/conversations/c1/permanent-silenceds", `{"client_ids":["bob"]}`,
		"X-LC-Id: "+testApp, "X-LC-Key: "+testKey)
	wantError(t, "app key", status, body, 403, 119)

	// A full list: the core names the refused clients in failedPids.
	e.be.reply = func(*meshpb.ClientRequest) *meshpb.ClientReply {
		return cmdReply(&lcpb.GenericCommand{Cmd: lcpb.CommandType_conv.Enum(), ConvMessage: &lcpb.ConvCommand{
			AllowedPids: []string{"a"}, FailedPids: []*lcpb.ErrorCommand{{Code: proto.Int32(4561), Reason: proto.String("SILIENCED_MEMBER_LIST_FULL"), Pids: []string{"b"}}}}})
	}
	status, body = e.do("POST", "/1.2/rtm/conversations/c1/permanent-silenceds", `{"client_ids":["a","b"]}`, master...)
	wantError(t, "list full", status, body, 400, 4561)
	// A whole-request failure.
	e.be.reply = func(*meshpb.ClientRequest) *meshpb.ClientReply {
		return &meshpb.ClientReply{ErrorCode: 4303, ErrorReason: "CONVERSATION_NOT_FOUND"}
	}
	status, body = e.do("POST", "/1.2/rtm/conversations/nope/blacklists", `{"client_ids":["a"]}`, master...)
	wantError(t, "no conversation", status, body, 404, 4303)
}

// TestTemporarySilence: POST and DELETE become AdminRequest TEMP_SHUTUP for
// the client, with the ttl or 0.
func TestTemporarySilence(t *testing.T) {
	e := newEnv(t, Limits{})
	status, body := e.do("POST", "/1.2/rtm/chatrooms/r1/temporary-silenceds", `{"client_id":"bob","ttl":50}`, master...)
	if status != 200 || !equalJSON(body, map[string]any{}) {
		t.Fatalf("POST: got %d %v, want 200 {}", status, body)
	}
	req := e.be.reqs[len(e.be.reqs)-1]
	if a := req.GetAdmin(); a.GetOp() != meshpb.AdminRequest_TEMP_SHUTUP || a.GetCid() != "r1" || a.GetTtl() != 50 || req.GetPeerId() != "bob" {
		t.Errorf("POST sent %v as %q, want TEMP_SHUTUP r1 ttl 50 as bob", a, req.GetPeerId())
	}
	status, body = e.do("DELETE", "/1.2/rtm/conversations/c1/temporary-silenceds?client_id=bob", "", master...)
	if status != 200 || !equalJSON(body, map[string]any{}) {
		t.Fatalf("DELETE: got %d %v, want 200 {}", status, body)
	}
	req = e.be.reqs[len(e.be.reqs)-1]
	if a := req.GetAdmin(); a.GetOp() != meshpb.AdminRequest_TEMP_SHUTUP || a.GetCid() != "c1" || a.GetTtl() != 0 || req.GetPeerId() != "bob" {
		t.Errorf("DELETE sent %v as %q, want TEMP_SHUTUP c1 ttl 0 as bob", a, req.GetPeerId())
	}
}

// TestMemberInfoIDs: GET lists the Owner and Managers with the objectIds
// of _ConversationMemberInfo, filtered by role and paged; PUT and DELETE
// find the member by that objectId.
func TestMemberInfoIDs(t *testing.T) {
	e := newEnv(t, Limits{})
	e.h.cfg.Now = fixedNow
	var roleCmds []*lcpb.GenericCommand
	e.be.reply = func(req *meshpb.ClientRequest) *meshpb.ClientReply {
		if req.GetAdmin().GetOp() == meshpb.AdminRequest_MEMBER_ROLES {
			return &meshpb.ClientReply{Admin: &meshpb.AdminReply{Roles: []*meshpb.MemberRole{
				{ClientId: "alice", Role: "Owner"}, {ClientId: "bob", Role: "Manager"}, {ClientId: "dan", Role: "Manager"}}}}
		}
		cmd := new(lcpb.GenericCommand)
		proto.Unmarshal(req.GetCommand(), cmd)
		if cmd.GetOp() == lcpb.OpType_query { // the row, for PUT and DELETE
			return cmdReply(&lcpb.GenericCommand{Cmd: lcpb.CommandType_conv.Enum(), ConvMessage: &lcpb.ConvCommand{
				Results: &lcpb.JsonObjectMessage{Data: proto.String(`[{"objectId":"c1","m":["alice","bob","carol","dan"]}]`)}}})
		}
		roleCmds = append(roleCmds, cmd)
		return cmdReply(&lcpb.GenericCommand{Cmd: lcpb.CommandType_conv.Enum(), ConvMessage: &lcpb.ConvCommand{}})
	}
	row := func(id, role string) map[string]any {
		return map[string]any{"clientId": id, "objectId": memberInfoID("c1", id), "role": role}
	}
	for _, tc := range []struct {
		query string
		want  []any
	}{
		{"", []any{row("alice", "Owner"), row("bob", "Manager"), row("dan", "Manager")}},
		{"?role=Manager", []any{row("bob", "Manager"), row("dan", "Manager")}},
		{"?role=Manager&skip=1&limit=5", []any{row("dan", "Manager")}},
		{"?limit=1", []any{row("alice", "Owner")}},
		{"?role=Member", []any{}},
	} {
		status, body := e.do("GET", "/1.2/rtm/conversations/c1/member-infos"+tc.query, "", master...)
		if want := map[string]any{"results": tc.want}; status != 200 || !equalJSON(body, want) {
			t.Errorf("GET%s: got %d %v, want %v", tc.query, status, body, want)
		}
	}

	carol := memberInfoID("c1", "carol")
	status, body := e.do("PUT", "/1.2/rtm/conversations/c1/member-infos/"+carol, `{"role":"Manager"}`, master...)
	if want := map[string]any{"updatedAt": "2026-01-02T03:04:05.006Z", "objectId": carol}; status != 200 || !equalJSON(body, want) {
		t.Errorf("PUT: got %d %v, want %v", status, body, want)
	}
	status, body = e.do("DELETE", "/1.2/rtm/conversations/c1/member-infos/"+memberInfoID("c1", "dan"), "", master...)
	if status != 200 || !equalJSON(body, map[string]any{}) {
		t.Errorf("DELETE: got %d %v, want {}", status, body)
	}
	if len(roleCmds) != 2 || roleCmds[0].GetConvMessage().GetTargetClientId() != "carol" || roleCmds[0].GetConvMessage().GetInfo().GetRole() != "Manager" ||
		roleCmds[1].GetConvMessage().GetTargetClientId() != "dan" || roleCmds[1].GetConvMessage().GetInfo().GetRole() != "Member" {
		t.Errorf("role commands: got %v, want carol Manager then dan Member", roleCmds)
	}
	status, body = e.do("PUT", "/1.2/rtm/conversations/c1/member-infos/"+carol, `{"clientId":"bob","role":"Manager"}`, master...)
	wantError(t, "PUT with another clientId", status, body, 400, 1)
	status, body = e.do("DELETE", "/1.2/rtm/conversations/c1/member-infos/"+memberInfoID("c1", "eve"), "", master...)
	wantError(t, "DELETE of a non-member's info", status, body, 404, 101)
}

func TestStats(t *testing.T) {
	e := newEnv(t, Limits{})
	e.be.reply = func(req *meshpb.ClientRequest) *meshpb.ClientReply {
		if req.GetAdmin().GetOp() != meshpb.AdminRequest_STATS {
			return nil
		}
		return &meshpb.ClientReply{Admin: &meshpb.AdminReply{Count: 3, CountToday: 7}}
	}
	status, body := e.do("GET", "/1.2/rtm/stats", "", master...)
	want := map[string]any{"result": map[string]any{"online_user_count": 3, "user_count_today": 7}}
	if status != 200 || !equalJSON(body, want) {
		t.Errorf("got %d %v, want %v", status, body, want)
	}
}
