package e2e

import (
	"testing"
)

// TestConformancePagingJS runs conformance/js/paging (issue 8: history
// paging with LeanCloud's (timestamp, message id) cursor, every page size
// from 1 to 30, both directions, SDK and REST) against a relaymesh dev
// without send or history rate limits, so the suite's hundreds of queries
// are not throttled.
func TestConformancePagingJS(t *testing.T) {
	js, files := nodeSuite(t, "paging")
	p := startDev(t, t.TempDir(), freeAddr(t), "--logs-per-minute", "-1", "--sends-per-minute", "-1")
	runNode(t, js, files, "RELAYMESH_PAGING_URL="+p.URL)
}
