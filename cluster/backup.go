package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/relaymesh/relaymesh/catalog"
	"github.com/relaymesh/relaymesh/core/shard"
	"github.com/relaymesh/relaymesh/mesh"
	"github.com/relaymesh/relaymesh/raftstore"
)

// Backups (issue 12, Day-2): `relaymesh admin snapshot` and `relaymesh
// admin restore` over the mesh, with an admin certificate only.
//
// A backup is one group's state as a file (raftstore/backup.go: header,
// the state's records, SHA-256). Both operations are mesh streams of
// frames whose first byte says what they hold:
//
//	'J' a JSON BackupRequest (the caller's first frame) or BackupReply
//	'D' bytes of the backup file
//	'E' the end of the file (restore, caller to core)
//
// Snapshot: the caller sends J{request}; the core answers J{reply}: an
// error, not_leader and the leader it knows (the caller asks that one),
// or who serves it; then D frames of the file, then J{reply} with the
// file's header, or an error (the caller throws the file away).
//
// Restore: the caller sends J{request} (with the file's size); the core
// answers J{reply} as above, or refuses a shard that holds data without
// Force, before any byte of the file is sent; then the caller sends D
// frames and E, and the core checks all of the file, restores it through
// raft (raftstore.Node.RestoreBackup), registers in the catalog what the
// shard's data needs there, and answers J{reply} with what it did.
//
// What the catalog holds for a shard, and a restore registers again from
// the restored state: the member index (each client's count in the
// shard, and the shard's mark, so that a login finds the shard), imported
// conversation ids (24-hex ids that name no shard, or another one, so
// that they are routed to it), and unique conversations' member-set
// claims. What a restore does not carry: other shards, the catalog's own
// state (topology, apps: from the configuration), sessions and
// connections, devices' push tokens registered outside the shard, and
// anything written to the shard after the backup was taken.

const (
	// MethodAdminSnapshot and MethodAdminRestore are the backup streams.
	MethodAdminSnapshot = "admin-snapshot"
	MethodAdminRestore  = "admin-restore"

	frameJSON = 'J'
	frameData = 'D'
	frameEnd  = 'E'

	// backupChunk is the data a frame carries at most.
	backupChunk = 256 << 10
	// restoreTimeout bounds a restore on the core once the file is in.
	restoreTimeout = 5 * time.Minute
)

// BackupRequest asks for a snapshot or a restore of one group.
type BackupRequest struct {
	Group  string `json:"group,omitempty"`  // shard (default) or catalog (snapshot only)
	Region int    `json:"region,omitempty"` // the shard's region; 0: the core's
	Shard  int    `json:"shard"`
	Force  bool   `json:"force,omitempty"` // restore over a shard that holds data
	// Follower: a snapshot may be taken on the asked core's replica when
	// it is a follower that has applied all its leader committed (as far
	// as it knows), sparing the leader; else on the leader.
	Follower bool  `json:"follower,omitempty"`
	Size     int64 `json:"size,omitempty"` // restore: the file's length
}

// BackupReply is a core's answer (see the stream layouts above).
type BackupReply struct {
	Err       string `json:"error,omitempty"`
	NotLeader bool   `json:"not_leader,omitempty"`
	Leader    string `json:"leader,omitempty"`
	// Who serves it: the core's node id and mesh address, and its
	// replica's raft state (Leader).
	Node string `json:"node,omitempty"`
	Addr string `json:"addr,omitempty"`
	Role string `json:"role,omitempty"`
	// Header is the snapshot's header (the last reply of a snapshot).
	Header *raftstore.BackupHeader `json:"header,omitempty"`
	// Restore is what a restore did (the last reply of a restore).
	Restore *RestoreSummary `json:"restore,omitempty"`
}

// RestoreSummary is what a restore did.
type RestoreSummary struct {
	Header  *raftstore.BackupHeader `json:"header"`
	Records uint64                  `json:"records"`       // records loaded
	Index   uint64                  `json:"restore_index"` // raft index of the restored state in this group
	Applied uint64                  `json:"applied_index"`
	// Catalog registrations: member index entries (clients, and clients
	// of the shard before the restore set to 0), imported ids, unique
	// conversations' claims.
	Members  int `json:"member_entries"`
	Imported int `json:"imported_ids"`
	Unique   int `json:"unique_claims"`
	// Warnings are registrations that failed (the data is restored; what
	// they name may not be found by id or by login).
	Warnings []string `json:"warnings,omitempty"`
}

