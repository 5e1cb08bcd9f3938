package shard

import (
	"encoding/json"
	"errors"
	"fmt"
)

// MaxMembers bounds the member list of a normal conversation unless the
// command carries its own cap (Command.MaxMembers).
const MaxMembers = 500

// Conv is the stored _Conversation row.
type Conv struct {
	ID        string          `json:"id"`
	Creator   string          `json:"c"`
	Members   []string        `json:"m"`              // sorted, unique
	Muted     []string        `json:"mu,omitempty"`   // sorted, unique
	Attr      json.RawMessage `json:"attr,omitempty"` // JSON object as the client sent it, incl. name
	Transient bool            `json:"tr,omitempty"`
	System    bool            `json:"sys,omitempty"`
	Unique    bool            `json:"unique,omitempty"`
	UniqueID  string          `json:"uid,omitempty"` // member-set hash while the unique key points here
	CreatedAt int64           `json:"ca"`            // ms
	UpdatedAt int64           `json:"ua"`            // ms
	// Last message.
	LastT     int64  `json:"lt,omitempty"` // timestamp of the last message (lm)
	LastMID   string `json:"lmid,omitempty"`
	LastFrom  string `json:"lfrom,omitempty"`
	LastData  string `json:"ldata,omitempty"`
	LastBin   bool   `json:"lbin,omitempty"`
	LastPatch int64  `json:"lpt,omitempty"`
	// LastPatchT is the newest patch timestamp in this conversation.
	LastPatchT int64 `json:"pt,omitempty"`
	// FloorT is the timestamp of a deleted last message (delmsg.go): new
	// messages are stamped above it too, so none sorts at or below a
	// cursor that had passed the deleted one.
	FloorT int64 `json:"ft,omitempty"`
	// Moderation (moderation.go): Managers by clientId (the Owner is
	// Creator, everyone else a Member), muted members (shutup) and the
	// blacklist. Lists are sorted and unique; a blocked client is never in
	// Members.
	Managers []string `json:"mgr,omitempty"`
	Shutup   []string `json:"su,omitempty"`
	Blocked  []string `json:"bl,omitempty"`
	// TempShutup: members muted until a time (REST temporary-silenceds),
	// by clientId; replaced, never modified in place (the cache shares it).
	TempShutup []TempMute `json:"tsu,omitempty"`
	// Temporary conversation (tempconv.go): expires TTL seconds after
	// CreatedAt.
	Temp bool  `json:"tmp,omitempty"`
	TTL  int64 `json:"ttl,omitempty"`
}

// IsMember reports whether pid is a member.
func (c *Conv) IsMember(pid string) bool { return containsSorted(c.Members, pid) }

// Message is one stored message.
type Message struct {
	ID          string   `json:"id"`
	CID         string   `json:"cid"`
	From        string   `json:"from"`
	T           int64    `json:"t"`
	Data        string   `json:"data,omitempty"`
	Bin         bool     `json:"bin,omitempty"` // Data is base64 of binaryMsg
	MentionPids []string `json:"mp,omitempty"`
	MentionAll  bool     `json:"ma,omitempty"`
	PatchT      int64    `json:"pt,omitempty"`
	Recalled    bool     `json:"rc,omitempty"`
	// Receipt: the sender asked for receipts (r:true) and gets them.
	Receipt bool `json:"r,omitempty"`
}

// RecalledData is what a recalled message's content reads as.
const RecalledData = `{"_lctype":-127}`

// Content returns the message body as clients see it.
func (m *Message) Content() (data string, bin bool) {
	if m.Recalled {
		return RecalledData, false
	}
	return m.Data, m.Bin
}

// Cursor is one member's position in one conversation.
type Cursor struct {
	Ack  int64 `json:"a,omitempty"` // delivered up to and including
	Read int64 `json:"r,omitempty"` // read up to and including
}

// DedupEntry remembers the outcome of a send for (sender, cid, dt).
type DedupEntry struct {
	ID string `json:"id"`
	T  int64  `json:"t"`
}

// Op names a command.
type Op string

// Commands.
const (
	OpStart  Op = "start"  // create a conversation (or find the unique one)
	OpAdd    Op = "add"    // add members
	OpRemove Op = "remove" // remove members
	OpUpdate Op = "update" // update attributes
	OpMute   Op = "mute"   // mute or unmute for From
	OpAppend Op = "append" // append a message
	OpPatch  Op = "patch"  // edit or recall a message
	OpAck    Op = "ack"    // move delivered cursor
	OpRead   Op = "read"   // move read (and delivered) cursor

	OpRole     Op = "role"      // set a member's role (moderation.go)
	OpShutup   Op = "shutup"    // mute (Mute) or unmute members
	OpBlock    Op = "block"     // blacklist (Mute: block) or unblock clients
	OpWill     Op = "will"      // store a will message (will.go)
	OpEndWills Op = "end_wills" // a session ended: send (Fire) or drop its wills
	OpBatch    Op = "batch"     // apply Batch in order, each on its own (batch.go)
	OpDelete   Op = "delete"    // delete a conversation (server API only, delete.go)
	OpDelMsg   Op = "del_msg"   // delete one message (server API only, delmsg.go)
	OpSetWords Op = "set_words" // an app's sensitive-word list (server API only, words.go)
)

