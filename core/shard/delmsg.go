package shard

// deleteMsg deletes message MID of conversation CID for the server API
// (REST DELETE /1.2/rtm/{kind}/{cid}/messages/{mid}): the server copy only,
// clients are not told. Command.T, when set, must be the message's
// timestamp (LeanCloud names a message by id and timestamp); otherwise the
// message is not found.
//
// The message leaves the log ('M'), the id index ('I'), the patch log
// ('P') and the pending receipts ('Q'), so history, offline delivery and
// unread counts no longer see it. Cursors are left where they are. When it
// was the last message, the previous one becomes the last (or none), and
// FloorT keeps its timestamp: later messages are still stamped after it,
// so a cursor that had reached it never covers a newer message. A send
// dedup entry naming it is left; a retried send then answers with the
// deleted id, as it would for any message sent once.
func (a *applier) deleteMsg() (*Result, *Error) {
	c := a.c
	if !c.Admin {
		return nil, fail(ErrRoleTooLow, "message delete is a server API operation")
	}
	if c.MID == "" {
		return nil, fail(ErrBadCommand, "no message id")
	}
	conv, serr := a.conv(c.CID)
	if serr != nil {
		return nil, serr
	}
	m, err := GetMessage(a.b, c.App, c.CID, c.MID)
	if err != nil {
		a.err = err
		return nil, fail(ErrMsgNotFound, err.Error())
	}
	if m == nil || (c.T > 0 && c.T != m.T) {
		return nil, fail(ErrMsgNotFound, c.MID)
	}
	a.del(msgKey(c.App, c.CID, m.T, m.ID))
	a.del(msgIDKey(c.App, c.CID, m.ID))
	if m.PatchT != 0 {
		a.del(patchKey(c.App, c.CID, m.PatchT, m.ID))
	}
	if m.Receipt {
		a.del(rcpKey(c.App, c.CID, m.T, m.ID))
	}
	if conv.LastMID == m.ID {
		prev, err := ListMessages(a.b, c.App, c.CID, LogQuery{Start: m.T, Limit: 1})
		if err != nil {
			a.err = err
			return nil, fail(ErrBadCommand, err.Error())
		}
		var l lastMsg
		if len(prev) == 1 {
			p := prev[0]
			data, bin := p.Content()
			l = lastMsg{T: p.T, Patch: p.PatchT, Bin: bin, MID: p.ID, From: p.From, Dat: data}
		}
		conv.setLast(l)
		conv.FloorT = max(conv.FloorT, m.T)
		a.putLast(conv)
		a.putConv(conv)
	}
	return &Result{Conv: conv, Message: m}, nil
}
