package edge

import (
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/relaymesh/relaymesh/metric"
	"github.com/relaymesh/relaymesh/proto/lcpb"
)

// Metrics are the edge's counters. Per-message events are counted here,
// never logged. All fields are safe for concurrent use; /metrics renders them
// through Collector, read at scrape time.
type Metrics struct {
	ConnectionsOpen   atomic.Int64 // gauge
	ConnectionsTotal  atomic.Int64
	HandshakesRefused atomic.Int64 // missing/unknown subprotocol, or shutting down
	SessionsOpen      atomic.Int64 // gauge
	SessionsTotal     atomic.Int64
	FramesIn          atomic.Int64
	FramesOut         atomic.Int64
	BytesIn           atomic.Int64
	BytesOut          atomic.Int64
	MalformedFrames   atomic.Int64 // undecodable client frames
	BadReplies        atomic.Int64 // undecodable frames from the backend, dropped
	Deliveries        atomic.Int64 // Delivery messages received
	DeliveredFrames   atomic.Int64 // frames queued for sessions by deliveries
	DeliveryMisses    atomic.Int64 // targets with no session on this edge
	BackendErrors     atomic.Int64 // Backend.Do transport errors
	Runs              atomic.Int64 // requests carrying several sends of a session (batch.go)
	RunSends          atomic.Int64 // sends those requests had answered
	AsyncCommands     atomic.Int64 // acks and reads forwarded off the connection's line (batch.go)
	OverflowCloses    atomic.Int64 // connections closed because HIGH did not fit
	IdleCloses        atomic.Int64 // connections closed by the idle timeout
	LoginTimeouts     atomic.Int64 // connections closed without a login in time (4108)
	ConnsOverIPCap    atomic.Int64 // TCP connections and WebSockets refused by MaxConnsPerIP
	Drained           atomic.Int64 // connections told goaway by Drain
	DrainForced       atomic.Int64 // connections still open at Drain's deadline, closed by it
	// Dropped counts outbound frames shed by priority class (HIGH is never
	// shed; it overflows instead).
	Dropped [numPriorities]atomic.Int64

	// ByTransport splits the connection, session and frame counts above
	// by transport (index: Transport). The totals above count both.
	ByTransport [numTransports]TransportMetrics

	// WebTransport (wt.go).
	WTRefused         atomic.Int64 // WebTransport CONNECTs refused (shutting down, bad request, per-IP cap)
	DatagramsIn       atomic.Int64 // client datagrams handled as frames
	DatagramsDropped  atomic.Int64 // client datagrams dropped: over the rate, not a transient direct, undecodable, or too big
	DatagramsOut      atomic.Int64 // transient pushes sent as datagrams
	DatagramsFallback atomic.Int64 // transient pushes too big for a datagram, sent on the stream
	SocketWrites      atomic.Int64 // WebSocket socket writes of corked bursts (frames_out / this = frames per system call)
	PoolHandoffs      atomic.Int64 // pool writer turns whose socket was full: the burst went on on a goroutine (writers.go)

	// Commands counts client commands by type (index: lcpb.CommandType;
	// the last slot counts the ones without a known type).
	Commands [numCommandTypes + 1]atomic.Int64
	// Backend is how long the cores took to answer the client commands
	// the edge forwards, from the request to its reply: for direct
	// (BackendDirect) that is a message's send → ack as the edge sees it
	// (route, raft commit, reply); every other command in BackendOther.
	Backend [2]Histogram
	// Delivery is how long a message took from its server timestamp
	// (set by the shard leader as it commits the message) to the write
	// of a copy to a client's socket, by priority class; replays are
	// left out (their timestamp is a failover ago).
	Delivery [numPriorities]Histogram

	mu         sync.Mutex
	rejections map[int32]*atomic.Int64 // guarded by mu; LeanCloud code → count
}

// Indexes of Metrics.Backend.
const (
	BackendDirect = iota
	BackendOther
)

