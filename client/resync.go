package client

import (
	"context"
	"log/slog"
	"maps"
	"time"
)

// Resync (Options.Resync). Messages pushed while a client is between
// connections are lost for it on the wire: its edge died with them queued,
// or it was away when they were sent. They are in history. When the
// connection is lost the client notes, per conversation, the timestamp of
// the last message it received from others; after the reopen (on .3) the
// server's unread push names the conversations with something new, and the
// client reads each whose newest message is newer than that timestamp from
// there on (History, towards newer, up to
// maxResyncPages of 100), emitting every message from others it has not
// had live since the reopen as a Message with Resynced set. A
// conversation it had no message from others in yet gets its newest
// min(unread, 100) messages from others (read back past its own, which
// the unread count leaves out). Resynced messages can come after newer live ones, and a message
// can come twice (live before the loss and again here, at-least-once):
// dedup by Message.ID.
//
// On lc.protobuf2.1 the server pushes what the client has not acked as
// direct{offline} on the reopen, so there is nothing to fetch.

// maxResyncPages bounds the history pages read per conversation.
const maxResyncPages = 10

// resyncAttempts bounds the tries of one history page: a reconnect storm
// (an edge's every client at once) can time a read out or meet a rate
// limit, and a page given up is a conversation's missed messages lost
// to the client until its next reconnect.
const resyncAttempts = 6

// resyncPage reads one history page for the resync, trying again after a
// failure (250 ms doubling up to 4 s, with jitter) until resyncAttempts
// or the client closes.
func (c *Client) resyncPage(cid string, q HistoryQuery) ([]Message, error) {
	var err error
	for attempt := range resyncAttempts {
		if attempt > 0 {
			t := time.NewTimer(backoff(attempt-1, 250*time.Millisecond, 4*time.Second))
			select {
			case <-t.C:
			case <-c.ctx.Done():
				t.Stop()
				return nil, err
			}
			c.resyncRetries.Add(1)
		}
		ctx, cancel := context.WithTimeout(c.ctx, c.opts.RequestTimeout)
		var page []Message
		page, err = c.History(ctx, cid, q)
		cancel()
		if err == nil || c.ctx.Err() != nil {
			return page, err
		}
		c.log.Info("client: resync: history read failed", "cid", cid, "attempt", attempt+1, "err", err)
	}
	return nil, err
}

// resyncState is one resync: from a lost connection to the unread push of
// the reopen. Its maps are guarded by Client.mu.
type resyncState struct {
	gap    map[string]int64 // cid → last timestamp received from others when the connection was lost
	live   map[string]bool  // message ids pushed live since
	unread chan Unread      // cap 1: the first unread push after the reopen
}

// startResync notes where the client was when the connection was lost;
// the reader hands the reopen's unread push to it.
func (c *Client) startResync() *resyncState {
	if !c.opts.Resync || c.codec.Version == 1 {
		return nil
	}
	rs := &resyncState{live: make(map[string]bool), unread: make(chan Unread, 1)}
	c.mu.Lock()
	rs.gap = maps.Clone(c.seen)
	c.rs = rs
	c.mu.Unlock()
	return rs
}

// noteLiveLocked records a message pushed live (c.mu held).
func (c *Client) noteLiveLocked(m Message) {
	if m.From != c.opts.ClientID && !m.Transient && m.Timestamp > c.seen[m.ConvID] {
		c.seen[m.ConvID] = m.Timestamp
	}
	if c.rs != nil {
		c.rs.live[m.ID] = true
	}
}

// noteUnread hands the first unread push after a reopen to the resync.
func (c *Client) noteUnread(u Unread) {
	c.mu.Lock()
	rs := c.rs
	c.mu.Unlock()
	if rs == nil {
		return
	}
	select {
	case rs.unread <- u:
	default:
	}
}

