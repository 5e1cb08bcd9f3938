package edge

import (
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestExtraMetrics: /metrics writes the edge's series, then the injected
// writer's (the core's counters in `relaymesh dev`).
func TestExtraMetrics(t *testing.T) {
	for _, tc := range []struct {
		name  string
		extra func(io.Writer) error
		want  string
	}{
		{"extra series", func(w io.Writer) error { _, err := io.WriteString(w, "relaymesh_core_x_total 7\n"); return err }, "relaymesh_core_x_total 7\n"},
		{"failing writer", func(w io.Writer) error { return errors.New("boom") }, ""},
		{"none", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := New(Config{TokenKey: []byte("k"), ExtraMetrics: tc.extra})
			w := httptest.NewRecorder()
			s.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
			body := w.Body.String()
			if !strings.Contains(body, "# TYPE relaymesh_edge_sessions gauge\n") {
				t.Fatalf("edge series missing: got\n%s", body)
			}
			if tc.want != "" && !strings.HasSuffix(body, tc.want) {
				t.Errorf("got\n%s\nwant it to end with %q", body, tc.want)
			}
		})
	}
}