// serveBackup registers the backup streams (adminops.go serveOps);
// cmdVer is the shard command version the core proposes
// ([core] command_version, 0: the newest).
func (s *opsServer) serveBackup(cmdVer int) {
	if cmdVer <= 0 || cmdVer > shard.Version {
		cmdVer = shard.Version
	}
	s.cmdVer = cmdVer
	s.c.Node.HandleStream(MethodAdminSnapshot, s.snapshotStream, mesh.RoleAdmin)
	s.c.Node.HandleStream(MethodAdminRestore, s.restoreStream, mesh.RoleAdmin)
}

func sendJSON(st *mesh.Stream, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return st.Send(append([]byte{frameJSON}, b...))
}

func recvJSON(st *mesh.Stream, v any) error {
	f, err := st.Recv()
	if err != nil {
		return err
	}
	if len(f) == 0 || f[0] != frameJSON || len(f) > MaxOpsRequest {
		return fmt.Errorf("%w: expected a JSON frame", mesh.ErrProtocol)
	}
	return json.Unmarshal(f[1:], v)
}

func backupErr(format string, args ...any) *BackupReply {
	return &BackupReply{Err: fmt.Sprintf(format, args...)}
}

// backupTarget is the replica a backup request names, or the reply that
// refuses it or sends the caller elsewhere.
func (s *opsServer) backupTarget(req *BackupRequest) (*raftstore.Node, *BackupReply) {
	if req.Region != 0 && req.Region != s.region {
		for _, r := range s.remote {
			if r.Region == req.Region && len(r.Cores) > 0 {
				return nil, &BackupReply{NotLeader: true, Leader: r.Cores[0]}
			}
		}
		return nil, backupErr("region %d: this core (region %d) knows no core of it", req.Region, s.region)
	}
	switch req.Group {
	case "catalog":
		if s.c.catalog == nil {
			return nil, backupErr("this core runs no catalog")
		}
		return s.c.catalog.rep, nil
	case "", "shard":
		if req.Shard < 0 || req.Shard >= len(s.c.Replicas) {
			return nil, backupErr("unknown shard %d: region %d has shards 0 to %d", req.Shard, s.region, len(s.c.Replicas)-1)
		}
		return s.c.Replicas[req.Shard], nil
	}
	return nil, backupErr("unknown group %q (want shard or catalog)", req.Group)
}

// withQuit is ctx, also canceled when the core stops.
func (s *opsServer) withQuit(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-s.c.quit:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// caughtUp reports whether rep is a follower with a known leader that has
// applied every entry it knows committed.
func caughtUp(rep *raftstore.Node) bool {
	r := rep.Raft()
	_, leader := rep.Leader()
	return rep.Err() == nil && r.State() == raft.Follower && leader != "" &&
		max(r.AppliedIndex(), rep.AppliedIndex()) >= r.CommitIndex()
}

// begin reads the request and finds its replica; it holds s.mu (read)
// when ok, which the caller releases. A snapshot asked with Follower may
// run on a caught-up follower.
func (s *opsServer) begin(st *mesh.Stream, snapshot bool) (req *BackupRequest, rep *raftstore.Node, ok bool) {
	req = new(BackupRequest)
	if err := recvJSON(st, req); err != nil {
		_ = sendJSON(st, backupErr("bad request: %v", err))
		return nil, nil, false
	}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		_ = sendJSON(st, backupErr("core %s is stopping", s.id))
		return nil, nil, false
	}
	rep, bad := s.backupTarget(req)
	if bad == nil && !rep.IsLeader() && !(snapshot && req.Follower && caughtUp(rep)) {
		addr, _ := rep.Leader()
		bad = &BackupReply{NotLeader: true, Leader: addr}
	}
	if bad != nil {
		s.mu.RUnlock()
		_ = sendJSON(st, bad)
		return nil, nil, false
	}
	return req, rep, true
}

// frameWriter sends what is written as data frames.
type frameWriter struct {
	ctx context.Context
	st  *mesh.Stream
}

func (w *frameWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		if err := w.ctx.Err(); err != nil {
			return n, err
		}
		c := p[:min(len(p), backupChunk)]
		if err := w.st.Send(append([]byte{frameData}, c...)); err != nil {
			return n, err
		}
		n += len(c)
		p = p[len(c):]
	}
	return n, nil
}

