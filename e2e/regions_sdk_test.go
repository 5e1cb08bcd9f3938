package e2e

import "testing"

// TestConformanceRegionsJS runs conformance/js/regions, the official SDK
// across regions (issue 9's end-to-end check), on `relaymesh lab` with
// three regions of one core and one edge each, 20 ms apart: conversations
// homed in one region with members in another (messages both ways,
// receipts, recall, edit, history), a chatroom with members in all three,
// a system conversation's broadcast made in a third region, and a login
// getting the unread counts of conversations homed in two other regions,
// and a client whose region's only edge is killed moving to another
// region's edge with nothing missed.
func TestConformanceRegionsJS(t *testing.T) {
	js, files := nodeSuite(t, "regions")
	l := startLabProc(t, "--regions", "3", "--cores", "1", "--edges", "1", "--latency", "20ms")
	runNode(t, js, files, "RELAYMESH_TOPOLOGY="+string(l.topJSON),
		"RELAYMESH_APP=lab-app", "RELAYMESH_APP_KEY=lab-key", "RELAYMESH_MASTER_KEY=lab-master",
		"RELAYMESH_LAB_CONTROL="+l.desc.Control)
}
