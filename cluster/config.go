package cluster

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/relaymesh/relaymesh/apps"
	"github.com/relaymesh/relaymesh/core"
	"github.com/relaymesh/relaymesh/core/shard"
	"github.com/relaymesh/relaymesh/edge"
	"github.com/relaymesh/relaymesh/mesh"
	"github.com/relaymesh/relaymesh/rest"
)

// Config is the TOML configuration file of the production roles
// (`relaymesh core --config F`, `relaymesh edge --config F`); `relaymesh dev`
// reads its apps and limits too. Relative paths are relative to the file.
//
//	data = "/var/lib/relaymesh"
//	session_token_key_file = "session-token.key"   # shared by every edge
//
//	[[apps]]
//	id = "AbCd1234-gzGzoHsz"
//	key = "app key"
//	master_key = "master key"                     # signs logins
//	signature_required = true
//
//	[tls]                                         # mesh identity (relaymesh pki)
//	ca = "pki/ca.crt"
//	cert = "pki/core-1.crt"
//	key = "pki/core-1.key"
//
//	[core]
//	node_id = "core-1"
//	mesh_addr = "10.0.0.1:7100"
//	peers = { core-1 = "10.0.0.1:7100", core-2 = "10.0.0.2:7100", core-3 = "10.0.0.3:7100" }
//	metrics_addr = "10.0.0.1:9100"                # optional admin listener: /metrics, /healthz, /readyz, /debug/pprof/
//
//	[admin]                                       # `relaymesh admin` (cert: pki issue --role admin)
//	cores = ["10.0.0.1:7100"]                     # cores to ask first (default: [core] peers, [edge] cores)
//
//	[edge]
//	edge_id = "edge-1"
//	listen = "0.0.0.0:8080"
//	admin_addr = "10.0.0.5:9100"                  # optional admin listener: /metrics, /healthz, /readyz, /debug/pprof/ (then not /metrics on listen)
//	cores = ["10.0.0.1:7100", "10.0.0.2:7100", "10.0.0.3:7100"]
//	public_urls = ["wss://im-1.example.com/", "wss://im-2.example.com/"]
//	trusted_proxies = ["10.0.0.0/16"]             # load balancers: X-Forwarded-For names the client
//	wt_cert = "tls/im.example.com.crt"            # WebTransport (HTTP/3, udp listen port, /wt)
//	wt_key = "tls/im.example.com.key"
//	tls = true                                    # optional: listen's TCP over TLS too (wss://), same certificate
//	[edge.limits]
//	sends_per_minute = 60
//	max_conns_per_ip = 1000
//	login_timeout = "60s"
//	[edge.rest]                                   # the REST API (docs/REST.md)
//	sends_per_second = 50
//	send_queue = 10000
//	sign_max_age = "15m"                          # X-LC-Sign timestamp window
//
//	[[regions]]                                   # nearest edge: /v1/route by the caller's network
//	name = "eu"                                   # an edge says its own with [edge] region = "eu"
//	cidrs = ["10.1.0.0/16"]                       # client networks of the region
//	public_urls = ["wss://eu-1.example.com/"]     # its edges
//	nearest = ["us"]                              # other regions, nearest first (secondary); default: file order
type Config struct {
	Data                string       `toml:"data"`
	SessionTokenKeyFile string       `toml:"session_token_key_file"`
	Apps                []AppConfig  `toml:"apps"` // integrations.go
	TLS                 TLSConfig    `toml:"tls"`
	Core                CoreSection  `toml:"core"`
	Edge                EdgeSection  `toml:"edge"`
	Admin               AdminSection `toml:"admin"` // admin.go

	// Regions are [[regions]]: the regions /v1/route knows (nearest edge).
	Regions []RegionConfig `toml:"regions"`

	dir string // directory of the file, for relative paths
}

// TLSConfig names the mesh certificate files.
type TLSConfig struct {
	CA   string `toml:"ca"`
	Cert string `toml:"cert"`
	Key  string `toml:"key"`
}