// snapshotStream serves `admin snapshot`: the group's leader (or a
// caught-up follower, BackupRequest.Follower) streams a backup of its
// state.
func (s *opsServer) snapshotStream(ctx context.Context, peer string, st *mesh.Stream) {
	req, rep, ok := s.begin(st, true)
	if !ok {
		return
	}
	defer s.mu.RUnlock()
	ctx, cancel := s.withQuit(ctx)
	defer cancel()
	if err := sendJSON(st, &BackupReply{Node: s.id, Addr: s.self, Role: rep.Raft().State().String()}); err != nil {
		return
	}
	group := req.Group
	if group == "" {
		group = "shard"
	}
	hdr := raftstore.BackupHeader{Group: group, Shard: req.Shard}
	if group == "shard" {
		hdr.Region = s.region
	} else {
		hdr.Shard = 0
	}
	out, err := rep.Backup(&frameWriter{ctx: ctx, st: st}, hdr, nil)
	if err != nil {
		s.c.log.Warn("admin snapshot", "peer", peer, "group", group, "shard", req.Shard, "err", err)
		_ = sendJSON(st, backupErr("snapshot: %v", err))
		return
	}
	s.c.log.Info("admin snapshot", "peer", peer, "group", group, "shard", req.Shard, "records", out.Records, "applied", out.Applied)
	_ = sendJSON(st, &BackupReply{Node: s.id, Addr: s.self, Role: out.Role, Header: out})
}

// frameReader reads data frames until the end frame.
type frameReader struct {
	st    *mesh.Stream
	buf   []byte
	done  bool
	n     int64
	limit int64
}

var errTooLong = errors.New("the file is longer than the size announced")

