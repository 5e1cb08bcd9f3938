package rest

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"github.com/relaymesh/relaymesh/proto/meshpb"
)

// The import API (relaymesh's own, master key only; docs/REST.md "Import";
// `relaymesh import leancloud` drives it). It writes conversations and
// history as they were on LeanCloud, through the shard's raft log, and is
// idempotent: what exists already is reported and left alone.
//
//	POST /1.2/rtm/import/conversations
//	  {"conversations":[{"objectId","c","m":[…],"mu":[…],"managers":[…],"tr","sys","unique",
//	    "attributes":{"name":…,"attr":{…},<custom columns>…},
//	    "createdAt":<ms>,"updatedAt":<ms>}…]}           at most 100
//	  → {"created":[id…],"existing":[id…],"refused":[{"objectId","code","error"}…]}
//	POST /1.2/rtm/import/conversations/{cid}/messages
//	  {"messages":[{"msg-id","from","timestamp":<ms>,"data","bin",
//	    "mention-all","mention-pids":[…]}…]}               at most 1000
//	  → {"imported":n,"duplicates":n}
//
// Bodies may be up to maxImportBody; the rows' limits are the core's
// (core/import.go).
const (
	maxImportBody  = 4 << 20
	maxImportConvs = 100
	maxImportMsgs  = 1000
)

func (h *Handler) importRoutes(handle func(string, access, func(*call) *apiError)) {
	handle("POST /1.2/rtm/import/conversations", masterKey, h.importConvs)
	handle("POST /1.2/rtm/import/conversations/{cid}/messages", masterKey, h.importMsgs)
}

// ImportConv is one conversation row of POST /1.2/rtm/import/conversations.
type ImportConv struct {
	ObjectID   string          `json:"objectId"`
	Creator    string          `json:"c,omitempty"`
	Members    []string        `json:"m,omitempty"`
	Muted      []string        `json:"mu,omitempty"`
	Managers   []string        `json:"managers,omitempty"`
	Transient  bool            `json:"tr,omitempty"`
	System     bool            `json:"sys,omitempty"`
	Unique     bool            `json:"unique,omitempty"`
	Attributes json.RawMessage `json:"attributes,omitempty"`
	CreatedAt  int64           `json:"createdAt"`
	UpdatedAt  int64           `json:"updatedAt,omitempty"`
}

// ImportMsg is one message row of POST …/{cid}/messages (the field names
// of LeanCloud's history rows).
type ImportMsg struct {
	MsgID       string   `json:"msg-id"`
	From        string   `json:"from"`
	Timestamp   int64    `json:"timestamp"`
	Data        string   `json:"data"`
	Bin         bool     `json:"bin,omitempty"`
	MentionAll  bool     `json:"mention-all,omitempty"`
	MentionPids []string `json:"mention-pids,omitempty"`
}

// ImportConvsReply answers POST /1.2/rtm/import/conversations.
type ImportConvsReply struct {
	Created  []string        `json:"created"`
	Existing []string        `json:"existing"`
	Refused  []ImportRefusal `json:"refused"`
}

// ImportRefusal is one conversation the import refused, with the
// LeanCloud error code and reason.
type ImportRefusal struct {
	ObjectID string `json:"objectId"`
	Code     int32  `json:"code"`
	Error    string `json:"error"`
}

// ImportMsgsReply answers POST …/{cid}/messages.
type ImportMsgsReply struct {
	Imported   int `json:"imported"`
	Duplicates int `json:"duplicates"`
}

// The core's import_json (core/import.go, core/shard/import.go field names).
type meshImportConv struct {
	ID        string          `json:"id"`
	Creator   string          `json:"c,omitempty"`
	Members   []string        `json:"m,omitempty"`
	Muted     []string        `json:"mu,omitempty"`
	Managers  []string        `json:"mgr,omitempty"`
	Attr      json.RawMessage `json:"attr,omitempty"`
	Transient bool            `json:"tr,omitempty"`
	System    bool            `json:"sys,omitempty"`
	Unique    bool            `json:"unique,omitempty"`
	CreatedAt int64           `json:"ca"`
	UpdatedAt int64           `json:"ua,omitempty"`
}

type meshImportMsg struct {
	ID          string   `json:"id"`
	From        string   `json:"from"`
	T           int64    `json:"t"`
	Data        string   `json:"data,omitempty"`
	Bin         bool     `json:"bin,omitempty"`
	MentionPids []string `json:"mp,omitempty"`
	MentionAll  bool     `json:"ma,omitempty"`
}

