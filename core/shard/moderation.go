package shard

import (
	"errors"
	"slices"
	"strings"
)

// Member roles, spelled as LeanCloud's _ConversationMemberInfo.role and the
// member_info_changed push (Swift matches them case-sensitively).
const (
	RoleOwner   = "Owner"
	RoleManager = "Manager"
	RoleMember  = "Member"
)

// Moderation list limits (LeanCloud: permanent ban and blacklist at most 500
// per normal conversation; a chatroom's blacklist at most 10,000).
const (
	MaxShutup      = 500
	MaxBlocked     = 500
	MaxRoomBlocked = 10000
	// MaxTempShutup bounds the unexpired temporary mutes of a conversation.
	MaxTempShutup = 500
	// MaxTempShutupTTL is the longest temporary mute, in seconds (24 h).
	MaxTempShutupTTL = 24 * 60 * 60
)

// TempMute is a temporary mute: Pid may not send before Until (ms).
type TempMute struct {
	Pid   string `json:"p"`
	Until int64  `json:"u"`
}

// Sentinels for a full moderation list (partial failures only).
var (
	ErrShutupFull    = errors.New("shard: muted member list is full")
	ErrBlacklistFull = errors.New("shard: blacklist is full")
)

// Role returns pid's role: the creator is the Owner.
func (c *Conv) Role(pid string) string {
	switch {
	case pid == c.Creator:
		return RoleOwner
	case containsSorted(c.Managers, pid):
		return RoleManager
	}
	return RoleMember
}

// IsShutup reports whether pid is on the (permanent) mute list.
func (c *Conv) IsShutup(pid string) bool { return containsSorted(c.Shutup, pid) }

// IsSilenced reports whether pid may not send at now (ms): it is on the
// mute list, or temporarily muted until after now. Sends use this, with
// the command's Now in the shard.
func (c *Conv) IsSilenced(pid string, now int64) bool {
	return c.IsShutup(pid) || c.MutedUntil(pid) > now
}

// MutedUntil returns the end (ms) of pid's temporary mute, 0 if none.
func (c *Conv) MutedUntil(pid string) int64 {
	for _, t := range c.TempShutup {
		if t.Pid == pid {
			return t.Until
		}
	}
	return 0
}

// IsBlocked reports whether pid is on the conversation's blacklist.
func (c *Conv) IsBlocked(pid string) bool { return containsSorted(c.Blocked, pid) }

// mayActOn reports whether actor may kick, mute or block target: the Owner
// may act on anyone else, a Manager on anyone but the Owner and itself, a
// Member on nobody.
func (c *Conv) mayActOn(actor, target string) bool {
	if actor == target {
		return false
	}
	switch c.Role(actor) {
	case RoleOwner:
		return true
	case RoleManager:
		return target != c.Creator
	}
	return false
}

// moderator loads the command's conversation and checks that From is a
// member with a role above Member (unless Admin: the server API).
func (a *applier) moderator() (*Conv, *Error) {
	conv, serr := a.conv(a.c.CID)
	if serr != nil {
		return nil, serr
	}
	if a.c.Admin {
		return conv, nil
	}
	if !conv.IsMember(a.c.From) {
		return nil, fail(ErrNotMember, a.c.From)
	}
	if conv.Role(a.c.From) == RoleMember {
		return nil, fail(ErrRoleTooLow, a.c.From)
	}
	return conv, nil
}

func insertSorted(s []string, x string) []string { return normalize(append(s, x)) }