// CoreSection configures `relaymesh core`.
type CoreSection struct {
	NodeID   string            `toml:"node_id"`
	MeshAddr string            `toml:"mesh_addr"`
	Peers    map[string]string `toml:"peers"`
	// MetricsAddr is CoreConfig.MetricsAddr (/metrics, /healthz over
	// HTTP); empty serves none.
	MetricsAddr string `toml:"metrics_addr"`
	// Limits are core.Limits; zero keys take LeanCloud's defaults.
	Limits CoreLimitsConfig `toml:"limits"`
	// CommandVersion pins the shard command version this core proposes
	// (core.Config.CommandVersion; 0 = the newest this binary knows).
	// Rolling upgrades keep it at the oldest running version until every
	// core runs the new binary (docs/OPERATIONS.md).
	CommandVersion int `toml:"command_version"`
	// Region is the region's number, 1..255 (default 1), named in the ids
	// of the conversations created here (catalog.NewConvID), and Shards
	// how many shards (raft groups) the region has, 1..MaxShards (default
	// 1); every core of the region hosts a replica of each, and every core
	// of a region must say the same. Shards may grow, never shrink.
	Region int `toml:"region"`
	Shards int `toml:"shards"`
	// RemoteRegions are [[core.remote_regions]]: every other region of
	// the mesh, its number and its cores' mesh addresses (issue 9 step
	// 4; the catalog will hand these out).
	RemoteRegions []RemoteRegionConfig `toml:"remote_regions"`
	// RaftHeartbeatTimeout and RaftElectionTimeout (durations, default
	// 500ms each) bound how soon the other cores notice a dead leader and
	// elect a new one; raise them on networks with pauses longer than that.
	RaftHeartbeatTimeout string `toml:"raft_heartbeat_timeout"`
	RaftElectionTimeout  string `toml:"raft_election_timeout"`
	// CompactionShare is the share of the time a state DB compaction may
	// work while L0 keeps up (raftstore.Config.CompactionShare): 0 is the
	// default, 0.25; 1 turns pacing off (a machine with cores to spare).
	CompactionShare float64 `toml:"compaction_share"`
}

// Default raft timeouts of `relaymesh core` ([core] raft_heartbeat_timeout,
// raft_election_timeout): a dead leader is replaced in about a second.
const (
	DefaultRaftHeartbeatTimeout = 500 * time.Millisecond
	DefaultRaftElectionTimeout  = 500 * time.Millisecond
)

// raftTimeouts parses the [core] raft timeouts, defaults filled in.
func (s CoreSection) raftTimeouts() (hb, el time.Duration, err error) {
	hb, el = DefaultRaftHeartbeatTimeout, DefaultRaftElectionTimeout
	for _, d := range []struct {
		name, v string
		to      *time.Duration
	}{{"raft_heartbeat_timeout", s.RaftHeartbeatTimeout, &hb}, {"raft_election_timeout", s.RaftElectionTimeout, &el}} {
		if d.v == "" {
			continue
		}
		v, err := time.ParseDuration(d.v)
		if err != nil || v < 10*time.Millisecond {
			return 0, 0, fmt.Errorf("%w: core.%s: %q is not a duration of at least 10ms", ErrConfig, d.name, d.v)
		}
		*d.to = v
	}
	return hb, el, nil
}

// CoreLimitsConfig is [core.limits] (core.Limits): what a conversation
// holds and what a login delivers.
//
//	[core.limits]
//	max_members = 500           # members of a normal conversation (4304 past it)
//	max_offline_per_conv = 100  # newest offline messages pushed per conversation
//	max_unread_convs = 50       # conversations notified at login
//	max_query_scan = 10000      # conversations one conv/query may examine (4310 past it)
//	query_scan_per_second = 50000 # each app's conv/query budget (4310 when spent)
type CoreLimitsConfig struct {
	MaxMembers         int `toml:"max_members"`
	MaxOfflinePerConv  int `toml:"max_offline_per_conv"`
	MaxUnreadConvs     int `toml:"max_unread_convs"`
	MaxQueryScan       int `toml:"max_query_scan"`
	QueryScanPerSecond int `toml:"query_scan_per_second"`
}

