package loadtest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/relaymesh/relaymesh/client"
)

// Scenario names.
const (
	ScenarioConnect     = "connect"
	ScenarioPairs       = "pairs"
	ScenarioGroup       = "group"
	ScenarioReconnect   = "reconnect"
	ScenarioChatroom    = "chatroom"
	ScenarioCrossRegion = "cross-region"
)

// Scenarios describes every scenario, for --help.
var Scenarios = []struct{ Name, Help string }{
	{ScenarioConnect, "sessions log in at --connect-rate and stay idle for --duration; reports connect latency and, with /metrics RSS or --server-pid, server RSS per session"},
	{ScenarioPairs, "sessions/2 one-to-one conversations; both sides send, --rate in total, for --duration"},
	{ScenarioGroup, "conversations of up to --group-size members; --senders members per group send, --rate in total"},
	{ScenarioReconnect, "sessions (plus sessions/10 feeders that stay) connect; all drop at once, feeders send while they are away, then they come back; reports the time until every session has its unread state again"},
	{ScenarioChatroom, "sessions join --rooms chatrooms (created once by the coordinator); --senders per room send at --rate in total with priorities drawn from --priority-mix; reports per priority delivered/expected, shedding, delivery latency and the edge's dropped frames; a lost HIGH copy fails the run; --slow-readers makes a share of the members read slowly so the edge's per-connection queues shed, reported per priority for slow and normal readers"},
	{ScenarioCrossRegion, "needs --topology: sessions/2 one-to-one conversations whose two members log in at edges of different regions (region i pairs with i+1); both send, --rate in total; reports latency percentiles per region pair and checks the ledger. (a one-region topology pairs inside it, labelled r→r)"},
}

// ErrNotAvailable is returned for scenarios the server cannot run yet
// (none today).
var ErrNotAvailable = errors.New("loadtest: scenario not available yet")