func removeSorted(s []string, x string) []string {
	out := make([]string, 0, len(s))
	for _, v := range s {
		if v != x {
			out = append(out, v)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// role sets the role of Members[0] to Role (Manager or Member). The Owner's
// role cannot change and nobody can be made Owner.
func (a *applier) role() (*Result, *Error) {
	c := a.c
	conv, serr := a.moderator()
	if serr != nil {
		return nil, serr
	}
	if len(c.Members) != 1 || c.Members[0] == "" {
		return nil, fail(ErrBadCommand, "role needs one member")
	}
	target := c.Members[0]
	switch c.Role {
	case RoleManager, RoleMember:
	case RoleOwner:
		return nil, fail(ErrRoleTooLow, "promotion to Owner")
	default:
		return nil, fail(ErrUnknownRole, c.Role)
	}
	if !conv.IsMember(target) {
		return nil, fail(ErrNotMember, target)
	}
	if target == conv.Creator {
		return nil, fail(ErrNeedOwner, target)
	}
	res := &Result{Conv: conv}
	if conv.Role(target) == c.Role {
		return res, nil
	}
	if c.Role == RoleManager {
		conv.Managers = insertSorted(conv.Managers, target)
	} else {
		conv.Managers = removeSorted(conv.Managers, target)
	}
	res.Changed = []string{target}
	a.putConv(conv)
	return res, nil
}

// shutup mutes (Mute) or unmutes the clientIds in Members. Targets the
// actor may not act on fail with ErrRoleTooLow; the rest are allowed. With
// Temp it works on the temporary mutes instead (tempShutup).
func (a *applier) shutup() (*Result, *Error) {
	if a.c.Temp {
		return a.tempShutup()
	}
	return a.moderateList(func(conv *Conv) *[]string { return &conv.Shutup }, func(*Conv) int { return MaxShutup },
		ErrShutupFull, nil)
}

// tempShutup mutes the clientIds in Members until Now + TTL seconds (Mute),
// replacing an earlier temporary mute, or lifts their temporary mutes.
// Expired entries are dropped on the way. Permissions as for shutup.
func (a *applier) tempShutup() (*Result, *Error) {
	c := a.c
	conv, serr := a.moderator()
	if serr != nil {
		return nil, serr
	}
	pids := normalize(c.Members)
	if len(pids) == 0 {
		return nil, fail(ErrBadCommand, "no members")
	}
	if c.Mute && (c.TTL <= 0 || c.TTL > MaxTempShutupTTL) {
		return nil, fail(ErrBadCommand, "temporary mute ttl out of range")
	}
	until := c.Now + c.TTL*1000
	kept := make([]TempMute, 0, len(conv.TempShutup)+len(pids))
	for _, t := range conv.TempShutup {
		if t.Until > c.Now && !containsSorted(pids, t.Pid) {
			kept = append(kept, t)
		}
	}
	res := &Result{Conv: conv}
	for _, p := range pids {
		switch {
		case !c.Admin && !conv.mayActOn(c.From, p):
			res.Failed = append(res.Failed, Failure{p, ErrRoleTooLow})
			if u := conv.MutedUntil(p); u > c.Now { // keep what it had
				kept = append(kept, TempMute{p, u})
			}
		case c.Mute && len(kept) >= MaxTempShutup:
			res.Failed = append(res.Failed, Failure{p, ErrShutupFull})
		default:
			res.Allowed = append(res.Allowed, p)
			if c.Mute || conv.MutedUntil(p) > c.Now { // a new mute always moves the end
				res.Changed = append(res.Changed, p)
			}
			if c.Mute {
				kept = append(kept, TempMute{p, until})
			}
		}
	}
	slices.SortFunc(kept, func(x, y TempMute) int { return strings.Compare(x.Pid, y.Pid) })
	if len(kept) == 0 {
		kept = nil
	}
	if !slices.Equal(kept, conv.TempShutup) {
		conv.TempShutup = kept
		a.putConv(conv)
	}
	return res, nil
}

// block adds (Mute) the clientIds in Members to the blacklist, removing
// those who are members, or takes them off it.
func (a *applier) block() (*Result, *Error) {
	return a.moderateList(func(conv *Conv) *[]string { return &conv.Blocked }, maxBlocked, ErrBlacklistFull,
		func(conv *Conv, res *Result, p string) {
			if conv.IsMember(p) {
				res.Removed = append(res.Removed, p)
			}
		})
}

// maxBlocked is the blacklist bound of conv: larger for chatrooms.
func maxBlocked(conv *Conv) int {
	if conv.Transient {
		return MaxRoomBlocked
	}
	return MaxBlocked
}

// moderateList adds (Mute) the clientIds in Members to the sorted list that
// list selects, or takes them off it. Targets the actor may not act on fail
// with ErrRoleTooLow (never with Admin), additions past limit(conv) with
// full; the rest are allowed. added, if set, runs for each target newly put
// on the list; members in res.Removed are then dropped from the
// conversation.
func (a *applier) moderateList(list func(*Conv) *[]string, limit func(*Conv) int, full error, added func(conv *Conv, res *Result, p string)) (*Result, *Error) {
	c := a.c
	conv, serr := a.moderator()
	if serr != nil {
		return nil, serr
	}
	max := limit(conv)
	pids := normalize(c.Members)
	if len(pids) == 0 {
		return nil, fail(ErrBadCommand, "no members")
	}
	l := list(conv)
	res := &Result{Conv: conv}
	for _, p := range pids {
		on := containsSorted(*l, p)
		switch {
		case !c.Admin && !conv.mayActOn(c.From, p):
			res.Failed = append(res.Failed, Failure{p, ErrRoleTooLow})
		case c.Mute && !on && len(*l) >= max:
			res.Failed = append(res.Failed, Failure{p, full})
		default:
			res.Allowed = append(res.Allowed, p)
			if c.Mute == on {
				continue
			}
			res.Changed = append(res.Changed, p)
			if !c.Mute {
				*l = removeSorted(*l, p)
				continue
			}
			*l = insertSorted(*l, p)
			if added != nil {
				added(conv, res, p)
			}
		}
	}
	if len(res.Removed) > 0 {
		a.dropMembers(conv, res.Removed)
	}
	if len(res.Changed) > 0 {
		a.putConv(conv)
	}
	return res, nil
}

// dropMembers removes members (sorted) from conv with their index entries,
// cursors and roles; the caller writes conv.
func (a *applier) dropMembers(conv *Conv, removed []string) {
	kept := make([]string, 0, len(conv.Members))
	for _, m := range conv.Members {
		if !containsSorted(removed, m) {
			kept = append(kept, m)
		}
	}
	conv.Members = kept
	conv.UpdatedAt = a.c.Now
	a.dropUnique(conv)
	for _, p := range removed {
		conv.Managers = removeSorted(conv.Managers, p)
		a.del(memberKey(a.c.App, p, conv.ID))
		a.del(cursorKey(a.c.App, conv.ID, p))
	}
}
