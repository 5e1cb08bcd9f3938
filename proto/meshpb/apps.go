package meshpb

// App settings (issue 12 `admin app`; issue 9 "app settings in the
// catalog"). The catalog stores each app's settings as the JSON of
// AppSettings (catalog.PutApp's Settings); cores read them from their
// replica and serve them to their edges with MethodApps; `relaymesh admin
// app` reads and changes them with the ops below (MethodAdminOps).
//
//	app-list               Apps: this core's view: the catalog's apps as its
//	                       replica has them, the [[apps]] of its config
//	                       file, where its registry takes apps from
//	app-set                app, app_change: merge the change into the
//	                       app's catalog settings (creating the app);
//	                       App: the settings written
//	app-rotate-master-key  app: a new random master key; App holds it
//	app-delete             app: the catalog keeps a tombstone ({"deleted":
//	                       true}), so a config file's [[apps]] entry does
//	                       not bring the app back at the next start
//
// History: version 1 (issue 12).
const (
	OpAppList   = "app-list"
	OpAppSet    = "app-set"
	OpAppRotate = "app-rotate-master-key"
	OpAppDelete = "app-delete"
)

// MethodApps is the rpc AppsRequest -> AppsReply (JSON) an edge calls on
// one of its cores about every second: the apps the core serves, from its
// catalog replica. The edge replaces its registry's apps with them, so a
// key set or an app deleted with `relaymesh admin app` reaches every edge
// within seconds. Cores and edges may call it.
const MethodApps = "apps"

// AppSettings are an app's settings as the catalog stores them. Deleted
// marks a tombstone: the app is refused (4100) everywhere.
type AppSettings struct {
	Key                           string            `json:"key,omitempty"`
	MasterKey                     string            `json:"master_key,omitempty"`
	SignatureRequired             bool              `json:"signature_required,omitempty"`
	ConversationSignatureRequired bool              `json:"conversation_signature_required,omitempty"`
	HookBaseURL                   string            `json:"hook_base_url,omitempty"`
	Hooks                         map[string]string `json:"hooks,omitempty"` // hook name -> URL
	Deleted                       bool              `json:"deleted,omitempty"`
}

// AppEntry is one app and its settings.
type AppEntry struct {
	ID       string      `json:"id"`
	Settings AppSettings `json:"settings"`
}

// AppChange is what app-set changes; nil fields are left as they are. A
// hook whose URL is "" is removed.
type AppChange struct {
	Key                           *string           `json:"key,omitempty"`
	MasterKey                     *string           `json:"master_key,omitempty"`
	SignatureRequired             *bool             `json:"signature_required,omitempty"`
	ConversationSignatureRequired *bool             `json:"conversation_signature_required,omitempty"`
	HookBaseURL                   *string           `json:"hook_base_url,omitempty"`
	Hooks                         map[string]string `json:"hooks,omitempty"`
}

// AppsView is one core's answer to app-list.
type AppsView struct {
	Node string `json:"node"`
	Addr string `json:"addr"`
	// Source is where the core's registry takes its apps from now:
	// "catalog" once it follows the catalog, "config" before (or on a
	// core that does not follow it).
	Source string `json:"source"`
	// CatalogIndex is the catalog replica's applied raft index.
	CatalogIndex uint64     `json:"catalog_index"`
	Catalog      []AppEntry `json:"catalog"` // tombstones included, by id
	CatalogErr   string     `json:"catalog_err,omitempty"`
	Config       []AppEntry `json:"config"` // the config file's [[apps]], by id
	// Limits are the core's [core.limits] as it runs them (per node, the
	// same for every app).
	Limits map[string]int `json:"limits,omitempty"`
	// Gen is the generation of the apps the core serves (MethodApps), ""
	// before it follows the catalog; Edges are the edges (and cores) that
	// asked it for them lately, with the generation each serves since.
	Gen   string     `json:"gen,omitempty"`
	Edges []EdgeApps `json:"edges,omitempty"`
}

// EdgeApps is an edge's last MethodApps call to a core.
type EdgeApps struct {
	Edge  string `json:"edge"`           // its edge id (AppsRequest.Edge); an edge that names none, its certificate's name
	Cert  string `json:"cert,omitempty"` // its certificate's name, when it is not Edge
	Gen   string `json:"gen"`            // what it serves since ("": its config file's)
	AgoMs int64  `json:"ago_ms"`
}

// AppsRequest asks a core for its apps; Have is the generation the
// caller holds ("" none), Edge the caller's edge id ([edge] edge_id; ""
// from an edge before it said: the core then names it by certificate).
// Edges of an autoscaling group share one certificate, so the core tells
// them apart by Edge.
type AppsRequest struct {
	Have string `json:"have,omitempty"`
	Edge string `json:"edge,omitempty"`
}

// AppsReply is a core's apps: Ready false while it does not follow the
// catalog yet (the caller keeps what it has); Same when Have is still
// current; else every app the catalog holds (tombstones included) and
// their generation.
type AppsReply struct {
	Ready bool       `json:"ready"`
	Same  bool       `json:"same,omitempty"`
	Gen   string     `json:"gen,omitempty"`
	Apps  []AppEntry `json:"apps,omitempty"`
}
