package loadtest

import (
	"context"
	"time"

	"github.com/relaymesh/relaymesh/client"
)

// Final sync (Config.FinalSync). After the drain, every session still
// open reads the history of each of its conversations, newest first, as a
// client opening the conversation would, and records what it finds as
// sync copies. A message acked but never pushed (a push lost at a region
// hop cut by a partition, or while a recipient was between edges without
// a reconnect) is then counted Late, not Lost: Lost means the message is
// in no copy and in no history, i.e. the server acked a message it does
// not have. Copies found both live and in history count as Resynced.

// finalSyncPages bounds the history pages (of 100) read per conversation.
const finalSyncPages = 50

// finalSync runs the final sync of every open session, cfg.Concurrency at
// a time; failures are noted (a conversation whose history cannot be read
// keeps its missing copies as lost).
func (w *worker) finalSync(ctx context.Context) {
	w.mu.Lock()
	all := append([]*session(nil), w.all...)
	w.mu.Unlock()
	w.parallel(ctx, len(all), func(i int) {
		s := all[i]
		if s.cl == nil || s.closed.Load() {
			return
		}
		s.mu.Lock()
		cids := make([]string, 0, len(s.convs))
		for cid := range s.convs {
			cids = append(cids, cid)
		}
		s.mu.Unlock()
		for _, cid := range cids {
			if err := s.syncAll(ctx, cid, w.start); err != nil {
				w.noteErr("final sync of %s by %s: %v", cid, s.id, err)
			}
		}
	})
}

// syncAll records every message of cid since `since` found in history as
// a sync copy, paging back from the newest.
func (s *session) syncAll(ctx context.Context, cid string, since time.Time) error {
	c := s.conv(cid)
	if c == nil {
		return nil
	}
	q := client.HistoryQuery{Limit: 100}
	for range finalSyncPages {
		rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		msgs, err := s.cl.History(rctx, cid, q)
		cancel()
		if err != nil {
			return err
		}
		now := time.Now()
		for _, m := range msgs {
			if m.From == s.id {
				continue
			}
			if w, seq, ok := parseLedgerID(m.Text); ok {
				s.w.ledger.Delivered(w, seq, m.ID, c.pos[s], true, now)
			}
		}
		if len(msgs) < q.Limit || msgs[0].Timestamp < since.UnixMilli() {
			return nil
		}
		q.StartTS, q.StartMID = msgs[0].Timestamp, msgs[0].ID
	}
	return nil
}
