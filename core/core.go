package core

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/cockroachdb/pebble"
	"google.golang.org/protobuf/proto"

	"github.com/relaymesh/relaymesh/apps"

	"github.com/relaymesh/relaymesh/catalog"
	"github.com/relaymesh/relaymesh/core/query"
	"github.com/relaymesh/relaymesh/core/shard"
	"github.com/relaymesh/relaymesh/hooks"
	"github.com/relaymesh/relaymesh/moderation"
	"github.com/relaymesh/relaymesh/proto/lcpb"
	"github.com/relaymesh/relaymesh/proto/meshpb"
	"github.com/relaymesh/relaymesh/push"
	"github.com/relaymesh/relaymesh/raftstore"
	"github.com/relaymesh/relaymesh/relay"
)

// Replica is the shard replica the core proposes to and reads from;
// *raftstore.Node satisfies it.
type Replica interface {
	Propose(ctx context.Context, cmd []byte) (any, error)
	State() *pebble.DB
	IsLeader() bool
}

// NewStateMachine returns the shard FSM for raftstore.Config.SM.
func NewStateMachine() *shard.FSM { return shard.New() }

// Config configures a Core.
type Config struct {
	Replica Replica
	Apps    *apps.Registry
	Logger  *slog.Logger
	Now     func() time.Time
	// Words is the sensitive-word filter (filter.go); nil means the
	// shipped default list for every app.
	Words *moderation.Registry
	// Hooks calls the apps' IM hooks (hooks.go); nil calls none.
	Hooks *hooks.Client
	// Push configures offline push (offline.go); a nil Provider is off.
	Push PushConfig
	// Limits bounds conversations and logins (limits.go); zero fields
	// take the defaults.
	Limits Limits
	// SysWebhook configures the service-conversation webhook
	// (sysconv.go); without Apps it is off. The core owns the sender.
	SysWebhook hooks.SysConfig
	// CommandVersion is the shard command version this core proposes
	// (shard.Version when 0). During a rolling upgrade it stays at the
	// version the oldest replica applies (docs/OPERATIONS.md); a replica
	// given a newer one stops rather than apply it differently.
	CommandVersion int
	// LeaderTerm returns the replica's current raft term; with it, sends
	// on a new leader wait (at most replayWait) for its fan-out replay,
	// so a replayed message reaches its recipients before newer ones
	// (fanout.go). Nil: no wait.
	LeaderTerm func() uint64
	// Catalog, when set, is the node's catalog: unique conversations are
	// claimed in its unique index (unique.go). Nil: a shard's own
	// unique index only.
	Catalog *catalog.Store
	// Home is the region and shard of the replica: new conversations get
	// ids that name it (catalog.NewConvID). Zero: catalog.LegacyShard.
	Home catalog.ConvID
	// Relay, when set, is the node's relay, shared by the cores of every
	// shard the node hosts (router.go); the core does not close it. Nil:
	// the core makes and owns its own.
	Relay *relay.Relay
	// Remote, when set, is the node's link to the other regions
	// (regions.go): pushes fanned out here go to them too. Nil: none.
	Remote *Regions
	// System, when set, is the core of the region's system shard
	// (router.go), which holds the device registry: offline pushes of
	// this core find the receivers' devices there. Nil: this core.
	System *Core
	// HaltBeforeFanout is a TEST HOOK (failover.go): a message whose
	// content contains it is committed and then held, never acked nor
	// fanned out, until Close, so a test can kill the leader right there.
	HaltBeforeFanout string
}

