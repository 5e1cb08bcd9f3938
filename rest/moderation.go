package rest

import (
	"encoding/json"
	"net/http"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/proto/lcpb"
	"github.com/relaymesh/relaymesh/proto/meshpb"
)

// Moderation of conversations and chatrooms (REST-AND-HOOKS.md §1.1, the
// OLD realtime_rest_api_v2 shapes), on the core's moderation ops
// (core/moderation.go) run with the server's authority:
//
//	POST|DELETE {kind}/{cid}/permanent-silenceds {client_ids} -> {}     conv add_shutup|remove_shutup
//	GET         {kind}/{cid}/permanent-silenceds ?limit&next  -> {client_ids, next?}  conv query_shutup
//	POST|DELETE {kind}/{cid}/blacklists {client_ids}          -> {}     blacklist block|unblock
//	GET         {kind}/{cid}/blacklists ?limit&next           -> {client_ids, next?}  blacklist query
//	POST        {kind}/{cid}/temporary-silenceds {client_id, ttl} -> {} AdminRequest TEMP_SHUTUP
//	DELETE      {kind}/{cid}/temporary-silenceds ?client_id   -> {}     TEMP_SHUTUP ttl 0
//	POST        {kind}/{cid}/member-infos {clientId, role}    -> {updatedAt, objectId}  conv member_info_update
//	PUT         {kind}/{cid}/member-infos/{info} {role}       -> {updatedAt, objectId}
//	DELETE      {kind}/{cid}/member-infos/{info}              -> {}     (back to Member)
//	GET         {kind}/{cid}/member-infos ?skip&limit&role    -> {results: [{clientId, objectId, role}]}
//	POST|DELETE /1.2/rtm/clients/{client}/blacklists {conv_id} -> {}    blacklist block|unblock
//	GET         /1.2/rtm/stats -> {result: {online_user_count, user_count_today}}  AdminRequest STATS
//
// A member-info objectId is memberInfoID(cid, clientId), as
// /1.1/classes/_ConversationMemberInfo answers it, so PUT and DELETE find
// the member by hashing the stored members. Only the Owner (the creator)
// and Managers have rows; the Owner cannot be changed here.

// Moderation bounds (LeanCloud: permanent ban at most 500 per conversation
// or chatroom; blacklist 500 per conversation, 10,000 per chatroom; a
// temporary ban at most 24 h; list pages default 10).
const (
	maxSilenced         = 500
	maxBlacklist        = 500
	maxRoomBlacklist    = 10000
	maxTempSilenceTTL   = 24 * 60 * 60
	defaultModerationPg = 10
	codeObjectNotFound  = 101 // storage API "Object not found."
)

func (h *Handler) moderationRoutes(handle func(string, access, func(*call) *apiError)) {
	for _, kind := range []string{"conversations", "chatrooms"} {
		base := "/1.2/rtm/" + kind + "/{cid}"
		maxBlocked := maxBlacklist
		if kind == "chatrooms" {
			maxBlocked = maxRoomBlacklist
		}
		handle("POST "+base+"/permanent-silenceds", masterKey, func(c *call) *apiError { return h.silence(c, true) })
		handle("DELETE "+base+"/permanent-silenceds", masterKey, func(c *call) *apiError { return h.silence(c, false) })
		handle("GET "+base+"/permanent-silenceds", masterKey, h.listSilenced)
		handle("POST "+base+"/blacklists", masterKey, func(c *call) *apiError { return h.convBlacklist(c, true, maxBlocked) })
		handle("DELETE "+base+"/blacklists", masterKey, func(c *call) *apiError { return h.convBlacklist(c, false, maxBlocked) })
		handle("GET "+base+"/blacklists", masterKey, h.listBlacklist)
		handle("POST "+base+"/temporary-silenceds", masterKey, func(c *call) *apiError { return h.tempSilence(c, true) })
		handle("DELETE "+base+"/temporary-silenceds", masterKey, func(c *call) *apiError { return h.tempSilence(c, false) })
		handle("POST "+base+"/member-infos", masterKey, h.setMemberInfo)
		handle("GET "+base+"/member-infos", masterKey, h.listMemberInfos)
		handle("PUT "+base+"/member-infos/{info}", masterKey, h.updateMemberInfo)
		handle("DELETE "+base+"/member-infos/{info}", masterKey, h.deleteMemberInfo)
	}
	handle("POST /1.2/rtm/clients/{client}/blacklists", masterKey, func(c *call) *apiError { return h.clientBlacklist(c, true) })
	handle("DELETE /1.2/rtm/clients/{client}/blacklists", masterKey, func(c *call) *apiError { return h.clientBlacklist(c, false) })
	handle("GET /1.2/rtm/clients/{client}/blacklists", masterKey,
		notImplemented("listing the conversations that blacklist a client (the shard keeps no index by client)"))
	handle("GET /1.2/rtm/stats", masterKey, h.stats)
}