// Config is one load test run.
type Config struct {
	Targets []string // edge WebSocket URLs; sessions spread round-robin
	// Fallbacks are edges no session starts on but every session goes to
	// when its own edges are lost, after the other Targets (a reconnect
	// storm onto a standby edge).
	Fallbacks   []string
	Regions     []Region      // the topology's regions (--topology); cross-region needs them
	Scenario    string        // one of the Scenario* names
	Sessions    int           // client sessions in total
	Rate        float64       // messages per second in total (pairs, group)
	Duration    time.Duration // how long the scenario sends (or idles)
	MaxMessages int           // cap on messages sent in total, 0 = rate·duration·1.1
	AppID       string
	ConnectRate float64 // session logins per second in total, 0 = unlimited
	Concurrency int     // logins in flight per worker, default 200
	GroupSize   int     // group: members per conversation, default 500
	Senders     int     // group: senders per conversation, default 1
	SourceIPs   []netip.Addr
	Drain       time.Duration // wait for stragglers after sending stopped, default 5 s
	ServerPID   int           // read VmRSS of this pid when /metrics has no RSS
	Workers     int           // worker processes, 0/1 = in this process
	// WorkerCommand is the argv to start a worker (the hidden --worker flag
	// and the worker's index are appended); default: this executable with
	// the same flags.
	WorkerCommand []string
	RunID         string        // prefix of client ids, default from the clock
	Progress      time.Duration // progress line interval, default 3 s; <0 off
	// AckInterval is each session's client.Options.AckInterval: 0 keeps
	// the SDK's default (1 s, as the JS SDK throttles its acks of received
	// messages); <0 acks whenever the client's writer is idle, about one
	// ack a message.
	AckInterval time.Duration

	// Chatroom scenario.
	Rooms       int         // chatrooms, default 1; session g joins room g mod Rooms
	PriorityMix PriorityMix // share of HIGH/NORMAL/LOW sends, default all NORMAL
	// SlowReaders is the share of members (0 ≤ f < 1) that read slowly:
	// they pause SlowReadDelay after each push (client.Options.ReadDelay)
	// and their sockets have a small receive buffer, so the edge's queue
	// for their connection fills and it sheds. They never send.
	SlowReaders   float64
	SlowReadDelay time.Duration // default 10 ms when SlowReaders > 0
	// PayloadBytes pads each chatroom message's text to about this many
	// bytes (0: no padding, ~50 bytes), so fewer frames fill a socket
	// buffer.
	PayloadBytes int
	// ChatRoomIDs are the rooms' conversation ids: created by Run before
	// the workers start and handed to them (hidden --chatroom-ids).
	ChatRoomIDs []string
	// Gate, when set, holds a worker after its setup until a line can be
	// read from it: the coordinator releases every worker at once, so all
	// rooms are full before anyone sends (worker processes: stdin).
	Gate io.Reader `json:"-"`

	// Fault, when set, is called once FaultAfter into the sending (e.g.
	// KillPID: kill -9 a server process); the summary then settles the
	// sends relative to that instant (Summary.Fault). Only with one
	// worker process: the ledger that times it lives in that process.
	Fault      func() error  `json:"-"`
	FaultAfter time.Duration `json:"-"`

	// ViaRouter (cross-region): each session also asks its region's router
	// (Region.Router, GET /v1/route: server and secondary) and knows only
	// its own region's edges besides, so when every edge of its region is
	// gone it reaches another region only through the router's
	// secondary, as an official SDK would.
	ViaRouter bool
	// Transport is the sessions' transport: "" or "websocket" (default),
	// or "webtransport" (client.Options.Transport; the targets stay
	// ws:// URLs, the WebTransport URL is derived from each). With
	// webtransport, --source-ips and the slow readers' small receive
	// buffers do not apply (one UDP socket per session).
	Transport string
	// Loss is the share of datagrams each session drops on its own QUIC
	// socket, in [0, 1), both ways: a netem.Conn under quic-go drops
	// written ones, a wrapper drops read ones.
	// WebTransport only: TCP's packets cannot be dropped in userspace
	// (docs/BENCHMARKS.md).
	Loss float64

	// Peer is the server the sessions speak to: "" or "relaymesh"
	// (default), or "centrifugo" (centrifugo.go: its JSON client protocol
	// over WebSocket, targets like ws://HOST:PORT/connection/websocket;
	// chatroom messages published through its HTTP API). Centrifugo runs
	// the connect and chatroom scenarios.
	Peer string
	// CentrifugoAPI is the server API's base URL (default
	// http://HOST:PORT/api of the first target), CentrifugoAPIKey its
	// X-API-Key; CentrifugoSecret signs each session's HS256 connection
	// token (sub = the session's id); empty: no token (the server's
	// client.insecure mode).
	CentrifugoAPI    string
	CentrifugoAPIKey string `json:"-"`
	CentrifugoSecret string `json:"-"`

	// FinalSync: after the drain every open session reads the history of
	// its conversations and records what it finds as sync copies
	// (finalsync.go), so Lost counts only acked messages that are nowhere.
	FinalSync bool
}

// Defaults fills in zero values.
func (c *Config) Defaults() {
	if len(c.Targets) == 0 {
		for _, r := range c.Regions {
			c.Targets = append(c.Targets, r.Edges...)
		}
	}
	if c.AppID == "" {
		c.AppID = "loadtest"
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 200
	}
	if c.GroupSize <= 0 {
		c.GroupSize = 500
	}
	if c.Senders <= 0 {
		c.Senders = 1
	}
	if c.Drain <= 0 {
		c.Drain = 5 * time.Second
	}
	if c.Duration <= 0 {
		c.Duration = 10 * time.Second
	}
	if c.MaxMessages <= 0 {
		c.MaxMessages = int(c.Rate*c.Duration.Seconds()*1.1) + 10
	}
	if c.RunID == "" {
		c.RunID = fmt.Sprintf("%x", time.Now().UnixNano()/1e6)
	}
	if c.Progress == 0 {
		c.Progress = 3 * time.Second
	}
	if c.Rooms <= 0 {
		c.Rooms = 1
	}
	if c.PriorityMix == (PriorityMix{}) {
		c.PriorityMix = PriorityMix{0, 1, 0}
	}
	if c.Peer == PeerCentrifugo && c.CentrifugoAPI == "" && len(c.Targets) > 0 {
		c.CentrifugoAPI = cfDefaultAPI(c.Targets[0])
	}
	if c.SlowReaders > 0 && c.SlowReadDelay <= 0 {
		c.SlowReadDelay = 10 * time.Millisecond
	}
}

