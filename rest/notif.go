package rest

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"github.com/relaymesh/relaymesh/proto/meshpb"
)

// GET /1.1/rtm/notifications?client_id&start_ts[&notification_type][&limit]
// with X-LC-IM-Session-Token (or the master key): the conversation events
// (and receipts) stored for the client with a serverTs after start_ts,
// oldest first (core/notif.go, core/shard/notif.go). Three SDKs call it,
// each expecting its own shape, and relaymesh tells them apart so:
//
//   - notification_type absent: the Swift SDK (IMClient.swift
//     getOfflineEvents), which sends only client_id and start_ts and reads
//     {"permanent": {"notifications": […]}, "droppable": {"notifications":
//     […]}} — conversation events and receipts — with hyphenated ops
//     ("members-joined") and attr/attrModified as JSON objects.
//   - notification_type=permanent (or droppable): a flat {"hasMore",
//     "notifications": […]} of that class, paged by the last serverTs. The
//     JS SDK (im-client.js _fetchNotifications) sends permanent and looks
//     each op up in its protobuf enum, so it gets underscores
//     ("members_joined") and attr/attrModified as {"data": "<JSON text>"},
//     the shape of the ConvCommand it rebuilds. The Objective-C SDK sends
//     the same query with a User-Agent starting "LeanCloud-" and reads
//     hyphenated ops: a request whose User-Agent starts with "LeanCloud-"
//     gets the native item shape.
//
// JS items also carry notificationType. A page holds at most limit events
// (default and maximum: a whole log, shard.NotifKept: 225 events, 112
// receipts; the Swift shape is never paged, it holds the whole log).

// notifItem is one event in the native (Swift, Objective-C) shape.
type notifItem struct {
	Cmd          string          `json:"cmd"`
	Op           string          `json:"op,omitempty"`
	CID          string          `json:"cid"`
	ServerTs     int64           `json:"serverTs"`
	InitBy       *string         `json:"initBy,omitempty"`
	M            []string        `json:"m,omitempty"`
	Attr         json.RawMessage `json:"attr,omitempty"`
	AttrModified json.RawMessage `json:"attrModified,omitempty"`
	Udate        string          `json:"udate,omitempty"`
	Info         *notifInfo      `json:"info,omitempty"`
	ID           string          `json:"id,omitempty"`
	T            int64           `json:"t,omitempty"`
	Read         *bool           `json:"read,omitempty"`
	From         string          `json:"from,omitempty"`

	NotificationType string `json:"notificationType,omitempty"`
}

type notifInfo struct {
	Pid  string `json:"pid"`
	Role string `json:"role,omitempty"`
}

// jsData is protobuf's JsonObjectMessage as JSON.
type jsData struct {
	Data string `json:"data"`
}

func (h *Handler) notifications(c *call) *apiError {
	q := c.r.URL.Query()
	client := c.client
	if c.master {
		client = q.Get("client_id")
	}
	if client == "" {
		return errBadRequest("client_id is required")
	}
	start, err := strconv.ParseInt(q.Get("start_ts"), 10, 64)
	if q.Get("start_ts") == "" {
		start, err = 0, nil
	}
	if err != nil || start < 0 {
		return errBadRequest("start_ts must be a timestamp in milliseconds")
	}
	kind := q.Get("notification_type")
	if kind != "" && kind != "permanent" && kind != "droppable" {
		return errBadRequest("notification_type must be permanent or droppable")
	}
	limit, aerr := intParam(q.Get("limit"), "limit", 0)
	if aerr != nil || limit < 0 {
		return errBadRequest("limit must be a positive integer")
	}
	native := kind == "" || strings.HasPrefix(c.r.Header.Get("User-Agent"), "LeanCloud-")
	read := func(droppable bool) ([]*meshpb.NotifEvent, bool, *apiError) {
		rep, _, aerr := h.do(c, client, &meshpb.AdminRequest{Op: meshpb.AdminRequest_NOTIFICATIONS,
			NotifStartTs: start, NotifDroppable: droppable, NotifLimit: int32(limit)}, nil)
		if aerr != nil {
			return nil, false, aerr
		}
		return rep.GetAdmin().GetNotifs(), rep.GetAdmin().GetNotifMore(), nil
	}
	if kind == "" { // Swift
		out := map[string]any{}
		for _, class := range []string{"permanent", "droppable"} {
			evs, more, aerr := read(class == "droppable")
			if aerr != nil {
				return aerr
			}
			out[class] = map[string]any{"notifications": notifItems(evs, true, ""), "hasMore": more}
		}
		writeJSON(c.w, http.StatusOK, out)
		return nil
	}
	evs, more, aerr := read(kind == "droppable")
	if aerr != nil {
		return aerr
	}
	writeJSON(c.w, http.StatusOK, map[string]any{"hasMore": more, "notifications": notifItems(evs, native, kind)})
	return nil
}

// notifItems renders events natively (hyphenated ops, JSON objects) or
// for the JS SDK (protobuf names and shapes), tagged with kind when set.
func notifItems(evs []*meshpb.NotifEvent, native bool, kind string) []any {
	out := make([]any, 0, len(evs))
	for _, e := range evs {
		it := notifItem{Cmd: e.GetCmd(), CID: e.GetCid(), ServerTs: e.GetServerTs(), NotificationType: kind}
		if e.GetCmd() == "rcp" {
			read := e.GetRead()
			it.ID, it.T, it.From, it.Read = e.GetId(), e.GetT(), e.GetFrom(), &read
			out = append(out, it)
			continue
		}
		initBy := e.GetInitBy()
		it.Op, it.InitBy, it.M, it.Udate = e.GetOp(), &initBy, e.GetM(), e.GetUdate()
		if e.GetInfoPid() != "" {
			it.Info = &notifInfo{Pid: e.GetInfoPid(), Role: e.GetInfoRole()}
		}
		if native {
			it.Op = strings.ReplaceAll(it.Op, "_", "-")
			it.Attr, it.AttrModified = jsonObjectOrNil(e.GetAttr()), jsonObjectOrNil(e.GetAttrModified())
		} else {
			if e.GetAttr() != "" {
				it.Attr, _ = json.Marshal(jsData{e.GetAttr()})
			}
			if e.GetAttrModified() != "" {
				it.AttrModified, _ = json.Marshal(jsData{e.GetAttrModified()})
			}
		}
		out = append(out, it)
	}
	return out
}

// jsonObjectOrNil returns s when it is a JSON object, else nil (omitted).
func jsonObjectOrNil(s string) json.RawMessage {
	var m map[string]json.RawMessage
	if s == "" || json.Unmarshal([]byte(s), &m) != nil || m == nil {
		return nil
	}
	return json.RawMessage(s)
}
