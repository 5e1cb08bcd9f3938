package mesh

import (
	"slices"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/quic-go/quic-go"

	"github.com/relaymesh/relaymesh/metric"
)

var (
	descLocalDrops = metric.Counter("relaymesh_udp_local_drops_total",
		"QUIC datagrams (mesh and WebTransport) the local host refused to send, counted as lost (mesh.TolerateLocalDrops).")
	descRTT = metric.Gauge("relaymesh_mesh_rtt_seconds",
		"Smoothed round-trip time (RFC 9002) of the QUIC mesh connection from node to peer (its name and address); the mean when the two nodes hold two connections. A series ends with the last connection to the peer.",
		"node", "peer", "addr")
	descMinRTT = metric.Gauge("relaymesh_mesh_min_rtt_seconds",
		"Smallest round-trip time seen on the mesh connections from node to peer.", "node", "peer", "addr")
	descConns  = metric.Gauge("relaymesh_mesh_connections", "Live QUIC mesh connections of the node (each peer once or twice: each side may dial).", "node")
	descInProc = metric.Counter("relaymesh_mesh_inprocess_calls_total",
		"Calls and streams the node made in memory to another node of its process (mesh.InProcess: relaymesh dev's edge and core), not over QUIC.", "node")
)

// live is every Node of the process between Listen and Close, for
// Collector.
var live struct {
	mu    sync.Mutex
	nodes map[*Node]struct{} // guarded by mu
}

func addLive(n *Node) {
	live.mu.Lock()
	if live.nodes == nil {
		live.nodes = map[*Node]struct{}{}
	}
	live.nodes[n] = struct{}{}
	live.mu.Unlock()
}

func removeLive(n *Node) {
	live.mu.Lock()
	delete(live.nodes, n)
	live.mu.Unlock()
}

// Collector returns the collector of the process's mesh series: the
// datagrams the host refused (LocalDrops), and per node of the process
// (one in production; every node in tests and `relaymesh dev`) its live
// connections and each peer's round-trip time, read from quic-go at
// scrape time. Nodes of the same name (tests that run several clusters)
// add up into one series. A process part registers it once: an edge's
// registry, a core's admin listener.
func Collector() prometheus.Collector {
	return metric.NewCollector([]metric.Desc{descLocalDrops, descRTT, descMinRTT, descConns, descInProc}, func(ch chan<- prometheus.Metric) {
		s := metric.Chan(ch)
		s.Add(descLocalDrops, float64(LocalDrops.Load()))
		live.mu.Lock()
		nodes := make([]*Node, 0, len(live.nodes))
		for n := range live.nodes {
			nodes = append(nodes, n)
		}
		live.mu.Unlock() // each node's lock is taken after it, one at a time
		slices.SortFunc(nodes, func(a, b *Node) int { return strings.Compare(a.Name(), b.Name()) })
		var conns metric.Sum
		var peers []*peerRTT
		for _, n := range nodes {
			peers = n.sampleRTT(&conns, peers)
			if n.local {
				conns.Add(descInProc, float64(n.localCalls.Load()), n.Name())
			}
		}
		conns.To(s)
		for _, p := range peers {
			s.Add(descRTT, p.sum/float64(p.n), p.node, p.peer, p.addr)
			s.Add(descMinRTT, p.min, p.node, p.peer, p.addr)
		}
	})
}

// peerRTT sums the round-trip times of a node's connections to one peer.
type peerRTT struct {
	node, peer, addr string
	sum, min         float64 // seconds
	n                int
}

// sampleRTT adds the node's live connections to conns, and the smoothed
// and minimum RTT of those with an RTT sample to peers, by node, peer
// name and address; it returns peers.
func (n *Node) sampleRTT(conns metric.Sink, peers []*peerRTT) []*peerRTT {
	n.mu.Lock()
	cs := make([]*quic.Conn, 0, len(n.conns))
	for c := range n.conns {
		cs = append(cs, c)
	}
	n.mu.Unlock()
	self := n.Name()
	live := 0
	for _, c := range cs {
		if c.Context().Err() != nil {
			continue // closed; serveConn forgets it soon
		}
		live++
		st := c.ConnectionStats()
		if st.SmoothedRTT <= 0 {
			continue
		}
		name, addr := peerName(c), c.RemoteAddr().String()
		i := slices.IndexFunc(peers, func(p *peerRTT) bool { return p.node == self && p.peer == name && p.addr == addr })
		if i < 0 {
			peers = append(peers, &peerRTT{node: self, peer: name, addr: addr, min: st.MinRTT.Seconds()})
			i = len(peers) - 1
		}
		p := peers[i]
		p.sum += st.SmoothedRTT.Seconds()
		p.min = min(p.min, st.MinRTT.Seconds())
		p.n++
	}
	conns.Add(descConns, float64(live), self)
	return peers
}
