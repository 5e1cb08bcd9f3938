package shard

import (
	"encoding/json"
	"fmt"
)

// Import (issue 12, `relaymesh import leancloud`): conversations and
// message history brought over from LeanCloud keep their ids, members,
// attributes, creators and timestamps, so clients' cached ids stay valid.
// One op, server API only (Admin), Version3:
//
//   - Import.Convs: conversations to create with the ids and times given,
//     with their Managers (the Owner is the creator, as always here).
//     One that exists already (imported before, or created since) is left
//     exactly as it is and reported as existing: re-running an import
//     changes nothing. One that the state refuses (too many members,
//     attributes over MaxAttrBytes, no id) is reported with why and
//     written nowhere; the others of the command still apply.
//   - Import.Msgs: messages of conversation CID, stored at their own id and
//     timestamp (not the command's Now, and not bumped past the last
//     message: history keeps LeanCloud's order, and messages of the same
//     millisecond are ordered by id as on every page). A message whose id
//     CID already holds is skipped (a duplicate), so a resumed or repeated
//     import adds nothing twice. Imported messages are history: nothing is
//     fanned out, no receipt is pending, and when they move the
//     conversation's last message every member's delivered and read
//     cursors move up to it, so nobody gets years of history as unread or
//     offline messages at the next login.
//
// A refused message (no id, no timestamp) refuses the whole command: the
// proposer checks messages before it proposes them (core/import.go).
const (
	// MaxImportConvs bounds the conversations of one import command.
	MaxImportConvs = 100
	// MaxImportMsgs bounds the messages of one import command.
	MaxImportMsgs = 1000
)

// OpImport imports conversations or messages (server API only).
const OpImport Op = "import"

// ImportOp is the payload of an OpImport command.
type ImportOp struct {
	Convs []ImportConv `json:"convs,omitempty"`
	Msgs  []ImportMsg  `json:"msgs,omitempty"` // of Command.CID
}

// ImportConv is one conversation to create as it was elsewhere.
type ImportConv struct {
	ID        string          `json:"id"`
	Creator   string          `json:"c,omitempty"`
	Members   []string        `json:"m,omitempty"`
	Muted     []string        `json:"mu,omitempty"`
	Managers  []string        `json:"mgr,omitempty"`  // members with the Manager role (_ConversationMemberInfo)
	Attr      json.RawMessage `json:"attr,omitempty"` // as Conv.Attr: name and custom columns
	Transient bool            `json:"tr,omitempty"`
	System    bool            `json:"sys,omitempty"`
	Unique    bool            `json:"unique,omitempty"`
	CreatedAt int64           `json:"ca"`
	UpdatedAt int64           `json:"ua,omitempty"`
}

// ImportMsg is one message to store as it was elsewhere.
type ImportMsg struct {
	ID          string   `json:"id"`
	From        string   `json:"from"`
	T           int64    `json:"t"`
	Data        string   `json:"data,omitempty"`
	Bin         bool     `json:"bin,omitempty"`
	MentionPids []string `json:"mp,omitempty"`
	MentionAll  bool     `json:"ma,omitempty"`
}

// ImportResult is what an OpImport did.
type ImportResult struct {
	Created  []string        // conversations created
	Existing []string        // conversations that were there already, untouched
	Refused  []ImportRefusal // conversations the state refused
	MsgsNew  int             // messages stored
	MsgsDup  int             // messages CID held already
}

// ImportRefusal is one conversation an import refused; Err is a sentinel.
type ImportRefusal struct {
	ID  string
	Err *Error
}

func (a *applier) importOp() (*Result, *Error) {
	c := a.c
	if !c.Admin {
		return nil, fail(ErrRoleTooLow, "import is a server API operation")
	}
	in := c.Import
	switch {
	case in == nil || len(in.Convs) == 0 && len(in.Msgs) == 0:
		return nil, fail(ErrBadCommand, "nothing to import")
	case len(in.Convs) > 0 && len(in.Msgs) > 0:
		return nil, fail(ErrBadCommand, "conversations and messages in one import")
	case len(in.Convs) > MaxImportConvs:
		return nil, fail(ErrBadCommand, fmt.Sprintf("%d conversations, at most %d", len(in.Convs), MaxImportConvs))
	case len(in.Msgs) > MaxImportMsgs:
		return nil, fail(ErrBadCommand, fmt.Sprintf("%d messages, at most %d", len(in.Msgs), MaxImportMsgs))
	}
	res := &Result{Import: &ImportResult{}}
	if len(in.Convs) > 0 {
		for i := range in.Convs {
			a.importConv(&in.Convs[i], res.Import)
		}
		return res, nil
	}
	return a.importMsgs(in.Msgs, res)
}

