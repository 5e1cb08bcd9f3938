package leancloud

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// Config says what to import and where.
type Config struct {
	// Conversations is the _Conversation export (required).
	Conversations string
	// MemberInfos is the _ConversationMemberInfo export ("": none): its
	// Manager rows become the conversations' managers (the Owner is the
	// creator, c).
	MemberInfos string
	// HistoryDir holds history files to import: *.jsonl (one history row a
	// line, as --save writes them) or *.json (a JSON array of rows, as the
	// history API answers). Rows name their conversation (conv-id).
	HistoryDir string
	// Source, when set, is where the history is fetched (not with
	// HistoryDir).
	Source *Source
	// SaveDir, with Source: each conversation's fetched history is kept as
	// SaveDir/<id>.jsonl (written as <id>.jsonl.part, renamed when
	// complete); a complete file there is read instead of fetching again.
	SaveDir string
	// Target is the relaymesh written to; nil with DryRun.
	Target *Target
	// DryRun reads and checks everything and writes nothing to relaymesh
	// (fetched history is still saved to SaveDir).
	DryRun bool
	// StateFile records finished work for a resumed run ("": none).
	StateFile string
	// Parallel is how many conversations' histories are fetched and
	// imported at once (0: 4). Files of HistoryDir are read one at a time.
	Parallel int
	// MaxMembers is the target's member cap (0: 500).
	MaxMembers int

	// Progress receives the progress line (nil: none); TTY rewrites it
	// in place; Every is the interval between lines (0: 2 s).
	Progress io.Writer
	TTY      bool
	Every    time.Duration
	Now      func() time.Time // nil: time.Now
}

// Problem is one thing that was not imported, or not as it was.
type Problem struct {
	File string // the file, or leancloud:<id> for fetched history
	Line int    // 0: not of one line (a row index for fetched pages)
	ID   string // the conversation or message, when known
	Msg  string
}

func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		fmt.Fprintf(&b, ":%d", p.Line)
	}
	b.WriteString(": ")
	if p.ID != "" {
		fmt.Fprintf(&b, "%s: ", p.ID)
	}
	b.WriteString(p.Msg)
	return b.String()
}

// MaxProblems is how many problems a Summary lists (all are counted).
const MaxProblems = 200

// maxDistinct caps the clientIds counted distinctly.
const maxDistinct = 1 << 20

// Summary is what an import found and did.
type Summary struct {
	DryRun bool
	// Export.
	ConvRows      int          // conversations read and accepted
	Kinds         map[Kind]int // of those
	MemberEntries int
	Managers      int // managers given to conversations (_ConversationMemberInfo)
	Distinct      int // distinct member clientIds (at most maxDistinct counted)
	ConvFirst     int64
	ConvLast      int64 // createdAt range, ms
	// History.
	Messages     int // rows read and accepted
	HistoryConvs int // conversations with at least one message
	MsgFirst     int64
	MsgLast      int64 // timestamp range, ms
	// Written (zero in a dry run).
	Created, Existing, Refused int
	MsgsNew, MsgsDup           int
	// Resumed: skipped because the state file says they are done.
	ResumedConvs, ResumedHistory, ResumedFiles int
	// SystemHistory: system conversations whose history is not imported.
	SystemHistory int

	ProblemCount int
	Problems     []Problem // the first MaxProblems

	distinct map[string]struct{}
	withMsgs map[string]struct{}
}

func (s *Summary) problem(p Problem) {
	s.ProblemCount++
	if len(s.Problems) < MaxProblems {
		s.Problems = append(s.Problems, p)
	}
}

func (s *Summary) sawMessage(m *Message) {
	s.Messages++
	if s.MsgFirst == 0 || m.Timestamp < s.MsgFirst {
		s.MsgFirst = m.Timestamp
	}
	s.MsgLast = max(s.MsgLast, m.Timestamp)
	if _, ok := s.withMsgs[m.convID]; !ok && len(s.withMsgs) < maxDistinct {
		s.withMsgs[m.convID] = struct{}{}
	}
	s.HistoryConvs = len(s.withMsgs)
}