// CoreLimits returns the [core.limits] section as core.Limits.
func (c *Config) CoreLimits() core.Limits {
	l := c.Core.Limits
	return core.Limits{MaxMembers: l.MaxMembers, MaxOfflinePerConv: l.MaxOfflinePerConv, MaxUnreadConvs: l.MaxUnreadConvs,
		MaxQueryScan: l.MaxQueryScan, QueryScanPerSecond: l.QueryScanPerSecond}
}

// RegionConfig is one [[regions]] entry: a region as /v1/route sees it
// (edge.Region).
type RegionConfig struct {
	Name       string   `toml:"name"`
	CIDRs      []string `toml:"cidrs"`
	PublicURLs []string `toml:"public_urls"`
	Nearest    []string `toml:"nearest"`
}

// regions parses [[regions]] into edge.Regions.
func (c *Config) regions() ([]edge.Region, error) {
	out := make([]edge.Region, 0, len(c.Regions))
	for _, r := range c.Regions {
		er := edge.Region{Name: r.Name, PublicURLs: r.PublicURLs, Nearest: r.Nearest}
		for _, v := range r.CIDRs {
			p, err := netip.ParsePrefix(v)
			if err != nil {
				return nil, fmt.Errorf("%w: regions %q: cidrs: %v", ErrConfig, r.Name, err)
			}
			er.CIDRs = append(er.CIDRs, p)
		}
		out = append(out, er)
	}
	return out, nil
}

// Routes returns the /v1/route table of an edge of region local (nil when
// the file has no [[regions]] and local is empty).
func (c *Config) Routes(local string) (*edge.RouteTable, error) {
	if len(c.Regions) == 0 && local == "" {
		return nil, nil
	}
	if local == "" {
		return nil, fmt.Errorf("%w: [[regions]] are listed: set [edge] region to this edge's", ErrConfig)
	}
	rs, err := c.regions()
	if err != nil {
		return nil, err
	}
	t, err := edge.NewRouteTable(local, rs)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	return t, nil
}

// EdgeSection configures `relaymesh edge`.
type EdgeSection struct {
	EdgeID string `toml:"edge_id"`
	Listen string `toml:"listen"`
	// AdminAddr is EdgeConfig.AdminAddr: the admin listener (/metrics,
	// /healthz, /readyz, /debug/pprof/). Empty keeps /metrics on listen.
	AdminAddr  string   `toml:"admin_addr"`
	MeshAddr   string   `toml:"mesh_addr"`
	Cores      []string `toml:"cores"`
	PublicURLs []string `toml:"public_urls"`
	// TrustedProxies: CIDRs or IPs of the load balancers in front of the
	// edge, whose X-Forwarded-For names the client (edge/guard.go).
	TrustedProxies []string     `toml:"trusted_proxies"`
	Limits         LimitsConfig `toml:"limits"`
	REST           RESTConfig   `toml:"rest"`

	// Region is this edge's [[regions]] name: /v1/route answers callers
	// from no region's networks with it.
	Region string `toml:"region"`
	// DrainTimeout bounds a drain on SIGTERM/SIGINT (edge.Server.Drain):
	// how long clients told goaway may take to leave before the edge
	// closes their connections ("10s" when empty).
	DrainTimeout string `toml:"drain_timeout"`
	// WTCert and WTKey are the PEM certificate chain and key of the
	// edge's WebTransport listener (HTTP/3 on UDP at listen's host:port,
	// path /wt; edge/wt.go): a certificate browsers trust for the public
	// host name. Without them the edge serves no WebTransport. Changed
	// files are reloaded within an hour.
	WTCert string `toml:"wt_cert"`
	WTKey  string `toml:"wt_key"`
	// TLS serves listen's TCP side over TLS too (wss://, https://) with
	// the wt_cert certificate, so a load balancer can pass 443 straight
	// through for TCP and UDP alike (an AWS NLB TCP_UDP listener cannot
	// terminate TLS). Needs wt_cert.
	TLS bool `toml:"tls"`
}