// Core serves client requests for the conversations of one shard and relays
// pushes to the edges of its region.
type Core struct {
	replica Replica
	apps    *apps.Registry
	log     *slog.Logger
	now     func() time.Time
	stats   Stats
	limits  Limits // limits.go, defaults filled in; read-only after New
	cmdVer  int    // shard command version proposed (Config.CommandVersion)

	// relay holds sessions, chatroom membership and the edges' queues
	// (relay.go); closed by Close.
	relay     *relay.Relay
	ownsRelay bool            // relay was made by New (Config.Relay nil)
	home      catalog.ConvID  // Config.Home; read-only
	catalog   *catalog.Store  // Config.Catalog; nil: none
	uniq      uniqueStats     // unique.go
	remote    *Regions        // Config.Remote; nil: one region
	devSync   deviceSyncStats // devicesync.go

	locks   convLocks
	sends   sendQueues    // sendgroup.go
	queries *query.Meter  // conv/query's budget per app (query.go)
	cursors cursorBatcher // cursors.go
	fanouts fanoutTracker // fanout.go
	quit    chan struct{} // closed by Close
	fsm     *shard.FSM    // the replica's state machine, for its cache; may be nil

	// Filter, hooks and offline push (filter.go, hooks.go, offline.go);
	// read-only after New except the counters.
	words         *moderation.Registry
	apiWords      apiWords      // words.go
	hooks         *hooks.Client // nil: no hooks
	pushProvider  push.Provider
	pushQ         *push.Queue // nil: no offline push; closed by Close
	pushTemplates map[string]string
	after         afterSend // _messageSent and offline push workers
	xstats        integrationCounters

	sysHook *hooks.SysWebhook // service webhook (sysconv.go); nil: none; closed by Close

	notify     notifyQueue   // notification hooks (notifyhooks.go); closed by Close
	notifs     notifBatcher  // stored notifications (notif.go)
	missed     missedLog     // events just missed, for a login in another region (missed.go)
	haltMarker string        // Config.HaltBeforeFanout; read-only
	leaderTerm func() uint64 // Config.LeaderTerm; read-only

	wg sync.WaitGroup // the core's goroutines (fanout.go, cursors.go, notif.go)

	mu     sync.Mutex
	closed bool // guarded by mu
	// seenInFlight counts login seen records proposed in the
	// background (sysconv.go): queued in seenQueue or being proposed by
	// the seen loop, which runs while seenRunning. All guarded by mu.
	seenInFlight int
	seenQueue    []*shard.Command
	seenRunning  bool
}

// New returns a core over cfg.Replica.
func New(cfg Config) *Core {
	c := &Core{
		replica: cfg.Replica,
		apps:    cfg.Apps,
		log:     cfg.Logger,
		now:     cfg.Now,
		quit:    make(chan struct{}),
		limits:  cfg.Limits.withDefaults(),
		cmdVer:  cfg.CommandVersion,

		haltMarker: cfg.HaltBeforeFanout,
		leaderTerm: cfg.LeaderTerm,
	}
	if c.cmdVer <= 0 || c.cmdVer > shard.Version {
		c.cmdVer = shard.Version
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.now == nil {
		c.now = time.Now
	}
	c.catalog = cfg.Catalog
	c.home = cfg.Home
	if c.home.Region == 0 {
		c.home = catalog.ConvID(catalog.LegacyShard)
	}
	c.remote = cfg.Remote
	c.relay = cfg.Relay
	if c.relay == nil {
		c.relay, c.ownsRelay = relay.New(relay.Config{Logger: c.log, Now: c.now}), true
	}
	if c.apps == nil {
		c.apps = apps.NewDev()
	}
	c.locks.m = make(map[string]*convLock)
	c.sends.m = make(map[string]*sendQueue)
	c.queries = query.NewMeter(float64(c.limits.QueryScanPerSecond), 2*float64(c.limits.MaxQueryScan))
	c.fanouts.init()
	c.wg.Add(1)
	go c.flushFanoutDone() // fanout.go
	if p, ok := cfg.Replica.(interface{ StateMachine() raftstore.StateMachine }); ok {
		c.fsm, _ = p.StateMachine().(*shard.FSM)
	}
	c.words, c.hooks = cfg.Words, cfg.Hooks
	if c.words == nil {
		c.words = moderation.NewRegistry(nil)
	}
	if cfg.Push.Provider != nil {
		qc := cfg.Push.Queue
		if qc.Logger == nil {
			qc.Logger = c.log
		}
		c.pushProvider, c.pushTemplates = cfg.Push.Provider, cfg.Push.Templates
		dev := cfg.System
		if dev == nil {
			dev = c
		}
		c.pushQ = push.NewQueue(withDevices{dev, cfg.Push.Provider}, qc) // devices.go
	}
	if c.hooks != nil || c.pushQ != nil {
		c.after.start(c, afterSendWorkers, afterSendQueue)
	}
	if c.hooks != nil {
		c.notify.start(notifyWorkers, notifyQueueLen)
	}
	if len(cfg.SysWebhook.Apps) > 0 {
		sc := cfg.SysWebhook
		if sc.Logger == nil {
			sc.Logger = c.log
		}
		c.sysHook = hooks.NewSysWebhook(sc)
	}
	return c
}

// Stats returns the core's fan-out counters; the relay's are
// Relay().Stats().
func (c *Core) Stats() *Stats { return &c.stats }

// Ready reports whether the core serves requests: open and leading.
func (c *Core) Ready() bool {
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	return !closed && c.replica != nil && c.replica.IsLeader()
}

// Close stops the relay's edge goroutines and the core's own, and waits
// for them.
func (c *Core) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	close(c.quit)
	c.mu.Unlock()
	if c.ownsRelay {
		c.relay.Close()
	}
	c.wg.Wait()
	c.after.close()
	c.notify.close()
	if c.pushQ != nil {
		c.pushQ.Close()
		if p, ok := c.pushProvider.(interface{ Close() }); ok {
			p.Close() // the device providers' own queues (devices.go)
		}
	}
	if c.sysHook != nil {
		c.sysHook.Close()
	}
	return nil
}

