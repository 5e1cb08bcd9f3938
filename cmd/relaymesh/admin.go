package main

import (
	"cmp"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/relaymesh/relaymesh/cluster"
	"github.com/relaymesh/relaymesh/proto/meshpb"
)

// `relaymesh admin`: Day-2 operations over the mesh with an admin
// certificate (cluster/admin.go serves them on every core; docs/OPERATIONS.md
// "Admin commands").

const adminUsage = `relaymesh admin: operate a running cluster over the mesh (an admin certificate)

  relaymesh admin status [--json]
  relaymesh admin shard transfer-leader --shard N|catalog [--to NODE]
  relaymesh admin shard add-replica --shard N --node ID --addr MESHADDR [--nonvoter]
  relaymesh admin shard remove-replica --shard N --node ID [--force]
  relaymesh admin shard move --shard N --from ID --to ID --addr MESHADDR [--max-lag N]
  relaymesh admin conversation show --app ID CID
  relaymesh admin snapshot --shard [REGION/]N|--catalog --out FILE [--follower] [--force]
  relaymesh admin restore --shard [REGION/]N --in FILE [--force]
  relaymesh admin app list|show|set|rotate-master-key|delete   (admin app -h)

Every command takes --config FILE ([tls] with an admin certificate,
[admin] cores, else [core] peers or [edge] cores), or --ca, --cert, --key
and --core ADDR[,ADDR]; --json prints JSON; --timeout bounds the command.
`

func runAdmin(args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(os.Stderr, adminUsage)
		if len(args) == 0 {
			return errors.New("admin: want status, shard, conversation, app, snapshot or restore")
		}
		return flag.ErrHelp
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "status":
		return adminStatus(rest, os.Stdout)
	case "snapshot", "restore": // backup.go
		return adminBackup(cmd, rest, os.Stdout)
	case "app":
		return adminApp(rest, os.Stdout) // adminapp.go
	case "shard", "conversation":
		if len(rest) == 0 {
			return fmt.Errorf("admin %s: want a subcommand (relaymesh admin -h)", cmd)
		}
		sub := rest[0]
		switch cmd + " " + sub {
		case "shard transfer-leader", "shard add-replica", "shard remove-replica":
			return adminShard(sub, rest[1:], os.Stdout)
		case "shard move":
			return adminShardMove(rest[1:], os.Stdout, os.Stderr)
		case "conversation show":
			return adminConversation(rest[1:], os.Stdout)
		}
		return fmt.Errorf("admin %s: unknown subcommand %q (relaymesh admin -h)", cmd, sub)
	}
	return fmt.Errorf("admin: unknown command %q (want status, shard, conversation, app, snapshot or restore)", cmd)
}

// adminStatus prints every core's replicas, merged.
func adminStatus(args []string, w io.Writer) error {
	af := newAdminCmd("admin status")
	if err := af.parseNone(args); err != nil {
		return err
	}
	cl, ctx, release, err := af.connect()
	if err != nil {
		return err
	}
	defer release()
	view := cluster.MergeStatus(cl.Status(ctx, min(5*time.Second, af.timeout)))
	if af.json {
		if err := writeJSON(w, view); err != nil {
			return err
		}
	} else {
		printStatus(w, view)
	}
	return noCoreAnswered("admin status", view.Nodes, func(n cluster.NodeResult) coreAnswer {
		return coreAnswer{answered: n.Status != nil, refused: n.Refused, err: n.Err}
	})
}

