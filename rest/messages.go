package rest

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/proto/lcpb"
	"github.com/relaymesh/relaymesh/proto/meshpb"
)

// History limits (LeanCloud REST: default 100, at most 1000) and mention
// bound (at most 20 clients).
const (
	defaultHistoryLimit = 100
	maxHistoryLimit     = 1000
	maxMentions         = 20
)

// content reads a message field: a JSON string as is, any other JSON value
// (a typed message object) as its JSON text.
func content(raw json.RawMessage) (string, bool) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", false
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, true
	}
	return string(raw), true
}

// parsePriority accepts LeanCloud's high/normal/low in any case.
func parsePriority(p string) (int32, bool) {
	switch strings.ToLower(p) {
	case "", "normal":
		return 2, true
	case "high":
		return 1, true
	case "low":
		return 3, true
	}
	return 0, false
}

// POST /1.2/rtm/conversations/{cid}/messages: {from_client, message,
// transient, no_sync, push_data, priority, mention_all,
// mention_client_ids} -> {"msg-id", "timestamp"}. from_client need not be
// a member. push_data travels with the message (DirectCommand.pushData)
// for the offline-push path; priority (default normal, LeanCloud's 1.2
// default) goes on the command as GenericCommand.priority, which the core
// applies to chatroom deliveries only (LeanCloud: "only for transient
// messages or chatrooms").
func (h *Handler) sendMessage(c *call) *apiError {
	cid := c.r.PathValue("cid")
	var body struct {
		FromClient       string          `json:"from_client"`
		Message          json.RawMessage `json:"message"`
		Transient        bool            `json:"transient"`
		NoSync           bool            `json:"no_sync"`
		PushData         json.RawMessage `json:"push_data"`
		Priority         string          `json:"priority"`
		MentionAll       bool            `json:"mention_all"`
		MentionClientIDs []string        `json:"mention_client_ids"`
	}
	if aerr := h.decode(c, &body); aerr != nil {
		return aerr
	}
	msg, ok := content(body.Message)
	switch {
	case body.FromClient == "":
		return errBadRequest("from_client is required")
	case !ok:
		return errBadRequest("message is required")
	case len(body.MentionClientIDs) > maxMentions:
		return errBadRequest("at most %d mention_client_ids", maxMentions)
	}
	priority, ok := parsePriority(body.Priority)
	if !ok {
		return errBadRequest("priority must be high, normal or low")
	}
	push, _ := content(body.PushData)
	if len(msg)+len(push) > h.limits.MaxMessageBytes {
		return &apiError{Status: http.StatusBadRequest, Code: codeFrameTooLong,
			Msg: "FRAME_TOO_LONG: message and push_data exceed " + strconv.Itoa(h.limits.MaxMessageBytes) + " bytes"}
	}
	if aerr := h.waitTurn(c); aerr != nil {
		return aerr
	}
	dm := &lcpb.DirectCommand{Cid: proto.String(cid), Msg: proto.String(msg), MentionPids: body.MentionClientIDs}
	if body.Transient {
		dm.Transient = proto.Bool(true)
	}
	if body.MentionAll {
		dm.MentionAll = proto.Bool(true)
	}
	if push != "" {
		dm.PushData = proto.String(push)
	}
	_, out, aerr := h.do(c, body.FromClient, &meshpb.AdminRequest{Op: meshpb.AdminRequest_COMMAND, NoSync: body.NoSync},
		&lcpb.GenericCommand{Cmd: lcpb.CommandType_direct.Enum(), Priority: proto.Int32(priority), DirectMessage: dm})
	if aerr != nil {
		return aerr
	}
	ack := out.GetAckMessage()
	writeJSON(c.w, http.StatusOK, map[string]any{"msg-id": ack.GetUid(), "timestamp": ack.GetT()})
	return nil
}

// historyRow is one message as LeanCloud's REST history returns it.
// from-ip and ack-at are not tracked by relaymesh and never appear.
type historyRow struct {
	Timestamp int64  `json:"timestamp"`
	ConvID    string `json:"conv-id"`
	Data      string `json:"data"`
	From      string `json:"from"`
	MsgID     string `json:"msg-id"`
	IsConv    bool   `json:"is-conv"`
	IsRoom    bool   `json:"is-room"`
	To        string `json:"to"`
	Bin       bool   `json:"bin"`
}

func boolParam(s, name string) (bool, *apiError) {
	if s == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		return false, errBadRequest("%s must be true or false", name)
	}
	return b, nil
}

// GET /1.2/rtm/conversations/{cid}/messages: newest first from msgid /
// timestamp (default now, exclusive) down to till_msgid / till_timestamp
// (default the beginning); reversed=true reads oldest first.
func (h *Handler) history(c *call) *apiError {
	cid := c.r.PathValue("cid")
	q := c.r.URL.Query()
	lm, reversed, limit, aerr := logsQuery(q, cid)
	if aerr != nil {
		return aerr
	}
	if s := q.Get("msgid"); s != "" {
		lm.Mid = proto.String(s)
	}
	if s := q.Get("till_msgid"); s != "" {
		lm.Tmid = proto.String(s)
	}
	incStart, aerr := boolParam(q.Get("include_start"), "include_start")
	if aerr != nil {
		return aerr
	}
	incStop, aerr := boolParam(q.Get("include_stop"), "include_stop")
	if aerr != nil {
		return aerr
	}
	if limit <= 0 {
		limit = defaultHistoryLimit
	}
	lm.Limit = proto.Int32(int32(min(limit, maxHistoryLimit)))
	lm.TIncluded, lm.TtIncluded = proto.Bool(incStart), proto.Bool(incStop)
	out, aerr := h.command(c, "", &lcpb.GenericCommand{Cmd: lcpb.CommandType_logs.Enum(), LogsMessage: lm})
	if aerr != nil {
		return aerr
	}
	writeJSON(c.w, http.StatusOK, historyRows(cid, out.GetLogsMessage().GetLogs(), reversed))
	return nil
}