// GET /1.2/rtm/stats -> {"result": {"online_user_count", "user_count_today"}}:
// clientIds with a session now, and those with a session at some point
// this UTC day as the shard leader's core saw them (relay/today.go).
func (h *Handler) stats(c *call) *apiError {
	rep, _, aerr := h.do(c, "", &meshpb.AdminRequest{Op: meshpb.AdminRequest_STATS}, nil)
	if aerr != nil {
		return aerr
	}
	writeJSON(c.w, http.StatusOK, map[string]any{"result": map[string]any{
		"online_user_count": rep.GetAdmin().GetCount(), "user_count_today": rep.GetAdmin().GetCountToday()}})
	return nil
}

// failed turns the failedPids of a moderation reply into an error: the
// first code, with every clientId refused. The others were applied.
func failed(fs []*lcpb.ErrorCommand) *apiError {
	if len(fs) == 0 {
		return nil
	}
	var pids []string
	for _, f := range fs {
		pids = append(pids, f.GetPids()...)
	}
	code := fs[0].GetCode()
	return &apiError{Status: imStatus(code), Code: code,
		Msg: fs[0].GetReason() + ": refused for " + strings.Join(pids, ", ") + " (the other clients were applied)"}
}

// POST and DELETE .../permanent-silenceds {"client_ids"} -> {}.
func (h *Handler) silence(c *call, add bool) *apiError {
	cid := c.r.PathValue("cid")
	ids, aerr := h.clientIDs(c, maxSilenced)
	if aerr != nil {
		return aerr
	}
	op := lcpb.OpType_add_shutup
	if !add {
		op = lcpb.OpType_remove_shutup
	}
	out, aerr := h.command(c, "", convCommand(op, &lcpb.ConvCommand{Cid: proto.String(cid), M: ids}))
	if aerr != nil {
		return aerr
	}
	if aerr := failed(out.GetConvMessage().GetFailedPids()); aerr != nil {
		return aerr
	}
	writeJSON(c.w, http.StatusOK, struct{}{})
	return nil
}

// pageParams reads ?limit (default 10) and ?next (the core's decimal
// offset).
func pageParams(c *call) (int32, string, *apiError) {
	q := c.r.URL.Query()
	limit, aerr := intParam(q.Get("limit"), "limit", defaultModerationPg)
	if aerr != nil {
		return 0, "", aerr
	}
	if limit <= 0 {
		limit = defaultModerationPg
	}
	return int32(min(limit, maxQueryLimit)), q.Get("next"), nil
}

// idPage answers {"client_ids": ids, "next": next}, next only when there
// are more.
func idPage(c *call, ids []string, next string) {
	if ids == nil {
		ids = []string{}
	}
	out := map[string]any{"client_ids": ids}
	if next != "" {
		out["next"] = next
	}
	writeJSON(c.w, http.StatusOK, out)
}

// GET .../permanent-silenceds?limit&next -> {"client_ids", "next"}.
func (h *Handler) listSilenced(c *call) *apiError {
	limit, next, aerr := pageParams(c)
	if aerr != nil {
		return aerr
	}
	cm := &lcpb.ConvCommand{Cid: proto.String(c.r.PathValue("cid")), Limit: proto.Int32(limit)}
	if next != "" {
		cm.Next = proto.String(next)
	}
	out, aerr := h.command(c, "", convCommand(lcpb.OpType_query_shutup, cm))
	if aerr != nil {
		return aerr
	}
	idPage(c, out.GetConvMessage().GetM(), out.GetConvMessage().GetNext())
	return nil
}

func blacklistCommand(op lcpb.OpType, bm *lcpb.BlacklistCommand) *lcpb.GenericCommand {
	return &lcpb.GenericCommand{Cmd: lcpb.CommandType_blacklist.Enum(), Op: op.Enum(), BlacklistMessage: bm}
}

