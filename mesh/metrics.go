package mesh

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/relaymesh/relaymesh/metric"
)

var descLocalDrops = metric.Counter("relaymesh_udp_local_drops_total",
	"QUIC datagrams (mesh and WebTransport) the local host refused to send, counted as lost (mesh.TolerateLocalDrops).")

// Collector returns the collector of the process's mesh counters
// (LocalDrops). A process part registers it once: an edge's registry, a
// core's admin listener.
func Collector() prometheus.Collector {
	return metric.NewCollector([]metric.Desc{descLocalDrops}, func(ch chan<- prometheus.Metric) {
		metric.Chan(ch).Add(descLocalDrops, float64(LocalDrops.Load()))
	})
}
