package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/apps"
	"github.com/relaymesh/relaymesh/edge"
	"github.com/relaymesh/relaymesh/hooks"
	"github.com/relaymesh/relaymesh/mesh"
	"github.com/relaymesh/relaymesh/proto/lcpb"
	"github.com/relaymesh/relaymesh/proto/meshpb"
	"github.com/relaymesh/relaymesh/rest"
)

// EdgeConfig configures one edge.
type EdgeConfig struct {
	EdgeID   string
	HTTPAddr string         // WebSocket, /v1/route, /healthz, REST API (/1.1/, /1.2/)
	MeshAddr string         // UDP host:port of the edge's mesh node ("127.0.0.1:0" is fine)
	Identity *mesh.Identity // mesh certificate
	Cores    []string       // mesh addresses of the region's cores
	TokenKey []byte         // session-token key shared by every edge of the cluster
	Apps     *apps.Registry
	// PublicURLs answer /v1/route; empty means ws://HTTPAddr/.
	PublicURLs []string
	Limits     edge.Limits
	// TrustedProxies are edge.Config.TrustedProxies.
	TrustedProxies []netip.Prefix
	// REST bounds the REST API (package rest); zero fields take its defaults.
	REST   rest.Limits
	Logger *slog.Logger
	// ExtraMetrics is edge.Config.ExtraMetrics: more series on /metrics
	// (StartDev passes the in-process core's).
	ExtraMetrics func(io.Writer) error
	// Hooks, when set, serves the REST API's login signatures for app
	// users (rest.Config.Users; issue 8).
	Hooks *hooks.Client
	// DropDelivery, when > 0, silently drops the DropDelivery-th direct
	// message delivery this edge receives. It is a test hook that breaks the delivery path on
	// purpose, so the load tester's ledger can be shown to catch a loss.
	DropDelivery int64
}

// Edge is a running edge.
type Edge struct {
	Server *edge.Server
	Node   *mesh.Node
	URL    string // ws:// URL clients use
	link   *coreLink
	http   *http.Server
	ln     net.Listener
	cancel context.CancelFunc
	wg     sync.WaitGroup

	dropAt     int64        // from EdgeConfig.DropDelivery
	deliveries atomic.Int64 // direct-message deliveries received, for dropAt
}

// StartEdge starts an edge: its mesh node, its delivery streams from every
// core and its HTTP listener.
func StartEdge(cfg EdgeConfig) (*Edge, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	log = log.With("edge", cfg.EdgeID)
	node, err := mesh.Listen(cfg.MeshAddr, cfg.Identity, log.With("part", "mesh"))
	if err != nil {
		return nil, fmt.Errorf("cluster: edge mesh: %w", err)
	}
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		node.Close()
		return nil, fmt.Errorf("cluster: edge listen: %w", err)
	}
	url := "ws://" + ln.Addr().String() + "/"
	pub := cfg.PublicURLs
	if len(pub) == 0 {
		pub = []string{url}
	}
	link := &coreLink{node: node, cores: cfg.Cores, log: log}
	if cfg.ExtraMetrics == nil && cfg.Hooks != nil {
		cfg.ExtraMetrics = cfg.Hooks.WriteText // the user-store and _rtmClientSign counters
	}
	srv := edge.New(edge.Config{
		EdgeID:       cfg.EdgeID,
		Backend:      link,
		Apps:         cfg.Apps,
		TokenKey:     cfg.TokenKey,
		Limits:       cfg.Limits,
		Ready:        link.ready,
		ExtraMetrics: cfg.ExtraMetrics,
		PublicURLs:   pub,
		Logger:       log.With("part", "edge"),

		TrustedProxies: cfg.TrustedProxies,
	})
	ln = srv.WrapListener(ln) // connections per IP (edge/guard.go)
	ctx, cancel := context.WithCancel(context.Background())
	e := &Edge{Server: srv, Node: node, URL: url, link: link, ln: ln, cancel: cancel, dropAt: cfg.DropDelivery}
	// One listener: the REST API under /1.1/ and /1.2/ (LeanCloud's paths,
	// whose master-key calls go to the shard leader through the same core
	// link as client commands), the edge's own routes and WebSocket
	// everywhere else.
	api := rest.New(rest.Config{
		Backend:     link,
		Apps:        cfg.Apps,
		VerifyToken: srv.VerifySessionToken,
		Limits:      cfg.REST,
		Logger:      log.With("part", "rest"),
		Users:       userStore(cfg.Hooks),
	})
	mux := http.NewServeMux()
	mux.Handle("/", srv.Handler())
	mux.Handle("/1.1/", api)
	mux.Handle("/1.2/", api)
	e.http = srv.HTTPServer(mux) // slowloris timeouts (edge/guard.go)
	for _, addr := range cfg.Cores {
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			e.deliveryLoop(ctx, addr, cfg.EdgeID, log)
		}()
	}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		if err := e.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http serve", "err", err)
		}
	}()
	return e, nil
}

