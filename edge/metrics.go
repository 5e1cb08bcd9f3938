package edge

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/relaymesh/relaymesh/mesh"
	"github.com/relaymesh/relaymesh/proto/lcpb"
)

// Metrics are the edge's counters. Per-message events are counted here,
// never logged. All fields are safe for concurrent use; /metrics renders them
// with WriteText in the Prometheus text format.
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

	// Commands counts client commands by type (index: lcpb.CommandType;
	// the last slot counts the ones without a known type).
	Commands [numCommandTypes + 1]atomic.Int64
	// Backend is how long the cores took to answer the client commands
	// the edge forwards, from the request to its reply: for direct
	// (BackendDirect) that is a message's send → ack as the edge sees it
	// (route, raft commit, reply); every other command in BackendOther.
	Backend [2]Histogram

	mu         sync.Mutex
	rejections map[int32]*atomic.Int64 // guarded by mu; LeanCloud code → count
}

// Indexes of Metrics.Backend.
const (
	BackendDirect = iota
	BackendOther
)

// latencyBounds are the upper bounds, in seconds, of Histogram's buckets.
var latencyBounds = [...]float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// Histogram counts durations in latencyBounds' buckets, for a Prometheus
// histogram. Safe for concurrent use.
type Histogram struct {
	buckets [len(latencyBounds) + 1]atomic.Uint64 // not cumulative; the last is +Inf
	sum     atomic.Int64                          // nanoseconds
}

// Observe counts one duration.
func (h *Histogram) Observe(d time.Duration) {
	sec := d.Seconds()
	i := 0
	for i < len(latencyBounds) && sec > latencyBounds[i] {
		i++
	}
	h.buckets[i].Add(1)
	h.sum.Add(int64(d))
}

// Count is how many durations were observed.
func (h *Histogram) Count() uint64 {
	var n uint64
	for i := range h.buckets {
		n += h.buckets[i].Load()
	}
	return n
}

