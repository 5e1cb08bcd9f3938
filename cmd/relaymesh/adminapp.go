package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/relaymesh/relaymesh/apps"
	"github.com/relaymesh/relaymesh/cluster"
	"github.com/relaymesh/relaymesh/proto/meshpb"
)

// `relaymesh admin app`: the apps' settings in the catalog and in each
// core's config file (cluster/adminapp.go serves them).

const adminAppUsage = `relaymesh admin app: the apps' keys, signature switches and hooks

  relaymesh admin app list [--show-keys] [--json]
  relaymesh admin app show ID [--show-keys] [--json]
  relaymesh admin app set ID [--app-key K] [--master-key M] [--signature-required=BOOL]
        [--conversation-signature-required=BOOL] [--hook-base-url URL]
        [--hook-url NAME=URL]...      (NAME= with no URL removes that hook)
  relaymesh admin app rotate-master-key ID     (prints the new key once)
  relaymesh admin app delete ID --yes

Settings live in the catalog; every core and edge follows them within
seconds. A config file's [[apps]] only seeds the catalog with apps it does
not have. Keys are masked unless --show-keys. Drift (cores that disagree)
is flagged with "!".
`

func adminApp(args []string, w io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(w, adminAppUsage)
		if len(args) == 0 {
			return errors.New("admin app: want list, show, set, rotate-master-key or delete")
		}
		return flag.ErrHelp
	}
	switch sub, rest := args[0], args[1:]; sub {
	case "list", "show":
		return adminAppShow(sub, rest, w)
	case "set":
		return adminAppSet(rest, w)
	case "rotate-master-key", "delete":
		return adminAppChange(sub, rest, w)
	default:
		return fmt.Errorf("admin app: unknown subcommand %q (relaymesh admin app -h)", sub)
	}
}

// appID is the one positional argument: a valid app id.
func appID(cmd string, pos []string) (string, error) {
	if len(pos) != 1 {
		return "", fmt.Errorf("admin app %s: want one app id, got %d arguments", cmd, len(pos))
	}
	if !apps.ValidID(pos[0]) {
		return "", fmt.Errorf("admin app %s: invalid app id %q: 1 to %d bytes without ':' or control characters", cmd, pos[0], apps.MaxIDLen)
	}
	return pos[0], nil
}

func adminAppShow(sub string, args []string, w io.Writer) error {
	af := newAdminCmd("admin app " + sub)
	showKeys := af.fs.Bool("show-keys", false, "print keys in full")
	pos, err := af.parse(args)
	if err != nil {
		return err
	}
	id := ""
	if sub == "show" {
		if id, err = appID(sub, pos); err != nil {
			return err
		}
	} else if len(pos) > 0 {
		return fmt.Errorf("admin app list: unexpected argument %q", pos[0])
	}
	cl, ctx, release, err := af.connect()
	if err != nil {
		return err
	}
	defer release()
	rep := cluster.MergeApps(cl.Apps(ctx, min(5*time.Second, af.timeout)))
	if err := noCoreAnswered("admin app "+sub, rep.Nodes, func(n cluster.AppsNode) coreAnswer {
		return coreAnswer{answered: n.View != nil, refused: n.Refused, err: n.Err}
	}); err != nil {
		return err
	}
	if !*showKeys {
		rep = rep.Masked()
	}
	if sub == "show" {
		a := rep.App(id)
		if a == nil {
			return fmt.Errorf("admin app show: unknown app %s (no core has it in its catalog or config)", id)
		}
		if af.json {
			return writeJSON(w, a)
		}
		printApp(w, rep, a)
		return nil
	}
	if af.json {
		return writeJSON(w, rep)
	}
	printApps(w, rep)
	return nil
}

// writeJSON prints v as indented JSON: every admin command's --json.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// printApps writes one line per app, then the drift, the limits and the
// cores that did not answer.
func printApps(w io.Writer, r *cluster.AppsReport) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "APP\tSOURCE\tKEY\tMASTER KEY\tSIGNATURE\tCONV SIGNATURE\tHOOKS")
	for _, a := range r.Apps {
		s := a.Settings
		if s == nil || s.Deleted {
			fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\t-\t-\n", a.ID, a.Source)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\n", a.ID, a.Source, dash(s.Key), dash(s.MasterKey),
			onOff(s.SignatureRequired), onOff(s.ConversationSignatureRequired), len(hookList(s)))
	}
	tw.Flush()
	for _, a := range r.Apps {
		for _, d := range a.Drift {
			fmt.Fprintf(w, "! %s: %s\n", a.ID, d)
		}
	}
	printLimits(w, r)
	printCores(w, r)
	printEdges(w, r)
}

