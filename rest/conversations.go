package rest

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"

	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/proto/lcpb"
	"github.com/relaymesh/relaymesh/proto/meshpb"
)

// Query limits for GET /1.2/rtm/conversations (LeanCloud storage queries:
// default 100, at most 1000).
const (
	defaultQueryLimit = 100
	maxQueryLimit     = 1000
	maxClientIDs      = 500 // client_ids of one members or mutes call
)

// systemColumns are _Conversation columns a create request sets through
// its own fields or not at all; every other key is a custom attribute.
var systemColumns = map[string]bool{
	"objectId": true, "m": true, "c": true, "mu": true, "tr": true, "sys": true, "temp": true,
	"unique": true, "uniqueId": true, "createdAt": true, "updatedAt": true, "lm": true, "ttl": true,
}

func convCommand(op lcpb.OpType, cm *lcpb.ConvCommand) *lcpb.GenericCommand {
	return &lcpb.GenericCommand{Cmd: lcpb.CommandType_conv.Enum(), Op: op.Enum(), ConvMessage: cm}
}

func jsonObject(v any) *lcpb.JsonObjectMessage {
	b, _ := json.Marshal(v)
	return &lcpb.JsonObjectMessage{Data: proto.String(string(b))}
}

// stringList reads a JSON array of strings.
func stringList(v any, field string) ([]string, *apiError) {
	arr, ok := v.([]any)
	if v != nil && !ok {
		return nil, errBadRequest("%s must be an array of client ids", field)
	}
	out := make([]string, 0, len(arr))
	for _, x := range arr {
		s, ok := x.(string)
		if !ok || s == "" {
			return nil, errBadRequest("%s must be an array of client ids", field)
		}
		out = append(out, s)
	}
	return out, nil
}

// POST /1.2/rtm/{conversations|chatrooms}: {name, m, unique, c, ...custom}.
func (h *Handler) createConv(c *call, transient bool) *apiError {
	var body map[string]any
	if aerr := h.decode(c, &body); aerr != nil {
		return aerr
	}
	if sys, _ := body["sys"].(bool); sys {
		return notImplemented("service (system) conversations")(c)
	}
	members, aerr := stringList(body["m"], "m")
	if aerr != nil {
		return aerr
	}
	creator, ok := body["c"].(string)
	if body["c"] != nil && !ok {
		return errBadRequest("c must be a client id")
	}
	unique, _ := body["unique"].(bool)
	attr := map[string]any{}
	for k, v := range body {
		if !systemColumns[k] {
			attr[k] = v
		}
	}
	out, aerr := h.command(c, creator, convCommand(lcpb.OpType_start, &lcpb.ConvCommand{
		M: members, Unique: proto.Bool(unique), Transient: proto.Bool(transient), Attr: jsonObject(attr),
	}))
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

// GET /1.2/rtm/{conversations|chatrooms|all-conversations}?where&skip&limit&order.
// tr selects normal conversations (false) or chatrooms (true); nil both.
func (h *Handler) queryConvs(c *call, tr *bool) *apiError {
	q := c.r.URL.Query()
	where := map[string]any{}
	if w := q.Get("where"); w != "" {
		d := json.NewDecoder(bytes.NewReader([]byte(w)))
		d.UseNumber()
		if d.Decode(&where) != nil || where == nil {
			return &apiError{Status: http.StatusBadRequest, Code: codeInvalidJSON, Msg: "where: " + errInvalidJSON.Msg}
		}
	}
	if tr != nil {
		if _, set := where["tr"]; set {
			where = map[string]any{"$and": []any{where, map[string]any{"tr": *tr}}}
		} else {
			where["tr"] = *tr
		}
	}
	limit, aerr := intParam(q.Get("limit"), "limit", defaultQueryLimit)
	if aerr != nil {
		return aerr
	}
	skip, aerr := intParam(q.Get("skip"), "skip", 0)
	if aerr != nil {
		return aerr
	}
	order := q.Get("order")
	if order == "" {
		order = q.Get("sort")
	}
	cm := &lcpb.ConvCommand{Where: jsonObject(where), Limit: proto.Int32(int32(min(max(limit, 1), maxQueryLimit))),
		Skip: proto.Int32(int32(max(skip, 0)))}
	if order != "" {
		cm.Sort = proto.String(order)
	}
	out, aerr := h.command(c, "", convCommand(lcpb.OpType_query, cm))
	if aerr != nil {
		return aerr
	}
	writeJSON(c.w, http.StatusOK, map[string]json.RawMessage{"results": rawArray(out.GetConvMessage().GetResults().GetData())})
	return nil
}

func rawArray(s string) json.RawMessage {
	if s == "" {
		return json.RawMessage("[]")
	}
	return json.RawMessage(s)
}

func intParam(s, name string, def int) (int, *apiError) {
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, errBadRequest("%s must be an integer", name)
	}
	return n, nil
}

// row fetches the _Conversation row of cid.
func (h *Handler) row(c *call, cid string) (map[string]any, *apiError) {
	out, aerr := h.command(c, "", convCommand(lcpb.OpType_query, &lcpb.ConvCommand{
		Where: jsonObject(map[string]any{"objectId": cid}), Limit: proto.Int32(1),
	}))
	if aerr != nil {
		return nil, aerr
	}
	var rows []map[string]any
	d := json.NewDecoder(bytes.NewReader([]byte(out.GetConvMessage().GetResults().GetData())))
	d.UseNumber()
	if d.Decode(&rows) != nil || len(rows) == 0 {
		return nil, &apiError{Status: http.StatusNotFound, Code: lcpb.ErrConversationNotFound, Msg: "CONVERSATION_NOT_FOUND: " + cid}
	}
	return rows[0], nil
}