// Validate reports the first problem with c.
func (c *Config) Validate() error {
	switch c.Scenario {
	case ScenarioConnect, ScenarioPairs, ScenarioGroup, ScenarioReconnect, ScenarioChatroom:
	case ScenarioCrossRegion:
		if len(c.Regions) == 0 {
			return errors.New("loadtest: cross-region needs --topology (regions and their edges)")
		}
		for _, r := range c.Regions {
			if r.Name == "" || len(r.Edges) == 0 {
				return fmt.Errorf("loadtest: topology region %q has no name or no edges", r.Name)
			}
		}
		if c.Sessions < 2 {
			return errors.New("loadtest: cross-region needs at least 2 sessions")
		}
		for _, r := range c.Regions {
			if c.ViaRouter && r.Router == "" {
				return fmt.Errorf("loadtest: via the router: topology region %q has no router", r.Name)
			}
		}
	case "":
		return errors.New("loadtest: --scenario is required")
	default:
		return fmt.Errorf("loadtest: unknown scenario %q", c.Scenario)
	}
	if len(c.Targets) == 0 {
		return errors.New("loadtest: no target: give --target or --topology")
	}
	for _, t := range slices.Concat(c.Targets, c.Fallbacks) {
		u, err := url.Parse(t)
		if err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
			return fmt.Errorf("loadtest: target %q is not a ws:// or wss:// URL", t)
		}
	}
	if c.Sessions < 1 {
		return errors.New("loadtest: --sessions must be at least 1")
	}
	if (c.Scenario == ScenarioPairs) && c.Sessions < 2 {
		return errors.New("loadtest: pairs needs at least 2 sessions")
	}
	if c.Scenario == ScenarioGroup && c.GroupSize < 2 {
		return errors.New("loadtest: --group-size must be at least 2")
	}
	if c.Scenario == ScenarioChatroom {
		if c.Rooms < 0 || c.Rooms > c.Sessions {
			return errors.New("loadtest: --rooms must be between 1 and --sessions")
		}
		if len(c.ChatRoomIDs) > 0 && len(c.ChatRoomIDs) != max(c.Rooms, 1) {
			return fmt.Errorf("loadtest: %d chatroom ids for %d rooms", len(c.ChatRoomIDs), max(c.Rooms, 1))
		}
	}
	if !(c.SlowReaders >= 0 && c.SlowReaders < 1) || c.SlowReadDelay < 0 {
		return errors.New("loadtest: --slow-readers must be in [0, 1) and --slow-read-delay not negative")
	}
	if c.SlowReaders > 0 && c.Scenario != ScenarioChatroom {
		return errors.New("loadtest: --slow-readers needs the chatroom scenario")
	}
	if c.PayloadBytes < 0 || c.PayloadBytes > maxPayloadBytes {
		return fmt.Errorf("loadtest: --payload-bytes must be between 0 and %d", maxPayloadBytes)
	}
	if c.Rate < 0 || c.ConnectRate < 0 {
		return errors.New("loadtest: rates must not be negative")
	}
	if c.Duration > 24*time.Hour {
		return errors.New("loadtest: --duration is capped at 24h")
	}
	if c.Fault != nil && c.Workers > 1 {
		return errors.New("loadtest: a fault (--kill-pid) needs --workers 1")
	}
	if c.FaultAfter < 0 {
		return errors.New("loadtest: --kill-after must not be negative")
	}
	switch c.Peer {
	case "", PeerRelaymesh:
	case PeerCentrifugo:
		if c.Scenario != ScenarioConnect && c.Scenario != ScenarioChatroom {
			return fmt.Errorf("loadtest: --peer centrifugo runs the connect and chatroom scenarios, not %s", c.Scenario)
		}
		if (c.Transport != "" && c.Transport != TransportWebSocket) || c.SlowReaders > 0 || c.Fault != nil || c.FinalSync {
			return errors.New("loadtest: --peer centrifugo: WebSocket only, without slow readers, faults or final sync")
		}
		if c.Scenario == ScenarioChatroom {
			api := c.CentrifugoAPI
			if api == "" && len(c.Targets) > 0 {
				api = cfDefaultAPI(c.Targets[0])
			}
			if u, err := url.Parse(api); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return fmt.Errorf("loadtest: --centrifugo-api %q is not an http(s) URL", c.CentrifugoAPI)
			}
		}
	default:
		return fmt.Errorf("loadtest: --peer %q: want relaymesh or centrifugo", c.Peer)
	}
	switch c.Transport {
	case "", TransportWebSocket, TransportWebTransport:
	default:
		return fmt.Errorf("loadtest: --transport %q: want websocket or webtransport", c.Transport)
	}
	if !(c.Loss >= 0 && c.Loss < 1) {
		return errors.New("loadtest: --loss must be in [0, 1)")
	}
	if c.Loss > 0 && c.Transport != TransportWebTransport {
		return errors.New("loadtest: --loss needs --transport webtransport (TCP packets cannot be dropped in userspace; docs/BENCHMARKS.md)")
	}
	return nil
}