func (c *Core) nowMS() int64 { return c.now().UnixMilli() }

func (c *Core) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// request is one decoded client command and who sent it.
type request struct {
	app, peer string
	ip        string // the client's address (ClientRequest.source_ip), for hooks
	from      connKey
	version   int32
	config    int64 // the session's configBitmap
	cmd       *lcpb.GenericCommand
	// idemKey is the edge's key for this request (failover.go).
	idemKey string
	// part: one shard's part of a request the router split
	// (ClientRequest.shard_part, router.go).
	part bool
	// examined: the conversations a conv/query examined, returned to the
	// router with a part's reply (ClientReply.query_examined).
	examined int

	// The session's chatroom changed to room ("" for none); HandleClient
	// tells the edge (ClientReply.room, chatroom.go).
	roomSet bool
	room    string
	// remoteRoom: the session is another region's, and inRoom is its
	// chatroom as its region's relay knows it (ClientRequest.session_room).
	remoteRoom bool
	inRoom     string
}

// setRoom records that r's session is now in chatroom cid ("" for none).
func (r *request) setRoom(cid string) {
	r.roomSet, r.room = true, cid
}

// Session configBitmap bits the core acts on (PROTOCOL.md §3).
const (
	configGroupReceipt = 1 << 6 // receipts in conversations of more than two
)

// reply builds a reply to r: same cmd, i echoed by presence, peerId set.
func (r *request) reply(cmd lcpb.CommandType, op *lcpb.OpType) *lcpb.GenericCommand {
	g := &lcpb.GenericCommand{Cmd: cmd.Enum(), PeerId: proto.String(r.peer)}
	if op != nil {
		g.Op = op.Enum()
	}
	if r.cmd != nil && r.cmd.I != nil {
		g.I = proto.Int32(r.cmd.GetI())
	}
	return g
}

// errorReply builds cmd:error for err.
func (r *request) errorReply(err error) *lcpb.GenericCommand {
	var i *int32
	if r.cmd != nil {
		i = r.cmd.I
	}
	g := lcpb.NewError(i, r.peer, codeFor(err), err.Error())
	if ae, ok := asAppError(err); ok { // refused by the app's hook
		if ae.appCode != 0 {
			g.ErrorMessage.AppCode = proto.Int32(ae.appCode)
		}
		if ae.detail != "" {
			g.ErrorMessage.AppMsg = proto.String(ae.detail)
		}
	}
	return g
}

