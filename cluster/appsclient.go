package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/relaymesh/relaymesh/mesh"
	"github.com/relaymesh/relaymesh/proto/meshpb"
)

// `relaymesh admin app list|show`'s side of app-list: every core's view,
// merged per app, with drift between cores flagged.

// AppsNode is one core's answer to app-list, or why there is none.
type AppsNode struct {
	Addr    string           `json:"addr"`
	Node    string           `json:"node,omitempty"`
	View    *meshpb.AppsView `json:"view,omitempty"`
	Err     string           `json:"error,omitempty"`
	Refused bool             `json:"refused,omitempty"`
}

// AppView is one app across the cores that answered.
type AppView struct {
	ID string `json:"id"`
	// Settings are what the cluster serves: the catalog's (as the core
	// with the newest replica has them), else, before the catalog has the
	// app, the config file's.
	Settings *meshpb.AppSettings `json:"settings,omitempty"`
	// Source is "catalog", "config" or "deleted" (a tombstone).
	Source string `json:"source"`
	// Catalog and Config are each core's: its catalog replica's settings
	// and its config file's [[apps]] entry (absent: none), by node name.
	Catalog map[string]*meshpb.AppSettings `json:"catalog"`
	Config  map[string]*meshpb.AppSettings `json:"config"`
	// Drift says, one line each, where cores disagree.
	Drift []string `json:"drift,omitempty"`
}

// AppsReport is the merge of every core's app-list.
type AppsReport struct {
	Nodes []AppsNode `json:"nodes"`
	Apps  []*AppView `json:"apps"`
	// Limits are per node ([core.limits]), the same for every app; by
	// node name. LimitsDrift says where cores disagree.
	Limits      map[string]map[string]int `json:"limits"`
	LimitsDrift string                    `json:"limits_drift,omitempty"`
	// Gen is the generation of apps the core with the newest catalog
	// replica serves; Edges are the edges the cores saw asking for apps,
	// each as last seen, and EdgesDrift says which serve another
	// generation or have not asked for a while.
	Gen        string     `json:"gen,omitempty"`
	Edges      []EdgeView `json:"edges"`
	EdgesDrift []string   `json:"edges_drift,omitempty"`
}

// EdgeView is an edge as the core it asked last saw it.
type EdgeView struct {
	Edge  string `json:"edge"`           // its edge id
	Cert  string `json:"cert,omitempty"` // its certificate's name, when not its edge id
	Core  string `json:"core"`           // node name
	Gen   string `json:"gen"`
	AgoMs int64  `json:"ago_ms"`
}

// edgeStale is how long an edge may not ask for apps before it is
// flagged (it asks every AppPollInterval).
const edgeStale = 10 * AppPollInterval

// Apps asks every core (the seeds and the cores they name) for app-list,
// each within perCore.
func (c *OpsClient) Apps(ctx context.Context, perCore time.Duration) []AppsNode {
	st := c.Status(ctx, perCore)
	out := make([]AppsNode, len(st))
	var wg sync.WaitGroup
	for i, n := range st {
		out[i].Addr = n.Addr
		if n.Status == nil {
			out[i].Err, out[i].Refused = n.Err, n.Refused
			continue
		}
		out[i].Node = n.Status.Node
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, perCore)
			defer cancel()
			rep, err := c.call(cctx, n.Addr, &meshpb.OpsRequest{Op: meshpb.OpAppList})
			switch {
			case err != nil:
				out[i].Err, out[i].Refused = err.Error(), errors.Is(err, mesh.ErrForbidden)
			case rep.Err != "":
				out[i].Err = rep.Err
			case rep.Apps == nil:
				out[i].Err = "empty answer (a core without app-list?)"
			default:
				out[i].View = rep.Apps
			}
		})
	}
	wg.Wait()
	return out
}

