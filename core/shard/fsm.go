package shard

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"

	"github.com/cockroachdb/pebble"
)

// FSM is the shard state machine. All state is in Pebble; the FSM keeps
// only a cache of decoded conversations (cache.go) and filters of the send
// dedup window's keys (dedup.go).
type FSM struct {
	cache convCache
	// dedup.go: the send dedup window's floor and filters.
	dedup dedupWindow
	// members.go: the member observer and this replica's member index.
	members memberWatch
}

// New returns the shard state machine.
func New() *FSM { return &FSM{} }

// Apply applies one committed command to b. It returns a *Result, or an
// *Error for a command the state refuses (nothing is written then), or a
// *FatalError when this replica cannot apply the command as every other
// replica does (fatal.go: a storage failure, a command newer than this
// code); raftstore then discards b and stops the replica. The caller
// commits b otherwise (raftstore always does); one that throws away a
// batch with writes in it must call Reset.
func (f *FSM) Apply(b *pebble.Batch, index uint64, cmd []byte) any {
	res := f.apply(b, index, cmd)
	f.members.applied(index, res) // members.go
	return res
}

func (f *FSM) apply(b *pebble.Batch, index uint64, cmd []byte) any {
	c, err := DecodeCommand(cmd)
	if err != nil {
		if v := peekVersion(cmd); v > Version {
			return checkVersion(index, &Command{V: v})
		}
		return fail(ErrBadCommand, err.Error())
	}
	if ferr := checkVersion(index, c); ferr != nil {
		return ferr
	}
	if c.version() >= Version2 { // fanout.go; a Version1 replica ignores FanoutDone
		if err := applyFanoutDone(b, c); err != nil {
			return fatal(index, c.Op, err)
		}
	}
	if c.Op == OpFanoutDone {
		if c.version() < Version2 {
			return fail(ErrBadCommand, "unknown op "+string(c.Op))
		}
		return &Result{}
	}
	if c.Op == OpBatch {
		return f.applyBatch(b, index, c)
	}
	if c.App == "" {
		return fail(ErrBadCommand, "no app")
	}
	a := &applier{b: b, c: c, cache: &f.cache, dedup: &f.dedup, v: c.version(), index: index, touched: &f.members.touched}
	res, serr := a.apply()
	if a.err != nil {
		return fatal(index, c.Op, a.err)
	}
	if serr != nil {
		return serr
	}
	return res
}

// applier carries one command through Apply. err records the first failure
// that makes the command impossible to apply as the other replicas do (a
// storage error, an unknown op), so handlers stay linear: once it is set,
// whatever a handler returns is replaced by a FatalError.
type applier struct {
	b     *pebble.Batch
	c     *Command
	v     int // the command's version (version.go)
	cache *convCache
	dedup *dedupWindow // dedup.go
	// winDigest names the send's dedup token in the window (dedup.go):
	// dedupFind's, for dedupPut.
	winDigest [16]byte
	index     uint64 // the raft index being applied
	err       error
	// touched collects the clients whose member, subscription or
	// user-message index entries this entry writes (members.go).
	touched *[]MemberTouch
	// tails gathers the fan-out tail entries of a Version4 batch's
	// appends (fanout.go); nil: an append writes its own.
	tails *[]FanoutEntry
}

func (a *applier) apply() (*Result, *Error) {
	if serr := a.checkOpVersion(); serr != nil { // version.go
		return nil, serr
	}
	if serr := a.checkTemp(); serr != nil { // tempconv.go
		return nil, serr
	}
	switch a.c.Op {
	case OpStart:
		return a.start()
	case OpAdd:
		return a.add()
	case OpRemove:
		return a.remove()
	case OpUpdate:
		return a.update()
	case OpMute:
		return a.mute()
	case OpAppend:
		return a.appendMsg()
	case OpPatch:
		return a.patch()
	case OpAck, OpRead:
		return a.cursor()
	case OpRole:
		return a.role()
	case OpShutup:
		return a.shutup()
	case OpBlock:
		return a.block()
	case OpWill:
		return a.will()
	case OpEndWills:
		return a.endWills()
	case OpDelete:
		return a.deleteConv()
	case OpDelMsg:
		return a.deleteMsg() // delmsg.go
	case OpSetWords:
		return a.setWords() // words.go
	case OpRevokeTokens:
		return a.revokeTokens() // auth.go
	case OpNotif:
		return a.notif() // notif.go
	case OpImport:
		return a.importOp() // import.go
	}
	if res, serr, ok := a.sysApply(); ok { // sysconv.go
		return res, serr
	}
	if res, serr, ok := a.deviceApply(); ok { // devices.go
		return res, serr
	}
	a.err = fmt.Errorf("%w: %q", ErrUnknownOp, a.c.Op) // a newer proposer's
	return nil, nil
}

