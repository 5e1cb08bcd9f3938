package rest

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"

	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/proto/lcpb"
	"github.com/relaymesh/relaymesh/proto/meshpb"
)

// Service (system) conversations, /1.2/rtm/service-conversations
// (REST-AND-HOOKS.md §1.3, §1.4, core/sysconv.go): create, query, read,
// update, delete; subscribers (add, remove, count, list) and a client's
// subscriptions (/1.2/rtm/clients/{client}/service-conversations);
// broadcasts to every subscriber (also POST /1.2/rtm/broadcasts with
// conv_id), listed, deleted and edited for the clients not yet reached;
// messages to given users, stored per user, listed and deleted; and GET
// .../{cid}/messages: what users sent to the conversation (the _SysMessage
// rows, also POSTed to the app's sys_webhook_url), newest first.

// maxSysTargets bounds to_clients of one send (LeanCloud: 20).
const maxSysTargets = 20

func (h *Handler) serviceRoutes(handle func(string, access, func(*call) *apiError)) {
	base := "/1.2/rtm/service-conversations"
	handle("POST "+base, masterKey, h.createService)
	handle("GET "+base, masterKey, h.queryServices)
	handle("GET "+base+"/{cid}", masterKey, h.getConv)
	handle("PUT "+base+"/{cid}", masterKey, h.updateConv)
	handle("DELETE "+base+"/{cid}", masterKey, h.deleteConv)
	handle("POST "+base+"/{cid}/subscribers", masterKey, func(c *call) *apiError { return h.subscribe(c, true) })
	handle("DELETE "+base+"/{cid}/subscribers/{client}", masterKey, func(c *call) *apiError { return h.subscribe(c, false) })
	handle("GET "+base+"/{cid}/subscribers/count", masterKey, h.countSubscribers)
	handle("POST "+base+"/{cid}/broadcasts", masterKey, func(c *call) *apiError { return h.broadcast(c, false) })
	handle("POST /1.2/rtm/broadcasts", masterKey, func(c *call) *apiError { return h.broadcast(c, true) })
	handle("POST "+base+"/{cid}/messages", masterKey, h.sendService)
	handle("GET "+base+"/{cid}/messages", masterKey, func(c *call) *apiError {
		return h.sysLogs(c, meshpb.AdminRequest_SYS_MESSAGES, "")
	})
	handle("GET "+base+"/{cid}/subscribers", masterKey, h.listSubscribers)
	handle("GET "+base+"/{cid}/subscribers/{client}/messages", masterKey, func(c *call) *apiError {
		return h.sysLogs(c, meshpb.AdminRequest_SYS_USER_MESSAGES, c.r.PathValue("client"))
	})
	handle("DELETE "+base+"/{cid}/subscribers/{client}/messages/{mid}", masterKey, h.deleteUserMessage)
	handle("PUT "+base+"/{cid}/messages/{mid}", masterKey, func(c *call) *apiError { return h.patchMessage(c, false) })
	handle("PUT "+base+"/{cid}/messages/{mid}/recall", masterKey, func(c *call) *apiError { return h.patchMessage(c, true) })
	handle("GET /1.2/rtm/broadcasts", masterKey, h.listBroadcasts)
	handle("DELETE /1.2/rtm/broadcasts/{mid}", masterKey, h.deleteBroadcast)
	handle("GET /1.2/rtm/clients/{client}/service-conversations", masterKey, h.clientSubscriptions)
}

// maxSysRows bounds the subscriber and subscription listings (LeanCloud:
// 50, also the default).
const maxSysRows = 50

// subRow is a row of the subscriber and subscription listings.
type subRow struct {
	Timestamp  int64  `json:"timestamp"`
	Subscriber string `json:"subscriber"`
	ConvID     string `json:"conv_id"`
}

