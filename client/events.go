package client

import (
	"time"

	"github.com/relaymesh/relaymesh/proto/lcpb"
)

// Event is one push from the server, or a change of the client's state:
// Message, Patch, Unread, ConvEvent, Receipt, ServerError, Closed,
// Disconnected or Reconnected.
type Event interface{ isEvent() }

// Message is a received direct (an Event) or a history entry.
type Message struct {
	ConvID         string
	ID             string
	From           string
	Timestamp      int64  // server ms
	Text           string // msg: the raw payload, e.g. TextMessage JSON
	Binary         []byte // binaryMsg (history: data with bin=true)
	Offline        bool   // pushed on login (lc.protobuf2.1)
	Transient      bool
	MentionPids    []string
	MentionAll     bool
	PatchTimestamp int64 // when it was last edited, 0 if never
	ConvType       int32 // 1 normal, 2 transient, 3 system, 4 temporary; 0 unknown
	AckAt, ReadAt  int64 // history only: receipts, when known
	// Resynced: fetched from history after a reconnect (Options.Resync),
	// not pushed; it may come after newer messages.
	Resynced bool
}

// Patch is an edit or a recall of a message (patch/modify push).
type Patch struct {
	ConvID         string
	ID             string // message id
	Timestamp      int64  // the message's original timestamp
	PatchTimestamp int64
	From           string
	Text           string // new content; for a recall relaymesh sends {"_lctype":-127}
	Binary         []byte
	Recall         bool
	MentionPids    []string
	MentionAll     bool
	Code           int64 // patchCode, when the server modified the message itself
	Reason         string
}

// UnreadConv is one conversation of an Unread push.
type UnreadConv struct {
	ConvID    string
	Count     int
	LastID    string
	LastTS    int64
	LastFrom  string
	LastText  string
	LastBin   []byte
	Mentioned bool
	ConvType  int32
}

// Unread is the unread summary pushed on login (lc.protobuf2.3).
type Unread struct {
	Convs     []UnreadConv
	NotifTime int64
}

// ConvEvent is a conversation push: Op is the LeanCloud op name
// ("joined", "left", "members_joined", "members_left", "updated",
// "member_info_changed", "blocked", "shutuped", ...).
type ConvEvent struct {
	Op           string
	ConvID       string
	InitBy       string
	Members      []string
	Attr         string // JSON, for "updated"
	AttrModified string // JSON, for "updated"
	Udate        string
	ServerTs     int64
}

// Receipt is a delivered (Read=false) or read receipt for a message sent
// with SendOptions.Receipt.
type Receipt struct {
	ConvID    string
	MessageID string
	Timestamp int64
	Read      bool
	From      string
}

// ServerError is an error push without i.
type ServerError struct{ Err *Error }

// Closed ends the client: the server closed the session (e.g. Code 4111,
// kicked by a newer login with the same tag), refused a reopen, or the
// connection was lost with reconnect off (Code 0). No reconnect follows.
type Closed struct {
	Code   int32
	Reason string
}

// Disconnected says the connection was lost and the client is
// reconnecting (JS: the realtime "disconnect" event). Requests made
// meanwhile wait for the reconnect up to their deadline. Err says why.
type Disconnected struct{ Err error }

// Reconnected follows a successful automatic reconnect: Attempts counts
// the dials it took, Down is the time since the connection was lost, URL
// is the server the session is open on now.
type Reconnected struct {
	Attempts int
	Down     time.Duration
	URL      string
}

func (Message) isEvent()      {}
func (Patch) isEvent()        {}
func (Unread) isEvent()       {}
func (ConvEvent) isEvent()    {}
func (Receipt) isEvent()      {}
func (ServerError) isEvent()  {}
func (Closed) isEvent()       {}
func (Disconnected) isEvent() {}
func (Reconnected) isEvent()  {}

