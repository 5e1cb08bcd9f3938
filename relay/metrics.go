package relay

import (
	"fmt"
	"io"

	"github.com/relaymesh/relaymesh/relay/pq"
)

// WriteMetrics writes the relay's counters (Stats) in the Prometheus text
// exposition format. The series keep the names they had when the relay was
// part of the core (relaymesh_core_*).
func (r *Relay) WriteMetrics(w io.Writer) error {
	st := &r.stats
	for _, row := range []struct {
		name, help string
		v          uint64
	}{
		{"relaymesh_core_deliveries_total", "Deliveries handed to an edge link.", st.Delivered.Load()},
		{"relaymesh_core_deliveries_dropped_total", "Deliveries dropped: relay queue full or edge gone.", st.Dropped.Load()},
		{"relaymesh_core_delivery_send_errors_total", "Deliveries whose send to the edge failed.", st.SendErrors.Load()},
	} {
		if _, err := fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n%s %d\n", row.name, row.help, row.name, row.name, row.v); err != nil {
			return err
		}
	}
	if _, err := fmt.Fprintf(w, "# HELP relaymesh_core_relay_queued Deliveries waiting in the relay's queues to the edges now.\n# TYPE relaymesh_core_relay_queued gauge\nrelaymesh_core_relay_queued %d\n", r.Queued()); err != nil {
		return err
	}
	const drops = "relaymesh_core_relay_dropped_total"
	if _, err := fmt.Fprintf(w, "# HELP %s Deliveries shed by a full relay queue, by the priority class dropped.\n# TYPE %s counter\n", drops, drops); err != nil {
		return err
	}
	for class := range pq.Class(pq.NumClasses) {
		if _, err := fmt.Fprintf(w, "%s{priority=%q} %d\n", drops, class.String(), st.DroppedByPriority[class].Load()); err != nil {
			return err
		}
	}
	return nil
}