// DefaultDrainTimeout is [edge] drain_timeout when unset.
const DefaultDrainTimeout = 10 * time.Second

func (s EdgeSection) drainTimeout() (time.Duration, error) {
	if s.DrainTimeout == "" {
		return DefaultDrainTimeout, nil
	}
	d, err := time.ParseDuration(s.DrainTimeout)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%w: edge.drain_timeout: %q is not a duration of at least 0", ErrConfig, s.DrainTimeout)
	}
	return d, nil
}

// RESTConfig bounds the REST API's message operations per app; zero keeps
// the default (50 per second, 10000 waiting), a negative rate disables it.
type RESTConfig struct {
	SendsPerSecond float64 `toml:"sends_per_second"`
	SendQueue      int     `toml:"send_queue"`
	// BroadcastsPerDay: system-conversation broadcasts per app and day.
	BroadcastsPerDay int `toml:"broadcasts_per_day"`
	// SignMaxAge is rest.Limits.SignMaxAge: how far an X-LC-Sign
	// timestamp may be from now ("15m" when empty, "-1s" unchecked).
	SignMaxAge string `toml:"sign_max_age"`

	// Login signatures for app users (issue 8; rest/usersign.go): signs per
	// second and user-store calls in flight, per app.
	SignsPerSecond float64 `toml:"signs_per_second"`
	SignsInFlight  int     `toml:"signs_in_flight"`
}

// RESTLimits returns the REST API limits of the file.
func (c *Config) RESTLimits() rest.Limits {
	l := rest.Limits{SendsPerSecond: c.Edge.REST.SendsPerSecond, SendQueue: c.Edge.REST.SendQueue,
		BroadcastsPerDay: c.Edge.REST.BroadcastsPerDay,
		SignsPerSecond:   c.Edge.REST.SignsPerSecond, SignsInFlight: c.Edge.REST.SignsInFlight}
	l.SignMaxAge, _ = time.ParseDuration(c.Edge.REST.SignMaxAge) // checked by LoadConfig
	return l
}

// LimitsConfig overrides edge limits; zero keeps LeanCloud's default, a
// negative rate disables that limit.
type LimitsConfig struct {
	MaxFrameBytes   int64  `toml:"max_frame_bytes"`
	MaxMessageBytes int    `toml:"max_message_bytes"`
	SendsPerMinute  int    `toml:"sends_per_minute"`
	LogsPerMinute   int    `toml:"logs_per_minute"`
	OpsPerMinute    int    `toml:"ops_per_minute"`
	IdleTimeout     string `toml:"idle_timeout"`
	SessionTokenTTL string `toml:"session_token_ttl"`
	// SessionMaxAge is edge.Limits.SessionMaxAge: how long a chain of
	// session tokens (reopens, refreshes) may last after the login it
	// began with ("" = session_token_ttl).
	SessionMaxAge      string `toml:"session_max_age"`
	MaxSessionsPerConn int    `toml:"max_sessions_per_conn"`
	// QueueLen is edge.Limits.QueueLen: outbound frames per connection
	// before the edge sheds LOW, then NORMAL (0: 1024).
	QueueLen int `toml:"queue_len"`
	// Connection guards (edge/guard.go): connections per client IP
	// (0: 1000, -1: no cap), the login deadline after the upgrade
	// ("60s"), session/open+refresh and echo per connection and minute
	// (0: 60 and 60, -1: unlimited).
	MaxConnsPerIP       int    `toml:"max_conns_per_ip"`
	LoginTimeout        string `toml:"login_timeout"`
	SessionOpsPerMinute int    `toml:"session_ops_per_minute"`
	EchoPerMinute       int    `toml:"echo_per_minute"`
	// DatagramsPerMinute is edge.Limits.DatagramsPerMinute: WebTransport
	// datagrams per session and minute (0: 120, -1: unlimited).
	DatagramsPerMinute int `toml:"datagrams_per_minute"`
}

// ErrConfig marks an invalid configuration file.
var ErrConfig = errors.New("cluster: config")