// updated answers {updatedAt, objectId} for cid as it is now.
func (h *Handler) updated(c *call, cid string) *apiError {
	row, aerr := h.row(c, cid)
	if aerr != nil {
		return aerr
	}
	writeJSON(c.w, http.StatusOK, map[string]any{"updatedAt": row["updatedAt"], "objectId": cid})
	return nil
}

// GET /1.2/rtm/conversations/{cid}: the row.
func (h *Handler) getConv(c *call) *apiError {
	row, aerr := h.row(c, c.r.PathValue("cid"))
	if aerr != nil {
		return aerr
	}
	writeJSON(c.w, http.StatusOK, row)
	return nil
}

// PUT /1.2/rtm/conversations/{cid}: attributes (dotted keys and
// {"__op":"Delete"} as in conv/update), never m.
func (h *Handler) updateConv(c *call) *apiError {
	cid := c.r.PathValue("cid")
	var body map[string]any
	if aerr := h.decode(c, &body); aerr != nil {
		return aerr
	}
	if _, ok := body["m"]; ok {
		return errBadRequest("m cannot be updated here: use POST or DELETE /1.2/rtm/conversations/%s/members", cid)
	}
	if len(body) == 0 {
		return errBadRequest("nothing to update")
	}
	out, aerr := h.command(c, "", convCommand(lcpb.OpType_update, &lcpb.ConvCommand{Cid: proto.String(cid), Attr: jsonObject(body)}))
	if aerr != nil {
		return aerr
	}
	writeJSON(c.w, http.StatusOK, map[string]any{"updatedAt": out.GetConvMessage().GetUdate(), "objectId": cid})
	return nil
}

// DELETE /1.2/rtm/conversations/{cid}.
func (h *Handler) deleteConv(c *call) *apiError {
	if _, _, aerr := h.do(c, "", &meshpb.AdminRequest{Op: meshpb.AdminRequest_DELETE_CONVERSATION, Cid: c.r.PathValue("cid")}, nil); aerr != nil {
		return aerr
	}
	writeJSON(c.w, http.StatusOK, struct{}{})
	return nil
}

// clientIDs reads {"client_ids": [...]} from the body.
func (h *Handler) clientIDs(c *call, max int) ([]string, *apiError) {
	var body struct {
		ClientIDs any `json:"client_ids"`
	}
	if aerr := h.decode(c, &body); aerr != nil {
		return nil, aerr
	}
	ids, aerr := stringList(body.ClientIDs, "client_ids")
	if aerr != nil {
		return nil, aerr
	}
	if len(ids) == 0 {
		return nil, errBadRequest("client_ids is required")
	}
	if len(ids) > max {
		return nil, errBadRequest("at most %d client_ids", max)
	}
	return ids, nil
}

// POST and DELETE /1.2/rtm/conversations/{cid}/members {"client_ids"}.
func (h *Handler) members(c *call, add bool) *apiError {
	cid := c.r.PathValue("cid")
	ids, aerr := h.clientIDs(c, maxClientIDs)
	if aerr != nil {
		return aerr
	}
	op := lcpb.OpType_add
	if !add {
		op = lcpb.OpType_remove
	}
	if _, aerr := h.command(c, "", convCommand(op, &lcpb.ConvCommand{Cid: proto.String(cid), M: ids})); aerr != nil {
		return aerr
	}
	return h.updated(c, cid)
}

// GET /1.2/rtm/conversations/{cid}/members.
func (h *Handler) listMembers(c *call) *apiError {
	cid := c.r.PathValue("cid")
	out, aerr := h.command(c, "", convCommand(lcpb.OpType_members, &lcpb.ConvCommand{Cid: proto.String(cid)}))
	if aerr != nil {
		return aerr
	}
	m := out.GetConvMessage().GetM()
	if m == nil {
		m = []string{}
	}
	writeJSON(c.w, http.StatusOK, map[string]any{"result": m})
	return nil
}

// POST and DELETE /1.2/rtm/conversations/{cid}/mutes {"client_ids"}: the
// push mute (mu) of each client, as if it muted the conversation itself.
func (h *Handler) mutes(c *call, mute bool) *apiError {
	cid := c.r.PathValue("cid")
	ids, aerr := h.clientIDs(c, maxClientIDs)
	if aerr != nil {
		return aerr
	}
	op := lcpb.OpType_mute
	if !mute {
		op = lcpb.OpType_unmute
	}
	for _, id := range ids {
		if _, aerr := h.command(c, id, convCommand(op, &lcpb.ConvCommand{Cid: proto.String(cid)})); aerr != nil {
			return aerr
		}
	}
	return h.updated(c, cid)
}

// GET /1.2/rtm/conversations/{cid}/mutes.
func (h *Handler) listMutes(c *call) *apiError {
	row, aerr := h.row(c, c.r.PathValue("cid"))
	if aerr != nil {
		return aerr
	}
	mu := row["mu"]
	if mu == nil {
		mu = []any{}
	}
	writeJSON(c.w, http.StatusOK, map[string]any{"result": mu})
	return nil
}