// Write prints the summary.
func (s *Summary) Write(w io.Writer) {
	if s.DryRun {
		fmt.Fprintln(w, "dry run: nothing was written to relaymesh")
	}
	fmt.Fprintf(w, "conversations: %d (normal %d, unique %d, chatroom %d, system %d)",
		s.ConvRows, s.Kinds[KindNormal], s.Kinds[KindUnique], s.Kinds[KindChatroom], s.Kinds[KindSystem])
	if s.ConvRows > 0 {
		fmt.Fprintf(w, ", created %s .. %s", iso(s.ConvFirst), iso(s.ConvLast))
	}
	fmt.Fprintln(w)
	more := ""
	if s.Distinct >= maxDistinct {
		more = " or more"
	}
	fmt.Fprintf(w, "members: %d entries, %d%s distinct clientIds, %d managers\n", s.MemberEntries, s.Distinct, more, s.Managers)
	fmt.Fprintf(w, "messages: %d in %d conversations", s.Messages, s.HistoryConvs)
	if s.Messages > 0 {
		fmt.Fprintf(w, ", %s .. %s", iso(s.MsgFirst), iso(s.MsgLast))
	}
	fmt.Fprintln(w)
	if s.SystemHistory > 0 {
		fmt.Fprintf(w, "system conversations: %d, their history is not imported (per-subscriber messages)\n", s.SystemHistory)
	}
	if !s.DryRun {
		fmt.Fprintf(w, "written: conversations created %d, existing %d, refused %d; messages new %d, already there %d\n",
			s.Created, s.Existing, s.Refused, s.MsgsNew, s.MsgsDup)
		if s.ResumedConvs+s.ResumedHistory+s.ResumedFiles > 0 {
			fmt.Fprintf(w, "resumed: skipped %d conversations, %d histories and %d files done before (state file)\n",
				s.ResumedConvs, s.ResumedHistory, s.ResumedFiles)
		}
	}
	fmt.Fprintf(w, "problems: %d\n", s.ProblemCount)
	for _, p := range s.Problems {
		fmt.Fprintf(w, "  %s\n", p)
	}
	if s.ProblemCount > len(s.Problems) {
		fmt.Fprintf(w, "  … and %d more\n", s.ProblemCount-len(s.Problems))
	}
}