// printStatus writes the view as two tables: the cores, then every
// group's replicas.
func printStatus(w io.Writer, v *cluster.ClusterView) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tADDR\tREGION\tSTATUS")
	for _, n := range v.Nodes {
		if n.Status == nil {
			fmt.Fprintf(tw, "?\t%s\t-\tunreachable (%s)\n", n.Addr, oneLine(n.Err))
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\tok\n", n.Status.Node, n.Addr, n.Status.Region)
	}
	tw.Flush()
	fmt.Fprintln(w)
	// The replicas of each group, and the servers of its configuration
	// whose core did not answer.
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GROUP\tLEADER\tTERM\tREPLICA\tSTATE\tTERM\tCOMMIT\tAPPLIED\tLAG")
	for _, g := range v.Groups {
		label := "catalog"
		if g.Group == meshpb.GroupShard {
			label = fmt.Sprintf("shard %d", g.Shard)
			if g.Region != 1 {
				label = fmt.Sprintf("region %d shard %d", g.Region, g.Shard)
			}
		}
		leader := g.Leader
		if leader == "" {
			leader = "(none)"
		}
		voter := map[string]bool{}
		seen := map[string]bool{}
		for _, s := range g.Servers {
			voter[s.Addr] = s.Voter
		}
		first := true
		row := func(name, state string, r *cluster.ReplicaView) {
			col := [3]string{"", "", ""}
			if first {
				col = [3]string{label, leader, strconv.FormatUint(g.Term, 10)}
				first = false
			}
			if r == nil {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t-\t-\t-\t-\n", col[0], col[1], col[2], name, state)
				return
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\n", col[0], col[1], col[2], name, state, r.Term, r.Commit, r.Applied, r.Lag)
		}
		for i := range g.Replicas {
			r := &g.Replicas[i]
			seen[r.Addr] = true
			state := r.State
			if v, ok := voter[r.Addr]; ok && !v {
				state += " (non-voter)"
			} else if !ok && g.Servers != nil {
				state += " (not a member)"
			}
			if r.Err != "" {
				state += " FAILED: " + oneLine(r.Err)
			}
			row(r.Node, state, r)
		}
		for _, s := range g.Servers {
			if !seen[s.Addr] {
				row(s.ID, "unreachable", nil)
			}
		}
	}
	tw.Flush()
}

func oneLine(s string) string { return strings.ReplaceAll(s, "\n", " ") }

// parseGroup reads --shard: a number, or "catalog".
func parseGroup(s string) (group string, n int, err error) {
	if s == "" {
		return "", 0, errors.New("--shard is required (a shard number, or catalog)")
	}
	if s == meshpb.GroupCatalog {
		return meshpb.GroupCatalog, 0, nil
	}
	n, err = strconv.Atoi(s)
	if err != nil || n < 0 {
		return "", 0, fmt.Errorf("--shard %q: a shard number (0, 1, …) or catalog", s)
	}
	return meshpb.GroupShard, n, nil
}

// adminShard runs transfer-leader, add-replica or remove-replica.
func adminShard(sub string, args []string, w io.Writer) error {
	af := newAdminCmd("admin shard " + sub)
	fs := af.fs
	shardFlag := fs.String("shard", "", "shard number (or catalog, for transfer-leader)")
	req := &meshpb.OpsRequest{}
	switch sub {
	case "transfer-leader":
		req.Op = meshpb.OpTransferLeader
		fs.StringVar(&req.Node, "to", "", "the node to take over (raft server id or mesh address; default: raft picks the most up-to-date voter)")
	case "add-replica":
		req.Op = meshpb.OpAddReplica
		fs.StringVar(&req.Node, "node", "", "the new replica's node id ([core] node_id)")
		fs.StringVar(&req.Addr, "addr", "", "the new replica's mesh address (host:port)")
		fs.BoolVar(&req.Nonvoter, "nonvoter", false, "add it as a non-voter (replicates, never votes or leads)")
	case "remove-replica":
		req.Op = meshpb.OpRemoveReplica
		fs.StringVar(&req.Node, "node", "", "the replica's node id")
		fs.BoolVar(&req.Force, "force", false, "remove the leader too (its leadership is handed off first), or a voter whose removal leaves fewer answering voters than a quorum")
	}
	if err := af.parseNone(args); err != nil {
		return err
	}
	var err error
	if req.Group, req.Shard, err = parseGroup(*shardFlag); err != nil {
		return fmt.Errorf("admin shard %s: %w", sub, err)
	}
	if req.Group == meshpb.GroupCatalog && req.Op != meshpb.OpTransferLeader {
		return fmt.Errorf("admin shard %s: the catalog's replicas follow the cores' configuration; only transfer-leader takes --shard catalog", sub)
	}
	if sub != "transfer-leader" && req.Node == "" {
		return fmt.Errorf("admin shard %s: --node is required", sub)
	}
	if sub == "add-replica" && req.Addr == "" {
		return errors.New("admin shard add-replica: --addr is required")
	}
	cl, ctx, release, err := af.connect()
	if err != nil {
		return err
	}
	defer release()
	name := "catalog"
	if req.Group == meshpb.GroupShard {
		name = fmt.Sprintf("shard %d", req.Shard)
	}
	// Safety checks the leader cannot make: the new replica answers; the
	// voters left after a removal still make a quorum.
	switch req.Op {
	case meshpb.OpAddReplica:
		if err := cl.CheckAdd(ctx, req.Node, req.Addr, req.Shard); err != nil {
			return fmt.Errorf("admin shard add-replica: %w", err)
		}
	case meshpb.OpRemoveReplica:
		v := cluster.MergeStatus(cl.Status(ctx, 5*time.Second))
		if g := findGroup(v, req, seedRegion(v, cl.Seeds())); g != nil && !req.Force {
			if err := cluster.CheckRemove(v, g, req.Node); err != nil {
				return fmt.Errorf("admin shard remove-replica: %w", err)
			}
		}
	}
	var before string
	if req.Op == meshpb.OpTransferLeader {
		v := cluster.MergeStatus(cl.Status(ctx, 5*time.Second))
		if g := findGroup(v, req, seedRegion(v, cl.Seeds())); g != nil {
			before = g.Leader
		}
	}
	rep, err := cl.Do(ctx, req)
	if err != nil {
		return fmt.Errorf("admin shard %s: %w", sub, err)
	}
	var g *cluster.GroupView
	if req.Op == meshpb.OpTransferLeader {
		if rep.Group == nil {
			return fmt.Errorf("admin shard transfer-leader: %s: empty reply", name)
		}
		// Until the cores agree on a new leader (the one asked for).
		for {
			g = findGroup(cluster.MergeStatus(cl.Status(ctx, 5*time.Second)), req, rep.Group.Region)
			if g != nil && g.Leader != "" && g.Leader != before && (req.Node == "" || g.Leader == req.Node || g.LeaderAddr == req.Node) {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("admin shard transfer-leader: %s: the transfer was done, but no core names a new leader yet (%v)", name, ctx.Err())
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	if af.json {
		out := any(rep.Group)
		if g != nil {
			out = g
		}
		return writeJSON(w, out)
	}
	switch req.Op {
	case meshpb.OpTransferLeader:
		fmt.Fprintf(w, "%s: leader %s -> %s (term %d)\n", name, cmp.Or(before, "(none)"), g.Leader, g.Term)
	case meshpb.OpAddReplica:
		kind := "voter"
		if req.Nonvoter {
			kind = "non-voter"
		}
		fmt.Fprintf(w, "%s: added %s at %s as a %s; replicas: %s\n", name, req.Node, req.Addr, kind, servers(rep.Group))
	case meshpb.OpRemoveReplica:
		fmt.Fprintf(w, "%s: removed %s; replicas: %s\n", name, req.Node, servers(rep.Group))
	}
	return nil
}

// findGroup is the group req names in v, of region (shards).
func findGroup(v *cluster.ClusterView, req *meshpb.OpsRequest, region int) *cluster.GroupView {
	for _, g := range v.Groups {
		switch {
		case g.Group != req.Group:
		case g.Group == meshpb.GroupCatalog:
			return g
		case g.Shard == req.Shard && g.Region == region:
			return g
		}
	}
	return nil
}

// seedRegion is the region of the first seed that answered: the one the
// commands' shards are of.
func seedRegion(v *cluster.ClusterView, seeds []string) int {
	for _, s := range seeds {
		for _, n := range v.Nodes {
			if n.Addr == s && n.Status != nil {
				return n.Status.Region
			}
		}
	}
	return 0
}

func servers(g *meshpb.GroupStatus) string {
	if g == nil {
		return "?"
	}
	var out []string
	for _, s := range g.Servers {
		if s.Voter {
			out = append(out, s.ID)
		} else {
			out = append(out, s.ID+" (non-voter)")
		}
	}
	return strings.Join(out, ", ")
}

// adminConversation prints where a conversation lives and its metadata.
func adminConversation(args []string, w io.Writer) error {
	af := newAdminCmd("admin conversation show")
	app := af.fs.String("app", "", "the app id")
	pos, err := af.parse(args)
	if err != nil {
		return err
	}
	if *app == "" || len(pos) != 1 {
		return errors.New("admin conversation show: want --app ID and one conversation id")
	}
	cl, ctx, release, err := af.connect()
	if err != nil {
		return err
	}
	defer release()
	rep, err := cl.Do(ctx, &meshpb.OpsRequest{Op: meshpb.OpConversation, App: *app, CID: pos[0]})
	if err != nil {
		return fmt.Errorf("admin conversation show: %w", err)
	}
	ci := rep.Conversation
	if ci == nil {
		return errors.New("admin conversation show: empty reply")
	}
	if af.json {
		if err := writeJSON(w, ci); err != nil {
			return err
		}
	} else {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "conversation\t%s\n", ci.CID)
		fmt.Fprintf(tw, "app\t%s\n", ci.App)
		fmt.Fprintf(tw, "region\t%d\n", ci.Region)
		fmt.Fprintf(tw, "shard\t%d\n", ci.Shard)
		fmt.Fprintf(tw, "leader\t%s (%s)\n", ci.LeaderID, ci.Leader)
		if ci.Found {
			fmt.Fprintf(tw, "kind\t%s\n", ci.Kind)
			fmt.Fprintf(tw, "creator\t%s\n", ci.Creator)
			fmt.Fprintf(tw, "members\t%d\n", ci.Members)
			fmt.Fprintf(tw, "created\t%s\n", msTime(ci.CreatedAt))
			fmt.Fprintf(tw, "updated\t%s\n", msTime(ci.UpdatedAt))
			last := "never"
			if ci.LastMsgAt > 0 {
				last = msTime(ci.LastMsgAt) + " from " + ci.LastFrom
			}
			fmt.Fprintf(tw, "last message\t%s\n", last)
		}
		tw.Flush()
	}
	if !ci.Found {
		return fmt.Errorf("admin conversation show: app %s has no conversation %s (it would live in region %d, shard %d)", ci.App, ci.CID, ci.Region, ci.Shard)
	}
	return nil
}

func msTime(ms int64) string {
	if ms == 0 {
		return "-"
	}
	return time.UnixMilli(ms).UTC().Format(time.RFC3339Nano)
}
