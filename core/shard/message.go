package shard

func (a *applier) appendMsg() (*Result, *Error) {
	c := a.c
	conv, serr := a.conv(c.CID)
	if serr != nil {
		return nil, serr
	}
	if !conv.mayAppend(c.From) && !c.Admin {
		return nil, fail(ErrNotMember, c.From)
	}
	if conv.IsSilenced(c.From, c.Now) && !c.Admin {
		return nil, fail(ErrShutup, c.From)
	}
	if c.MID == "" {
		return nil, fail(ErrBadCommand, "no message id")
	}
	if c.DT != "" {
		d, ok := a.dedupFind() // dedup.go
		if a.err != nil {
			return nil, fail(ErrBadCommand, a.err.Error())
		}
		if ok {
			m, err := GetMessage(a.b, c.App, c.CID, d.ID)
			if err != nil {
				a.err = err
			}
			if m == nil {
				m = &Message{ID: d.ID, CID: c.CID, From: c.From, T: d.T}
			}
			return &Result{Conv: conv, Message: m, Dup: true}, nil
		}
	}
	m := &Message{
		ID: c.MID, CID: c.CID, From: c.From, Data: c.Data, Bin: c.Bin,
		MentionPids: c.MentionPids, MentionAll: c.MentionAll,
		Receipt: c.Receipt && (len(conv.Members) <= 2 || c.GroupReceipt),
	}
	a.store(conv, m)
	if c.DT != "" {
		a.dedupPut(m)
	}
	a.tail(m) // fanout.go: until the leader says it pushed it
	return &Result{Conv: conv, Message: m, Index: a.index}, nil
}

// store appends m to conv at the command's time (after the last message)
// and writes the message and the conversation's last message.
func (a *applier) store(conv *Conv, m *Message) {
	app := a.c.App
	t := a.c.Now
	if floor := max(conv.LastT, conv.FloorT); t <= floor {
		t = floor + 1
	}
	m.T = t
	a.putMsg(msgKey(app, conv.ID, t, m.ID), m)
	a.set(msgIDKey(app, conv.ID, m.ID), keyBuf(nil).ts(t))
	if m.Receipt {
		a.cache.setNoReceipts(app, conv.ID, false) // receipts.go
		a.set(rcpKey(app, conv.ID, t, m.ID), []byte(m.From))
	}
	conv.LastT, conv.LastMID, conv.LastFrom = t, m.ID, m.From
	conv.LastData, conv.LastBin, conv.LastPatch = m.Data, m.Bin, 0
	a.putLast(conv)
}

func (a *applier) patch() (*Result, *Error) {
	c := a.c
	if len(c.Patches) == 0 {
		return nil, fail(ErrBadCommand, "no patches")
	}
	// Validate everything first: a refused patch changes nothing.
	type target struct {
		conv *Conv
		msg  *Message
	}
	convs := map[string]*Conv{}
	targets := make([]target, len(c.Patches))
	for i, p := range c.Patches {
		conv := convs[p.CID]
		if conv == nil {
			var serr *Error
			if conv, serr = a.conv(p.CID); serr != nil {
				return nil, serr
			}
			convs[p.CID] = conv
		}
		m, err := GetMessage(a.b, c.App, p.CID, p.MID)
		if err != nil {
			a.err = err
			return nil, fail(ErrMsgNotFound, err.Error())
		}
		if m == nil {
			return nil, fail(ErrMsgNotFound, p.MID)
		}
		if m.From != c.From && !c.Admin {
			return nil, fail(ErrNotSender, p.MID)
		}
		targets[i] = target{conv, m}
	}
	res := &Result{}
	for i, p := range c.Patches {
		conv, m := targets[i].conv, targets[i].msg
		pt := c.Now
		if pt <= conv.LastPatchT {
			pt = conv.LastPatchT + 1
		}
		conv.LastPatchT = pt
		if m.PatchT != 0 {
			a.del(patchKey(c.App, p.CID, m.PatchT, m.ID))
		}
		m.PatchT = pt
		if p.Recall {
			m.Recalled, m.Data, m.Bin = true, "", false
		} else {
			m.Data, m.Bin, m.MentionPids, m.MentionAll = p.Data, p.Bin, p.MentionPids, p.MentionAll
		}
		a.putMsg(msgKey(c.App, p.CID, m.T, m.ID), m)
		a.set(patchKey(c.App, p.CID, pt, m.ID), keyBuf(nil).ts(m.T))
		if conv.LastMID == m.ID {
			conv.LastData, conv.LastBin = m.Content()
			conv.LastPatch = pt
		}
		res.Patched = append(res.Patched, m)
	}
	for _, p := range c.Patches { // write each conversation once, in request order
		if conv, ok := convs[p.CID]; ok {
			a.putLast(conv)
			a.putConv(conv)
			delete(convs, p.CID)
		}
	}
	return res, nil
}

// cursor moves the delivered (ack) or read cursor of From forward. Cursors
// never move back and never past the last message.
func (a *applier) cursor() (*Result, *Error) {
	c := a.c
	conv, serr := a.conv(c.CID)
	if serr != nil {
		return nil, serr
	}
	if !conv.IsMember(c.From) {
		return nil, fail(ErrNotMember, c.From)
	}
	t := c.T
	if c.MID != "" {
		mt, ok, err := MessageTS(a.b, c.App, c.CID, c.MID)
		if err != nil {
			a.err = err
			return nil, fail(ErrMsgNotFound, err.Error())
		}
		if !ok {
			return nil, fail(ErrMsgNotFound, c.MID)
		}
		t = mt
	} else if t <= 0 && c.Op == OpRead {
		t = conv.LastT
	}
	if t > conv.LastT {
		t = conv.LastT
	}
	cur, err := GetCursor(a.b, c.App, c.CID, c.From)
	if err != nil {
		a.err = err
		return nil, fail(ErrBadCommand, err.Error())
	}
	old := cur
	if t > cur.Ack {
		cur.Ack = t
	}
	if c.Op == OpRead && t > cur.Read {
		cur.Read = t
	}
	res := &Result{}
	if cur != old {
		a.set(cursorKey(c.App, c.CID, c.From), cur)
		if cur.Ack > old.Ack {
			res.Receipts = a.receipts(c.CID, old.Ack, cur.Ack, false)
		}
		if cur.Read > old.Read {
			res.Receipts = append(res.Receipts, a.receipts(c.CID, old.Read, cur.Read, true)...)
		}
	}
	return res, nil
}