// write writes the histogram's series (name_bucket, name_sum,
// name_count) with label (`cmd="direct"`) on each.
func (h *Histogram) write(w io.Writer, name, label string) error {
	var cum uint64
	for i := range h.buckets {
		cum += h.buckets[i].Load()
		le := "+Inf"
		if i < len(latencyBounds) {
			le = strconv.FormatFloat(latencyBounds[i], 'g', -1, 64)
		}
		if _, err := fmt.Fprintf(w, "%s_bucket{%s,le=%q} %d\n", name, label, le, cum); err != nil {
			return err
		}
	}
	_, err := fmt.Fprintf(w, "%s_sum{%s} %g\n%s_count{%s} %d\n", name, label, float64(h.sum.Load())/1e9, name, label, cum)
	return err
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

// WriteText writes the counters in the Prometheus text exposition format.
func (m *Metrics) WriteText(w io.Writer) error {
	type kv struct {
		name, help, typ string
		v               int64
	}
	rows := []kv{
		{"relaymesh_edge_connections", "Open client connections.", "gauge", m.ConnectionsOpen.Load()},
		{"relaymesh_edge_connections_total", "Client connections accepted.", "counter", m.ConnectionsTotal.Load()},
		{"relaymesh_edge_handshakes_refused_total", "WebSocket handshakes refused.", "counter", m.HandshakesRefused.Load()},
		{"relaymesh_edge_sessions", "Open IM sessions.", "gauge", m.SessionsOpen.Load()},
		{"relaymesh_edge_sessions_total", "IM sessions opened.", "counter", m.SessionsTotal.Load()},
		{"relaymesh_edge_frames_in_total", "Frames read from clients.", "counter", m.FramesIn.Load()},
		{"relaymesh_edge_frames_out_total", "Frames written to clients.", "counter", m.FramesOut.Load()},
		{"relaymesh_edge_bytes_in_total", "Bytes read from clients.", "counter", m.BytesIn.Load()},
		{"relaymesh_edge_bytes_out_total", "Bytes written to clients.", "counter", m.BytesOut.Load()},
		{"relaymesh_edge_malformed_frames_total", "Undecodable client frames.", "counter", m.MalformedFrames.Load()},
		{"relaymesh_edge_bad_backend_frames_total", "Undecodable backend frames dropped.", "counter", m.BadReplies.Load()},
		{"relaymesh_edge_deliveries_total", "Deliveries received from cores.", "counter", m.Deliveries.Load()},
		{"relaymesh_edge_delivered_frames_total", "Frames queued by deliveries.", "counter", m.DeliveredFrames.Load()},
		{"relaymesh_edge_delivery_misses_total", "Delivery targets without a session here.", "counter", m.DeliveryMisses.Load()},
		{"relaymesh_edge_backend_errors_total", "Backend call failures.", "counter", m.BackendErrors.Load()},
		{"relaymesh_edge_overflow_closes_total", "Connections closed because a HIGH frame did not fit.", "counter", m.OverflowCloses.Load()},
		{"relaymesh_edge_idle_closes_total", "Connections closed by the idle timeout.", "counter", m.IdleCloses.Load()},
		{"relaymesh_edge_login_timeouts_total", "Connections closed with 4108: no login in time.", "counter", m.LoginTimeouts.Load()},
		{"relaymesh_edge_conns_over_ip_cap_total", "Connections refused: the client IP holds MaxConnsPerIP.", "counter", m.ConnsOverIPCap.Load()},
		{"relaymesh_edge_drained_total", "Connections told goaway by a drain.", "counter", m.Drained.Load()},
		{"relaymesh_edge_drain_forced_total", "Connections closed at a drain's deadline.", "counter", m.DrainForced.Load()},
		{"relaymesh_edge_wt_refused_total", "WebTransport sessions refused.", "counter", m.WTRefused.Load()},
		{"relaymesh_edge_datagrams_in_total", "Client datagrams handled as frames.", "counter", m.DatagramsIn.Load()},
		{"relaymesh_edge_datagrams_dropped_total", "Client datagrams dropped (rate, kind, size, undecodable).", "counter", m.DatagramsDropped.Load()},
		{"relaymesh_edge_datagrams_out_total", "Transient pushes sent as datagrams.", "counter", m.DatagramsOut.Load()},
		{"relaymesh_edge_datagrams_fallback_total", "Transient pushes too big for a datagram, sent on the stream.", "counter", m.DatagramsFallback.Load()},
		{"relaymesh_edge_burst_socket_writes_total", "Socket writes that carried a burst of WebSocket frames (several frames per system call).", "counter", m.SocketWrites.Load()},
	}
	rows = append(rows, kv{"relaymesh_udp_local_drops_total", "QUIC datagrams (mesh and WebTransport) the local host refused to send, counted as lost (mesh.TolerateLocalDrops).", "counter", mesh.LocalDrops.Load()})
	if rss, ok := residentBytes(); ok {
		rows = append(rows, kv{"process_resident_memory_bytes", "Resident memory size in bytes.", "gauge", rss})
	}
	for _, r := range rows {
		if _, err := fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n%s %d\n", r.name, r.help, r.name, r.typ, r.name, r.v); err != nil {
			return err
		}
	}
	for _, r := range []struct {
		name, help, typ string
		v               func(*TransportMetrics) int64
	}{
		{"relaymesh_edge_transport_connections", "Open client connections by transport.", "gauge", func(t *TransportMetrics) int64 { return t.ConnectionsOpen.Load() }},
		{"relaymesh_edge_transport_connections_total", "Client connections accepted by transport.", "counter", func(t *TransportMetrics) int64 { return t.ConnectionsTotal.Load() }},
		{"relaymesh_edge_transport_sessions", "Open IM sessions by transport.", "gauge", func(t *TransportMetrics) int64 { return t.SessionsOpen.Load() }},
		{"relaymesh_edge_transport_sessions_total", "IM sessions opened by transport.", "counter", func(t *TransportMetrics) int64 { return t.SessionsTotal.Load() }},
		{"relaymesh_edge_transport_frames_in_total", "Frames read from clients by transport (datagrams included).", "counter", func(t *TransportMetrics) int64 { return t.FramesIn.Load() }},
		{"relaymesh_edge_transport_frames_out_total", "Frames written to clients by transport (datagrams included).", "counter", func(t *TransportMetrics) int64 { return t.FramesOut.Load() }},
	} {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", r.name, r.help, r.name, r.typ)
		for t := range Transport(numTransports) {
			fmt.Fprintf(w, "%s{transport=%q} %d\n", r.name, t.String(), r.v(&m.ByTransport[t]))
		}
	}
	fmt.Fprintf(w, "# HELP relaymesh_edge_commands_total Client commands read, by type (cmd).\n# TYPE relaymesh_edge_commands_total counter\n")
	for i := range m.Commands {
		name := "unknown"
		if i < numCommandTypes {
			var ok bool
			if name, ok = lcpb.CommandType_name[int32(i)]; !ok {
				continue
			}
		}
		fmt.Fprintf(w, "relaymesh_edge_commands_total{cmd=%q} %d\n", name, m.Commands[i].Load())
	}
	const backend = "relaymesh_edge_backend_seconds"
	fmt.Fprintf(w, "# HELP %s Time from a forwarded client command to the cores' reply (cmd=\"direct\": a message's send to its ack).\n# TYPE %s histogram\n", backend, backend)
	if err := m.Backend[BackendDirect].write(w, backend, `cmd="direct"`); err != nil {
		return err
	}
	if err := m.Backend[BackendOther].write(w, backend, `cmd="other"`); err != nil {
		return err
	}
	fmt.Fprintf(w, "# HELP relaymesh_edge_dropped_frames_total Outbound frames shed by priority class.\n# TYPE relaymesh_edge_dropped_frames_total counter\n")
	for p := range m.Dropped {
		fmt.Fprintf(w, "relaymesh_edge_dropped_frames_total{priority=%q} %d\n", Priority(p).String(), m.Dropped[p].Load())
	}
	m.mu.Lock()
	codes := make([]int32, 0, len(m.rejections))
	for c := range m.rejections {
		codes = append(codes, c)
	}
	m.mu.Unlock()
	sort.Slice(codes, func(i, j int) bool { return codes[i] < codes[j] })
	_, err := fmt.Fprintf(w, "# HELP relaymesh_edge_rejections_total Client requests rejected, by LeanCloud error code.\n# TYPE relaymesh_edge_rejections_total counter\n")
	for _, c := range codes {
		if _, err = fmt.Fprintf(w, "relaymesh_edge_rejections_total{code=\"%d\"} %d\n", c, m.Rejections(c)); err != nil {
			return err
		}
	}
	return err
}

// residentBytes reads this process's resident set size from /proc (Linux).
func residentBytes() (int64, bool) {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0, false
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0, false
	}
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return 0, false
	}
	return pages * int64(os.Getpagesize()), true
}

// writeQueueMetrics writes the depth of the connections' outbound queues
// now: frames waiting in all of them, and in the fullest one (a slow
// reader shows there before it is shed or closed).
func (s *Server) writeQueueMetrics(w io.Writer) error {
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
	_, err := fmt.Fprintf(w, "# HELP relaymesh_edge_queued_frames Outbound frames waiting in the connections' queues.\n# TYPE relaymesh_edge_queued_frames gauge\nrelaymesh_edge_queued_frames %d\n"+
		"# HELP relaymesh_edge_queued_frames_max Outbound frames waiting in the fullest connection's queue.\n# TYPE relaymesh_edge_queued_frames_max gauge\nrelaymesh_edge_queued_frames_max %d\n", total, most)
	return err
}