// Histogram counts durations for a Prometheus histogram (metric.Latency).
type Histogram = metric.Latency

// maxDeliveryMs bounds one delivery latency, in ms: a timestamp from
// before then (a bogus one) counts as that, not as an overflow.
const maxDeliveryMs = int64(24 * time.Hour / time.Millisecond)

// observeDelivery counts the latency of a copy of a message with server
// timestamp at (Unix ms) written now to a client, at priority p. A
// timestamp ahead of the edge's clock (the clocks of the core and the
// edge differ) counts as zero, one more than a day old as a day; one
// that is not positive is no timestamp and not counted.
func (m *Metrics) observeDelivery(p Priority, at int64, now time.Time) {
	if at <= 0 {
		return
	}
	if p >= numPriorities {
		p = PriorityNormal
	}
	ms := min(max(now.UnixMilli()-at, 0), maxDeliveryMs) // at > 0: no overflow
	m.Delivery[p].Observe(time.Duration(ms) * time.Millisecond)
}

// numCommandTypes bounds lcpb.CommandType's values.
const numCommandTypes = 64

// observeBackend counts how long the backend took for a command of type
// cmd.
func (m *Metrics) observeBackend(cmd lcpb.CommandType, d time.Duration) {
	i := BackendOther
	if cmd == lcpb.CommandType_direct {
		i = BackendDirect
	}
	m.Backend[i].Observe(d)
}

// Command counts one client command of type cmd.
func (m *Metrics) Command(cmd lcpb.CommandType) {
	i := int(cmd)
	if _, ok := lcpb.CommandType_name[int32(cmd)]; !ok || i < 0 || i >= numCommandTypes {
		i = numCommandTypes
	}
	m.Commands[i].Add(1)
}

// Transport is how a client connection reaches the edge.
type Transport int

const (
	TransportWebSocket    Transport = iota // WebSocket (server.go)
	TransportWebTransport                  // WebTransport over HTTP/3 (wt.go)
	numTransports
)

func (t Transport) String() string {
	if t == TransportWebTransport {
		return "webtransport"
	}
	return "websocket"
}

// TransportMetrics are the counts of one transport.
type TransportMetrics struct {
	ConnectionsOpen  atomic.Int64 // gauge
	ConnectionsTotal atomic.Int64
	SessionsOpen     atomic.Int64 // gauge
	SessionsTotal    atomic.Int64
	FramesIn         atomic.Int64
	FramesOut        atomic.Int64
}

func (m *Metrics) transport(t Transport) *TransportMetrics {
	if t < 0 || t >= numTransports {
		t = TransportWebSocket
	}
	return &m.ByTransport[t]
}

// Reject counts one client-facing rejection with a LeanCloud error code.
func (m *Metrics) Reject(code int32) {
	m.mu.Lock()
	if m.rejections == nil {
		m.rejections = make(map[int32]*atomic.Int64)
	}
	c, ok := m.rejections[code]
	if !ok {
		c = new(atomic.Int64)
		m.rejections[code] = c
	}
	m.mu.Unlock()
	c.Add(1)
}

// Rejections reports how many rejections carried code.
func (m *Metrics) Rejections(code int32) int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c, ok := m.rejections[code]; ok {
		return c.Load()
	}
	return 0
}