// Command is one state change, encoded as JSON in the raft log, or from
// Version5 on in the binary form (bincmd.go).
type Command struct {
	// V is the command's version (version.go): the proposer's, stamped by
	// Encode; absent (0) in logs written before versions existed, which
	// are version 1. Entries of a batch take the batch's.
	V   int    `json:"v,omitempty"`
	Op  Op     `json:"op"`
	App string `json:"app"`
	CID string `json:"cid,omitempty"`
	// From is the clientId that initiated the change.
	From string `json:"from,omitempty"`
	// Now is the leader's clock in ms when it proposed the command.
	Now int64 `json:"now"`
	// Admin is set for the server API (REST, master key): membership, role
	// and sender checks are skipped, as LeanCloud's REST API skips them.
	Admin bool `json:"admin,omitempty"`

	// start, add, remove, role, shutup, block
	Members []string `json:"m,omitempty"`
	// start
	Attr      json.RawMessage `json:"attr,omitempty"`
	Transient bool            `json:"tr,omitempty"`
	Unique    bool            `json:"unique,omitempty"`
	// start: a temporary conversation (tempconv.go) with a TTL in seconds.
	// shutup: Temp selects the temporary mute list (moderation.go), TTL the
	// mute's seconds from Now.
	Temp bool  `json:"tmp,omitempty"`
	TTL  int64 `json:"ttl,omitempty"`
	// start, add: the member cap of a normal conversation (0: MaxMembers),
	// set by the proposer from its configuration.
	MaxMembers int `json:"max,omitempty"`
	// update: attribute changes with dotted keys ("attr.k", "name").
	Update json.RawMessage `json:"upd,omitempty"`
	// mute; shutup and block: true adds, false removes
	Mute bool `json:"mute,omitempty"`
	// role: Members[0] gets Role
	Role string `json:"role,omitempty"`

	// append
	MID         string   `json:"mid,omitempty"`
	Data        string   `json:"data,omitempty"`
	Bin         bool     `json:"bin,omitempty"`
	MentionPids []string `json:"mp,omitempty"`
	MentionAll  bool     `json:"ma,omitempty"`
	DT          string   `json:"dt,omitempty"`
	// append: the sender asked for receipts; GroupReceipt: its session
	// takes receipts in conversations of more than two members too
	// (configBitmap bit 6).
	Receipt      bool `json:"r,omitempty"`
	GroupReceipt bool `json:"gr,omitempty"`
	// will, end_wills: the session (edge, connection) that owns the will;
	// append: the session that sent it (the fan-out tail skips it).
	Edge string `json:"edge,omitempty"`
	Conn uint64 `json:"conn,omitempty"`
	// append: the recipients when the _messageReceived hook narrowed them
	// (kept in the fan-out tail, fanout.go); nil means the members.
	To []string `json:"to,omitempty"`
	// Any op: raft indexes of messages the proposer fanned out; their
	// fan-out tail entries are deleted (fanout.go).
	FanoutDone []uint64 `json:"fd,omitempty"`
	// end_wills: send the wills (the session dropped) rather than drop them.
	Fire bool `json:"fire,omitempty"`
	// will: the send's priority, kept for a chatroom will's fan-out.
	Priority int32 `json:"pri,omitempty"`
	// set_words: the app's list, or with Reset none (words.go).
	Words []string `json:"words,omitempty"`
	Reset bool     `json:"reset,omitempty"`

	// patch
	Patches []Patch `json:"patches,omitempty"`

	// batch: commands applied one after the other; each succeeds or fails
	// alone (Result.Batch). No batch nests another.
	Batch []*Command `json:"batch,omitempty"`

	// ack, read: move the cursor to T, or to the timestamp of MID; with
	// neither, to the last message of the conversation (read only).
	T int64 `json:"t,omitempty"`

	// sys_broadcast (sysconv.go): the expiry in ms, and the app's limit of
	// broadcasts per UTC day (0: none).
	ValidTill int64 `json:"vt,omitempty"`
	DayLimit  int   `json:"dl,omitempty"`
	// sys_broadcast: a global broadcast, to every user of the app
	// (global.go); with Transient, one for the online sessions only.
	Global bool `json:"glob,omitempty"`

	// device_* (devices.go): the device registry.
	Device *DeviceOp `json:"dev,omitempty"`

	// notif (notif.go): events for the recipients' notification logs.
	Notifs []NotifAppend `json:"notifs,omitempty"`

	// import (import.go): conversations, or messages of CID, as they were
	// elsewhere (LeanCloud).
	Import *ImportOp `json:"imp,omitempty"`
}

