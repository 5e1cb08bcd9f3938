package shard

// deleteConv deletes a conversation for the server API (REST DELETE
// /1.2/rtm/conversations/{id}): its row, unique link, member index, the
// members' cursors and wills, and its whole history (messages, id index,
// patches, pending receipts) by range. Send dedup entries are left: they
// are keyed by time (dedup.go; by sender before Version7) and name a
// conversation id that is never reused; they expire with their window. Clients are not told; the members' next operation on it gets
// 4303 (LeanCloud does the same).
func (a *applier) deleteConv() (*Result, *Error) {
	c := a.c
	if !c.Admin {
		return nil, fail(ErrRoleTooLow, "delete is a server API operation")
	}
	conv, serr := a.conv(c.CID)
	if serr != nil {
		return nil, serr
	}
	a.dropUnique(conv)
	for _, m := range conv.Members {
		a.del(memberKey(c.App, m, conv.ID))
		a.del(willKey(c.App, m, conv.ID))
	}
	for _, p := range [][]byte{
		msgPrefix(c.App, conv.ID),
		newKey(tagMsgID).str(c.App).str(conv.ID),
		patchPrefix(c.App, conv.ID),
		cursorPrefix(c.App, conv.ID),
		rcpPrefix(c.App, conv.ID),
	} {
		a.delRange(p)
	}
	a.del(convKey(c.App, conv.ID))
	return &Result{Conv: conv}, nil
}

// delRange deletes every key with prefix p.
func (a *applier) delRange(p []byte) { a.rangeDel(p, prefixEnd(p)) }

// rangeDel deletes the keys in [start, end).
func (a *applier) rangeDel(start, end []byte) {
	if a.err != nil {
		return
	}
	if err := a.b.DeleteRange(start, end, nil); err != nil {
		a.err = err
	}
}