// The edge's series.
var (
	descConnections       = metric.Gauge("relaymesh_edge_connections", "Open client connections.")
	descConnectionsTotal  = metric.Counter("relaymesh_edge_connections_total", "Client connections accepted.")
	descHandshakesRefused = metric.Counter("relaymesh_edge_handshakes_refused_total", "WebSocket handshakes refused.")
	descSessions          = metric.Gauge("relaymesh_edge_sessions", "Open IM sessions.")
	descSessionsTotal     = metric.Counter("relaymesh_edge_sessions_total", "IM sessions opened.")
	descFramesIn          = metric.Counter("relaymesh_edge_frames_in_total", "Frames read from clients.")
	descFramesOut         = metric.Counter("relaymesh_edge_frames_out_total", "Frames written to clients.")
	descBytesIn           = metric.Counter("relaymesh_edge_bytes_in_total", "Bytes read from clients.")
	descBytesOut          = metric.Counter("relaymesh_edge_bytes_out_total", "Bytes written to clients.")
	descMalformed         = metric.Counter("relaymesh_edge_malformed_frames_total", "Undecodable client frames.")
	descBadReplies        = metric.Counter("relaymesh_edge_bad_backend_frames_total", "Undecodable backend frames dropped.")
	descDeliveries        = metric.Counter("relaymesh_edge_deliveries_total", "Deliveries received from cores.")
	descDeliveredFrames   = metric.Counter("relaymesh_edge_delivered_frames_total", "Frames queued by deliveries.")
	descDeliveryMisses    = metric.Counter("relaymesh_edge_delivery_misses_total", "Delivery targets without a session here.")
	descBackendErrors     = metric.Counter("relaymesh_edge_backend_errors_total", "Backend call failures.")
	descRuns              = metric.Counter("relaymesh_edge_send_runs_total", "Requests carrying a run of a session's sends into one conversation, read from the client together.")
	descAsync             = metric.Counter("relaymesh_edge_async_commands_total", "Client acks and reads (no i, no reply) forwarded off the connection's line of commands.")
	descRunSends          = metric.Counter("relaymesh_edge_send_run_sends_total", "Sends answered by those requests; over relaymesh_edge_send_runs_total, the mean run.")
	descOverflowCloses    = metric.Counter("relaymesh_edge_overflow_closes_total", "Connections closed because a HIGH frame did not fit.")
	descIdleCloses        = metric.Counter("relaymesh_edge_idle_closes_total", "Connections closed by the idle timeout.")
	descLoginTimeouts     = metric.Counter("relaymesh_edge_login_timeouts_total", "Connections closed with 4108: no login in time.")
	descOverIPCap         = metric.Counter("relaymesh_edge_conns_over_ip_cap_total", "Connections refused: the client IP holds MaxConnsPerIP.")
	descDrained           = metric.Counter("relaymesh_edge_drained_total", "Connections told goaway by a drain.")
	descDrainForced       = metric.Counter("relaymesh_edge_drain_forced_total", "Connections closed at a drain's deadline.")
	descWTRefused         = metric.Counter("relaymesh_edge_wt_refused_total", "WebTransport sessions refused.")
	descDatagramsIn       = metric.Counter("relaymesh_edge_datagrams_in_total", "Client datagrams handled as frames.")
	descDatagramsDropped  = metric.Counter("relaymesh_edge_datagrams_dropped_total", "Client datagrams dropped (rate, kind, size, undecodable).")
	descDatagramsOut      = metric.Counter("relaymesh_edge_datagrams_out_total", "Transient pushes sent as datagrams.")
	descDatagramsFallback = metric.Counter("relaymesh_edge_datagrams_fallback_total", "Transient pushes too big for a datagram, sent on the stream.")
	descSocketWrites      = metric.Counter("relaymesh_edge_burst_socket_writes_total", "Socket writes that carried a burst of WebSocket frames (several frames per system call).")
	descPoolHandoffs      = metric.Counter("relaymesh_edge_writer_pool_handoffs_total", "Writer pool turns whose client socket was full: the rest of the burst was written by a goroutine of its own with the write timeout.")

	descTConnections      = metric.Gauge("relaymesh_edge_transport_connections", "Open client connections by transport.", "transport")
	descTConnectionsTotal = metric.Counter("relaymesh_edge_transport_connections_total", "Client connections accepted by transport.", "transport")
	descTSessions         = metric.Gauge("relaymesh_edge_transport_sessions", "Open IM sessions by transport.", "transport")
	descTSessionsTotal    = metric.Counter("relaymesh_edge_transport_sessions_total", "IM sessions opened by transport.", "transport")
	descTFramesIn         = metric.Counter("relaymesh_edge_transport_frames_in_total", "Frames read from clients by transport (datagrams included).", "transport")
	descTFramesOut        = metric.Counter("relaymesh_edge_transport_frames_out_total", "Frames written to clients by transport (datagrams included).", "transport")

	descCommands   = metric.Counter("relaymesh_edge_commands_total", "Client commands read, by type (cmd).", "cmd")
	descBackend    = metric.Histogram("relaymesh_edge_backend_seconds", `Time from a forwarded client command to the cores' reply (cmd="direct": a message's send to its ack).`, "cmd")
	descDelivery   = metric.Histogram("relaymesh_delivery_seconds", "Time from a message's server timestamp (the shard leader's clock as it commits the message; ms resolution) to the edge's write of a copy to a client's socket (the edge's clock), by priority class. Replays after a failover are left out.", "priority")
	descDropped    = metric.Counter("relaymesh_edge_dropped_frames_total", "Outbound frames shed by priority class.", "priority")
	descRejections = metric.Counter("relaymesh_edge_rejections_total", "Client requests rejected, by LeanCloud error code.", "code")

	descQueued    = metric.Gauge("relaymesh_edge_queued_frames", "Outbound frames waiting in the connections' queues.")
	descQueuedMax = metric.Gauge("relaymesh_edge_queued_frames_max", "Outbound frames waiting in the fullest connection's queue.")
)