func printEdges(w io.Writer, r *cluster.AppsReport) {
	for _, e := range r.Edges {
		cert := ""
		if e.Cert != "" {
			cert = " (certificate " + e.Cert + ")"
		}
		fmt.Fprintf(w, "edge %s%s: apps generation %s, asked %s %v ago\n", e.Edge, cert, dash(e.Gen), e.Core,
			(time.Duration(e.AgoMs) * time.Millisecond).Round(100*time.Millisecond))
	}
	for _, d := range r.EdgesDrift {
		fmt.Fprintf(w, "! %s\n", d)
	}
}

// hookList is the app's hooks as "name url" lines, sorted; the base URL
// first.
func hookList(s *meshpb.AppSettings) []string {
	var out []string
	if s.HookBaseURL != "" {
		out = append(out, "(base) "+s.HookBaseURL+"/1.1/functions/<hook>")
	}
	for _, name := range slices.Sorted(maps.Keys(s.Hooks)) {
		out = append(out, name+" "+s.Hooks[name])
	}
	return out
}

func printLimits(w io.Writer, r *cluster.AppsReport) {
	nodes := slices.Sorted(maps.Keys(r.Limits))
	if len(nodes) == 0 {
		return
	}
	l := r.Limits[nodes[0]]
	var kv []string
	for _, k := range slices.Sorted(maps.Keys(l)) {
		v := strconv.Itoa(l[k])
		if l[k] == 0 {
			v = "default"
		}
		kv = append(kv, k+"="+v)
	}
	fmt.Fprintf(w, "limits: per core ([core.limits]; edges have [edge.limits]), none per app; %s: %s\n", nodes[0], strings.Join(kv, " "))
	if r.LimitsDrift != "" {
		fmt.Fprintf(w, "! limits differ between cores: %s\n", r.LimitsDrift)
	}
}

func printCores(w io.Writer, r *cluster.AppsReport) {
	for _, n := range r.Nodes {
		switch {
		case n.View != nil:
			fmt.Fprintf(w, "core %s (%s): apps from the %s, generation %s, catalog index %d\n", n.View.Node, n.Addr, n.View.Source, dash(n.View.Gen), n.View.CatalogIndex)
			if n.View.CatalogErr != "" {
				fmt.Fprintf(w, "! core %s: catalog: %s\n", n.View.Node, oneLine(n.View.CatalogErr))
			}
		default:
			fmt.Fprintf(w, "! core %s: no answer: %s\n", n.Addr, oneLine(n.Err))
		}
	}
}

// printApp writes one app's settings, each core's view of it and the drift.
func printApp(w io.Writer, r *cluster.AppsReport, a *cluster.AppView) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "app\t%s\n", a.ID)
	fmt.Fprintf(tw, "source\t%s\n", a.Source)
	if s := a.Settings; s != nil && !s.Deleted {
		fmt.Fprintf(tw, "key\t%s\n", dash(s.Key))
		fmt.Fprintf(tw, "master key\t%s\n", dash(s.MasterKey))
		fmt.Fprintf(tw, "signature required\t%s\n", onOff(s.SignatureRequired))
		fmt.Fprintf(tw, "conversation signature required\t%s\n", onOff(s.ConversationSignatureRequired))
		hooks := hookList(s)
		if len(hooks) == 0 {
			hooks = []string{"-"}
		}
		for i, h := range hooks {
			label := ""
			if i == 0 {
				label = "hooks"
			}
			fmt.Fprintf(tw, "%s\t%s\n", label, h)
		}
	}
	tw.Flush()
	printLimits(w, r)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CORE\tCATALOG REPLICA\tCONFIG FILE")
	for _, n := range r.Nodes {
		if n.View == nil {
			fmt.Fprintf(tw, "%s\tno answer\t-\n", n.Addr)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", n.View.Node, compare(a.Catalog[n.View.Node], a.Settings), compare(a.Config[n.View.Node], a.Settings))
	}
	tw.Flush()
	for _, d := range a.Drift {
		fmt.Fprintf(w, "! %s\n", d)
	}
}

// compare says how a core's settings stand to the served ones.
func compare(s, served *meshpb.AppSettings) string {
	switch {
	case s == nil:
		return "none"
	case s.Deleted:
		return "deleted"
	}
	a, _ := json.Marshal(s)
	b, _ := json.Marshal(served)
	if string(a) == string(b) {
		return "same"
	}
	return "DIFFERS"
}

