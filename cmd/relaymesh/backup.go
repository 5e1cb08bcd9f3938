package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/relaymesh/relaymesh/cluster"
	"github.com/relaymesh/relaymesh/raftstore"
)

// `relaymesh admin snapshot` and `relaymesh admin restore`: a shard's
// state to a file and back into a (fresh) cluster (cluster/backup.go;
// docs/OPERATIONS.md "Backups").

func adminBackup(cmd string, args []string, w io.Writer) error {
	if cmd == "snapshot" {
		return adminSnapshot(args, w)
	}
	return adminRestore(args, w)
}

// parseShardRef reads --shard: N (a shard of the region of the cores
// asked) or REGION/N.
func parseShardRef(s string) (region, n int, err error) {
	if s == "" {
		return 0, 0, errors.New("--shard is required (N, or REGION/N)")
	}
	r, num, ok := strings.Cut(s, "/")
	if !ok {
		num, r = r, ""
	}
	if r != "" {
		if region, err = strconv.Atoi(r); err != nil || region < 1 || region > 255 {
			return 0, 0, fmt.Errorf("--shard %q: the region is a number 1 to 255", s)
		}
	}
	if n, err = strconv.Atoi(num); err != nil || n < 0 || n > 1<<16-1 {
		return 0, 0, fmt.Errorf("--shard %q: want N or REGION/N (shard numbers from 0)", s)
	}
	return region, n, nil
}

// progress prints what a long transfer has done on stderr, every
// interval, and nothing for a short one.
type progress struct {
	what     string
	mu       sync.Mutex
	bytes    int64
	records  uint64
	last     time.Time
	interval time.Duration
	printed  bool
}

func newProgress(what string) *progress {
	return &progress{what: what, last: time.Now(), interval: 2 * time.Second}
}

func (p *progress) set(bytes int64, records uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.bytes, p.records = max(p.bytes, bytes), max(p.records, records)
	if time.Since(p.last) < p.interval {
		return
	}
	p.last, p.printed = time.Now(), true
	if p.records > 0 {
		fmt.Fprintf(os.Stderr, "%s: %s, %d records\n", p.what, mib(p.bytes), p.records)
	} else {
		fmt.Fprintf(os.Stderr, "%s: %s\n", p.what, mib(p.bytes))
	}
}

func mib(b int64) string {
	if b < 1<<20 {
		return fmt.Sprintf("%d bytes", b)
	}
	return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
}

// verifyBackup reads and checks the whole file at path.
func verifyBackup(path string, check func(*raftstore.BackupHeader) error) (*raftstore.BackupHeader, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, 0, err
	}
	p := newProgress("checking " + path)
	hdr, err := raftstore.ReadBackup(f, check, nil, func(records, bytes uint64) { p.set(int64(bytes), records) })
	if err != nil {
		return nil, 0, err
	}
	return hdr, st.Size(), nil
}

func groupLabel(h *raftstore.BackupHeader) string {
	if h.Group == "shard" {
		return fmt.Sprintf("shard %d/%d", h.Region, h.Shard)
	}
	return h.Group
}

// adminSnapshot writes a backup of a shard (or the catalog) to --out.
func adminSnapshot(args []string, w io.Writer) error {
	af := newAdminCmd("admin snapshot")
	fs := af.fs
	shardFlag := fs.String("shard", "", "the shard: N (in the region of the cores asked) or REGION/N")
	cat := fs.Bool("catalog", false, "back up the catalog instead of a shard")
	out := fs.String("out", "", "the file to write (written to FILE.tmp, then renamed)")
	force := fs.Bool("force", false, "replace --out if it exists")
	follower := fs.Bool("follower", false, "take it on the replica of the core asked (--core) when that is a caught-up follower, sparing the leader")
	if err := af.parseNone(args); err != nil {
		return err
	}
	if *out == "" {
		return errors.New("admin snapshot: --out FILE is required")
	}
	req := &cluster.BackupRequest{Group: "shard", Follower: *follower}
	switch {
	case *cat && *shardFlag != "":
		return errors.New("admin snapshot: --shard or --catalog, not both")
	case *cat:
		req.Group = "catalog"
	default:
		var err error
		if req.Region, req.Shard, err = parseShardRef(*shardFlag); err != nil {
			return fmt.Errorf("admin snapshot: %w", err)
		}
	}
	if _, err := os.Stat(*out); err == nil && !*force {
		return fmt.Errorf("admin snapshot: %s exists (--force replaces it)", *out)
	}
	cl, ctx, release, err := af.connect()
	if err != nil {
		return err
	}
	defer release()

	tmp := *out + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("admin snapshot: %w", err)
	}
	done := false
	defer func() {
		if !done {
			f.Close()
			os.Remove(tmp)
		}
	}()
	p := newProgress("receiving")
	res, err := cl.Snapshot(ctx, req, f, func(b int64) { p.set(b, 0) })
	if err != nil {
		return fmt.Errorf("admin snapshot: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("admin snapshot: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("admin snapshot: %w", err)
	}
	hdr, size, err := verifyBackup(tmp, nil)
	if err != nil {
		os.Remove(tmp)
		done = true
		return fmt.Errorf("admin snapshot: the file received is bad: %w", err)
	}
	if *hdr != *res.Header {
		os.Remove(tmp)
		done = true
		return fmt.Errorf("admin snapshot: the file's header %+v is not the one the core sent %+v", hdr, res.Header)
	}
	if err := os.Rename(tmp, *out); err != nil {
		return fmt.Errorf("admin snapshot: %w", err)
	}
	done = true
	if af.json {
		return writeJSON(w, map[string]any{"file": *out, "bytes": size, "node": res.Node, "addr": res.Addr, "role": res.Role, "header": hdr})
	}
	fmt.Fprintf(w, "snapshot of %s from %s (%s, %s): %d records, %d bytes, applied index %d (term %d), taken %s\nwritten to %s\n",
		groupLabel(hdr), res.Node, strings.ToLower(res.Role), res.Addr, hdr.Records, size, hdr.Applied, hdr.Term, hdr.Created, *out)
	return nil
}

