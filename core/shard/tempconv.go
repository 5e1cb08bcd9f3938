package shard

import (
	"errors"
	"fmt"
	"strings"
)

// Temporary conversations (Conv.Temp): ids start with TempPrefix, at most
// MaxTempMembers members fixed at creation, and a TTL in seconds
// (DefaultTempTTL when the client gives none, clamped to MaxTempTTL). The
// record and history live here like a normal conversation's, so messages,
// history, unread and receipts work unchanged; the core keeps the rows out
// of where-queries (they are no _Conversation rows) and serves them only
// through conv/query{tempConvIds}.
//
// Expiry is deterministic: a temporary conversation expires at CreatedAt +
// TTL seconds (CreatedAt is the start command's Now), and every later
// command whose Now has reached that instant is refused with ErrTempExpired.
// Membership and attributes are fixed: add, remove, update, mute, role,
// shutup and block are refused with ErrTempConv.

// Temporary conversation bounds (LeanCloud's: 10 clients, one day by
// default, 30 days at most).
const (
	TempPrefix     = "_tmp:"
	MaxTempMembers = 10
	DefaultTempTTL = 86400      // seconds
	MaxTempTTL     = 30 * 86400 // seconds
)

// Sentinel errors of temporary conversations.
var (
	ErrTempExpired = errors.New("shard: temporary conversation expired")
	ErrTempConv    = errors.New("shard: not allowed in a temporary conversation")
)

// IsTempID reports whether cid names a temporary conversation.
func IsTempID(cid string) bool { return strings.HasPrefix(cid, TempPrefix) }

// ClampTempTTL returns the TTL in seconds a start with ttl gets.
func ClampTempTTL(ttl int64) int64 {
	switch {
	case ttl <= 0:
		return DefaultTempTTL
	case ttl > MaxTempTTL:
		return MaxTempTTL
	}
	return ttl
}

// ExpiresAt is when a temporary conversation expires, in ms (0: never).
func (c *Conv) ExpiresAt() int64 {
	if !c.Temp {
		return 0
	}
	return c.CreatedAt + c.TTL*1000
}

// Expired reports whether c is a temporary conversation expired at now (ms).
func (c *Conv) Expired(now int64) bool { return c.Temp && now >= c.ExpiresAt() }

// startTemp creates a temporary conversation: no unique key, no chatroom.
func (a *applier) startTemp() (*Result, *Error) {
	c := a.c
	if c.From == "" && !c.Admin {
		return nil, fail(ErrBadCommand, "no creator")
	}
	if !IsTempID(c.CID) {
		return nil, fail(ErrBadCommand, "temporary conversation id without "+TempPrefix)
	}
	if c.Transient {
		return nil, fail(ErrBadCommand, "temporary chatroom")
	}
	members := normalize(append(append([]string(nil), c.Members...), c.From))
	if len(members) > MaxTempMembers {
		return nil, fail(ErrConvFull, fmt.Sprintf("%d members in a temporary conversation", len(members)))
	}
	if a.convExists(c.CID) {
		return nil, fail(ErrConvExists, c.CID)
	}
	attr := c.Attr
	if !isJSONObject(attr) {
		attr = []byte("{}")
	}
	if serr := a.checkAttrSize(attr); serr != nil { // version.go
		return nil, serr
	}
	conv := &Conv{
		ID: c.CID, Creator: c.From, Members: members, Attr: attr,
		Temp: true, TTL: ClampTempTTL(c.TTL),
		CreatedAt: c.Now, UpdatedAt: c.Now,
	}
	for _, m := range members {
		a.set(memberKey(c.App, m, c.CID), []byte{})
	}
	a.putConv(conv)
	return &Result{Conv: conv}, nil
}

// checkTemp refuses a command on an expired temporary conversation, and
// the membership and attribute changes no temporary conversation takes.
func (a *applier) checkTemp() *Error {
	c := a.c
	if !IsTempID(c.CID) || c.Op == OpStart || c.Op == OpDelete {
		return nil
	}
	conv, serr := a.conv(c.CID)
	if serr != nil || !conv.Temp {
		return nil // the command's own handler reports it
	}
	if conv.Expired(c.Now) {
		return fail(ErrTempExpired, c.CID)
	}
	switch c.Op {
	case OpAdd, OpRemove, OpUpdate, OpMute, OpRole, OpShutup, OpBlock:
		return fail(ErrTempConv, string(c.Op))
	}
	return nil
}

// maxMembers is the member cap of a normal conversation for this command:
// the proposer's configured one, else MaxMembers.
func (a *applier) maxMembers() int {
	if a.c.MaxMembers > 0 {
		return a.c.MaxMembers
	}
	return MaxMembers
}