func (a *applier) importConv(ic *ImportConv, out *ImportResult) {
	refuse := func(err *Error) { out.Refused = append(out.Refused, ImportRefusal{ID: ic.ID, Err: err}) }
	if ic.ID == "" || IsTempID(ic.ID) {
		refuse(fail(ErrBadCommand, "no id, or a temporary conversation's"))
		return
	}
	if ic.CreatedAt <= 0 {
		refuse(fail(ErrBadCommand, "no creation time"))
		return
	}
	if a.convExists(ic.ID) {
		out.Existing = append(out.Existing, ic.ID)
		return
	}
	attr := ic.Attr
	if !isJSONObject(attr) {
		attr = json.RawMessage("{}")
	}
	if serr := a.checkAttrSize(attr); serr != nil {
		refuse(serr)
		return
	}
	members := normalize(ic.Members)
	if ic.Transient || ic.System {
		members = nil // chatrooms keep no members; system conversations keep subscribers
	} else if len(members) > a.maxMembers() {
		refuse(fail(ErrConvFull, fmt.Sprintf("%d members", len(members))))
		return
	}
	muted := normalize(ic.Muted)
	var managers []string
	for _, m := range normalize(ic.Managers) { // members other than the Owner (the creator)
		if containsSorted(members, m) && m != ic.Creator {
			managers = append(managers, m)
		}
	}
	if members == nil {
		muted = nil
	}
	conv := &Conv{
		ID: ic.ID, Creator: ic.Creator, Members: members, Muted: muted, Managers: managers, Attr: attr,
		Transient: ic.Transient && !ic.System, System: ic.System,
		Unique:    ic.Unique && !ic.Transient && !ic.System,
		CreatedAt: ic.CreatedAt, UpdatedAt: max(ic.UpdatedAt, ic.CreatedAt),
	}
	if conv.Unique {
		// The unique index names one conversation per member set; an
		// import claims it only when it is free.
		h := memberSetHash(members)
		_, taken, err := getRaw(a.b, uniqueKey(a.c.App, h))
		if err != nil {
			a.err = err
			return
		}
		if !taken {
			conv.UniqueID = h
			a.set(uniqueKey(a.c.App, h), []byte(ic.ID))
		}
	}
	for _, m := range members {
		a.set(memberKey(a.c.App, m, ic.ID), []byte{})
	}
	a.putConv(conv)
	out.Created = append(out.Created, ic.ID)
}

func (a *applier) importMsgs(msgs []ImportMsg, res *Result) (*Result, *Error) {
	c := a.c
	for i, m := range msgs {
		if m.ID == "" || m.T <= 0 {
			return nil, fail(ErrBadCommand, fmt.Sprintf("message %d: no id or timestamp", i))
		}
	}
	conv, serr := a.conv(c.CID)
	if serr != nil {
		return nil, serr
	}
	last := conv.last()
	seen := make(map[string]bool, len(msgs))
	for _, im := range msgs {
		_, dup, err := MessageTS(a.b, c.App, c.CID, im.ID)
		if err != nil {
			a.err = err
			return nil, fail(ErrBadCommand, err.Error())
		}
		if dup || seen[im.ID] {
			res.Import.MsgsDup++
			continue
		}
		seen[im.ID] = true
		m := &Message{ID: im.ID, CID: c.CID, From: im.From, T: im.T, Data: im.Data, Bin: im.Bin,
			MentionPids: im.MentionPids, MentionAll: im.MentionAll}
		a.putMsg(msgKey(c.App, c.CID, m.T, m.ID), m)
		a.set(msgIDKey(c.App, c.CID, m.ID), keyBuf(nil).ts(m.T))
		res.Import.MsgsNew++
		// The newest by (timestamp, id), the order history pages in.
		if m.T > last.T || m.T == last.T && string(keyBuf(nil).str(m.ID)) > string(keyBuf(nil).str(last.MID)) {
			last = lastMsg{T: m.T, MID: m.ID, From: m.From, Dat: m.Data, Bin: m.Bin}
		}
	}
	if last.T == conv.LastT && last.MID == conv.LastMID {
		res.Conv = conv
		return res, nil
	}
	conv.setLast(last)
	a.putLast(conv)
	for _, p := range conv.Members {
		cur, err := GetCursor(a.b, c.App, c.CID, p)
		if err != nil {
			a.err = err
			return nil, fail(ErrBadCommand, err.Error())
		}
		if cur.Ack >= last.T && cur.Read >= last.T {
			continue
		}
		a.set(cursorKey(c.App, c.CID, p), Cursor{Ack: max(cur.Ack, last.T), Read: max(cur.Read, last.T)})
	}
	res.Conv = conv
	return res, nil
}