// userStore is h as a rest.UserStore, nil (not a nil pointer) without hooks.
func userStore(h *hooks.Client) rest.UserStore {
	if h == nil {
		return nil
	}
	return h
}

// deliveryLoop keeps a delivery stream open to one core, reconnecting with
// backoff, and hands every Delivery to the edge server.
func (e *Edge) deliveryLoop(ctx context.Context, addr, edgeID string, log *slog.Logger) {
	hello, _ := proto.Marshal(&meshpb.EdgeHello{EdgeId: edgeID})
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		err := e.streamOnce(ctx, addr, hello)
		if ctx.Err() != nil {
			return
		}
		log.Debug("delivery stream ended", "core", addr, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 2*time.Second)
	}
}

func (e *Edge) streamOnce(ctx context.Context, addr string, hello []byte) error {
	s, err := e.Node.OpenStream(ctx, addr, MethodDeliveries)
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { s.Close() })
	defer stop()
	defer s.Close()
	if err := s.Send(hello); err != nil {
		return err
	}
	if err := e.link.attach(addr, s); err != nil {
		return err
	}
	defer e.link.detach(addr, s)
	for {
		b, err := s.Recv()
		if err != nil {
			return err
		}
		d := new(meshpb.Delivery)
		if err := proto.Unmarshal(b, d); err != nil {
			return fmt.Errorf("cluster: bad delivery: %w", err)
		}
		if e.dropAt > 0 && e.dropHook(d) {
			continue // test hook: lose this delivery on purpose
		}
		e.link.ended(d)
		e.Server.Deliver(d)
	}
}

// dropHook counts direct-message deliveries and reports whether this one is
// the one EdgeConfig.DropDelivery asks to lose.
func (e *Edge) dropHook(d *meshpb.Delivery) bool {
	cmd := new(lcpb.GenericCommand)
	if proto.Unmarshal(d.Command, cmd) != nil || cmd.GetCmd() != lcpb.CommandType_direct {
		return false
	}
	return e.deliveries.Add(1) == e.dropAt
}

// Close stops accepting clients, says goaway to them, and stops the links.
func (e *Edge) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := e.Server.Close()
	err = errors.Join(err, e.http.Shutdown(ctx))
	e.cancel()
	e.wg.Wait()
	return errors.Join(err, e.Node.Close())
}

// coreLink is the edge's edge.Backend: it sends each request to the shard
// leader among the region's cores, following not-leader answers.
type coreLink struct {
	node  *mesh.Node
	cores []string
	log   *slog.Logger

	mu       sync.Mutex
	leader   string                                 // guarded by mu; last core that answered as leader
	streams  map[string]*mesh.Stream                // guarded by mu; live delivery stream per core
	sessions map[sessionKey]*meshpb.PresenceSession // guarded by mu; logged-in sessions of this edge
}

type sessionKey struct {
	app, peer string
	conn      uint64
}

// ErrNoLeader is returned when no core answered as leader in time.
var ErrNoLeader = errors.New("cluster: no shard leader")

// attach registers the delivery stream to core addr and tells that core
// every session of this edge (Presence.replace_all). Holding mu while
// sending keeps the snapshot ordered before any later change.
func (l *coreLink) attach(addr string, s *mesh.Stream) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.streams == nil {
		l.streams = make(map[string]*mesh.Stream)
	}
	p := &meshpb.Presence{ReplaceAll: true}
	for _, ps := range l.sessions {
		p.Add = append(p.Add, ps)
	}
	b, err := proto.Marshal(p)
	if err != nil {
		return err
	}
	if err := s.Send(b); err != nil {
		return err
	}
	l.streams[addr] = s
	return nil
}

func (l *coreLink) detach(addr string, s *mesh.Stream) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.streams[addr] == s {
		delete(l.streams, addr)
	}
}