// LoadConfig reads and checks a configuration file. A file that does not
// parse is one error; otherwise every problem found is reported, joined
// (errors.Join; each one ErrConfig).
func LoadConfig(path string) (*Config, error) {
	c := new(Config)
	md, err := toml.DecodeFile(path, c)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrConfig, path, err)
	}
	var errs []error
	if und := md.Undecoded(); len(und) > 0 {
		errs = append(errs, fmt.Errorf("%w: %s: unknown keys %v", ErrConfig, path, und))
	}
	c.dir = filepath.Dir(path)
	seen := map[string]bool{}
	for i, a := range c.Apps {
		switch {
		case a.ID == "" || len(a.ID) > apps.MaxIDLen:
			errs = append(errs, fmt.Errorf("%w: apps[%d]: id must be 1..%d characters", ErrConfig, i, apps.MaxIDLen))
			continue
		case seen[a.ID]:
			errs = append(errs, fmt.Errorf("%w: apps[%d]: duplicate id %q", ErrConfig, i, a.ID))
			continue
		case !apps.ValidID(a.ID):
			errs = append(errs, fmt.Errorf("%w: apps[%d]: id %q holds ':' or a control character", ErrConfig, i, a.ID))
			continue
		}
		seen[a.ID] = true
		if err := a.check(); err != nil {
			errs = append(errs, err)
		}
		// No open apps outside `relaymesh dev` without a config file: an
		// app without a master key would accept any key as its master
		// key on the REST API and could never check a signature.
		if a.MasterKey == "" {
			errs = append(errs, fmt.Errorf("%w: app %q has no master_key: every [[apps]] entry needs one (it authenticates the REST API and signs logins); "+
				"an open app that accepts any key exists only in `relaymesh dev` without --config", ErrConfig, a.ID))
		}
	}
	if _, err := c.Edge.Limits.limits(); err != nil {
		errs = append(errs, err)
	}
	if _, err := edge.ParseTrustedProxies(c.Edge.TrustedProxies); err != nil {
		errs = append(errs, fmt.Errorf("%w: edge.trusted_proxies: %v", ErrConfig, err))
	}
	if v := c.Edge.REST.SignMaxAge; v != "" {
		if d, err := time.ParseDuration(v); err != nil || d == 0 {
			errs = append(errs, fmt.Errorf("%w: edge.rest.sign_max_age: %q is not a non-zero duration (negative: unchecked)", ErrConfig, v))
		}
	}
	if _, _, err := c.Core.raftTimeouts(); err != nil {
		errs = append(errs, err)
	}
	if v := c.Core.CompactionShare; v < 0 || v > 1 {
		errs = append(errs, fmt.Errorf("%w: core.compaction_share: %v is not a share of the time, 0 (the default) to 1 (not paced)", ErrConfig, v))
	}
	regionsOK := true
	if _, err := c.regions(); err != nil {
		errs = append(errs, err)
		regionsOK = false
	}
	if _, err := c.Edge.drainTimeout(); err != nil {
		errs = append(errs, err)
	}
	if (c.Edge.WTCert == "") != (c.Edge.WTKey == "") {
		errs = append(errs, fmt.Errorf("%w: edge.wt_cert and edge.wt_key go together", ErrConfig))
	}
	if c.Edge.TLS && c.Edge.WTCert == "" {
		errs = append(errs, fmt.Errorf("%w: edge.tls serves the wt_cert certificate: set wt_cert and wt_key", ErrConfig))
	}
	if c.Edge.Region != "" && regionsOK {
		if _, err := c.Routes(c.Edge.Region); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return c, nil
}

// Path resolves p against the config file's directory.
func (c *Config) Path(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(c.dir, p)
}

// DataDir is the data directory (default "data" beside the file).
func (c *Config) DataDir() string {
	if c.Data == "" {
		return c.Path("data")
	}
	return c.Path(c.Data)
}