func subRows(rep *meshpb.ClientReply) []subRow {
	rows := make([]subRow, 0, len(rep.GetAdmin().GetSysRows()))
	for _, r := range rep.GetAdmin().GetSysRows() {
		rows = append(rows, subRow{Timestamp: r.GetTimestamp(), Subscriber: r.GetClientId(), ConvID: r.GetCid()})
	}
	return rows
}

// GET .../{cid}/subscribers?limit(≤50)&client_id=<last of the previous
// page> -> [{timestamp, subscriber, conv_id}], timestamp: when it
// subscribed.
func (h *Handler) listSubscribers(c *call) *apiError {
	q := c.r.URL.Query()
	limit, aerr := intParam(q.Get("limit"), "limit", maxSysRows)
	if aerr != nil {
		return aerr
	}
	rep, _, aerr := h.do(c, "", &meshpb.AdminRequest{Op: meshpb.AdminRequest_SYS_SUBSCRIBERS, Cid: c.r.PathValue("cid"),
		Limit: int32(min(max(limit, 1), maxSysRows)), SysAfter: q.Get("client_id")}, nil)
	if aerr != nil {
		return aerr
	}
	writeJSON(c.w, http.StatusOK, subRows(rep))
	return nil
}

// GET /1.2/rtm/clients/{client}/service-conversations?conv_id&timestamp&
// limit(50)&direction=old|new (default new) -> [{timestamp, subscriber,
// conv_id}], by subscription time; to page, pass the last row's conv_id
// and timestamp.
func (h *Handler) clientSubscriptions(c *call) *apiError {
	q := c.r.URL.Query()
	limit, aerr := intParam(q.Get("limit"), "limit", maxSysRows)
	if aerr != nil {
		return aerr
	}
	a := &meshpb.AdminRequest{Op: meshpb.AdminRequest_SYS_SUBSCRIPTIONS, Limit: int32(min(max(limit, 1), maxSysRows)),
		SysAfter: q.Get("conv_id")}
	if s := q.Get("timestamp"); s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return errBadRequest("timestamp must be a timestamp in milliseconds")
		}
		a.SysTimestamp = v
	}
	switch q.Get("direction") {
	case "", "new":
	case "old":
		a.SysReversed = true
	default:
		return errBadRequest("direction must be old or new")
	}
	rep, _, aerr := h.do(c, c.r.PathValue("client"), a, nil)
	if aerr != nil {
		return aerr
	}
	writeJSON(c.w, http.StatusOK, subRows(rep))
	return nil
}

// DELETE .../{cid}/subscribers/{client}/messages/{mid}?from_client&timestamp
// -> {}: deletes a message the server sent client (POST .../messages).
func (h *Handler) deleteUserMessage(c *call) *apiError {
	q := c.r.URL.Query()
	ts, err := strconv.ParseInt(q.Get("timestamp"), 10, 64)
	if err != nil {
		return errBadRequest("timestamp (the message's, in milliseconds) is required")
	}
	if _, _, aerr := h.do(c, c.r.PathValue("client"), &meshpb.AdminRequest{Op: meshpb.AdminRequest_SYS_DELETE_USER_MESSAGE,
		Cid: c.r.PathValue("cid"), SysMsgId: c.r.PathValue("mid"), SysTimestamp: ts}, nil); aerr != nil {
		return aerr
	}
	writeJSON(c.w, http.StatusOK, struct{}{})
	return nil
}

// broadcastRow is a row of GET /1.2/rtm/broadcasts (relaymesh's shape:
// LeanCloud documents none).
type broadcastRow struct {
	MsgID     string `json:"msg-id"`
	ConvID    string `json:"conv-id"`
	From      string `json:"from"`
	Data      string `json:"data"`
	Bin       bool   `json:"bin"`
	Timestamp int64  `json:"timestamp"`
	ValidTill int64  `json:"valid_till"`
}

