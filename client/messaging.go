package client

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/proto/lcpb"
)

// Message priorities (GenericCommand.priority); only chat rooms use them.
const (
	PriorityHigh   = 1
	PriorityNormal = 2
	PriorityLow    = 3
)

// SendOptions are the options of Send, named as in the JS SDK.
type SendOptions struct {
	Transient   bool // not stored, no offline delivery
	Receipt     bool // ask for rcp receipts (r)
	Will        bool // deliver only when this client drops
	Priority    int32
	MentionPids []string
	MentionAll  bool
	PushData    string // JSON for offline push
	Binary      []byte // send binaryMsg instead of text
	// DT is the client's dedup token; a uuid is generated when empty.
	// Reuse it when retrying a Send that failed with a Retryable error:
	// the server answers a resend within 10 minutes of the first with
	// the first's ack (docs/ARCHITECTURE.md, "Send dedup").
	DT string
}

// Sent is the server's ack of a Send.
type Sent struct {
	ID        string // message id (uid)
	Timestamp int64  // server ms (t)
	DT        string // the dedup token sent
}

// TextMessage returns the payload the official SDKs use for a text message,
// {"_lctype":-1,"_lctext":text}, for Send to interoperate with them.
func TextMessage(text string) string {
	b, _ := json.Marshal(struct {
		Type int    `json:"_lctype"`
		Text string `json:"_lctext"`
	}{-1, text})
	return string(b)
}

// Send sends a message to conversation cid. text is the raw payload (msg);
// use TextMessage for the SDKs' typed text. With opts.Binary set, binaryMsg
// is sent instead. It returns when the server acked (ack{uid, t}).
func (c *Client) Send(ctx context.Context, cid, text string, opts SendOptions) (Sent, error) {
	dt := opts.DT
	if dt == "" {
		dt = newUUID()
	}
	d := &lcpb.DirectCommand{Cid: proto.String(cid), Dt: proto.String(dt), MentionPids: opts.MentionPids}
	if opts.Binary != nil {
		d.BinaryMsg = opts.Binary
	} else {
		d.Msg = proto.String(text)
	}
	if opts.Receipt {
		d.R = proto.Bool(true)
	}
	if opts.Transient {
		d.Transient = proto.Bool(true)
	}
	if opts.Will {
		d.Will = proto.Bool(true)
	}
	if opts.MentionAll {
		d.MentionAll = proto.Bool(true)
	}
	if opts.PushData != "" {
		d.PushData = proto.String(opts.PushData)
	}
	cmd := &lcpb.GenericCommand{Cmd: lcpb.CommandType_direct.Enum(), DirectMessage: d}
	if opts.Priority != 0 {
		cmd.Priority = proto.Int32(opts.Priority)
	}
	r, err := c.Request(ctx, cmd)
	if err != nil {
		return Sent{DT: dt}, fmt.Errorf("client: send to %s: %w", cid, err)
	}
	a := r.GetAckMessage()
	if a == nil {
		return Sent{DT: dt}, fmt.Errorf("%w: send: reply %v without ackMessage", ErrProtocol, r.GetCmd())
	}
	if a.GetCode() != 0 {
		return Sent{DT: dt}, fmt.Errorf("client: send to %s: %w", cid,
			&Error{Code: a.GetCode(), Reason: a.GetReason(), AppCode: a.GetAppCode()})
	}
	s := Sent{ID: a.GetUid(), Timestamp: a.GetT(), DT: dt}
	if !opts.Transient {
		c.mu.Lock()
		if s.Timestamp >= c.last[cid].ts {
			c.last[cid] = lastMsg{id: s.ID, from: c.opts.ClientID, ts: s.Timestamp}
		}
		c.mu.Unlock()
	}
	return s, nil
}

// Direction is the order History walks in.
type Direction int32

// History directions (LogsCommand.QueryDirection).
const (
	Old Direction = 1 // from the start point towards older messages (server default)
	New Direction = 2 // towards newer messages
)

// HistoryQuery selects messages, as JS queryMessages: Start* is where the
// query begins, End* where it stops; both are exclusive unless *Included.
type HistoryQuery struct {
	StartTS       int64
	StartMID      string
	StartIncluded bool
	EndTS         int64
	EndMID        string
	EndIncluded   bool
	Limit         int       // 1–100, server default 20
	Direction     Direction // 0: New if EndTS > StartTS, else the server default (Old)
	LCType        int32     // only this typed-message type, 0 = all
}