// track records a session that opened or ended and tells every core. A
// core whose stream is down gets the full list when it reconnects.
func (l *coreLink) track(ps *meshpb.PresenceSession, open bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.sessions == nil {
		l.sessions = make(map[sessionKey]*meshpb.PresenceSession)
	}
	k := sessionKey{ps.AppId, ps.PeerId, ps.ConnId}
	p := new(meshpb.Presence)
	if open {
		l.sessions[k] = ps
		p.Add = []*meshpb.PresenceSession{ps}
	} else {
		if _, ok := l.sessions[k]; !ok {
			return
		}
		delete(l.sessions, k)
		p.Remove = []*meshpb.PresenceSession{ps}
	}
	l.sendLocked(p)
}

// ended notices deliveries that end a session (tag kick): the core that
// sent it already forgot the session; the others must too.
func (l *coreLink) ended(d *meshpb.Delivery) {
	for _, t := range d.Targets {
		if t.EndSession {
			l.track(&meshpb.PresenceSession{AppId: d.AppId, PeerId: t.PeerId, ConnId: t.ConnId}, false)
		}
	}
}

// ready is true when the edge can reach a core that leads the shard.
func (l *coreLink) ready() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	b, _ := proto.Marshal(&meshpb.ClientRequest{Kind: meshpb.ClientRequest_PING})
	_, err := l.call(ctx, b)
	return err == nil
}

// Do implements edge.Backend.
func (l *coreLink) Do(ctx context.Context, req *meshpb.ClientRequest) (*meshpb.ClientReply, error) {
	b, err := proto.Marshal(req)
	if err != nil {
		return nil, err
	}
	rep, err := l.call(ctx, b)
	switch req.Kind {
	case meshpb.ClientRequest_OPEN:
		if err == nil && rep.ErrorCode == 0 {
			l.track(&meshpb.PresenceSession{AppId: req.AppId, PeerId: req.PeerId, ConnId: req.ConnId,
				Tag: req.Tag, ProtocolVersion: req.ProtocolVersion, Room: rep.Room}, true)
		}
	case meshpb.ClientRequest_CLOSE:
		l.track(&meshpb.PresenceSession{AppId: req.AppId, PeerId: req.PeerId, ConnId: req.ConnId}, false)
	case meshpb.ClientRequest_COMMAND:
		if err == nil && rep.RoomChanged {
			l.setRoom(sessionKey{req.AppId, req.PeerId, req.ConnId}, rep.Room)
		}
	}
	return rep, err
}

// setRoom records the chatroom the leader says session k is now in ("" for
// none) and tells every core, which mirror it (core/chatroom.go): a new
// leader then still fans out to the session.
func (l *coreLink) setRoom(k sessionKey, room string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	old := l.sessions[k]
	if old == nil {
		return // ended meanwhile
	}
	// A new message: the old one may sit in a Presence being marshalled.
	ps := proto.Clone(old).(*meshpb.PresenceSession)
	ps.Room = room
	l.sessions[k] = ps
	l.sendLocked(&meshpb.Presence{Add: []*meshpb.PresenceSession{ps}})
}

// sendLocked sends p to every core with a live stream; l.mu is held.
func (l *coreLink) sendLocked(p *meshpb.Presence) {
	b, err := proto.Marshal(p)
	if err != nil {
		return
	}
	for addr, s := range l.streams {
		if err := s.Send(b); err != nil {
			l.log.Debug("presence send failed; the core resyncs on reconnect", "core", addr, "err", err)
		}
	}
}

func (l *coreLink) call(ctx context.Context, b []byte) (*meshpb.ClientReply, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
	}
	l.mu.Lock()
	target := l.leader
	l.mu.Unlock()
	next := 0
	wait := 20 * time.Millisecond
	var lastErr error
	for attempt := 0; ; attempt++ {
		if target == "" {
			target = l.cores[next%len(l.cores)]
			next++
		}
		out, err := l.node.Call(ctx, target, MethodClient, b)
		if err == nil {
			rep := new(meshpb.ClientReply)
			if err := proto.Unmarshal(out, rep); err != nil {
				return nil, fmt.Errorf("cluster: bad reply from %s: %w", target, err)
			}
			if !rep.NotLeader {
				l.mu.Lock()
				l.leader = target
				l.mu.Unlock()
				return rep, nil
			}
			lastErr = ErrNoLeader
			target = rep.Leader // may be "" during an election
		} else {
			lastErr = err
			target = ""
		}
		if attempt >= len(l.cores) {
			select {
			case <-ctx.Done():
				return nil, fmt.Errorf("%w: %v", ErrNoLeader, lastErr)
			case <-time.After(wait):
			}
			wait = min(wait*2, 500*time.Millisecond)
		}
	}
}