func (a *applier) set(key []byte, v any) {
	if a.err != nil {
		return
	}
	var b []byte
	switch v := v.(type) {
	case []byte:
		b = v
	case keyBuf:
		b = v
	default:
		var err error
		if b, err = json.Marshal(v); err != nil {
			a.err = err
			return
		}
	}
	a.touch(key)
	if err := a.b.Set(key, b, nil); err != nil {
		a.err = err
	}
	a.forget(key, false) // putConv caches the record again
}

func (a *applier) del(key []byte) {
	if a.err != nil {
		return
	}
	a.touch(key)
	if err := a.b.Delete(key, nil); err != nil {
		a.err = err
	}
	a.forget(key, true)
}

// normalize sorts and dedups ids and drops empty ones.
func normalize(ids []string) []string {
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if id != "" {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	w := 0
	for i, id := range out {
		if i == 0 || id != out[w-1] {
			out[w] = id
			w++
		}
	}
	return out[:w]
}

func containsSorted(s []string, x string) bool {
	i := sort.SearchStrings(s, x)
	return i < len(s) && s[i] == x
}

func containsUnsorted(s []string, x string) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}

// memberSetHash names a member set for unique conversations.
func memberSetHash(sorted []string) string {
	h := sha256.New()
	for _, m := range sorted {
		h.Write([]byte(m))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

func (a *applier) start() (*Result, *Error) {
	c := a.c
	if c.Temp {
		return a.startTemp() // tempconv.go
	}
	members := normalize(append(append([]string(nil), c.Members...), c.From))
	if c.From == "" && !c.Admin {
		return nil, fail(ErrBadCommand, "no creator")
	}
	if len(members) > a.maxMembers() && !c.Transient {
		return nil, fail(ErrConvFull, fmt.Sprintf("%d members", len(members)))
	}
	var h string
	if c.Unique && !c.Transient {
		h = memberSetHash(members)
		cid, ok, err := getRaw(a.b, uniqueKey(c.App, h))
		if err != nil {
			a.err = err
			return nil, fail(ErrBadCommand, err.Error())
		}
		if ok {
			conv, serr := a.conv(string(cid))
			if serr != nil {
				return nil, serr
			}
			return &Result{Conv: conv, Existing: true}, nil
		}
	}
	if c.CID == "" {
		return nil, fail(ErrBadCommand, "no cid")
	}
	if a.convExists(c.CID) {
		return nil, fail(ErrConvExists, c.CID)
	}
	members = storedMembers(c, members) // chatroom.go
	attr := c.Attr
	if !isJSONObject(attr) {
		attr = json.RawMessage("{}")
	}
	if serr := a.checkAttrSize(attr); serr != nil { // version.go
		return nil, serr
	}
	conv := &Conv{
		ID: c.CID, Creator: c.From, Members: members, Attr: attr,
		Transient: c.Transient, Unique: c.Unique && !c.Transient,
		CreatedAt: c.Now, UpdatedAt: c.Now,
	}
	if h != "" {
		conv.UniqueID = h
		a.set(uniqueKey(c.App, h), []byte(c.CID))
	}
	for _, m := range members {
		a.set(memberKey(c.App, m, c.CID), []byte{})
	}
	a.putConv(conv)
	return &Result{Conv: conv}, nil
}

// dropUnique unlinks a unique conversation from its member set once the
// set changes: it is no longer the answer for the old set.
func (a *applier) dropUnique(conv *Conv) {
	if conv.UniqueID != "" {
		a.del(uniqueKey(a.c.App, conv.UniqueID))
		conv.UniqueID = ""
	}
}

func (a *applier) add() (*Result, *Error) {
	c := a.c
	conv, serr := a.conv(c.CID)
	if serr != nil {
		return nil, serr
	}
	pids := normalize(c.Members)
	if len(pids) == 0 {
		return nil, fail(ErrBadCommand, "no members")
	}
	join := len(pids) == 1 && pids[0] == c.From
	if !join && !conv.IsMember(c.From) && !c.Admin {
		return nil, fail(ErrNotMember, c.From)
	}
	res := &Result{Conv: conv}
	var added []string
	for _, p := range pids {
		switch {
		case conv.IsMember(p):
			res.Allowed = append(res.Allowed, p)
		case conv.IsBlocked(p):
			res.Failed = append(res.Failed, Failure{p, ErrBlocked})
		case len(conv.Members)+len(added) >= a.maxMembers() && !conv.Transient:
			res.Failed = append(res.Failed, Failure{p, ErrConvFull})
		default:
			added = append(added, p)
			res.Allowed = append(res.Allowed, p)
		}
	}
	if len(added) > 0 {
		conv.Members = normalize(append(conv.Members, added...))
		conv.UpdatedAt = c.Now
		a.dropUnique(conv)
		for _, p := range added {
			a.set(memberKey(c.App, p, c.CID), []byte{})
			if conv.LastT > 0 { // history before joining is not unread
				a.set(cursorKey(c.App, c.CID, p), Cursor{Ack: conv.LastT, Read: conv.LastT})
			}
		}
		a.putConv(conv)
	}
	res.Changed = added
	return res, nil
}

// remove removes members. Removing others (kick) takes the Owner or a
// Manager, and a Manager cannot kick the Owner (ErrRoleTooLow, per target).
func (a *applier) remove() (*Result, *Error) {
	c := a.c
	conv, serr := a.conv(c.CID)
	if serr != nil {
		return nil, serr
	}
	pids := normalize(c.Members)
	if len(pids) == 0 {
		return nil, fail(ErrBadCommand, "no members")
	}
	quit := len(pids) == 1 && pids[0] == c.From
	if !quit && !c.Admin {
		if !conv.IsMember(c.From) {
			return nil, fail(ErrNotMember, c.From)
		}
		if conv.Role(c.From) == RoleMember {
			return nil, fail(ErrRoleTooLow, c.From)
		}
	}
	res := &Result{Conv: conv}
	for _, p := range pids {
		if p != c.From && !conv.mayActOn(c.From, p) && !c.Admin {
			res.Failed = append(res.Failed, Failure{p, ErrRoleTooLow})
			continue
		}
		res.Allowed = append(res.Allowed, p)
		if conv.IsMember(p) {
			res.Changed = append(res.Changed, p)
		}
	}
	if len(res.Changed) > 0 {
		a.dropMembers(conv, res.Changed)
		a.putConv(conv)
	}
	return res, nil
}

func (a *applier) mute() (*Result, *Error) {
	c := a.c
	conv, serr := a.conv(c.CID)
	if serr != nil {
		return nil, serr
	}
	if !conv.IsMember(c.From) {
		return nil, fail(ErrNotMember, c.From)
	}
	has := containsSorted(conv.Muted, c.From)
	switch {
	case c.Mute && !has:
		conv.Muted = normalize(append(conv.Muted, c.From))
	case !c.Mute && has:
		var out []string
		for _, m := range conv.Muted {
			if m != c.From {
				out = append(out, m)
			}
		}
		conv.Muted = out
	default:
		return &Result{Conv: conv}, nil
	}
	conv.UpdatedAt = c.Now
	a.putConv(conv)
	return &Result{Conv: conv}, nil
}

func isJSONObject(b []byte) bool {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' {
		return false
	}
	var m map[string]json.RawMessage
	return json.Unmarshal(b, &m) == nil
}