// resync runs on its own goroutine after a reconnect (run waits for it
// before closing Events).
func (c *Client) resync(rs *resyncState) {
	defer c.resyncWG.Done()
	defer func() {
		c.mu.Lock()
		if c.rs == rs {
			c.rs = nil
		}
		c.mu.Unlock()
	}()
	var u Unread
	select {
	case u = <-rs.unread:
	case <-time.After(c.opts.RequestTimeout):
		c.log.Info("client: resync: no unread push after the reopen")
		return
	case <-c.ctx.Done():
		return
	}
	if c.log.Enabled(context.Background(), slog.LevelDebug) {
		cids := make([]string, len(u.Convs))
		for i, uc := range u.Convs {
			cids[i] = uc.ConvID
		}
		c.log.Debug("client: resync", "unread_convs", len(u.Convs), "cids", cids)
	}
	for _, uc := range u.Convs {
		if uc.ConvType == 2 { // chatrooms: transient, not resynced
			continue
		}
		if err := c.resyncConv(rs, uc); err != nil {
			c.resyncFailures.Add(1)
			c.log.Warn("client: resync gave up on a conversation", "cid", uc.ConvID, "err", err)
		}
	}
}

// resyncConv reads one conversation's missed messages and emits them.
func (c *Client) resyncConv(rs *resyncState, uc UnreadConv) error {
	c.mu.Lock()
	from, known := rs.gap[uc.ConvID]
	c.mu.Unlock()
	if !known {
		return c.resyncNewest(rs, uc)
	}
	if uc.LastTS != 0 && uc.LastTS <= from {
		// The conversation's newest message is no newer than the last
		// one from others the client had when the connection was lost:
		// a read from there (exclusive) would return nothing. The reopen
		// registered the session for live pushes before the server took
		// the unread push's snapshot, so a message committed since came
		// live.
		return nil
	}
	q := HistoryQuery{Limit: 100, StartTS: from, Direction: New}
	for range maxResyncPages {
		page, err := c.resyncPage(uc.ConvID, q)
		if err != nil {
			return err
		}
		c.logResyncPage(uc, q, page)
		for _, m := range page {
			c.emitResynced(rs, m)
		}
		if len(page) < q.Limit || page[len(page)-1].Timestamp >= uc.LastTS {
			return nil
		}
		q.StartTS = page[len(page)-1].Timestamp
	}
	return nil
}

// resyncNewest resyncs a conversation the client had no message from
// others in: its newest messages from others, as many as the unread
// count says (at most 100). Pages are read back from the newest, since
// the client's own messages are in history but not in the count: one it
// sent at the reopen (a send made while it was away goes out then) would
// otherwise fill a page sized by the count, and hide the message it
// missed.
func (c *Client) resyncNewest(rs *resyncState, uc UnreadConv) error {
	want := min(max(uc.Count, 1), 100)
	var got []Message // newest first
	q := HistoryQuery{Limit: 100}
	for range maxResyncPages {
		page, err := c.resyncPage(uc.ConvID, q)
		if err != nil {
			return err
		}
		c.logResyncPage(uc, q, page)
		for i := len(page) - 1; i >= 0 && len(got) < want; i-- {
			if page[i].From != c.opts.ClientID {
				got = append(got, page[i])
			}
		}
		if len(got) >= want || len(page) < q.Limit {
			break
		}
		q.StartTS, q.StartMID = page[0].Timestamp, page[0].ID // older than this page
	}
	for i := len(got) - 1; i >= 0; i-- {
		c.emitResynced(rs, got[i])
	}
	return nil
}

// emitResynced emits m as Resynced unless it is the client's own or came
// live since the reopen.
func (c *Client) emitResynced(rs *resyncState, m Message) {
	c.mu.Lock()
	skip := m.From == c.opts.ClientID || rs.live[m.ID]
	if !skip {
		rs.live[m.ID] = true
		if m.Timestamp > c.seen[m.ConvID] {
			c.seen[m.ConvID] = m.Timestamp
		}
	}
	c.mu.Unlock()
	if skip {
		return
	}
	m.Resynced = true
	c.emit(m)
}

func (c *Client) logResyncPage(uc UnreadConv, q HistoryQuery, page []Message) {
	if !c.log.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	ids := make([]string, len(page))
	for i, m := range page {
		ids[i] = m.ID
	}
	c.log.Debug("client: resync page", "cid", uc.ConvID, "from", q.StartTS, "unread", uc.Count, "ids", ids)
}

// ResyncStats says how a client's resyncs went: history reads tried again
// after a failure, and conversations given up on (their missed messages
// stay in history, read at the next reconnect or by the application).
func (c *Client) ResyncStats() (retries, failures uint64) {
	return c.resyncRetries.Load(), c.resyncFailures.Load()
}