// GET /1.2/rtm/broadcasts?conv_id&limit&skip -> the broadcasts still valid,
// newest first.
func (h *Handler) listBroadcasts(c *call) *apiError {
	q := c.r.URL.Query()
	limit, aerr := intParam(q.Get("limit"), "limit", defaultHistoryLimit)
	if aerr != nil {
		return aerr
	}
	skip, aerr := intParam(q.Get("skip"), "skip", 0)
	if aerr != nil {
		return aerr
	}
	rep, _, aerr := h.do(c, "", &meshpb.AdminRequest{Op: meshpb.AdminRequest_SYS_BROADCASTS, Cid: q.Get("conv_id"),
		Limit: int32(min(max(limit, 1), maxHistoryLimit)), SysSkip: int32(max(skip, 0))}, nil)
	if aerr != nil {
		return aerr
	}
	rows := make([]broadcastRow, 0, len(rep.GetAdmin().GetSysRows()))
	for _, r := range rep.GetAdmin().GetSysRows() {
		rows = append(rows, broadcastRow{MsgID: r.GetMsgId(), ConvID: r.GetCid(), From: r.GetFrom(), Data: r.GetData(),
			Bin: r.GetBin(), Timestamp: r.GetTimestamp(), ValidTill: r.GetValidTill()})
	}
	writeJSON(c.w, http.StatusOK, rows)
	return nil
}

// DELETE /1.2/rtm/broadcasts/{mid}?conv_id -> {}: the clients that have not
// got it yet never will.
func (h *Handler) deleteBroadcast(c *call) *apiError {
	if _, _, aerr := h.do(c, "", &meshpb.AdminRequest{Op: meshpb.AdminRequest_SYS_DELETE_BROADCAST,
		Cid: c.r.URL.Query().Get("conv_id"), SysMsgId: c.r.PathValue("mid")}, nil); aerr != nil {
		return aerr
	}
	writeJSON(c.w, http.StatusOK, struct{}{})
	return nil
}

// POST /1.2/rtm/service-conversations {name, c?, ...custom} -> the row
// (sys:true, no members).
func (h *Handler) createService(c *call) *apiError {
	var body map[string]any
	if aerr := h.decode(c, &body); aerr != nil {
		return aerr
	}
	creator, ok := body["c"].(string)
	if body["c"] != nil && !ok {
		return errBadRequest("c must be a client id")
	}
	attr := map[string]any{}
	for k, v := range body {
		if !systemColumns[k] {
			attr[k] = v
		}
	}
	_, out, aerr := h.do(c, creator, &meshpb.AdminRequest{Op: meshpb.AdminRequest_COMMAND, System: true},
		convCommand(lcpb.OpType_start, &lcpb.ConvCommand{Attr: jsonObject(attr)}))
	if aerr != nil {
		return aerr
	}
	row, aerr := h.row(c, out.GetConvMessage().GetCid())
	if aerr != nil {
		return aerr
	}
	writeJSON(c.w, http.StatusOK, row)
	return nil
}

// GET /1.2/rtm/service-conversations: as the conversations query, sys:true
// only.
func (h *Handler) queryServices(c *call) *apiError {
	q := c.r.URL.Query()
	where := map[string]any{}
	if w := q.Get("where"); w != "" {
		if json.Unmarshal([]byte(w), &where) != nil || where == nil {
			return &apiError{Status: http.StatusBadRequest, Code: codeInvalidJSON, Msg: "where: " + errInvalidJSON.Msg}
		}
	}
	b, _ := json.Marshal(map[string]any{"$and": []any{where, map[string]any{"sys": true}}})
	q.Set("where", string(b))
	u := *c.r.URL
	u.RawQuery = q.Encode()
	r2 := c.r.Clone(c.r.Context())
	r2.URL = &url.URL{Path: u.Path, RawQuery: u.RawQuery}
	c2 := *c
	c2.r = r2
	return h.queryConvs(&c2, nil)
}