func (r *frameReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		if r.done {
			return 0, io.EOF
		}
		f, err := r.st.Recv()
		if err != nil {
			return 0, noEOF(err)
		}
		switch {
		case len(f) > 0 && f[0] == frameData:
			r.buf = f[1:]
			if r.n += int64(len(r.buf)); r.n > r.limit {
				return 0, errTooLong
			}
		case len(f) == 1 && f[0] == frameEnd:
			r.done = true
		default:
			return 0, fmt.Errorf("%w: expected a data frame", mesh.ErrProtocol)
		}
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// restoring holds the replicas (*raftstore.Node) a restore is running on:
// one at a time.
var restoring sync.Map

// restoreStream serves `admin restore` on the shard's leader.
func (s *opsServer) restoreStream(ctx context.Context, peer string, st *mesh.Stream) {
	req, rep, ok := s.begin(st, false)
	if !ok {
		return
	}
	defer s.mu.RUnlock()
	ctx, cancel := s.withQuit(ctx)
	defer cancel()
	if req.Group == "catalog" {
		_ = sendJSON(st, backupErr("the catalog is not restored from a backup: a new cluster builds it from its configuration, and a shard's restore registers in it what the shard needs"))
		return
	}
	if req.Size <= 0 {
		_ = sendJSON(st, backupErr("restore: the file's size is needed"))
		return
	}
	ref := catalog.ShardRef{Region: uint8(s.region), Shard: uint16(req.Shard)}
	if _, busy := restoring.LoadOrStore(rep, true); busy {
		_ = sendJSON(st, backupErr("a restore of shard %s is in progress", ref))
		return
	}
	defer restoring.Delete(rep)
	has, err := shard.HasData(rep.State())
	if err != nil {
		_ = sendJSON(st, backupErr("restore: %v", err))
		return
	}
	if has && !req.Force {
		_ = sendJSON(st, backupErr("shard %s holds conversations or messages already: a restore would replace them all (pass --force to do so)", ref))
		return
	}
	// The shard's clients before the restore, whose member index entries
	// go to 0 unless the restored state has them.
	before := map[shard.MemberTouch]bool{}
	if has {
		_ = shard.ClientCounts(rep.State(), func(app, pid string, _ uint64) { before[shard.MemberTouch{App: app, Client: pid}] = true })
	}
	if err := sendJSON(st, &BackupReply{Node: s.id, Addr: s.self, Role: rep.Raft().State().String()}); err != nil {
		return
	}
	rctx, rcancel := context.WithTimeout(ctx, restoreTimeout)
	defer rcancel()
	fr := &frameReader{st: st, limit: req.Size}
	res, err := rep.RestoreBackup(rctx, fr, func(h *raftstore.BackupHeader) error {
		if h.Group != "shard" {
			return fmt.Errorf("the file is a backup of the %s, not of a shard", h.Group)
		}
		if h.Region != s.region || h.Shard != req.Shard {
			return fmt.Errorf("the file is a backup of shard %d/%d, not of %s (a shard is restored under its own region and number)", h.Region, h.Shard, ref)
		}
		return nil
	}, nil)
	if err == nil && !fr.done {
		err = fmt.Errorf("%w: data after the file's end", raftstore.ErrBadBackup)
	}
	if err != nil {
		s.c.log.Warn("admin restore", "peer", peer, "shard", ref, "err", err)
		_ = sendJSON(st, backupErr("restore of shard %s: %v", ref, err))
		return
	}
	sum := &RestoreSummary{Header: res.Header, Records: res.Records, Index: res.Index, Applied: res.AppliedIndex}
	s.afterRestore(rctx, rep, sum)
	s.reregister(rctx, rep, ref, before, sum)
	sum.Applied = rep.AppliedIndex()
	s.c.log.Info("admin restore", "peer", peer, "shard", ref, "records", sum.Records, "index", sum.Index,
		"members", sum.Members, "imported", sum.Imported, "unique", sum.Unique, "warnings", len(sum.Warnings))
	_ = sendJSON(st, &BackupReply{Node: s.id, Addr: s.self, Role: rep.Raft().State().String(), Restore: sum})
}

// afterRestore commits one shard command after the restored state, which
// every replica applies: it empties the fan-out tail the backup carried
// (messages the source's leader had not named fanned out: a new leader
// of this cluster would push them again to whoever is online), and it
// moves each replica's member index (shard.FSM.MemberIndex) above the
// restore, so that routers do not trust the catalog's member index for
// the shard until the restored clients are in it (reregister).
func (s *opsServer) afterRestore(ctx context.Context, rep *raftstore.Node, sum *RestoreSummary) {
	cmd := &shard.Command{Op: shard.OpFanoutDone, V: s.cmdVer}
	if s.cmdVer >= shard.Version2 {
		tail, err := shard.FanoutTail(rep.State(), ^uint64(0)-1, shard.MaxFanoutDone)
		if err != nil {
			sum.Warnings = append(sum.Warnings, fmt.Sprintf("reading the fan-out tail: %v", err))
		}
		for _, e := range tail {
			if n := len(cmd.FanoutDone); n > 0 && cmd.FanoutDone[n-1] == e.Index {
				continue // another message of the same entry (a round of sends)
			}
			cmd.FanoutDone = append(cmd.FanoutDone, e.Index)
		}
	}
	// At Version1 the shard refuses the op as unknown: an ordinary refusal,
	// which is still an entry every replica applies.
	b, err := cmd.Encode()
	if err == nil {
		_, err = rep.Propose(ctx, b)
	}
	var se *shard.Error
	if err != nil && !errors.As(err, &se) {
		sum.Warnings = append(sum.Warnings, fmt.Sprintf("the entry after the restore: %v", err))
	}
}

// reregister writes to the catalog what the restored shard's data needs
// there (see the file comment). Failures are warnings: the data is in.
func (s *opsServer) reregister(ctx context.Context, rep *raftstore.Node, ref catalog.ShardRef, before map[shard.MemberTouch]bool, sum *RestoreSummary) {
	cat := s.c.Catalog
	if cat == nil {
		sum.Warnings = append(sum.Warnings, "this core runs no catalog: nothing registered")
		return
	}
	snap := rep.State().NewSnapshot()
	defer snap.Close()
	warn := func(format string, args ...any) {
		if len(sum.Warnings) < 100 {
			sum.Warnings = append(sum.Warnings, fmt.Sprintf(format, args...))
		}
	}

	// Imported ids, and unique conversations' claims.
	imported := map[string][]string{} // app -> ids
	type claim struct{ app, hash, cid string }
	var claims []claim
	err := shard.ConvIDs(snap, func(app, cid string) error {
		if catalog.IsHexID(cid) && catalog.HomeOf(cid).Ref() != ref {
			imported[app] = append(imported[app], cid)
		}
		conv, err := shard.GetConv(snap, app, cid)
		if err != nil {
			return err
		}
		if conv != nil && conv.Unique && len(conv.Members) > 0 {
			claims = append(claims, claim{app, catalog.UniqueHash(conv.Members), cid})
		}
		return nil
	})
	if err != nil {
		warn("reading the restored conversations: %v", err)
	}
	apps := make([]string, 0, len(imported))
	for app := range imported {
		apps = append(apps, app)
	}
	slices.Sort(apps)
	for _, app := range apps {
		ids := imported[app]
		for len(ids) > 0 {
			chunk := ids[:min(len(ids), catalog.MaxImportIDs)]
			ids = ids[len(chunk):]
			if _, err := cat.Apply(ctx, &catalog.ImportIDs{App: app, Shard: ref, Cids: chunk}); err != nil {
				warn("registering %d imported ids of app %s: %v", len(chunk), app, err)
				continue
			}
			sum.Imported += len(chunk)
		}
	}
	for _, c := range claims {
		winner, err := cat.ClaimUnique(ctx, c.app, c.hash, c.cid)
		switch {
		case err != nil:
			warn("claiming unique conversation %s of app %s: %v", c.cid, c.app, err)
		case winner != c.cid:
			warn("unique conversation %s of app %s: its member set is claimed by %s", c.cid, c.app, winner)
		default:
			sum.Unique++
		}
	}

	// The member index: every client's count as of the restored state's
	// applied index, and the mark (Complete) on the last chunk.
	at, err := raftstore.AppliedIndex(snap)
	if err != nil || at == 0 {
		warn("member index: no applied index (%v)", err)
		return
	}
	var counts []catalog.MemberCount
	err = shard.ClientCounts(snap, func(app, pid string, n uint64) {
		delete(before, shard.MemberTouch{App: app, Client: pid})
		counts = append(counts, catalog.MemberCount{App: app, Client: pid, Count: n})
	})
	if err != nil {
		warn("member index: %v", err)
		return
	}
	for t := range before {
		counts = append(counts, catalog.MemberCount{App: t.App, Client: t.Client})
	}
	for {
		chunk := counts[:min(len(counts), memberSetChunk)]
		counts = counts[len(chunk):]
		if _, err := cat.Apply(ctx, &catalog.MemberSet{Shard: ref, Index: at, Counts: chunk, Complete: len(counts) == 0}); err != nil {
			warn("member index: %v", err)
			return
		}
		sum.Members += len(chunk)
		if len(counts) == 0 {
			return
		}
	}
}

// memberSetChunk bounds the counts of one MemberSet (as core.MemberPump).
const memberSetChunk = 1000

// SnapshotResult is who served a snapshot and its header.
type SnapshotResult struct {
	Node, Addr, Role string
	Header           *raftstore.BackupHeader
	Bytes            int64
}

// openBackup opens a backup stream where req must run: a seed first, then
// the leader each not_leader answer names. It returns the stream after
// the core's first reply accepted it.
func (c *OpsClient) openBackup(ctx context.Context, method string, req *BackupRequest) (*mesh.Stream, *BackupReply, error) {
	var lastErr error
	for round := 0; round < 10; round++ {
		if round > 0 {
			select {
			case <-ctx.Done():
				return nil, nil, fmt.Errorf("%w: %w (%v)", ErrOps, ctx.Err(), lastErr)
			case <-time.After(300 * time.Millisecond):
			}
		}
		for _, addr := range c.seeds {
			for hop := 0; hop < maxLeaderHops && ctx.Err() == nil; hop++ {
				// A core that cannot be reached would hold the opening
				// until ctx ends: reachTimeout, then the next seed.
				octx, ocancel := context.WithTimeout(ctx, reachTimeout)
				st, err := c.node.OpenStream(octx, addr, method)
				ocancel()
				if errors.Is(err, mesh.ErrForbidden) {
					return nil, nil, fmt.Errorf("%w: %s refused certificate %q of role %s (admin commands take a certificate of role admin: relaymesh pki issue --role admin): %w",
						ErrOps, addr, c.id.Name, c.id.Role, err)
				}
				if err != nil {
					lastErr = fmt.Errorf("%s: %w", addr, err)
					break
				}
				stop := context.AfterFunc(ctx, func() { st.Close() })
				rep := new(BackupReply)
				err = sendJSON(st, req)
				if err == nil {
					err = recvJSON(st, rep)
				}
				stop()
				if err != nil {
					st.Close()
					lastErr = fmt.Errorf("%s: %w", addr, err)
					break
				}
				switch {
				case rep.Err != "":
					st.Close()
					return nil, nil, fmt.Errorf("%w: %s", ErrOps, rep.Err)
				case !rep.NotLeader:
					return st, rep, nil
				}
				st.Close()
				if rep.Leader == "" || rep.Leader == addr {
					lastErr = fmt.Errorf("%s knows no leader", addr)
					break
				}
				addr = rep.Leader
			}
		}
	}
	return nil, nil, fmt.Errorf("%w: no leader answered: %v", ErrOps, lastErr)
}

// Snapshot writes a backup of the group req names to w, from its leader;
// progress, when set, hears the bytes received so far. The caller checks
// the file (raftstore.ReadBackup) before it trusts it.
func (c *OpsClient) Snapshot(ctx context.Context, req *BackupRequest, w io.Writer, progress func(bytes int64)) (*SnapshotResult, error) {
	st, first, err := c.openBackup(ctx, MethodAdminSnapshot, req)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	stop := context.AfterFunc(ctx, func() { st.Close() })
	defer stop()
	res := &SnapshotResult{Node: first.Node, Addr: first.Addr, Role: first.Role}
	for {
		f, err := st.Recv()
		if err != nil {
			if ctx.Err() != nil {
				err = ctx.Err()
			}
			return nil, fmt.Errorf("%w: snapshot from %s cut off after %d bytes: %w", ErrOps, res.Addr, res.Bytes, noEOF(err))
		}
		switch {
		case len(f) > 0 && f[0] == frameData:
			if _, err := w.Write(f[1:]); err != nil {
				return nil, err
			}
			res.Bytes += int64(len(f) - 1)
			if progress != nil {
				progress(res.Bytes)
			}
		case len(f) > 0 && f[0] == frameJSON:
			rep := new(BackupReply)
			if err := json.Unmarshal(f[1:], rep); err != nil {
				return nil, fmt.Errorf("%w: bad reply from %s: %w", ErrOps, res.Addr, err)
			}
			if rep.Err != "" {
				return nil, fmt.Errorf("%w: %s", ErrOps, rep.Err)
			}
			if rep.Header == nil {
				return nil, fmt.Errorf("%w: %s sent no header", ErrOps, res.Addr)
			}
			res.Header, res.Role = rep.Header, rep.Role
			return res, nil
		default:
			return nil, fmt.Errorf("%w: %w: unexpected frame from %s", ErrOps, mesh.ErrProtocol, res.Addr)
		}
	}
}

// RestoreResult is who restored a backup and what it did.
type RestoreResult struct {
	Node, Addr string
	Summary    *RestoreSummary
}

// Restore sends the backup file r (size bytes, checked by the caller)
// to the leader of the shard req names, which restores it; progress, when
// set, hears the bytes sent so far.
func (c *OpsClient) Restore(ctx context.Context, req *BackupRequest, r io.Reader, size int64, progress func(bytes int64)) (*RestoreResult, error) {
	req.Size = size
	st, first, err := c.openBackup(ctx, MethodAdminRestore, req)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	stop := context.AfterFunc(ctx, func() { st.Close() })
	defer stop()
	buf := make([]byte, 1+backupChunk)
	buf[0] = frameData
	var sent int64
	var sendErr error
	for sendErr == nil {
		n, err := io.ReadFull(r, buf[1:])
		if n > 0 {
			if sendErr = st.Send(buf[:1+n]); sendErr == nil {
				sent += int64(n)
				if progress != nil {
					progress(sent)
				}
			}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	if sendErr == nil {
		sendErr = st.Send([]byte{frameEnd})
	}
	// The core's answer, also when it stopped reading (a refusal).
	rep := new(BackupReply)
	if err := recvJSON(st, rep); err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, fmt.Errorf("%w: restore on %s (%s): no answer: %w (sending: %v); see admin status before retrying", ErrOps, first.Node, first.Addr, noEOF(err), sendErr)
	}
	if rep.Err != "" {
		return nil, fmt.Errorf("%w: %s", ErrOps, rep.Err)
	}
	if rep.Restore == nil {
		return nil, fmt.Errorf("%w: %s sent no summary", ErrOps, first.Addr)
	}
	return &RestoreResult{Node: rep.Node, Addr: rep.Addr, Summary: rep.Restore}, nil
}