func iso(ms int64) string { return time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z") }

// run is one import. In the history phase with Source, Config.Parallel
// workers each hold a copy of it (worker) with their own ctx and pending
// batches; what they share is behind mu.
type run struct {
	cfg Config
	ctx context.Context

	mu   *sync.Mutex // guards st, sum and prog once workers run
	st   *state
	sum  *Summary
	prog *progress

	kinds    map[string]Kind     // every conversation of the export
	managers map[string][]string // cid -> Manager clientIds (MemberInfos)
	owners   map[string]string   // cid -> Owner clientId (MemberInfos)
	order    []string            // their ids in export order
	refused  map[string]bool     // conversations relaymesh refused

	pending  map[string]*pendingMsgs
	npending int
}

type pendingMsgs struct {
	msgs  []*Message
	bytes int
}

// Run imports. It returns the summary, also when it fails (with what was
// done until then). A cancelled ctx stops it between batches; run it again
// with the same state file to resume.
func Run(ctx context.Context, cfg Config) (*Summary, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Every <= 0 {
		cfg.Every = 2 * time.Second
	}
	if cfg.MaxMembers <= 0 {
		cfg.MaxMembers = MaxMembers
	}
	sum := &Summary{DryRun: cfg.DryRun, Kinds: map[Kind]int{}, distinct: map[string]struct{}{}, withMsgs: map[string]struct{}{}}
	switch {
	case cfg.Conversations == "":
		return sum, errors.New("leancloud: the _Conversation export is required")
	case cfg.HistoryDir != "" && cfg.Source != nil:
		return sum, errors.New("leancloud: read history from files or fetch it, not both")
	case cfg.SaveDir != "" && cfg.Source == nil:
		return sum, errors.New("leancloud: --save needs a LeanCloud server to fetch from")
	case !cfg.DryRun && cfg.Target == nil:
		return sum, errors.New("leancloud: no relaymesh to import to (or a dry run)")
	}
	if cfg.Parallel <= 0 {
		cfg.Parallel = 4
	}
	r := &run{cfg: cfg, ctx: ctx, mu: new(sync.Mutex), sum: sum, kinds: map[string]Kind{}, refused: map[string]bool{}, pending: map[string]*pendingMsgs{}}
	r.prog = &progress{w: cfg.Progress, tty: cfg.TTY, every: cfg.Every, now: cfg.Now, start: cfg.Now(), s: sum, phase: "conversations"}
	var err error
	if cfg.DryRun {
		r.st, _ = openState("", "", "")
	} else if r.st, err = openState(cfg.StateFile, cfg.Target.Server, cfg.Target.AppID); err != nil {
		return sum, err
	}
	defer r.st.close()
	defer r.prog.done()
	if err := r.memberInfos(); err != nil {
		return sum, err
	}
	if err := r.conversations(); err != nil {
		return sum, err
	}
	r.prog.phase = "history"
	switch {
	case cfg.HistoryDir != "":
		err = r.historyDir()
	case cfg.Source != nil:
		err = r.fetchAll()
	}
	return sum, err
}

// problem records p.
func (r *run) problem(p Problem) {
	r.mu.Lock()
	r.sum.problem(p)
	r.mu.Unlock()
}

// tick updates the progress line when it is due.
func (r *run) tick() {
	r.mu.Lock()
	r.prog.tick(false)
	r.mu.Unlock()
}

// locked runs fn holding mu.
func (r *run) locked(fn func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fn()
}

// worker returns a copy of r for one history worker: its own ctx and
// pending batches; the shared parts stay shared.
func (r *run) worker(ctx context.Context) *run {
	w := *r
	w.ctx = ctx
	w.pending, w.npending = map[string]*pendingMsgs{}, 0
	return &w
}

// ---- member roles ----

// memberInfos reads the _ConversationMemberInfo export: rows {cid,
// clientId (or peerId), role}. Only Manager and Owner rows matter (Member is
// everyone else); what is kept is bounded by the Manager rows.
func (r *run) memberInfos() error {
	r.managers, r.owners = map[string][]string{}, map[string]string{}
	if r.cfg.MemberInfos == "" {
		return nil
	}
	f, err := os.Open(r.cfg.MemberInfos)
	if err != nil {
		return fmt.Errorf("leancloud: %w", err)
	}
	defer f.Close()
	name := filepath.Base(r.cfg.MemberInfos)
	rows, err := newRowReader(name, f)
	if err != nil {
		return fmt.Errorf("leancloud: %w", err)
	}
	for {
		raw, line, err := rows.next()
		if err == io.EOF {
			return nil
		}
		var re *rowError
		if errors.As(err, &re) {
			r.problem(Problem{File: name, Line: re.Line, Msg: re.Msg})
			if re.Fatal {
				return nil
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("leancloud: %w", err)
		}
		var row map[string]json.RawMessage
		if json.Unmarshal(raw, &row) != nil {
			r.problem(Problem{File: name, Line: line, Msg: "not a JSON object"})
			continue
		}
		cid, err1 := str(row, "cid", true)
		client, err2 := str(row, "clientId", false)
		if client == "" && err2 == nil {
			client, err2 = str(row, "peerId", false) // the Java SDK's name for it
			if client == "" && err2 == nil {
				err2 = errors.New("no clientId")
			}
		}
		role, err3 := str(row, "role", true)
		if err := errors.Join(err1, err2, err3); err != nil {
			r.problem(Problem{File: name, Line: line, Msg: err.Error()})
			continue
		}
		if err := checkClientID(client); err != nil {
			r.problem(Problem{File: name, Line: line, ID: cid, Msg: err.Error()})
			continue
		}
		switch role {
		case "Manager":
			r.managers[cid] = append(r.managers[cid], client)
		case "Owner":
			r.owners[cid] = client
		case "Member":
		default:
			r.problem(Problem{File: name, Line: line, ID: cid, Msg: fmt.Sprintf("unknown role %q", role)})
		}
	}
}

// roles gives c its managers from the member infos, and reports an Owner
// other than the creator (relaymesh's Owner is always the creator).
func (r *run) roles(file string, line int, c *Conversation) {
	if o, ok := r.owners[c.ObjectID]; ok && o != c.Creator {
		r.problem(Problem{File: file, Line: line, ID: c.ObjectID,
			Msg: fmt.Sprintf("the Owner is %q but the creator (c) is %q: relaymesh's Owner is the creator", o, c.Creator)})
	}
	for _, m := range dedup(r.managers[c.ObjectID]) {
		if !slices.Contains(c.Members, m) || m == c.Creator {
			r.problem(Problem{File: file, Line: line, ID: c.ObjectID, Msg: fmt.Sprintf("manager %q is not a member other than the creator; dropped", m)})
			continue
		}
		c.Managers = append(c.Managers, m)
	}
	r.sum.Managers += len(c.Managers)
	delete(r.managers, c.ObjectID)
}

// ---- conversations ----

func (r *run) conversations() error {
	f, err := os.Open(r.cfg.Conversations)
	if err != nil {
		return fmt.Errorf("leancloud: %w", err)
	}
	defer f.Close()
	name := filepath.Base(r.cfg.Conversations)
	rows, err := newRowReader(name, f)
	if err != nil {
		return fmt.Errorf("leancloud: %w", err)
	}
	var batch []*Conversation
	size := 0
	checked := r.cfg.Source == nil
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if !checked { // a wrong LeanCloud key fails before anything is written
			checked = true
			for _, c := range batch {
				if c.Kind() != KindSystem {
					if err := r.cfg.Source.check(r.ctx, c.ObjectID, c.Transient); err != nil {
						return fmt.Errorf("leancloud: fetching history: %w", err)
					}
					break
				}
			}
		}
		err := r.sendConvs(name, batch)
		batch, size = batch[:0], 0
		return err
	}
	for {
		raw, line, err := rows.next()
		if err == io.EOF {
			break
		}
		var re *rowError
		if errors.As(err, &re) {
			r.problem(Problem{File: name, Line: re.Line, Msg: re.Msg})
			if re.Fatal {
				break
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("leancloud: %w", err)
		}
		c, warns, err := parseConversation(raw, r.cfg.MaxMembers)
		if err != nil {
			r.problem(Problem{File: name, Line: line, ID: objectID(raw), Msg: err.Error()})
			continue
		}
		if _, dup := r.kinds[c.ObjectID]; dup {
			r.problem(Problem{File: name, Line: line, ID: c.ObjectID, Msg: "a second row with this objectId; the first is imported"})
			continue
		}
		for _, w := range warns {
			r.problem(Problem{File: name, Line: line, ID: c.ObjectID, Msg: w})
		}
		r.roles(name, line, c)
		r.kinds[c.ObjectID] = c.Kind()
		r.order = append(r.order, c.ObjectID)
		r.sawConv(c)
		if r.cfg.DryRun {
			continue
		}
		if r.st.convs[c.ObjectID] {
			r.sum.ResumedConvs++
			continue
		}
		if len(batch) == convBatch || size+len(raw) > maxBatchBytes {
			if err := flush(); err != nil {
				return err
			}
		}
		batch = append(batch, c)
		size += len(raw)
		r.tick()
	}
	return flush()
}

func (r *run) sawConv(c *Conversation) {
	s := r.sum
	s.ConvRows++
	s.Kinds[c.Kind()]++
	if s.ConvFirst == 0 || c.CreatedAt < s.ConvFirst {
		s.ConvFirst = c.CreatedAt
	}
	s.ConvLast = max(s.ConvLast, c.CreatedAt)
	s.MemberEntries += len(c.Members)
	for _, m := range c.Members {
		if len(s.distinct) < maxDistinct {
			s.distinct[m] = struct{}{}
		}
	}
	s.Distinct = len(s.distinct)
}

func (r *run) sendConvs(file string, batch []*Conversation) error {
	if err := r.ctx.Err(); err != nil {
		return err
	}
	rep, err := r.cfg.Target.importConvs(r.ctx, batch)
	var bad *badRequest
	if errors.As(err, &bad) {
		for _, c := range batch {
			r.refused[c.ObjectID] = true
		}
		r.sum.Refused += len(batch)
		r.problem(Problem{File: file, ID: batch[0].ObjectID, Msg: fmt.Sprintf("a batch of %d conversations from here: %v", len(batch), bad)})
		return nil
	}
	if err != nil {
		return fmt.Errorf("leancloud: importing conversations: %w", err)
	}
	r.sum.Created += len(rep.Created)
	r.sum.Existing += len(rep.Existing)
	r.sum.Refused += len(rep.Refused)
	for _, f := range rep.Refused {
		r.refused[f.ObjectID] = true
		r.problem(Problem{File: file, ID: f.ObjectID, Msg: fmt.Sprintf("relaymesh refused it (%d): %s", f.Code, f.Error)})
	}
	done := append(append([]string(nil), rep.Created...), rep.Existing...)
	if err := r.st.doneConvs(done); err != nil {
		return err
	}
	r.tick()
	return nil
}

// objectID digs the objectId out of a row that failed its checks.
func objectID(raw json.RawMessage) string {
	var v struct {
		ID any `json:"objectId"`
	}
	json.Unmarshal(raw, &v)
	if s, ok := v.ID.(string); ok && len(s) <= 100 {
		return s
	}
	return ""
}

// ---- history ----

// accept checks a message row of file:line against the export; it
// returns the message to import, or nil (a problem was recorded, or the
// message is not to be imported).
func (r *run) accept(file string, line int, raw json.RawMessage, want string) *Message {
	m, err := parseMessage(raw)
	if err != nil {
		r.problem(Problem{File: file, Line: line, Msg: err.Error()})
		return nil
	}
	if m.convID == "" {
		if want == "" {
			r.problem(Problem{File: file, Line: line, ID: m.MsgID, Msg: "no conv-id"})
			return nil
		}
		m.convID = want
	}
	kind, ok := r.kinds[m.convID]
	switch {
	case want != "" && m.convID != want:
		r.problem(Problem{File: file, Line: line, ID: m.MsgID, Msg: fmt.Sprintf("conv-id %q in the history of %q", m.convID, want)})
		return nil
	case !ok:
		r.problem(Problem{File: file, Line: line, ID: m.MsgID, Msg: fmt.Sprintf("conv-id %q is not in the _Conversation export", m.convID)})
		return nil
	case kind == KindSystem:
		return nil // counted once per conversation (fetchAll) or file
	case r.refused[m.convID]:
		return nil // reported with the conversation
	}
	r.locked(func() { r.sum.sawMessage(m) })
	return m
}

// add queues m for import, sending batches as they fill.
func (r *run) add(m *Message) error {
	if r.cfg.DryRun {
		return nil
	}
	b := r.pending[m.convID]
	if b == nil {
		b = &pendingMsgs{}
		r.pending[m.convID] = b
	}
	enc, err := marshal(m) // as it goes out: escaping can make data several times longer
	if err != nil {
		return err
	}
	n := len(enc) + 1
	if len(b.msgs) == msgBatch || b.bytes+n > maxBatchBytes {
		if err := r.flush(m.convID); err != nil {
			return err
		}
	}
	b.msgs = append(b.msgs, m)
	b.bytes += n
	r.npending++
	if r.npending >= 4*msgBatch { // many conversations interleaved: bound what waits
		return r.flushAll()
	}
	return nil
}

func (r *run) flush(cid string) error {
	b := r.pending[cid]
	if b == nil || len(b.msgs) == 0 {
		return nil
	}
	if err := r.ctx.Err(); err != nil {
		return err
	}
	rep, err := r.cfg.Target.importMsgs(r.ctx, cid, b.msgs)
	var bad *badRequest
	switch {
	case errors.As(err, &bad):
		r.problem(Problem{File: "relaymesh", ID: cid, Msg: fmt.Sprintf("a batch of %d messages: %v", len(b.msgs), bad)})
	case err != nil:
		return fmt.Errorf("leancloud: importing messages of %s: %w", cid, err)
	default:
		r.locked(func() { r.sum.MsgsNew += rep.Imported; r.sum.MsgsDup += rep.Duplicates })
	}
	r.npending -= len(b.msgs)
	b.msgs, b.bytes = b.msgs[:0], 0
	r.tick()
	return nil
}

func (r *run) flushAll() error {
	ids := make([]string, 0, len(r.pending))
	for id := range r.pending {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		if err := r.flush(id); err != nil {
			return err
		}
	}
	clear(r.pending)
	return nil
}

// historyDir imports every history file of HistoryDir.
func (r *run) historyDir() error {
	var files []string
	for _, pat := range []string{"*.jsonl", "*.json"} {
		m, err := filepath.Glob(filepath.Join(r.cfg.HistoryDir, pat))
		if err != nil {
			return err
		}
		files = append(files, m...)
	}
	sort.Strings(files)
	if len(files) == 0 {
		return fmt.Errorf("leancloud: no *.jsonl or *.json history files in %s", r.cfg.HistoryDir)
	}
	for _, path := range files {
		if err := r.historyFile(path, ""); err != nil {
			return err
		}
	}
	return nil
}

// historyFile imports one file of history rows (of conversation want
// when set). A file imported to its end before (state) is skipped.
func (r *run) historyFile(path, want string) error {
	abs, _ := filepath.Abs(path)
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("leancloud: %w", err)
	}
	done := false
	r.locked(func() {
		if size, ok := r.st.files[abs]; ok && size == fi.Size() && !r.cfg.DryRun {
			r.sum.ResumedFiles++
			done = true
		}
	})
	if done {
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("leancloud: %w", err)
	}
	defer f.Close()
	name := filepath.Base(path)
	rows, err := newRowReader(name, f)
	if err != nil {
		r.problem(Problem{File: name, Msg: err.Error()})
		return nil
	}
	system := map[string]bool{}
	for {
		raw, line, err := rows.next()
		if err == io.EOF {
			break
		}
		var re *rowError
		if errors.As(err, &re) {
			r.problem(Problem{File: name, Line: re.Line, Msg: re.Msg})
			if re.Fatal {
				break
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("leancloud: %w", err)
		}
		m := r.accept(name, line, raw, want)
		if m == nil {
			if cid := convIDOf(raw); r.kinds[cid] == KindSystem && !system[cid] {
				system[cid] = true
				r.locked(func() { r.sum.SystemHistory++ })
			}
			continue
		}
		if err := r.add(m); err != nil {
			return err
		}
		r.tick()
	}
	if err := r.flushAll(); err != nil {
		return err
	}
	if r.cfg.DryRun {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.st.doneFile(abs, fi.Size())
}

func convIDOf(raw json.RawMessage) string {
	var v struct {
		C string `json:"conv-id"`
	}
	json.Unmarshal(raw, &v)
	return v.C
}

// fetchAll fetches (or replays from SaveDir) the history of every
// conversation of the export, Config.Parallel conversations at a time.
// The first error stops the others (between batches) and is returned.
func (r *run) fetchAll() error {
	ctx, cancel := context.WithCancel(r.ctx)
	defer cancel()
	jobs := make(chan string)
	var first error
	var wg sync.WaitGroup
	for range r.cfg.Parallel {
		w := r.worker(ctx)
		wg.Go(func() {
			for cid := range jobs {
				if err := w.fetchConv(cid); err != nil {
					r.locked(func() {
						if first == nil {
							first = err
						}
					})
					cancel()
					return
				}
			}
		})
	}
feed:
	for _, cid := range r.order {
		kind := r.kinds[cid]
		skip := false
		r.locked(func() {
			switch {
			case kind == KindSystem:
				r.sum.SystemHistory++
				skip = true
			case r.refused[cid]:
				skip = true
			case r.st.history[cid] && !r.cfg.DryRun:
				r.sum.ResumedHistory++
				skip = true
			}
		})
		if skip {
			continue
		}
		select {
		case jobs <- cid:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	if first != nil {
		return first
	}
	return r.ctx.Err()
}

// fetchConv fetches and imports one conversation's history and records it
// done.
func (r *run) fetchConv(cid string) error {
	if err := r.fetchOne(cid, r.kinds[cid] == KindChatroom); err != nil {
		return err
	}
	if r.cfg.DryRun {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.st.doneHistory(cid)
}

func (r *run) savePath(cid string) string {
	return filepath.Join(r.cfg.SaveDir, url.PathEscape(cid)+".jsonl")
}

func (r *run) fetchOne(cid string, room bool) error {
	if r.cfg.SaveDir != "" {
		if _, err := os.Stat(r.savePath(cid)); err == nil { // fetched before: replay
			return r.historyFile(r.savePath(cid), cid)
		}
	}
	var part *os.File
	if r.cfg.SaveDir != "" {
		if err := os.MkdirAll(r.cfg.SaveDir, 0o755); err != nil {
			return fmt.Errorf("leancloud: --save: %w", err)
		}
		var err error
		if part, err = os.Create(r.savePath(cid) + ".part"); err != nil {
			return fmt.Errorf("leancloud: --save: %w", err)
		}
		defer func() {
			if part != nil {
				part.Close()
			}
		}()
	}
	src := "leancloud:" + cid
	var ts int64
	var msgid string
	row := 0
	for {
		if err := r.ctx.Err(); err != nil {
			return err
		}
		page, err := r.cfg.Source.page(r.ctx, cid, room, ts, msgid)
		if errors.Is(err, errNotFound) {
			r.problem(Problem{File: src, ID: cid, Msg: "LeanCloud has no such conversation (404): no history imported"})
			break
		}
		if err != nil {
			return fmt.Errorf("leancloud: fetching the history of %s: %w", cid, err)
		}
		for _, raw := range page {
			row++
			if part != nil {
				if _, err := part.Write(append(append([]byte(nil), raw...), '\n')); err != nil {
					return fmt.Errorf("leancloud: --save: %w", err)
				}
			}
			if m := r.accept(src, row, raw, cid); m != nil {
				if err := r.add(m); err != nil {
					return err
				}
			}
		}
		r.tick()
		if len(page) < r.cfg.Source.pageSize() {
			break
		}
		var last struct {
			T  int64  `json:"timestamp"`
			ID string `json:"msg-id"`
		}
		json.Unmarshal(page[len(page)-1], &last)
		if last.T <= 0 || last.ID == "" || (last.T == ts && last.ID == msgid) || (ts > 0 && last.T > ts) {
			r.problem(Problem{File: src, Line: row, ID: cid, Msg: "the history pages do not move back in time; stopped fetching this conversation"})
			break
		}
		ts, msgid = last.T, last.ID
	}
	if err := r.flush(cid); err != nil {
		return err
	}
	delete(r.pending, cid)
	if part != nil {
		if err := part.Sync(); err != nil {
			return fmt.Errorf("leancloud: --save: %w", err)
		}
		part.Close()
		part = nil
		if err := os.Rename(r.savePath(cid)+".part", r.savePath(cid)); err != nil {
			return fmt.Errorf("leancloud: --save: %w", err)
		}
	}
	return nil
}
