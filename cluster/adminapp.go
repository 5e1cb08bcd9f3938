package cluster

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/relaymesh/relaymesh/apps"
	"github.com/relaymesh/relaymesh/catalog"
	"github.com/relaymesh/relaymesh/core"
	"github.com/relaymesh/relaymesh/proto/meshpb"
)

// The core's side of `relaymesh admin app` (issue 12): app-list answers
// this core's view of every app (its catalog replica and its config
// file); app-set, app-rotate-master-key and app-delete write the app's
// settings into the catalog (through its leader, catalogGroup.Propose),
// from which every core's registry follows them (appsync.go).

// settingsOf is an [[apps]] entry's settings as the catalog stores them.
func settingsOf(a AppConfig) meshpb.AppSettings {
	s := meshpb.AppSettings{Key: a.Key, MasterKey: a.MasterKey, SignatureRequired: a.SignatureRequired,
		ConversationSignatureRequired: a.ConversationSignatureRequired, HookBaseURL: a.HookBaseURL}
	if len(a.Hooks) > 0 {
		s.Hooks = maps.Clone(a.Hooks)
	}
	return s
}

// ConfigApps are the file's [[apps]] as catalog settings, by id.
func (c *Config) ConfigApps() []meshpb.AppEntry {
	out := make([]meshpb.AppEntry, 0, len(c.Apps))
	for _, a := range c.Apps {
		out = append(out, meshpb.AppEntry{ID: a.ID, Settings: settingsOf(a)})
	}
	slices.SortFunc(out, func(a, b meshpb.AppEntry) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// appOf is the registry's app for catalog settings.
func appOf(id string, s meshpb.AppSettings) apps.App {
	return apps.App{ID: id, Key: s.Key, MasterKey: s.MasterKey, SignatureRequired: s.SignatureRequired,
		ConversationSignatureRequired: s.ConversationSignatureRequired}
}

// catalogApps reads every app's settings from a catalog replica. An app
// whose settings do not decode is reported and left out.
func catalogApps(st *catalog.Store) ([]meshpb.AppEntry, error) {
	list, err := st.Apps()
	if err != nil {
		return nil, err
	}
	out := make([]meshpb.AppEntry, 0, len(list))
	var bad []string
	for _, a := range list {
		var s meshpb.AppSettings
		if err := json.Unmarshal(a.Settings, &s); err != nil {
			bad = append(bad, a.ID)
			continue
		}
		out = append(out, meshpb.AppEntry{ID: a.ID, Settings: s})
	}
	if len(bad) > 0 {
		return out, fmt.Errorf("cluster: catalog settings of apps %q do not decode", bad)
	}
	return out, nil
}

// catalogSpecs are config apps as the catalog's bootstrap declares them.
func catalogSpecs(list []meshpb.AppEntry) ([]catalog.AppSpec, error) {
	out := make([]catalog.AppSpec, 0, len(list))
	for _, a := range list {
		b, err := json.Marshal(a.Settings)
		if err != nil {
			return nil, err
		}
		out = append(out, catalog.AppSpec{ID: a.ID, Settings: b})
	}
	return out, nil
}

// limitsMap is a core's limits for app-list.
func limitsMap(l core.Limits) map[string]int {
	return map[string]int{"max_members": l.MaxMembers, "max_offline_per_conv": l.MaxOfflinePerConv,
		"max_unread_convs": l.MaxUnreadConvs, "max_query_scan": l.MaxQueryScan, "query_scan_per_second": l.QueryScanPerSecond}
}

// app serves the app-* ops.
func (s *opsServer) app(ctx context.Context, req *meshpb.OpsRequest) *meshpb.OpsReply {
	if req.Op == meshpb.OpAppList {
		return &meshpb.OpsReply{Apps: s.appList()}
	}
	if !apps.ValidID(req.App) || len(req.App) > catalog.MaxNameLen {
		return opsErr("invalid app id %q: 1 to %d bytes without ':' or control characters", req.App, catalog.MaxNameLen)
	}
	if s.c.catalog == nil {
		return opsErr("this core runs no catalog")
	}
	// A change reads the app and writes it back: on the catalog's leader,
	// whose state holds every change committed before (a follower's may
	// lag: a rotate there could bring back an app just deleted), one at a
	// time.
	if !s.c.catalog.rep.IsLeader() {
		return notLeader(s.c.catalog.rep)
	}
	appChanges.Lock()
	defer appChanges.Unlock()
	// A leader just elected may not have applied its predecessor's last
	// entries yet: a barrier first.
	if err := wait(ctx, s.c.catalog.rep.Raft().Barrier(opsTimeout)); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return notLeader(s.c.catalog.rep)
		}
		return opsErr("app %s: catalog barrier: %v", req.App, err)
	}
	cur, found, err := s.catalogApp(req.App)
	if err != nil {
		return opsErr("read app %s: %v", req.App, err)
	}
	live := found && !cur.Deleted
	var next meshpb.AppSettings
	switch req.Op {
	case meshpb.OpAppSet:
		if req.AppChange == nil {
			return opsErr("app-set without a change")
		}
		if live {
			next = cur
		}
		if err := applyChange(&next, req.AppChange); err != nil {
			return opsErr("app %s: %v", req.App, err)
		}
		// As a config file's [[apps]]: an app without keys would be open
		// to anyone (the REST API takes a keyless app as open).
		if next.MasterKey == "" {
			return opsErr("app %s: needs a master key (it authenticates the REST API and signs logins): --master-key", req.App)
		}
	case meshpb.OpAppRotate:
		if !live {
			return opsErr("unknown app %s (not in the catalog; set it first)", req.App)
		}
		next = cur
		next.MasterKey = newMasterKey()
	case meshpb.OpAppDelete:
		if !live {
			return opsErr("unknown app %s (not in the catalog)", req.App)
		}
		next = meshpb.AppSettings{Deleted: true}
	default:
		return opsErr("unknown op %q", req.Op)
	}
	b, err := json.Marshal(next)
	if err != nil {
		return opsErr("app %s: %v", req.App, err)
	}
	ctx, cancel := context.WithTimeout(ctx, catalogWait)
	defer cancel()
	if _, err := s.c.Catalog.Apply(ctx, &catalog.PutApp{ID: req.App, Settings: b}); err != nil {
		return opsErr("app %s: catalog: %v", req.App, err)
	}
	return &meshpb.OpsReply{App: &meshpb.AppEntry{ID: req.App, Settings: next}}
}