// Collector returns the collector of the counters.
func (m *Metrics) Collector() prometheus.Collector {
	descs := []metric.Desc{
		descConnections, descConnectionsTotal, descHandshakesRefused, descSessions, descSessionsTotal,
		descFramesIn, descFramesOut, descBytesIn, descBytesOut, descMalformed, descBadReplies,
		descDeliveries, descDeliveredFrames, descDeliveryMisses, descBackendErrors, descRuns, descRunSends, descAsync, descOverflowCloses,
		descIdleCloses, descLoginTimeouts, descOverIPCap, descDrained, descDrainForced, descWTRefused,
		descDatagramsIn, descDatagramsDropped, descDatagramsOut, descDatagramsFallback, descSocketWrites, descPoolHandoffs,
		descTConnections, descTConnectionsTotal, descTSessions, descTSessionsTotal, descTFramesIn, descTFramesOut,
		descCommands, descBackend, descDelivery, descDropped, descRejections,
	}
	return metric.NewCollector(descs, m.collect)
}

func (m *Metrics) collect(ch chan<- prometheus.Metric) {
	s := metric.Chan(ch)
	for _, r := range []struct {
		d metric.Desc
		v int64
	}{
		{descConnections, m.ConnectionsOpen.Load()},
		{descConnectionsTotal, m.ConnectionsTotal.Load()},
		{descHandshakesRefused, m.HandshakesRefused.Load()},
		{descSessions, m.SessionsOpen.Load()},
		{descSessionsTotal, m.SessionsTotal.Load()},
		{descFramesIn, m.FramesIn.Load()},
		{descFramesOut, m.FramesOut.Load()},
		{descBytesIn, m.BytesIn.Load()},
		{descBytesOut, m.BytesOut.Load()},
		{descMalformed, m.MalformedFrames.Load()},
		{descBadReplies, m.BadReplies.Load()},
		{descDeliveries, m.Deliveries.Load()},
		{descDeliveredFrames, m.DeliveredFrames.Load()},
		{descDeliveryMisses, m.DeliveryMisses.Load()},
		{descBackendErrors, m.BackendErrors.Load()},
		{descRuns, m.Runs.Load()},
		{descRunSends, m.RunSends.Load()},
		{descAsync, m.AsyncCommands.Load()},
		{descOverflowCloses, m.OverflowCloses.Load()},
		{descIdleCloses, m.IdleCloses.Load()},
		{descLoginTimeouts, m.LoginTimeouts.Load()},
		{descOverIPCap, m.ConnsOverIPCap.Load()},
		{descDrained, m.Drained.Load()},
		{descDrainForced, m.DrainForced.Load()},
		{descWTRefused, m.WTRefused.Load()},
		{descDatagramsIn, m.DatagramsIn.Load()},
		{descDatagramsDropped, m.DatagramsDropped.Load()},
		{descDatagramsOut, m.DatagramsOut.Load()},
		{descDatagramsFallback, m.DatagramsFallback.Load()},
		{descSocketWrites, m.SocketWrites.Load()},
		{descPoolHandoffs, m.PoolHandoffs.Load()},
	} {
		s.Add(r.d, float64(r.v))
	}
	for _, r := range []struct {
		d metric.Desc
		v func(*TransportMetrics) int64
	}{
		{descTConnections, func(t *TransportMetrics) int64 { return t.ConnectionsOpen.Load() }},
		{descTConnectionsTotal, func(t *TransportMetrics) int64 { return t.ConnectionsTotal.Load() }},
		{descTSessions, func(t *TransportMetrics) int64 { return t.SessionsOpen.Load() }},
		{descTSessionsTotal, func(t *TransportMetrics) int64 { return t.SessionsTotal.Load() }},
		{descTFramesIn, func(t *TransportMetrics) int64 { return t.FramesIn.Load() }},
		{descTFramesOut, func(t *TransportMetrics) int64 { return t.FramesOut.Load() }},
	} {
		for t := range Transport(numTransports) {
			s.Add(r.d, float64(r.v(&m.ByTransport[t])), t.String())
		}
	}
	for i := range m.Commands {
		name := "unknown"
		if i < numCommandTypes {
			var ok bool
			if name, ok = lcpb.CommandType_name[int32(i)]; !ok {
				continue
			}
		}
		s.Add(descCommands, float64(m.Commands[i].Load()), name)
	}
	m.Backend[BackendDirect].Sample(ch, descBackend, "direct")
	m.Backend[BackendOther].Sample(ch, descBackend, "other")
	for p := range m.Delivery {
		m.Delivery[p].Sample(ch, descDelivery, Priority(p).String())
	}
	for p := range m.Dropped {
		s.Add(descDropped, float64(m.Dropped[p].Load()), Priority(p).String())
	}
	// Every LeanCloud code has its series from the start (at zero, so a
	// rate over it works before the first rejection), and any other code
	// a core answered with once seen.
	m.mu.Lock()
	codes := lcpb.ErrorCodes()
	for c := range m.rejections {
		if _, known := slices.BinarySearch(codes, c); !known {
			codes = append(codes, c)
		}
	}
	m.mu.Unlock()
	for _, c := range codes {
		s.Add(descRejections, float64(m.Rejections(c)), strconv.Itoa(int(c)))
	}
}

// queueCollector returns the collector of the connections' outbound
// queues now: frames waiting in all of them, and in the fullest one (a
// slow reader shows there before it is shed or closed).
func (s *Server) queueCollector() prometheus.Collector {
	return metric.NewCollector([]metric.Desc{descQueued, descQueuedMax}, func(ch chan<- prometheus.Metric) {
		s.mu.Lock()
		conns := make([]*conn, 0, len(s.conns))
		for _, c := range s.conns {
			conns = append(conns, c)
		}
		s.mu.Unlock() // the queues' locks are taken one at a time, after it
		total, most := 0, 0
		for _, c := range conns {
			n := c.q.Len()
			total += n
			most = max(most, n)
		}
		metric.Chan(ch).Add(descQueued, float64(total))
		metric.Chan(ch).Add(descQueuedMax, float64(most))
	})
}