// adminRestore restores a backup file into a shard, through its leader.
func adminRestore(args []string, w io.Writer) error {
	af := newAdminCmd("admin restore")
	fs := af.fs
	shardFlag := fs.String("shard", "", "the shard to restore: N (in the region of the cores asked) or REGION/N; the file's own")
	in := fs.String("in", "", "the backup file (admin snapshot --out)")
	force := fs.Bool("force", false, "replace the shard's conversations and messages if it holds any")
	if err := af.parseNone(args); err != nil {
		return err
	}
	if *in == "" {
		return errors.New("admin restore: --in FILE is required")
	}
	region, n, err := parseShardRef(*shardFlag)
	if err != nil {
		return fmt.Errorf("admin restore: %w", err)
	}
	// The whole file is checked before anything is asked of the cluster.
	hdr, size, err := verifyBackup(*in, func(h *raftstore.BackupHeader) error {
		switch {
		case h.Group != "shard":
			return fmt.Errorf("%s is a backup of the %s, not of a shard: the catalog is not restored (see docs/OPERATIONS.md, Backups)", *in, h.Group)
		case h.Shard != n || (region != 0 && h.Region != region):
			return fmt.Errorf("%s is a backup of shard %d/%d, not of %s: a shard is restored under its own region and number", *in, h.Region, h.Shard, *shardFlag)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("admin restore: %w", err)
	}
	cl, ctx, release, err := af.connect()
	if err != nil {
		return err
	}
	defer release()
	f, err := os.Open(*in)
	if err != nil {
		return fmt.Errorf("admin restore: %w", err)
	}
	defer f.Close()
	p := newProgress("sending")
	res, err := cl.Restore(ctx, &cluster.BackupRequest{Group: "shard", Region: region, Shard: n, Force: *force}, f, size,
		func(b int64) { p.set(b, 0) })
	if err != nil {
		return fmt.Errorf("admin restore: %w", err)
	}
	s := res.Summary
	have, of := waitReplicas(ctx, cl, res.Addr, n, s.Applied)
	if af.json {
		if err := writeJSON(w, map[string]any{"file": *in, "bytes": size, "node": res.Node, "addr": res.Addr, "restore": s,
			"replicas_restored": have, "replicas": of}); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(w, "restored %s from %s (taken %s at applied index %d) on leader %s (%s): %d records, %d bytes\n",
			groupLabel(hdr), *in, hdr.Created, hdr.Applied, res.Node, res.Addr, s.Records, size)
		fmt.Fprintf(w, "restore index %d, applied index %d; catalog: %d member index entries, %d imported ids, %d unique claims\n",
			s.Index, s.Applied, s.Members, s.Imported, s.Unique)
		fmt.Fprintf(w, "replicas with the restored state: %d of %d\n", have, of)
		for _, warn := range s.Warnings {
			fmt.Fprintf(w, "warning: %s\n", warn)
		}
	}
	if len(s.Warnings) > 0 {
		return fmt.Errorf("admin restore: the data is restored, but %d catalog registration(s) failed (see the warnings)", len(s.Warnings))
	}
	return nil
}

// waitReplicas waits (a while, within ctx) until every replica of shard n,
// in the region of the core at leaderAddr, has applied the entries up to
// index (the restore and the entry after it), and every replica of the
// catalog what its leader committed (the registrations): until then a
// login served by a core whose replicas lag may miss the shard. It
// returns how many of the shard's replicas have, of how many.
func waitReplicas(ctx context.Context, cl *cluster.OpsClient, leaderAddr string, n int, index uint64) (have, of int) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for {
		v := cluster.MergeStatus(cl.Status(ctx, 3*time.Second))
		region := 0
		for _, nd := range v.Nodes {
			if nd.Status != nil && nd.Status.Addr == leaderAddr {
				region = nd.Status.Region
			}
		}
		have, of = 0, 0
		catalogDone := true
		for _, g := range v.Groups {
			if g.Group == "catalog" {
				for _, r := range g.Replicas {
					if r.Lag > 0 || g.Leader == "" {
						catalogDone = false
					}
				}
			}
			if g.Group != "shard" || g.Shard != n || g.Region != region {
				continue
			}
			applied := map[string]uint64{}
			for _, r := range g.Replicas {
				applied[r.Addr] = r.Applied
			}
			for _, sv := range g.Servers {
				of++
				if applied[sv.Addr] >= index {
					have++
				}
			}
		}
		if (of > 0 && have == of && catalogDone) || ctx.Err() != nil {
			return have, of
		}
		select {
		case <-ctx.Done():
			return have, of
		case <-time.After(200 * time.Millisecond):
		}
	}
}