// catalogApp reads one app from this core's catalog replica.
func (s *opsServer) catalogApp(id string) (meshpb.AppSettings, bool, error) {
	raw, ok, err := s.c.Catalog.GetApp(id)
	if err != nil || !ok {
		return meshpb.AppSettings{}, false, err
	}
	var st meshpb.AppSettings
	if err := json.Unmarshal(raw, &st); err != nil {
		return meshpb.AppSettings{}, false, fmt.Errorf("settings do not decode: %w", err)
	}
	return st, true, nil
}

// appChanges serializes the app changes of this process (adminapp.go's
// read-modify-write on the catalog's leader).
var appChanges sync.Mutex

// errChange is a change app-set refuses.
var errChange = errors.New("bad change")

// applyChange merges ch into s.
func applyChange(s *meshpb.AppSettings, ch *meshpb.AppChange) error {
	if ch.Key != nil {
		s.Key = *ch.Key
	}
	if ch.MasterKey != nil {
		s.MasterKey = *ch.MasterKey
	}
	if ch.SignatureRequired != nil {
		s.SignatureRequired = *ch.SignatureRequired
	}
	if ch.ConversationSignatureRequired != nil {
		s.ConversationSignatureRequired = *ch.ConversationSignatureRequired
	}
	if ch.HookBaseURL != nil {
		if *ch.HookBaseURL != "" && !httpURL(*ch.HookBaseURL) {
			return fmt.Errorf("%w: hook base URL %q: want an http or https URL", errChange, *ch.HookBaseURL)
		}
		s.HookBaseURL = *ch.HookBaseURL
	}
	for name, u := range ch.Hooks {
		if !isHook(name) {
			return fmt.Errorf("%w: %q is not a hook", errChange, name)
		}
		if u == "" {
			delete(s.Hooks, name)
			continue
		}
		if !httpURL(u) {
			return fmt.Errorf("%w: hook %s: %q: want an http or https URL", errChange, name, u)
		}
		if s.Hooks == nil {
			s.Hooks = map[string]string{}
		}
		s.Hooks[name] = u
	}
	if len(s.Hooks) == 0 {
		s.Hooks = nil
	}
	for what, v := range map[string]string{"key": s.Key, "master key": s.MasterKey} {
		if strings.ContainsFunc(v, func(r rune) bool { return r < ' ' || r == 0x7f }) {
			return fmt.Errorf("%w: %s holds control characters", errChange, what)
		}
	}
	return nil
}

func httpURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// newMasterKey is a random master key: 26 base32 characters, 130 bits
// (crypto/rand.Text).
func newMasterKey() string { return rand.Text() }

// appList is this core's view of the apps.
func (s *opsServer) appList() *meshpb.AppsView {
	v := &meshpb.AppsView{Node: s.id, Addr: s.self, Source: "config", Config: s.c.configApps, Limits: limitsMap(s.c.limits)}
	if v.Config == nil {
		v.Config = []meshpb.AppEntry{}
	}
	if s.c.appSync != nil && s.c.appSync.ready() {
		v.Source = "catalog"
	}
	v.Gen, v.Edges = s.c.appSync.view(time.Now())
	if s.c.catalog == nil {
		v.CatalogErr = "this core runs no catalog"
		return v
	}
	v.CatalogIndex = s.c.catalog.rep.AppliedIndex()
	list, err := catalogApps(s.c.Catalog)
	v.Catalog = list
	if v.Catalog == nil {
		v.Catalog = []meshpb.AppEntry{}
	}
	if err != nil {
		v.CatalogErr = err.Error()
	}
	return v
}