// adminAppSet sends the flags given (fs.Visit: only those) as the change.
func adminAppSet(args []string, w io.Writer) error {
	af := newAdminCmd("admin app set")
	fs := af.fs
	// --app-key, not --key: every admin command's --key is its
	// certificate's key.
	key := fs.String("app-key", "", "the app key")
	master := fs.String("master-key", "", "the master key (signs logins and hooks)")
	sig := fs.Bool("signature-required", false, "logins need a signature")
	convSig := fs.Bool("conversation-signature-required", false, "conversation changes need a signature")
	base := fs.String("hook-base-url", "", "every hook at URL/1.1/functions/<hook> (\"\" removes)")
	var hooks hookFlags
	fs.Var(&hooks, "hook-url", "NAME=URL: one hook's URL (NAME= removes it); repeat for more")
	pos, err := af.parse(args)
	if err != nil {
		return err
	}
	id, err := appID("set", pos)
	if err != nil {
		return err
	}
	ch := &meshpb.AppChange{}
	set := 0
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "app-key":
			ch.Key, set = key, set+1
		case "master-key":
			ch.MasterKey, set = master, set+1
		case "signature-required":
			ch.SignatureRequired, set = sig, set+1
		case "conversation-signature-required":
			ch.ConversationSignatureRequired, set = convSig, set+1
		case "hook-base-url":
			ch.HookBaseURL, set = base, set+1
		case "hook-url":
			ch.Hooks, set = hooks.m, set+1
		}
	})
	if set == 0 {
		return errors.New("admin app set: nothing to set (--app-key, --master-key, --signature-required, --conversation-signature-required, --hook-base-url, --hook-url)")
	}
	if ch.MasterKey != nil && *ch.MasterKey == "" {
		return errors.New("admin app set: --master-key must not be empty (rotate-master-key makes a random one)")
	}
	return adminAppDo(&af.adminFlags, &meshpb.OpsRequest{Op: meshpb.OpAppSet, App: id, AppChange: ch}, "set", w)
}

// hookFlags collects --hook-url NAME=URL.
type hookFlags struct{ m map[string]string }

func (h *hookFlags) String() string { return "" }

func (h *hookFlags) Set(v string) error {
	name, u, ok := strings.Cut(v, "=")
	if !ok || name == "" {
		return fmt.Errorf("want NAME=URL (NAME= removes the hook), got %q", v)
	}
	if h.m == nil {
		h.m = map[string]string{}
	}
	h.m[name] = u
	return nil
}

func adminAppChange(sub string, args []string, w io.Writer) error {
	af := newAdminCmd("admin app " + sub)
	yes := af.fs.Bool("yes", false, "delete: yes, refuse the app everywhere from now on")
	pos, err := af.parse(args)
	if err != nil {
		return err
	}
	id, err := appID(sub, pos)
	if err != nil {
		return err
	}
	op := meshpb.OpAppRotate
	if sub == "delete" {
		if !*yes {
			return fmt.Errorf("admin app delete: deleting %s refuses its every login and request at once: add --yes", id)
		}
		op = meshpb.OpAppDelete
	} else if *yes {
		return errors.New("admin app rotate-master-key: --yes is for delete")
	}
	return adminAppDo(&af.adminFlags, &meshpb.OpsRequest{Op: op, App: id}, sub, w)
}

// adminAppDo sends a change and prints the settings written: the new
// master key in full after rotate-master-key (the only time it is
// shown), keys masked otherwise.
func adminAppDo(af *adminFlags, req *meshpb.OpsRequest, sub string, w io.Writer) error {
	cl, ctx, release, err := af.connect()
	if err != nil {
		return err
	}
	defer release()
	rep, err := cl.Do(ctx, req)
	if err != nil {
		return fmt.Errorf("admin app %s: %w", sub, err)
	}
	if rep.App == nil {
		return fmt.Errorf("admin app %s: empty reply", sub)
	}
	out := *rep.App
	if req.Op != meshpb.OpAppRotate {
		out.Settings = *cluster.MaskSettings(&out.Settings)
	}
	if af.json {
		return writeJSON(w, out)
	}
	switch req.Op {
	case meshpb.OpAppRotate:
		fmt.Fprintf(w, "app %s: new master key (shown once; every core and edge takes it within seconds):\n%s\n", out.ID, out.Settings.MasterKey)
	case meshpb.OpAppDelete:
		fmt.Fprintf(w, "app %s deleted: its logins are refused (4100) within seconds\n", out.ID)
	default:
		s := out.Settings
		fmt.Fprintf(w, "app %s set: key %s, master key %s, signature %s, conversation signature %s, %d hooks\n",
			out.ID, dash(s.Key), dash(s.MasterKey), onOff(s.SignatureRequired), onOff(s.ConversationSignatureRequired), len(hookList(&s)))
	}
	return nil
}