// POST .../{cid}/subscribers {"client_id"} and DELETE
// .../{cid}/subscribers/{client} -> {}.
func (h *Handler) subscribe(c *call, add bool) *apiError {
	cid, client := c.r.PathValue("cid"), c.r.PathValue("client")
	if add {
		var body struct {
			ClientID string `json:"client_id"`
		}
		if aerr := h.decode(c, &body); aerr != nil {
			return aerr
		}
		client = body.ClientID
	}
	if client == "" {
		return errBadRequest("client_id is required")
	}
	op := lcpb.OpType_add
	if !add {
		op = lcpb.OpType_remove
	}
	if aerr := h.requireService(c, cid); aerr != nil {
		return aerr
	}
	if _, aerr := h.command(c, "", convCommand(op, &lcpb.ConvCommand{Cid: proto.String(cid), M: []string{client}})); aerr != nil {
		return aerr
	}
	writeJSON(c.w, http.StatusOK, struct{}{})
	return nil
}

// requireService answers 4313 unless cid is a service conversation.
func (h *Handler) requireService(c *call, cid string) *apiError {
	row, aerr := h.row(c, cid)
	if aerr != nil {
		return aerr
	}
	if sys, _ := row["sys"].(bool); !sys {
		return &apiError{Status: http.StatusBadRequest, Code: lcpb.ErrSystemConvRequired, Msg: "SYSTEM_CONVERSATION_REQUIRED: " + cid}
	}
	return nil
}

// GET .../{cid}/subscribers/count -> {"count"}.
func (h *Handler) countSubscribers(c *call) *apiError {
	cid := c.r.PathValue("cid")
	if aerr := h.requireService(c, cid); aerr != nil {
		return aerr
	}
	out, aerr := h.command(c, "", convCommand(lcpb.OpType_count, &lcpb.ConvCommand{Cid: proto.String(cid)}))
	if aerr != nil {
		return aerr
	}
	writeJSON(c.w, http.StatusOK, map[string]any{"count": out.GetConvMessage().GetCount()})
	return nil
}

// sysBody is the body of a broadcast or a send.
type sysBody struct {
	ConvID     string          `json:"conv_id"`
	FromClient string          `json:"from_client"`
	Message    json.RawMessage `json:"message"`
	ToClients  []string        `json:"to_clients"`
	ValidTill  int64           `json:"valid_till"`
	Push       json.RawMessage `json:"push"`      // broadcasts: string or object
	PushData   json.RawMessage `json:"push_data"` // messages: string or object
	// Transient: to the online sessions only, not stored (a global
	// broadcast, or a message to to_clients).
	Transient bool `json:"transient"`
}

// pushText is a push field as the core takes it: a JSON object's text, or
// a string's value (an alert).
func pushText(raw json.RawMessage) (string, *apiError) {
	var s string
	var obj map[string]any
	switch {
	case len(raw) == 0 || string(raw) == "null":
		return "", nil
	case json.Unmarshal(raw, &s) == nil:
		return s, nil
	case json.Unmarshal(raw, &obj) == nil && obj != nil:
		return string(raw), nil
	}
	return "", errBadRequest("push must be a string or an object")
}

func (h *Handler) readSys(c *call) (*sysBody, string, *apiError) {
	var body sysBody
	if aerr := h.decode(c, &body); aerr != nil {
		return nil, "", aerr
	}
	msg, ok := content(body.Message)
	switch {
	case body.FromClient == "":
		return nil, "", errBadRequest("from_client is required")
	case !ok:
		return nil, "", errBadRequest("message is required")
	case len(msg) > h.limits.MaxMessageBytes:
		return nil, "", &apiError{Status: http.StatusBadRequest, Code: codeFrameTooLong,
			Msg: "FRAME_TOO_LONG: message exceeds " + strconv.Itoa(h.limits.MaxMessageBytes) + " bytes"}
	}
	if cid := c.r.PathValue("cid"); cid != "" {
		body.ConvID = cid
	}
	if body.ConvID == "" {
		return nil, "", errBadRequest("conv_id is required")
	}
	return &body, msg, nil
}

