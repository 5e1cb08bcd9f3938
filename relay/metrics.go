package relay

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/relaymesh/relaymesh/metric"
	"github.com/relaymesh/relaymesh/relay/pq"
)

// The relay's series keep the names they had when the relay was part of
// the core (relaymesh_core_*).
var (
	descDelivered  = metric.Counter("relaymesh_core_deliveries_total", "Deliveries handed to an edge link.")
	descDropped    = metric.Counter("relaymesh_core_deliveries_dropped_total", "Deliveries dropped: relay queue full or edge gone.")
	descSendErrors = metric.Counter("relaymesh_core_delivery_send_errors_total", "Deliveries whose send to the edge failed.")
	descQueued     = metric.Gauge("relaymesh_core_relay_queued", "Deliveries waiting in the relay's queues to the edges now.")
	descByPriority = metric.Counter("relaymesh_core_relay_dropped_total", "Deliveries shed by a full relay queue, by the priority class dropped.", "priority")
	descHighWaits  = metric.Counter("relaymesh_core_relay_high_waits_total", "HIGH deliveries that waited for room in an edge's queue full of HIGH instead of being dropped (backpressure on their senders).")

	descTagReplaced = metric.Counter("relaymesh_core_sessions_tag_replaced_total", "Sessions replaced by a reconnect of the same client and tag with a valid session token (the client's own, left on an edge that died), instead of refusing the reconnect with 4111.")

	descs = []metric.Desc{descDelivered, descDropped, descSendErrors, descQueued, descByPriority, descHighWaits, descTagReplaced}
)

// Collector returns the collector of the relay's counters (Stats).
func (r *Relay) Collector() prometheus.Collector {
	return metric.NewCollector(descs, func(ch chan<- prometheus.Metric) { r.sample(metric.Chan(ch)) })
}

func (r *Relay) sample(s metric.Sink) {
	st := &r.stats
	s.Add(descDelivered, float64(st.Delivered.Load()))
	s.Add(descDropped, float64(st.Dropped.Load()))
	s.Add(descSendErrors, float64(st.SendErrors.Load()))
	s.Add(descQueued, float64(r.Queued()))
	s.Add(descHighWaits, float64(st.HighWaits.Load()))
	s.Add(descTagReplaced, float64(st.TagReplaced.Load()))
	for class := range pq.Class(pq.NumClasses) {
		s.Add(descByPriority, float64(st.DroppedByPriority[class].Load()), class.String())
	}
}