// MergeApps merges the cores' answers per app, by id.
func MergeApps(nodes []AppsNode) *AppsReport {
	r := &AppsReport{Nodes: nodes, Apps: []*AppView{}, Limits: map[string]map[string]int{}}
	byID := map[string]*AppView{}
	get := func(id string) *AppView {
		a := byID[id]
		if a == nil {
			a = &AppView{ID: id, Catalog: map[string]*meshpb.AppSettings{}, Config: map[string]*meshpb.AppSettings{}}
			byID[id] = a
		}
		return a
	}
	var answered []string // node names
	newest := ""          // the node with the newest catalog replica
	var newestIdx uint64
	for _, n := range nodes {
		v := n.View
		if v == nil {
			continue
		}
		answered = append(answered, v.Node)
		r.Limits[v.Node] = v.Limits
		if v.CatalogErr == "" && (newest == "" || v.CatalogIndex > newestIdx) {
			newest, newestIdx = v.Node, v.CatalogIndex
		}
		for _, e := range v.Catalog {
			s := e.Settings
			get(e.ID).Catalog[v.Node] = &s
		}
		for _, e := range v.Config {
			s := e.Settings
			get(e.ID).Config[v.Node] = &s
		}
	}
	slices.Sort(answered)
	for _, id := range slices.Sorted(maps.Keys(byID)) {
		a := byID[id]
		switch {
		case a.Catalog[newest] != nil:
			a.Settings, a.Source = a.Catalog[newest], "catalog"
		default:
			for _, n := range answered {
				if s := a.Catalog[n]; s != nil {
					a.Settings, a.Source = s, "catalog"
					break
				}
			}
		}
		if a.Settings == nil {
			for _, n := range answered {
				if s := a.Config[n]; s != nil {
					a.Settings, a.Source = s, "config"
					break
				}
			}
		}
		if a.Settings != nil && a.Settings.Deleted {
			a.Source = "deleted"
		}
		if d := differ(answered, a.Catalog); d != "" {
			a.Drift = append(a.Drift, "catalog replicas differ (a replica behind? it catches up): "+d)
		}
		if d := differ(answered, a.Config); d != "" {
			a.Drift = append(a.Drift, "config files differ between cores: "+d)
		}
		if a.Source == "catalog" || a.Source == "deleted" {
			var stale []string
			for _, n := range answered {
				if c := a.Config[n]; c != nil && !sameSettings(c, a.Settings) {
					stale = append(stale, n)
				}
			}
			if len(stale) > 0 {
				a.Drift = append(a.Drift, fmt.Sprintf("config file of %s differs from the catalog (the catalog wins)", strings.Join(stale, ", ")))
			}
		}
		r.Apps = append(r.Apps, a)
	}
	lim := map[string]string{}
	for n, l := range r.Limits {
		b, _ := json.Marshal(l)
		lim[n] = string(b)
	}
	r.LimitsDrift = differJSON(answered, lim)
	edges := map[string]EdgeView{}
	for _, n := range nodes {
		v := n.View
		if v == nil {
			continue
		}
		if v.Node == newest {
			r.Gen = v.Gen
		}
		for _, e := range v.Edges {
			if have, ok := edges[e.Edge]; !ok || e.AgoMs < have.AgoMs {
				edges[e.Edge] = EdgeView{Edge: e.Edge, Cert: e.Cert, Core: v.Node, Gen: e.Gen, AgoMs: e.AgoMs}
			}
		}
	}
	r.Edges = []EdgeView{}
	for _, name := range slices.Sorted(maps.Keys(edges)) {
		e := edges[name]
		r.Edges = append(r.Edges, e)
		switch {
		case time.Duration(e.AgoMs)*time.Millisecond > edgeStale:
			r.EdgesDrift = append(r.EdgesDrift, fmt.Sprintf("edge %s has not asked for apps for %v (last via %s): stopped, or cut off from its cores?",
				e.Edge, (time.Duration(e.AgoMs)*time.Millisecond).Round(time.Second), e.Core))
		case e.Gen == "":
			r.EdgesDrift = append(r.EdgesDrift, fmt.Sprintf("edge %s serves its config file's apps (its cores do not follow the catalog yet)", e.Edge))
		case r.Gen != "" && e.Gen != r.Gen:
			r.EdgesDrift = append(r.EdgesDrift, fmt.Sprintf("edge %s serves generation %s, the catalog %s (it catches up within seconds)", e.Edge, e.Gen, r.Gen))
		}
	}
	return r
}

// differ describes how the nodes' settings differ ("" when every node
// has the same, or none): groups of nodes with the same settings.
func differ(nodes []string, by map[string]*meshpb.AppSettings) string {
	enc := map[string]string{}
	for n, s := range by {
		if s != nil {
			b, _ := json.Marshal(s)
			enc[n] = string(b)
		}
	}
	return differJSON(nodes, enc)
}

// differJSON is differ over the nodes' encodings (a node absent from by
// has none).
func differJSON(nodes []string, by map[string]string) string {
	var groups [][]string
	var keys []string
	for _, n := range nodes {
		k, ok := by[n]
		if !ok {
			k = "absent"
		}
		i := slices.Index(keys, k)
		if i < 0 {
			keys, groups = append(keys, k), append(groups, nil)
			i = len(keys) - 1
		}
		groups[i] = append(groups[i], n)
	}
	if len(groups) < 2 {
		return ""
	}
	var parts []string
	for i, g := range groups {
		p := strings.Join(g, ", ")
		if keys[i] == "absent" {
			p += " (none)"
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, " | ")
}

func sameSettings(a, b *meshpb.AppSettings) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// MaskKey hides a key but for its first 4 characters (8 or fewer: all).
func MaskKey(k string) string {
	switch {
	case k == "":
		return ""
	case len(k) <= 8:
		return "********"
	}
	return k[:4] + "********"
}

// MaskSettings is a copy of s with its keys masked (nil for nil).
func MaskSettings(s *meshpb.AppSettings) *meshpb.AppSettings {
	if s == nil {
		return nil
	}
	m := *s
	m.Key, m.MasterKey = MaskKey(s.Key), MaskKey(s.MasterKey)
	return &m
}

// Masked is a copy of the report with every key masked: what list and
// show print without --show-keys.
func (r *AppsReport) Masked() *AppsReport {
	out := *r
	out.Nodes = nil
	for _, n := range r.Nodes {
		if n.View != nil {
			v := *n.View
			v.Catalog, v.Config = maskEntries(v.Catalog), maskEntries(v.Config)
			n.View = &v
		}
		out.Nodes = append(out.Nodes, n)
	}
	out.Apps = nil
	for _, a := range r.Apps {
		m := *a
		m.Settings = MaskSettings(a.Settings)
		m.Catalog, m.Config = maskMap(a.Catalog), maskMap(a.Config)
		out.Apps = append(out.Apps, &m)
	}
	return &out
}

func maskEntries(es []meshpb.AppEntry) []meshpb.AppEntry {
	out := make([]meshpb.AppEntry, len(es))
	for i, e := range es {
		out[i] = meshpb.AppEntry{ID: e.ID, Settings: *MaskSettings(&e.Settings)}
	}
	return out
}

func maskMap(m map[string]*meshpb.AppSettings) map[string]*meshpb.AppSettings {
	out := make(map[string]*meshpb.AppSettings, len(m))
	for k, v := range m {
		out[k] = MaskSettings(v)
	}
	return out
}

// App returns the app of that id, or nil.
func (r *AppsReport) App(id string) *AppView {
	for _, a := range r.Apps {
		if a.ID == id {
			return a
		}
	}
	return nil
}