func directOf(cid, msg string, transient bool) *lcpb.GenericCommand {
	dm := &lcpb.DirectCommand{Cid: proto.String(cid), Msg: proto.String(msg)}
	if transient {
		dm.Transient = proto.Bool(true)
	}
	return &lcpb.GenericCommand{Cmd: lcpb.CommandType_direct.Enum(), DirectMessage: dm}
}

// POST .../{cid}/broadcasts {from_client, message, push} to the
// subscribers of cid, and POST /1.2/rtm/broadcasts {conv_id, from_client,
// message, valid_till, push, transient} to every user of the app (global)
// -> {"msg-id","timestamp"}; over the app's daily limit: 429 code 4318.
func (h *Handler) broadcast(c *call, global bool) *apiError {
	body, msg, aerr := h.readSys(c)
	if aerr != nil {
		return aerr
	}
	pt, aerr := pushText(body.Push)
	if aerr != nil {
		return aerr
	}
	if aerr := h.waitTurn(c); aerr != nil {
		return aerr
	}
	_, out, aerr := h.do(c, body.FromClient, &meshpb.AdminRequest{Op: meshpb.AdminRequest_SYS_BROADCAST, Cid: body.ConvID,
		ValidTill: body.ValidTill, Limit: int32(max(h.limits.BroadcastsPerDay, 0)), SysPush: pt, SysGlobal: global},
		directOf(body.ConvID, msg, global && body.Transient))
	if aerr != nil {
		return aerr
	}
	ack := out.GetAckMessage()
	writeJSON(c.w, http.StatusOK, map[string]any{"msg-id": ack.GetUid(), "timestamp": ack.GetT()})
	return nil
}

// POST .../{cid}/messages {from_client, to_clients (1..20), message,
// push_data, transient} -> {"msg-id","timestamp"}: stored for each of those
// clients (GET .../subscribers/{client}/messages; offline ones get it at
// login) and pushed to their sessions; a transient one only pushed.
func (h *Handler) sendService(c *call) *apiError {
	body, msg, aerr := h.readSys(c)
	if aerr != nil {
		return aerr
	}
	if len(body.ToClients) == 0 || len(body.ToClients) > maxSysTargets {
		return errBadRequest("to_clients must name 1 to %d clients", maxSysTargets)
	}
	pt, aerr := pushText(body.PushData)
	if aerr != nil {
		return aerr
	}
	if aerr := h.waitTurn(c); aerr != nil {
		return aerr
	}
	_, out, aerr := h.do(c, body.FromClient, &meshpb.AdminRequest{Op: meshpb.AdminRequest_SYS_SEND, Cid: body.ConvID,
		ToClients: body.ToClients, SysPush: pt}, directOf(body.ConvID, msg, body.Transient))
	if aerr != nil {
		return aerr
	}
	ack := out.GetAckMessage()
	writeJSON(c.w, http.StatusOK, map[string]any{"msg-id": ack.GetUid(), "timestamp": ack.GetT()})
	return nil
}

// GET .../{cid}/messages?timestamp&till_timestamp&limit&reversed: what
// users sent to the conversation (op SYS_MESSAGES), or what the server
// sent client (SYS_USER_MESSAGES, .../subscribers/{client}/messages),
// newest first (reversed: oldest first), as history rows.
func (h *Handler) sysLogs(c *call, op meshpb.AdminRequest_Op, client string) *apiError {
	cid := c.r.PathValue("cid")
	lm, reversed, limit, aerr := logsQuery(c.r.URL.Query(), cid) // messages.go
	if aerr != nil {
		return aerr
	}
	lm.Limit = proto.Int32(int32(min(max(limit, 1), maxHistoryLimit)))
	_, out, aerr := h.do(c, client, &meshpb.AdminRequest{Op: op, Cid: cid},
		&lcpb.GenericCommand{Cmd: lcpb.CommandType_logs.Enum(), LogsMessage: lm})
	if aerr != nil {
		return aerr
	}
	writeJSON(c.w, http.StatusOK, historyRows(cid, out.GetLogsMessage().GetLogs(), reversed))
	return nil
}