type meshImportOutcome struct {
	Created  []string `json:"created"`
	Existing []string `json:"existing"`
	Refused  []struct {
		ID    string `json:"id"`
		Code  int32  `json:"code"`
		Error string `json:"error"`
	} `json:"refused"`
	New int `json:"new"`
	Dup int `json:"dup"`
}

// decodeImport reads an import body of up to maxImportBody into v.
func (h *Handler) decodeImport(c *call, v any) *apiError {
	body, err := io.ReadAll(http.MaxBytesReader(c.w, c.r.Body, maxImportBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return &apiError{Status: http.StatusRequestEntityTooLarge, Code: codeInternal, Msg: "import body over 4 MiB: send fewer rows per request"}
		}
		return errBadRequest("reading the body: %v", err)
	}
	if err := json.NewDecoder(bytes.NewReader(body)).Decode(v); err != nil {
		return errInvalidJSON
	}
	return nil
}

func (h *Handler) importDo(c *call, cid string, v any) (*meshImportOutcome, *apiError) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, errBadRequest("encoding the import: %v", err)
	}
	rep, _, aerr := h.do(c, "", &meshpb.AdminRequest{Op: meshpb.AdminRequest_IMPORT, Cid: cid, ImportJson: b}, nil)
	if aerr != nil && aerr.Code == 4301 && aerr.Status == http.StatusInternalServerError {
		// The core's refusal of import input (core/import.go): the rows are
		// wrong, not the server, and a retry would fail alike.
		aerr.Status = http.StatusBadRequest
	}
	if aerr != nil {
		return nil, aerr
	}
	var out meshImportOutcome
	if err := json.Unmarshal(rep.GetAdmin().GetImportJson(), &out); err != nil {
		return nil, &apiError{Status: http.StatusInternalServerError, Code: codeBackendFailed, Msg: "INTERNAL_ERROR: bad import reply"}
	}
	return &out, nil
}

func (h *Handler) importConvs(c *call) *apiError {
	var body struct {
		Conversations []ImportConv `json:"conversations"`
	}
	if aerr := h.decodeImport(c, &body); aerr != nil {
		return aerr
	}
	rows := body.Conversations
	if len(rows) == 0 || len(rows) > maxImportConvs {
		return errBadRequest("conversations: 1 to %d rows, got %d", maxImportConvs, len(rows))
	}
	convs := make([]meshImportConv, len(rows))
	for i, r := range rows {
		if r.Attributes != nil && !bytes.HasPrefix(bytes.TrimSpace(r.Attributes), []byte("{")) && !bytes.Equal(bytes.TrimSpace(r.Attributes), []byte("null")) {
			return errBadRequest("conversation %q: attributes must be a JSON object", r.ObjectID)
		}
		convs[i] = meshImportConv{ID: r.ObjectID, Creator: r.Creator, Members: r.Members, Muted: r.Muted, Managers: r.Managers,
			Attr: r.Attributes, Transient: r.Transient, System: r.System, Unique: r.Unique,
			CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt}
	}
	out, aerr := h.importDo(c, rows[0].ObjectID, map[string]any{"convs": convs})
	if aerr != nil {
		return aerr
	}
	rep := ImportConvsReply{Created: out.Created, Existing: out.Existing, Refused: []ImportRefusal{}}
	for _, r := range out.Refused {
		rep.Refused = append(rep.Refused, ImportRefusal{ObjectID: r.ID, Code: r.Code, Error: r.Error})
	}
	writeJSON(c.w, http.StatusOK, rep)
	return nil
}

func (h *Handler) importMsgs(c *call) *apiError {
	var body struct {
		Messages []ImportMsg `json:"messages"`
	}
	if aerr := h.decodeImport(c, &body); aerr != nil {
		return aerr
	}
	rows := body.Messages
	if len(rows) == 0 || len(rows) > maxImportMsgs {
		return errBadRequest("messages: 1 to %d rows, got %d", maxImportMsgs, len(rows))
	}
	msgs := make([]meshImportMsg, len(rows))
	for i, r := range rows {
		msgs[i] = meshImportMsg{ID: r.MsgID, From: r.From, T: r.Timestamp, Data: r.Data, Bin: r.Bin,
			MentionPids: r.MentionPids, MentionAll: r.MentionAll}
	}
	out, aerr := h.importDo(c, c.r.PathValue("cid"), map[string]any{"msgs": msgs})
	if aerr != nil {
		return aerr
	}
	writeJSON(c.w, http.StatusOK, ImportMsgsReply{Imported: out.New, Duplicates: out.Dup})
	return nil
}