// Transports (Config.Transport).
const (
	TransportWebSocket    = client.TransportWebSocket
	TransportWebTransport = client.TransportWebTransport
)

// Topology is the --topology file: regions, their edges and router
// (what `relaymesh lab` writes to DIR/topology.json).
//
//	{"regions": [{"name": "sh", "edges": ["ws://10.0.0.1:8080/"], "router": "http://10.0.0.1:8080"}]}
type Topology struct {
	Regions []Region `json:"regions"`
}

// Region is one region of a topology.
type Region struct {
	Name   string   `json:"name"`
	Edges  []string `json:"edges"`
	Router string   `json:"router,omitempty"`
}

// ReadTopology reads a topology file.
func ReadTopology(path string) (*Topology, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("loadtest: topology: %w", err)
	}
	var t Topology
	if err := json.Unmarshal(b, &t); err != nil {
		return nil, fmt.Errorf("loadtest: topology %s: %w", path, err)
	}
	n := 0
	for _, r := range t.Regions {
		n += len(r.Edges)
	}
	if n == 0 {
		return nil, fmt.Errorf("loadtest: topology %s lists no edges", path)
	}
	return &t, nil
}

// LoadTopology reads a topology file and returns every edge URL.
func LoadTopology(path string) ([]string, error) {
	t, err := ReadTopology(path)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, r := range t.Regions {
		out = append(out, r.Edges...)
	}
	return out, nil
}

// ParseSourceIPs parses "127.0.0.1-127.0.0.8" or "10.0.0.1,10.0.0.2" (or a
// mix) into addresses.
func ParseSourceIPs(s string) ([]netip.Addr, error) {
	var out []netip.Addr
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := netip.ParseAddr(strings.TrimSpace(lo))
		if err != nil {
			return nil, fmt.Errorf("loadtest: source ip %q: %w", part, err)
		}
		if !isRange {
			out = append(out, a)
			continue
		}
		b, err := netip.ParseAddr(strings.TrimSpace(hi))
		if err != nil {
			return nil, fmt.Errorf("loadtest: source ip %q: %w", part, err)
		}
		if b.Less(a) || a.Is4() != b.Is4() {
			return nil, fmt.Errorf("loadtest: source ip range %q is empty", part)
		}
		for x := a; ; x = x.Next() {
			out = append(out, x)
			if x == b || len(out) > 1<<16 {
				break
			}
		}
	}
	if len(out) == 0 {
		return nil, errors.New("loadtest: --source-ips is empty")
	}
	return out, nil
}