// HandleClient serves one request from an edge. Failures the client should
// see are returned as cmd:error replies; the error result is reserved for
// requests the core cannot take at all (closed) or could not finish
// because it lost the shard's lead (ErrNotLeader: the outcome of a
// proposal in flight is then unknown until the next leader commits or
// drops it).
func (c *Core) HandleClient(ctx context.Context, req *meshpb.ClientRequest) (*meshpb.ClientReply, error) {
	if c.isClosed() {
		return nil, ErrClosed
	}
	if k := req.GetKind(); k != meshpb.ClientRequest_PING && c.replica != nil && c.replica.IsLeader() {
		// A new leader answers nothing before it has applied every entry of
		// the terms before (raft's barrier, fanout.go): until then its state
		// may lack committed messages, members, cursors or notifications.
		c.awaitReplay(ctx)
	}
	switch req.GetKind() {
	case meshpb.ClientRequest_OPEN:
		if c.replica == nil || !c.replica.IsLeader() {
			return nil, ErrNotLeader // the edge sends it to the leader (a login, not a refusal)
		}
		return c.open(ctx, req), nil
	case meshpb.ClientRequest_CLOSE:
		c.closeSession(ctx, req)
		return &meshpb.ClientReply{}, nil
	case meshpb.ClientRequest_ADMIN:
		return c.admin(ctx, req) // admin.go
	}
	if len(req.GetMoreCommands()) > 0 && req.GetKind() == meshpb.ClientRequest_COMMAND {
		return c.commandRun(ctx, req) // batch.go
	}
	r := newRequest(req)
	cmd := new(lcpb.GenericCommand)
	if err := proto.Unmarshal(req.GetCommand(), cmd); err != nil {
		return encodeReply(r.errorReply(fmt.Errorf("%w: %v", errMalformed, err))), nil
	}
	r.cmd = cmd
	out, err := c.command(ctx, r)
	if err != nil {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return nil, err
		}
		if errors.Is(err, ErrNotLeader) {
			// The lead was lost, maybe during a proposal that may still
			// commit under the next leader: not the client's error. The
			// edge sends a retry-safe request there (edge/corelink).
			return nil, err
		}
		out = r.errorReply(err)
	}
	rep := &meshpb.ClientReply{}
	if out != nil {
		rep = encodeReply(out)
	}
	if r.roomSet {
		rep.Room, rep.RoomChanged = r.room, true
	}
	if r.part {
		rep.QueryExamined = int64(r.examined)
	}
	return rep, nil
}

// newRequest is the request of req's command, cmd not decoded yet.
func newRequest(req *meshpb.ClientRequest) *request {
	r := &request{app: req.GetAppId(), peer: req.GetPeerId(), from: connKey{Edge: req.GetEdgeId(), Conn: req.GetConnId()}, version: req.GetProtocolVersion(),
		config: req.GetConfigBitmap(), ip: req.GetSourceIp(), idemKey: req.GetIdempotencyKey(), part: req.GetShardPart()}
	if req.SessionRoom != nil {
		r.remoteRoom, r.inRoom = true, req.GetSessionRoom()
	}
	return r
}

func encodeReply(cmds ...*lcpb.GenericCommand) *meshpb.ClientReply {
	rep := &meshpb.ClientReply{}
	for _, g := range cmds {
		b, err := proto.Marshal(g)
		if err != nil {
			continue
		}
		rep.Commands = append(rep.Commands, b)
	}
	return rep
}

// commandCheck is what every command of a session passes first: a served
// app, a session, a cmd, this core leading, the input's bounds.
func (c *Core) commandCheck(r *request) error {
	if _, err := c.apps.Lookup(r.app); err != nil {
		return fmt.Errorf("%w: %q", errUnknownApp, r.app)
	}
	if r.peer == "" {
		return fmt.Errorf("%w: no session", errMalformed)
	}
	if r.cmd.Cmd == nil {
		return fmt.Errorf("%w: no cmd", errMalformed)
	}
	if c.replica == nil || !c.replica.IsLeader() {
		return ErrNotLeader
	}
	if err := c.checkTempExpired(r); err != nil { // tempconv.go
		return err
	}
	return checkInput(r) // validate.go
}

// command dispatches a client command; a nil reply means none (ack, read).
func (c *Core) command(ctx context.Context, r *request) (*lcpb.GenericCommand, error) {
	if err := c.commandCheck(r); err != nil {
		return nil, err
	}
	op := r.cmd.GetOp()
	switch r.cmd.GetCmd() {
	case lcpb.CommandType_direct, lcpb.CommandType_ack, lcpb.CommandType_read:
	default:
		// What the client asks after an ack or read sees it (cursors.go).
		c.awaitPeerCursors(ctx, r.app, r.peer)
	}
	switch r.cmd.GetCmd() {
	case lcpb.CommandType_direct:
		return c.direct(ctx, r)
	case lcpb.CommandType_ack:
		c.ack(ctx, r)
		return nil, nil
	case lcpb.CommandType_read:
		c.read(ctx, r)
		return nil, nil
	case lcpb.CommandType_logs:
		return c.logs(r)
	case lcpb.CommandType_echo:
		return r.reply(lcpb.CommandType_echo, nil), nil
	case lcpb.CommandType_patch:
		if op == lcpb.OpType_modify {
			return c.patch(ctx, r)
		}
	case lcpb.CommandType_session:
		switch op {
		case lcpb.OpType_query:
			return c.sessionQuery(r), nil
		case lcpb.OpType_close:
			gone := c.relay.CloseSession(r.app, r.peer, r.from)
			c.hookClientOffline(gone, offline{code: hooks.CloseLogout, msg: "logout"}) // notifyhooks.go
			c.endWills(ctx, r.app, r.peer, r.from, false)
			return r.reply(lcpb.CommandType_session, lcpb.OpType_closed.Enum()), nil
		}
	case lcpb.CommandType_conv:
		return c.conv(ctx, r)
	case lcpb.CommandType_blacklist:
		return c.blacklist(ctx, r)
	case lcpb.CommandType_report:
		return c.report(ctx, r) // devices.go
	}
	return nil, fmt.Errorf("%w: %v/%v", errUnsupported, r.cmd.GetCmd(), op)
}