// handlePush runs on the reader goroutine of cn for every frame without i.
func (c *Client) handlePush(cn *conn, cmd *lcpb.GenericCommand) {
	switch cmd.GetCmd() {
	case lcpb.CommandType_direct:
		m := messageFromDirect(cmd.GetDirectMessage())
		c.mu.Lock()
		if m.Timestamp >= c.last[m.ConvID].ts {
			c.last[m.ConvID] = lastMsg{id: m.ID, from: m.From, ts: m.Timestamp}
		}
		c.noteLiveLocked(m) // resync.go
		c.mu.Unlock()
		// JS acks non-transient messages from others (im-client.js).
		if !m.Transient && m.ConvType != 2 && m.From != c.opts.ClientID && m.ConvID != "" {
			cn.recordAck(m.ConvID, m.Timestamp)
		}
		c.emit(m)
	case lcpb.CommandType_patch:
		for _, p := range cmd.GetPatchMessage().GetPatches() {
			c.mu.Lock()
			c.lastPatchTime = max(c.lastPatchTime, p.GetPatchTimestamp())
			c.mu.Unlock()
			c.emit(Patch{
				ConvID: p.GetCid(), ID: p.GetMid(), Timestamp: p.GetTimestamp(),
				PatchTimestamp: p.GetPatchTimestamp(), From: p.GetFrom(), Text: p.GetData(),
				Binary: p.GetBinaryMsg(), Recall: p.GetRecall(), MentionPids: p.GetMentionPids(),
				MentionAll: p.GetMentionAll(), Code: p.GetPatchCode(), Reason: p.GetPatchReason(),
			})
		}
	case lcpb.CommandType_unread:
		um := cmd.GetUnreadMessage()
		ev := Unread{NotifTime: um.GetNotifTime()}
		for _, u := range um.GetConvs() {
			ev.Convs = append(ev.Convs, UnreadConv{
				ConvID: u.GetCid(), Count: int(u.GetUnread()), LastID: u.GetMid(), LastTS: u.GetTimestamp(),
				LastFrom: u.GetFrom(), LastText: u.GetData(), LastBin: u.GetBinaryMsg(),
				Mentioned: u.GetMentioned(), ConvType: u.GetConvType(),
			})
		}
		if ev.NotifTime != 0 {
			c.mu.Lock()
			c.lastUnreadNotifTime = ev.NotifTime
			c.mu.Unlock()
		}
		c.emit(ev)
		c.noteUnread(ev) // resync.go
	case lcpb.CommandType_conv:
		cm := cmd.GetConvMessage()
		c.emit(ConvEvent{
			Op: cmd.GetOp().String(), ConvID: cm.GetCid(), InitBy: cm.GetInitBy(), Members: cm.GetM(),
			Attr: cm.GetAttr().GetData(), AttrModified: cm.GetAttrModified().GetData(),
			Udate: cm.GetUdate(), ServerTs: cmd.GetServerTs(),
		})
	case lcpb.CommandType_rcp:
		r := cmd.GetRcpMessage()
		c.emit(Receipt{ConvID: r.GetCid(), MessageID: r.GetId(), Timestamp: r.GetT(), Read: r.GetRead(), From: r.GetFrom()})
	case lcpb.CommandType_session:
		if cmd.GetOp() != lcpb.OpType_closed {
			c.log.Debug("client: unexpected session push", "op", cmd.GetOp())
			return
		}
		sm := cmd.GetSessionMessage()
		c.finish(&Error{Code: sm.GetCode(), Reason: sm.GetReason(), Detail: sm.GetDetail()})
		cn.kill(ErrSessionClosed)
	case lcpb.CommandType_goaway:
		// The edge is being drained: new requests go to a new connection
		// at once, and this one stays until its requests in flight are
		// answered (Client.run), so a drain fails none of them.
		cn.retire()
	case lcpb.CommandType_error:
		c.emit(ServerError{Err: errorFromCommand(cmd.GetErrorMessage())})
	default:
		c.log.Debug("client: unhandled push", "cmd", cmd.GetCmd(), "op", cmd.GetOp())
	}
}

func messageFromDirect(d *lcpb.DirectCommand) Message {
	return Message{
		ConvID: d.GetCid(), ID: d.GetId(), From: d.GetFromPeerId(), Timestamp: d.GetTimestamp(),
		Text: d.GetMsg(), Binary: d.GetBinaryMsg(), Offline: d.GetOffline(), Transient: d.GetTransient(),
		MentionPids: d.GetMentionPids(), MentionAll: d.GetMentionAll(),
		PatchTimestamp: d.GetPatchTimestamp(), ConvType: d.GetConvType(),
	}
}
