package rest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"unicode/utf8"

	"github.com/relaymesh/relaymesh/proto/lcpb"
	"github.com/relaymesh/relaymesh/proto/meshpb"
)

// Client limits (LeanCloud: online check of at most 20 clients, kick
// reason of at most 20 characters).
const (
	maxOnlineCheck = 20
	maxKickReason  = 20
)

// POST /1.2/rtm/clients/check-online {"client_ids"} -> {"results": [the online ones]}.
func (h *Handler) checkOnline(c *call) *apiError {
	ids, aerr := h.clientIDs(c, maxOnlineCheck)
	if aerr != nil {
		return aerr
	}
	out, aerr := h.command(c, "", &lcpb.GenericCommand{Cmd: lcpb.CommandType_session.Enum(), Op: lcpb.OpType_query.Enum(),
		SessionMessage: &lcpb.SessionCommand{SessionPeerIds: ids}})
	if aerr != nil {
		return aerr
	}
	online := out.GetSessionMessage().GetOnlineSessionPeerIds()
	if online == nil {
		online = []string{}
	}
	writeJSON(c.w, http.StatusOK, map[string]any{"results": online})
	return nil
}

// GET /1.2/rtm/clients/{client}/unread-count[?conv_id] -> {"count"} (app key).
func (h *Handler) unreadCount(c *call) *apiError {
	rep, _, aerr := h.do(c, c.r.PathValue("client"), &meshpb.AdminRequest{Op: meshpb.AdminRequest_UNREAD_COUNT,
		Cid: c.r.URL.Query().Get("conv_id")}, nil)
	if aerr != nil {
		return aerr
	}
	writeJSON(c.w, http.StatusOK, map[string]any{"count": rep.GetAdmin().GetCount()})
	return nil
}

// POST /1.2/rtm/clients/{client}/kick {"reason"} -> {}: every session of
// the client gets session/closed 4115 KICKED_BY_APP and is unbound.
func (h *Handler) kick(c *call) *apiError {
	var body struct {
		Reason string `json:"reason"`
	}
	if aerr := h.decode(c, &body); aerr != nil {
		return aerr
	}
	if utf8.RuneCountInString(body.Reason) > maxKickReason {
		return errBadRequest("reason is at most %d characters", maxKickReason)
	}
	reason := body.Reason
	if reason == "" {
		reason = "KICKED_BY_APP"
	}
	if _, _, aerr := h.do(c, c.r.PathValue("client"), &meshpb.AdminRequest{Op: meshpb.AdminRequest_KICK,
		Code: codeKickedByApp, Reason: reason}, nil); aerr != nil {
		return aerr
	}
	writeJSON(c.w, http.StatusOK, struct{}{})
	return nil
}

// memberInfo is a _ConversationMemberInfo row.
type memberInfo struct {
	ClientID string `json:"clientId"`
	Role     string `json:"role"`
	ObjectID string `json:"objectId"`
	CID      string `json:"cid"`
}

// memberInfoID is a stable objectId for the (cid, clientId) row.
func memberInfoID(cid, client string) string {
	sum := sha256.Sum256([]byte(cid + "\x00" + client))
	return hex.EncodeToString(sum[:12])
}

// GET /1.1/classes/_ConversationMemberInfo?where={"cid":…[,"clientId"|"peerId":…]}&limit&skip
// -> {"results": [{clientId, role, objectId, cid}]}: the Owner and the
// Managers (everyone else is a Member, which the SDKs assume for clients
// without a row). A session token must belong to a member.
func (h *Handler) memberInfos(c *call) *apiError {
	q := c.r.URL.Query()
	var where map[string]any
	d := json.NewDecoder(bytes.NewReader([]byte(q.Get("where"))))
	d.UseNumber()
	if d.Decode(&where) != nil {
		return &apiError{Status: http.StatusBadRequest, Code: codeInvalidJSON, Msg: "where: " + errInvalidJSON.Msg}
	}
	cid, _ := where["cid"].(string)
	if cid == "" {
		return errBadRequest(`where must name the conversation: {"cid": "<conversation id>"}`)
	}
	only, _ := where["clientId"].(string)
	if only == "" {
		only, _ = where["peerId"].(string)
	}
	limit, aerr := intParam(q.Get("limit"), "limit", defaultQueryLimit)
	if aerr != nil {
		return aerr
	}
	skip, aerr := intParam(q.Get("skip"), "skip", 0)
	if aerr != nil {
		return aerr
	}
	rep, _, aerr := h.do(c, c.client, &meshpb.AdminRequest{Op: meshpb.AdminRequest_MEMBER_ROLES, Cid: cid}, nil)
	if aerr != nil {
		return aerr
	}
	rows := []memberInfo{}
	for _, r := range rep.GetAdmin().GetRoles() {
		if only != "" && r.GetClientId() != only {
			continue
		}
		rows = append(rows, memberInfo{ClientID: r.GetClientId(), Role: r.GetRole(), ObjectID: memberInfoID(cid, r.GetClientId()), CID: cid})
	}
	rows = rows[min(max(skip, 0), len(rows)):]
	rows = rows[:min(max(limit, 0), len(rows))]
	writeJSON(c.w, http.StatusOK, map[string]any{"results": rows})
	return nil
}