// quitCtx returns a context that ends after d or when the core closes:
// for what the core proposes in the background on its own behalf, which
// Close must not wait out.
func (c *Core) quitCtx(d time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	go func() {
		select {
		case <-c.quit:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// propose runs one shard command through the replica and returns its result.
func (c *Core) propose(ctx context.Context, cmd *shard.Command) (*shard.Result, error) {
	cmd.Admin = cmd.Admin || isAdmin(ctx)     // server API (admin.go)
	if err := checkCommand(cmd); err != nil { // validate.go
		return nil, err
	}
	if cmd.Op == shard.OpStart || cmd.Op == shard.OpAdd {
		cmd.MaxMembers = c.limits.MaxMembers // limits.go
	}
	cmd.V = c.cmdVer
	if need := shard.NeedsVersion(cmd); cmd.V != 0 && cmd.V < need {
		return nil, fmt.Errorf("%w: %s needs version %d, this core proposes %d", shard.ErrVersionTooOld, cmd.Op, need, cmd.V)
	}
	settle := c.carryFanoutDone(cmd) // fanout.go
	b, err := cmd.EncodeBinary()     // JSON below Version5
	if err != nil {
		settle(err)
		return nil, fmt.Errorf("%w: %v", errInternal, err)
	}
	v, err := c.replica.Propose(ctx, b)
	settle(err)
	if err != nil {
		// The state machine refused the command (raftstore returns an
		// error value from Apply as the error): pass its code on.
		if se := (*shard.Error)(nil); errors.As(err, &se) {
			return nil, se
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if errors.Is(err, raftstore.ErrReplicaFailed) {
			// This replica stopped (a storage failure); the command is
			// in the raft log and the others apply it: outcome unknown.
			return nil, fmt.Errorf("%w: propose %s: %v", errInternal, cmd.Op, err)
		}
		// Not the leader any more, or handing the lead over (a core
		// stopping, `relaymesh admin shard transfer-leader`: raft refuses
		// proposals during a leadership transfer while the replica still
		// leads): a not-leader, which the edge retries on the next leader.
		if errors.Is(err, raftstore.ErrNotLeader) || !c.replica.IsLeader() {
			return nil, fmt.Errorf("%w: %v", ErrNotLeader, err)
		}
		return nil, fmt.Errorf("%w: propose %s: %v", errInternal, cmd.Op, err)
	}
	switch v := v.(type) {
	case *shard.Result:
		return v, nil
	case error:
		return nil, v
	}
	return nil, fmt.Errorf("%w: unexpected apply result %T", errInternal, v)
}

// state is the applied state to read from.
func (c *Core) state() shard.Reader { return c.replica.State() }

// convView returns the conversation as of the last applied command, from
// the state machine's cache when it has it (it may be ahead of state() by
// the batch being committed, never by uncommitted entries). The result is
// shared: read it, never modify it.
func (c *Core) convView(app, cid string) (*shard.Conv, error) {
	if c.fsm != nil {
		return c.fsm.Conv(c.state(), app, cid)
	}
	return shard.GetConv(c.state(), app, cid)
}

// convLocks serialises sends per conversation (see package doc).
type convLocks struct {
	mu sync.Mutex
	m  map[string]*convLock // guarded by mu
}

type convLock struct {
	sync.Mutex
	refs int // guarded by convLocks.mu
}

func (l *convLocks) lock(key string) func() {
	l.mu.Lock()
	cl := l.m[key]
	if cl == nil {
		cl = &convLock{}
		l.m[key] = cl
	}
	cl.refs++
	l.mu.Unlock()
	cl.Lock()
	return func() {
		cl.Unlock()
		l.mu.Lock()
		cl.refs--
		if cl.refs == 0 {
			delete(l.m, key)
		}
		l.mu.Unlock()
	}
}