// Registry serves exactly the configured apps.
func (c *Config) Registry() (*apps.Registry, error) {
	if len(c.Apps) == 0 {
		return nil, fmt.Errorf("%w: no [[apps]]: a production role serves only the apps it lists", ErrConfig)
	}
	return apps.NewStatic(c.AppList()), nil
}

// Identity loads the mesh certificate named in [tls].
func (c *Config) Identity() (*mesh.Identity, error) {
	if c.TLS.CA == "" || c.TLS.Cert == "" || c.TLS.Key == "" {
		return nil, fmt.Errorf("%w: [tls] needs ca, cert and key (see `relaymesh pki`)", ErrConfig)
	}
	return mesh.LoadIdentity(c.Path(c.TLS.Cert), c.Path(c.TLS.Key), c.Path(c.TLS.CA))
}

// TokenKey reads the session-token key every edge of the cluster shares.
func (c *Config) TokenKey() ([]byte, error) {
	if c.SessionTokenKeyFile == "" {
		return nil, fmt.Errorf("%w: session_token_key_file is required for edges (32 random bytes, the same on every edge)", ErrConfig)
	}
	b, err := os.ReadFile(c.Path(c.SessionTokenKeyFile))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	if len(b) < 32 {
		return nil, fmt.Errorf("%w: %s holds %d bytes, want at least 32", ErrConfig, c.SessionTokenKeyFile, len(b))
	}
	return b, nil
}

func (l LimitsConfig) limits() (edge.Limits, error) {
	out := edge.Limits{
		MaxFrameBytes: l.MaxFrameBytes, MaxMessageBytes: l.MaxMessageBytes,
		SendsPerMinute: l.SendsPerMinute, LogsPerMinute: l.LogsPerMinute, OpsPerMinute: l.OpsPerMinute,
		MaxSessionsPerConn: l.MaxSessionsPerConn, QueueLen: l.QueueLen,
		MaxConnsPerIP: l.MaxConnsPerIP, SessionOpsPerMinute: l.SessionOpsPerMinute, EchoPerMinute: l.EchoPerMinute,
		DatagramsPerMinute: l.DatagramsPerMinute,
	}
	if l.QueueLen < 0 {
		return out, fmt.Errorf("%w: edge.limits.queue_len must not be negative", ErrConfig)
	}
	for _, d := range []struct {
		name string
		s    string
		to   *time.Duration
	}{{"idle_timeout", l.IdleTimeout, &out.IdleTimeout}, {"session_token_ttl", l.SessionTokenTTL, &out.SessionTokenTTL},
		{"login_timeout", l.LoginTimeout, &out.LoginTimeout}, {"session_max_age", l.SessionMaxAge, &out.SessionMaxAge}} {
		if d.s == "" {
			continue
		}
		v, err := time.ParseDuration(d.s)
		if err != nil || v <= 0 {
			return out, fmt.Errorf("%w: edge.limits.%s: %q is not a positive duration", ErrConfig, d.name, d.s)
		}
		*d.to = v
	}
	return out, nil
}

// Limits returns the edge limits of the file.
func (c *Config) Limits() edge.Limits {
	l, _ := c.Edge.Limits.limits() // checked by LoadConfig
	return l
}

