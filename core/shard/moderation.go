package shard

import "errors"

// Member roles, spelled as LeanCloud's _ConversationMemberInfo.role and the
// member_info_changed push (Swift matches them case-sensitively).
const (
	RoleOwner   = "Owner"
	RoleManager = "Manager"
	RoleMember  = "Member"
)

// Moderation list limits (LeanCloud: permanent ban and blacklist at most 500
// per normal conversation).
const (
	MaxShutup  = 500
	MaxBlocked = 500
)

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

// IsShutup reports whether pid is muted (may not send).
func (c *Conv) IsShutup(pid string) bool { return containsSorted(c.Shutup, pid) }

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
// member with a role above Member.
func (a *applier) moderator() (*Conv, *Error) {
	conv, serr := a.conv(a.c.CID)
	if serr != nil {
		return nil, serr
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
// actor may not act on fail with ErrRoleTooLow; the rest are allowed.
func (a *applier) shutup() (*Result, *Error) {
	return a.moderateList(func(conv *Conv) *[]string { return &conv.Shutup }, MaxShutup, ErrShutupFull, nil)
}

// block adds (Mute) the clientIds in Members to the blacklist, removing
// those who are members, or takes them off it.
func (a *applier) block() (*Result, *Error) {
	return a.moderateList(func(conv *Conv) *[]string { return &conv.Blocked }, MaxBlocked, ErrBlacklistFull,
		func(conv *Conv, res *Result, p string) {
			if conv.IsMember(p) {
				res.Removed = append(res.Removed, p)
			}
		})
}

// moderateList adds (Mute) the clientIds in Members to the sorted list that
// list selects, or takes them off it. Targets the actor may not act on fail
// with ErrRoleTooLow, additions past max with full; the rest are allowed.
// added, if set, runs for each target newly put on the list; members in
// res.Removed are then dropped from the conversation.
func (a *applier) moderateList(list func(*Conv) *[]string, max int, full error, added func(conv *Conv, res *Result, p string)) (*Result, *Error) {
	c := a.c
	conv, serr := a.moderator()
	if serr != nil {
		return nil, serr
	}
	pids := normalize(c.Members)
	if len(pids) == 0 {
		return nil, fail(ErrBadCommand, "no members")
	}
	l := list(conv)
	res := &Result{Conv: conv}
	for _, p := range pids {
		on := containsSorted(*l, p)
		switch {
		case !conv.mayActOn(c.From, p):
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