// Patch edits or recalls one message.
type Patch struct {
	CID         string   `json:"cid"`
	MID         string   `json:"mid"`
	T           int64    `json:"t,omitempty"` // the message's timestamp, if the client gave it
	Recall      bool     `json:"recall,omitempty"`
	Data        string   `json:"data,omitempty"`
	Bin         bool     `json:"bin,omitempty"`
	MentionPids []string `json:"mp,omitempty"`
	MentionAll  bool     `json:"ma,omitempty"`
}

// Encode marshals a command for Propose, stamping V with Version when it
// is zero (a proposer pinned to an older version sets V itself).
func (c *Command) Encode() ([]byte, error) {
	if c.V == 0 {
		c.V = Version
	}
	b, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("shard: encode command: %w", err)
	}
	return b, nil
}

// DecodeCommand parses a command from the raft log.
func DecodeCommand(b []byte) (*Command, error) {
	if p, v, ok := binPayload(b); ok { // bincmd.go
		c, err := decodeBinEnvelope(p, v)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBadCommand, err)
		}
		return c, nil
	}
	c := new(Command)
	if err := json.Unmarshal(b, c); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadCommand, err)
	}
	return c, nil
}

// Result is what Apply returns for a successful command.
type Result struct {
	Conv *Conv // the conversation after the change (nil for ack/read)
	// start: the conversation already existed (unique match).
	Existing bool
	// add/remove, shutup, block: the clientIds that were allowed, and the
	// refused ones with why.
	Allowed []string
	Failed  []Failure
	// add/remove, shutup, block, role: the clientIds whose state actually
	// changed.
	Changed []string
	// block: the members the block removed from the conversation.
	Removed []string
	// update: the modified attributes as nested JSON (attrModified).
	AttrModified json.RawMessage
	// append: the stored message; Dup is set when (sender, cid, dt) matched
	// an earlier send, and Message then holds the original id and timestamp.
	Message *Message
	Dup     bool
	// append: the raft index the message was stored at (its fan-out tail
	// entry, fanout.go); 0 for a Dup.
	Index uint64
	// patch: the patched messages, in request order.
	Patched []*Message
	// ack/read: receipts due to senders whose messages the cursor passed.
	Receipts []Receipt
	// end_wills: the will messages sent, now stored in their conversations.
	Fired []Fired
	// batch: one outcome per command, in order.
	Batch []BatchItem
	// device_*: the devices written (devices.go); Existing: a save or bind
	// found the device rather than creating it.
	Devices []*Device
	// import: what was created, kept and refused (import.go).
	Import *ImportResult
}

// BatchItem is the outcome of one command of a batch: Result, or Err.
type BatchItem struct {
	Result *Result
	Err    *Error
}

// Failure is one clientId a partial operation refused; Err is a sentinel.
type Failure struct {
	PID string
	Err error
}

// Receipt tells To that From received (or read) message MID of CID.
type Receipt struct {
	CID, MID string
	To       string // the sender of the message
	From     string // who received or read it
	T        int64  // when (the command's Now)
	Read     bool
}

// Fired is a will message sent and the members it goes to.
type Fired struct {
	Message *Message
	Members []string
	// Room: the conversation is a chatroom; the core fans the message out
	// to the joined sessions with Priority instead of to Members.
	Room     bool
	Priority int32
}

// Sentinel errors, classified by the core with errors.Is.
var (
	ErrBadCommand      = errors.New("shard: malformed command")
	ErrConvNotFound    = errors.New("shard: conversation not found")
	ErrNotMember       = errors.New("shard: not a member")
	ErrConvFull        = errors.New("shard: conversation full")
	ErrMsgNotFound     = errors.New("shard: message not found")
	ErrNotSender       = errors.New("shard: only the sender may patch a message")
	ErrConvExists      = errors.New("shard: conversation id taken")
	ErrUpdateForbidden = errors.New("shard: attribute may not be updated")
	ErrRoleTooLow      = errors.New("shard: role does not allow the operation")
	ErrUnknownRole     = errors.New("shard: unknown conversation role")
	ErrNeedOwner       = errors.New("shard: the conversation would lose its owner")
	ErrShutup          = errors.New("shard: member is muted in the conversation")
	ErrBlocked         = errors.New("shard: client is blacklisted by the conversation")
)

// Error is the error value Apply returns; Err is one of the sentinels.
type Error struct {
	Err    error
	Detail string
}

func (e *Error) Error() string {
	if e.Detail == "" {
		return e.Err.Error()
	}
	return e.Err.Error() + ": " + e.Detail
}

func (e *Error) Unwrap() error { return e.Err }

func fail(err error, detail string) *Error { return &Error{Err: err, Detail: detail} }