// History returns messages of cid, always in ascending time order.
func (c *Client) History(ctx context.Context, cid string, q HistoryQuery) ([]Message, error) {
	l := &lcpb.LogsCommand{Cid: proto.String(cid)}
	if q.StartTS != 0 {
		l.T = proto.Int64(q.StartTS)
	}
	if q.StartMID != "" {
		l.Mid = proto.String(q.StartMID)
	}
	if q.StartIncluded {
		l.TIncluded = proto.Bool(true)
	}
	if q.EndTS != 0 {
		l.Tt = proto.Int64(q.EndTS)
	}
	if q.EndMID != "" {
		l.Tmid = proto.String(q.EndMID)
	}
	if q.EndIncluded {
		l.TtIncluded = proto.Bool(true)
	}
	if q.Limit > 0 {
		l.L = proto.Int32(int32(q.Limit))
	}
	if q.LCType != 0 {
		l.Lctype = proto.Int32(q.LCType)
	}
	dir := q.Direction
	if dir == 0 && q.EndTS > q.StartTS {
		dir = New
	}
	if dir != 0 {
		l.Direction = lcpb.LogsCommand_QueryDirection(dir).Enum()
	}
	r, err := c.Request(ctx, &lcpb.GenericCommand{Cmd: lcpb.CommandType_logs.Enum(), LogsMessage: l})
	if err != nil {
		return nil, fmt.Errorf("client: history of %s: %w", cid, err)
	}
	logs := r.GetLogsMessage().GetLogs()
	out := make([]Message, 0, len(logs))
	for _, it := range logs {
		m := Message{
			ConvID: cid, ID: it.GetMsgId(), From: it.GetFrom(), Timestamp: it.GetTimestamp(),
			MentionPids: it.GetMentionPids(), MentionAll: it.GetMentionAll(),
			PatchTimestamp: it.GetPatchTimestamp(), ConvType: it.GetConvType(),
			AckAt: it.GetAckAt(), ReadAt: it.GetReadAt(),
		}
		if it.GetBin() {
			b, err := base64.StdEncoding.DecodeString(it.GetData())
			if err != nil {
				return nil, fmt.Errorf("%w: history item %s: bad base64: %v", ErrProtocol, it.GetMsgId(), err)
			}
			m.Binary = b
		} else {
			m.Text = it.GetData()
		}
		out = append(out, m)
	}
	return out, nil
}

// Recall recalls message mid (sent at ts) of cid: patch/modify with recall.
func (c *Client) Recall(ctx context.Context, cid, mid string, ts int64) error {
	return c.patch(ctx, &lcpb.PatchItem{
		Cid: proto.String(cid), Mid: proto.String(mid), Timestamp: proto.Int64(ts), Recall: proto.Bool(true),
	})
}

// Edit replaces the content of message mid (sent at ts) of cid.
func (c *Client) Edit(ctx context.Context, cid, mid string, ts int64, newText string) error {
	return c.patch(ctx, &lcpb.PatchItem{
		Cid: proto.String(cid), Mid: proto.String(mid), Timestamp: proto.Int64(ts), Data: proto.String(newText),
	})
}

func (c *Client) patch(ctx context.Context, p *lcpb.PatchItem) error {
	c.mu.Lock()
	lpt := c.lastPatchTime
	c.mu.Unlock()
	r, err := c.Request(ctx, &lcpb.GenericCommand{
		Cmd: lcpb.CommandType_patch.Enum(), Op: lcpb.OpType_modify.Enum(),
		PatchMessage: &lcpb.PatchCommand{Patches: []*lcpb.PatchItem{p}, LastPatchTime: proto.Int64(lpt)},
	})
	if err != nil {
		return fmt.Errorf("client: patch %s/%s: %w", p.GetCid(), p.GetMid(), err)
	}
	if t := r.GetPatchMessage().GetLastPatchTime(); t != 0 {
		c.mu.Lock()
		c.lastPatchTime = max(c.lastPatchTime, t)
		c.mu.Unlock()
	}
	return nil
}

// Read marks cid read up to the last message this client saw in it (or
// now): read{convs:[ReadTuple{cid, mid, timestamp}]} without i, as JS.
func (c *Client) Read(ctx context.Context, cid string) error {
	c.mu.Lock()
	last, ok := c.last[cid]
	c.mu.Unlock()
	rt := &lcpb.ReadTuple{Cid: proto.String(cid), Timestamp: proto.Int64(time.Now().UnixMilli())}
	if ok {
		rt.Timestamp = proto.Int64(last.ts)
		if last.from != c.opts.ClientID {
			rt.Mid = proto.String(last.id)
		}
	}
	err := c.sendNoReply(ctx, &lcpb.GenericCommand{
		Cmd: lcpb.CommandType_read.Enum(), ReadMessage: &lcpb.ReadCommand{Convs: []*lcpb.ReadTuple{rt}},
	})
	if err != nil {
		return fmt.Errorf("client: read %s: %w", cid, err)
	}
	return nil
}

// Online returns which of ids (at most 20 are asked; the server ignores
// the rest) are online: session/query.
func (c *Client) Online(ctx context.Context, ids []string) ([]string, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	r, err := c.Request(ctx, &lcpb.GenericCommand{
		Cmd: lcpb.CommandType_session.Enum(), Op: lcpb.OpType_query.Enum(),
		SessionMessage: &lcpb.SessionCommand{SessionPeerIds: ids},
	})
	if err != nil {
		return nil, fmt.Errorf("client: online query: %w", err)
	}
	return r.GetSessionMessage().GetOnlineSessionPeerIds(), nil
}

// newUUID returns a random (version 4) uuid.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