// block blacklists (or unblacklists) ids in cid; blocked members are
// removed from the conversation.
func (h *Handler) block(c *call, cid string, ids []string, add bool) *apiError {
	op := lcpb.OpType_block
	if !add {
		op = lcpb.OpType_unblock
	}
	out, aerr := h.command(c, "", blacklistCommand(op, &lcpb.BlacklistCommand{SrcCid: proto.String(cid), ToPids: ids}))
	if aerr != nil {
		return aerr
	}
	if aerr := failed(out.GetBlacklistMessage().GetFailedPids()); aerr != nil {
		return aerr
	}
	writeJSON(c.w, http.StatusOK, struct{}{})
	return nil
}

// POST and DELETE .../blacklists {"client_ids"} -> {}.
func (h *Handler) convBlacklist(c *call, add bool, max int) *apiError {
	ids, aerr := h.clientIDs(c, max)
	if aerr != nil {
		return aerr
	}
	return h.block(c, c.r.PathValue("cid"), ids, add)
}

// GET .../blacklists?limit&next -> {"client_ids", "next"}.
func (h *Handler) listBlacklist(c *call) *apiError {
	limit, next, aerr := pageParams(c)
	if aerr != nil {
		return aerr
	}
	bm := &lcpb.BlacklistCommand{SrcCid: proto.String(c.r.PathValue("cid")), Limit: proto.Int32(limit)}
	if next != "" {
		bm.Next = proto.String(next)
	}
	out, aerr := h.command(c, "", blacklistCommand(lcpb.OpType_query, bm))
	if aerr != nil {
		return aerr
	}
	idPage(c, out.GetBlacklistMessage().GetBlockedPids(), out.GetBlacklistMessage().GetNext())
	return nil
}

// POST and DELETE /1.2/rtm/clients/{client}/blacklists {"conv_id"} -> {}:
// the conversation blacklists the client (as POST .../blacklists).
func (h *Handler) clientBlacklist(c *call, add bool) *apiError {
	var body struct {
		ConvID string `json:"conv_id"`
	}
	if aerr := h.decode(c, &body); aerr != nil {
		return aerr
	}
	if body.ConvID == "" {
		return errBadRequest("conv_id is required")
	}
	return h.block(c, body.ConvID, []string{c.r.PathValue("client")}, add)
}

// POST .../temporary-silenceds {"client_id", "ttl"} and DELETE
// .../temporary-silenceds?client_id= -> {}.
func (h *Handler) tempSilence(c *call, add bool) *apiError {
	var client string
	var ttl int64
	if add {
		var body struct {
			ClientID string      `json:"client_id"`
			TTL      json.Number `json:"ttl"`
		}
		if aerr := h.decode(c, &body); aerr != nil {
			return aerr
		}
		n, err := body.TTL.Int64()
		if err != nil || n <= 0 || n > maxTempSilenceTTL {
			return errBadRequest("ttl must be a number of seconds from 1 to %d (24 hours)", maxTempSilenceTTL)
		}
		client, ttl = body.ClientID, n
	} else {
		client = c.r.URL.Query().Get("client_id")
	}
	if client == "" {
		return errBadRequest("client_id is required")
	}
	if _, _, aerr := h.do(c, client, &meshpb.AdminRequest{Op: meshpb.AdminRequest_TEMP_SHUTUP,
		Cid: c.r.PathValue("cid"), Ttl: ttl}, nil); aerr != nil {
		return aerr
	}
	writeJSON(c.w, http.StatusOK, struct{}{})
	return nil
}

// isoNow is the updatedAt of a member-info change (relaymesh keeps no
// per-row time).
func (h *Handler) isoNow() string { return lcpb.FormatDate(h.cfg.Now().UnixMilli()) }

// setRole makes client's role in cid role (Manager or Member) and answers
// {updatedAt, objectId}, or {} (empty).
func (h *Handler) setRole(c *call, cid, client, role string, empty bool) *apiError {
	switch role {
	case "Manager", "Member":
	case "Owner":
		return errBadRequest("role Owner: relaymesh does not transfer ownership (the Owner is the conversation's creator, c)")
	default:
		return errBadRequest("role must be Member, Manager or Owner")
	}
	if _, aerr := h.command(c, "", convCommand(lcpb.OpType_member_info_update, &lcpb.ConvCommand{
		Cid: proto.String(cid), TargetClientId: proto.String(client),
		Info: &lcpb.ConvMemberInfo{Pid: proto.String(client), Role: proto.String(role)},
	})); aerr != nil {
		return aerr
	}
	if empty {
		writeJSON(c.w, http.StatusOK, struct{}{})
	} else {
		writeJSON(c.w, http.StatusOK, map[string]any{"updatedAt": h.isoNow(), "objectId": memberInfoID(cid, client)})
	}
	return nil
}