// logsQuery reads the parameters every REST history endpoint shares:
// timestamp and till_timestamp (ms), reversed (a NEW-direction query) and
// limit (default defaultHistoryLimit; the caller bounds it).
func logsQuery(q url.Values, cid string) (lm *lcpb.LogsCommand, reversed bool, limit int, aerr *apiError) {
	lm = &lcpb.LogsCommand{Cid: proto.String(cid)}
	for _, p := range []struct {
		name string
		dst  **int64
	}{{"timestamp", &lm.T}, {"till_timestamp", &lm.Tt}} {
		if s := q.Get(p.name); s != "" {
			v, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				return nil, false, 0, errBadRequest("%s must be a timestamp in milliseconds", p.name)
			}
			*p.dst = proto.Int64(v)
		}
	}
	if reversed, aerr = boolParam(q.Get("reversed"), "reversed"); aerr != nil {
		return nil, false, 0, aerr
	}
	if limit, aerr = intParam(q.Get("limit"), "limit", defaultHistoryLimit); aerr != nil {
		return nil, false, 0, aerr
	}
	if reversed {
		lm.Direction = lcpb.LogsCommand_NEW.Enum()
	}
	return lm, reversed, limit, nil
}

// historyRows renders the core's log items (oldest first) as REST history
// rows: newest first, or oldest first when reversed.
func historyRows(cid string, logs []*lcpb.LogItem, reversed bool) []historyRow {
	rows := make([]historyRow, 0, len(logs))
	for _, it := range logs {
		rows = append(rows, historyRow{
			Timestamp: it.GetTimestamp(), ConvID: cid, Data: it.GetData(), From: it.GetFrom(), MsgID: it.GetMsgId(),
			IsConv: true, IsRoom: it.GetConvType() == 2, To: cid, Bin: it.GetBin(),
		})
	}
	if !reversed {
		slices.Reverse(rows)
	}
	return rows
}

// PUT /1.2/rtm/conversations/{cid}/messages/{mid} {from_client, message,
// timestamp} and PUT .../{mid}/recall {from_client, timestamp} -> {}. The
// message may be anyone's.
func (h *Handler) patchMessage(c *call, recall bool) *apiError {
	cid, mid := c.r.PathValue("cid"), c.r.PathValue("mid")
	var body struct {
		FromClient       string          `json:"from_client"`
		Message          json.RawMessage `json:"message"`
		Timestamp        int64           `json:"timestamp"`
		MentionAll       bool            `json:"mention_all"`
		MentionClientIDs []string        `json:"mention_client_ids"`
	}
	if aerr := h.decode(c, &body); aerr != nil {
		return aerr
	}
	it := &lcpb.PatchItem{Cid: proto.String(cid), Mid: proto.String(mid)}
	if body.Timestamp > 0 {
		it.Timestamp = proto.Int64(body.Timestamp)
	}
	if recall {
		it.Recall = proto.Bool(true)
	} else {
		msg, ok := content(body.Message)
		if !ok {
			return errBadRequest("message is required")
		}
		if len(msg) > h.limits.MaxMessageBytes {
			return &apiError{Status: http.StatusBadRequest, Code: codeFrameTooLong,
				Msg: "FRAME_TOO_LONG: message exceeds " + strconv.Itoa(h.limits.MaxMessageBytes) + " bytes"}
		}
		if len(body.MentionClientIDs) > maxMentions {
			return errBadRequest("at most %d mention_client_ids", maxMentions)
		}
		it.Data, it.MentionPids = proto.String(msg), body.MentionClientIDs
		if body.MentionAll {
			it.MentionAll = proto.Bool(true)
		}
	}
	if aerr := h.waitTurn(c); aerr != nil {
		return aerr
	}
	if _, aerr := h.command(c, body.FromClient, &lcpb.GenericCommand{Cmd: lcpb.CommandType_patch.Enum(), Op: lcpb.OpType_modify.Enum(),
		PatchMessage: &lcpb.PatchCommand{Patches: []*lcpb.PatchItem{it}}}); aerr != nil {
		return aerr
	}
	writeJSON(c.w, http.StatusOK, struct{}{})
	return nil
}

// DELETE /1.2/rtm/conversations/{cid}/messages/{mid}?from_client=&timestamp=
// -> {}: the server copy only (history, offline delivery, unread counts);
// no client is told. from_client is accepted and not checked; timestamp,
// when given, must be the message's, or the answer is 404 code 4404 as for
// an unknown message.
func (h *Handler) deleteMessage(c *call) *apiError {
	cid, mid := c.r.PathValue("cid"), c.r.PathValue("mid")
	q := c.r.URL.Query()
	var ts int64
	if s := q.Get("timestamp"); s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil || v < 0 {
			return errBadRequest("timestamp must be a timestamp in milliseconds")
		}
		ts = v
	}
	if _, _, aerr := h.do(c, q.Get("from_client"), &meshpb.AdminRequest{Op: meshpb.AdminRequest_DELETE_MESSAGE,
		Cid: cid, Mid: mid, Timestamp: ts}, nil); aerr != nil {
		return aerr
	}
	writeJSON(c.w, http.StatusOK, struct{}{})
	return nil
}