// CoreConfig builds the core role's configuration.
func (c *Config) CoreConfig() (CoreConfig, error) {
	s := c.Core
	if s.NodeID == "" || s.MeshAddr == "" {
		return CoreConfig{}, fmt.Errorf("%w: [core] needs node_id and mesh_addr", ErrConfig)
	}
	if len(s.Peers) > 0 && s.Peers[s.NodeID] == "" {
		return CoreConfig{}, fmt.Errorf("%w: [core] peers must include this node %q", ErrConfig, s.NodeID)
	}
	if s.CommandVersion < 0 || s.CommandVersion > shard.Version {
		return CoreConfig{}, fmt.Errorf("%w: [core] command_version %d: this binary proposes versions 1 to %d",
			ErrConfig, s.CommandVersion, shard.Version)
	}
	if s.Region < 0 || s.Region > 255 {
		return CoreConfig{}, fmt.Errorf("%w: [core] region %d: 1 to 255", ErrConfig, s.Region)
	}
	if s.Shards < 0 || s.Shards > MaxShards {
		return CoreConfig{}, fmt.Errorf("%w: [core] shards %d: 1 to %d", ErrConfig, s.Shards, MaxShards)
	}
	self := max(s.Region, 1)
	var remote []core.RemoteRegion
	seen := map[int]bool{}
	for _, r := range s.RemoteRegions {
		if r.Number < 1 || r.Number > 255 || r.Number == self || seen[r.Number] || len(r.Cores) == 0 {
			return CoreConfig{}, fmt.Errorf("%w: [[core.remote_regions]] number %d: another region's number, 1 to 255, once, with its cores", ErrConfig, r.Number)
		}
		seen[r.Number] = true
		remote = append(remote, core.RemoteRegion{Number: uint8(r.Number), Cores: r.Cores})
	}
	reg, err := c.Registry()
	if err != nil {
		return CoreConfig{}, err
	}
	id, err := c.Identity()
	if err != nil {
		return CoreConfig{}, err
	}
	integ, err := c.Integrations(nil)
	if err != nil {
		return CoreConfig{}, err
	}
	hb, el, _ := s.raftTimeouts() // checked by LoadConfig
	return CoreConfig{NodeID: s.NodeID, MeshAddr: s.MeshAddr, DataDir: filepath.Join(c.DataDir(), s.NodeID),
		Identity: id, Peers: s.Peers, Apps: reg, Integrations: integ, MetricsAddr: s.MetricsAddr,
		Limits: c.CoreLimits(), CommandVersion: s.CommandVersion, RaftHeartbeatTimeout: hb, RaftElectionTimeout: el,
		CompactionShare: s.CompactionShare, Region: uint8(s.Region), Shards: s.Shards, Remote: remote,
		ConfigApps: c.ConfigApps(), FollowCatalogApps: true}, nil
}

// RemoteRegionConfig is one [[core.remote_regions]] entry.
type RemoteRegionConfig struct {
	Number int      `toml:"number"`
	Cores  []string `toml:"cores"`
}

// MaxShards bounds the shards of a region: each is a raft group with its
// own Pebble on every core of the region.
const MaxShards = 256

// EdgeConfig builds the edge role's configuration.
func (c *Config) EdgeConfig() (EdgeConfig, error) {
	s := c.Edge
	if s.EdgeID == "" || s.Listen == "" || len(s.Cores) == 0 {
		return EdgeConfig{}, fmt.Errorf("%w: [edge] needs edge_id, listen and cores", ErrConfig)
	}
	reg, err := c.Registry()
	if err != nil {
		return EdgeConfig{}, err
	}
	id, err := c.Identity()
	if err != nil {
		return EdgeConfig{}, err
	}
	key, err := c.TokenKey()
	if err != nil {
		return EdgeConfig{}, err
	}
	mesh := s.MeshAddr
	if mesh == "" {
		mesh = ":0"
	}
	proxies, _ := edge.ParseTrustedProxies(s.TrustedProxies) // checked by LoadConfig
	routes, err := c.Routes(s.Region)
	if err != nil {
		return EdgeConfig{}, err
	}
	drain, _ := s.drainTimeout() // checked by LoadConfig
	var wt *edge.WTCert
	if s.WTCert != "" {
		if wt, err = edge.LoadWTCert(c.Path(s.WTCert), c.Path(s.WTKey)); err != nil {
			return EdgeConfig{}, fmt.Errorf("%w: edge.wt_cert: %v", ErrConfig, err)
		}
	}
	return EdgeConfig{EdgeID: s.EdgeID, HTTPAddr: s.Listen, MeshAddr: mesh, Identity: id, Cores: s.Cores,
		TokenKey: key, Apps: reg, PublicURLs: s.PublicURLs, Limits: c.Limits(), REST: c.RESTLimits(),
		TrustedProxies: proxies, Routes: routes, DrainTimeout: drain, WebTransport: wt, TLS: s.TLS, AdminAddr: s.AdminAddr,
		FollowCoreApps: true}, nil
}