// POST .../member-infos {"clientId", "role"} -> {updatedAt, objectId}.
func (h *Handler) setMemberInfo(c *call) *apiError {
	var body struct {
		ClientID string `json:"clientId"`
		Role     string `json:"role"`
	}
	if aerr := h.decode(c, &body); aerr != nil {
		return aerr
	}
	if body.ClientID == "" {
		return errBadRequest("clientId is required")
	}
	return h.setRole(c, c.r.PathValue("cid"), body.ClientID, body.Role, false)
}

// infoClient finds the member whose member-info objectId is info.
func (h *Handler) infoClient(c *call, cid, info string) (string, *apiError) {
	row, aerr := h.row(c, cid)
	if aerr != nil {
		return "", aerr
	}
	members, _ := row["m"].([]any)
	for _, m := range members {
		if s, _ := m.(string); s != "" && memberInfoID(cid, s) == info {
			return s, nil
		}
	}
	return "", &apiError{Status: http.StatusNotFound, Code: codeObjectNotFound,
		Msg: "Object not found. (no member of " + cid + " has member-info " + info + ")"}
}

// PUT .../member-infos/{info} {"role"[, "clientId"]} -> {updatedAt, objectId}.
func (h *Handler) updateMemberInfo(c *call) *apiError {
	cid, info := c.r.PathValue("cid"), c.r.PathValue("info")
	var body struct {
		ClientID string `json:"clientId"`
		Role     string `json:"role"`
	}
	if aerr := h.decode(c, &body); aerr != nil {
		return aerr
	}
	client, aerr := h.infoClient(c, cid, info)
	if aerr != nil {
		return aerr
	}
	if body.ClientID != "" && body.ClientID != client {
		return errBadRequest("clientId %s is not the member of member-info %s", body.ClientID, info)
	}
	if body.Role == "" {
		writeJSON(c.w, http.StatusOK, map[string]any{"updatedAt": h.isoNow(), "objectId": info})
		return nil
	}
	return h.setRole(c, cid, client, body.Role, false)
}

// DELETE .../member-infos/{info} -> {}: the member is a Member again.
func (h *Handler) deleteMemberInfo(c *call) *apiError {
	cid := c.r.PathValue("cid")
	client, aerr := h.infoClient(c, cid, c.r.PathValue("info"))
	if aerr != nil {
		return aerr
	}
	return h.setRole(c, cid, client, "Member", true)
}

// memberInfoRow is a member-infos result row.
type memberInfoRow struct {
	ClientID string `json:"clientId"`
	ObjectID string `json:"objectId"`
	Role     string `json:"role"`
}

// GET .../member-infos?skip&limit&role -> {"results": [{clientId, objectId,
// role}]}: the Owner and the Managers (a Member has no row).
func (h *Handler) listMemberInfos(c *call) *apiError {
	cid := c.r.PathValue("cid")
	q := c.r.URL.Query()
	limit, aerr := intParam(q.Get("limit"), "limit", defaultQueryLimit)
	if aerr != nil {
		return aerr
	}
	skip, aerr := intParam(q.Get("skip"), "skip", 0)
	if aerr != nil {
		return aerr
	}
	role := q.Get("role")
	rep, _, aerr := h.do(c, "", &meshpb.AdminRequest{Op: meshpb.AdminRequest_MEMBER_ROLES, Cid: cid}, nil)
	if aerr != nil {
		return aerr
	}
	rows := []memberInfoRow{}
	for _, r := range rep.GetAdmin().GetRoles() {
		if role == "" || r.GetRole() == role {
			rows = append(rows, memberInfoRow{ClientID: r.GetClientId(), ObjectID: memberInfoID(cid, r.GetClientId()), Role: r.GetRole()})
		}
	}
	rows = rows[min(max(skip, 0), len(rows)):]
	rows = rows[:min(max(limit, 0), len(rows))]
	writeJSON(c.w, http.StatusOK, map[string]any{"results": rows})
	return nil
}
