package loadtest

import (
	"bufio"
	"fmt"
	"html"
	"io"
	"math"
	"strconv"
	"strings"
)

// WriteHTML writes a self-contained report of s: the figures, latency over
// time and the latency percentile distribution, as inline SVG (no scripts,
// no external assets).
func WriteHTML(w io.Writer, s *Summary) error {
	b := bufio.NewWriter(w)
	p := func(format string, a ...any) { fmt.Fprintf(b, format, a...) }
	e := html.EscapeString
	p("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n")
	p("<title>relaymesh load test: %s</title>\n", e(s.Scenario))
	p("<style>body{font:14px sans-serif;margin:2em;color:#222}table{border-collapse:collapse}" +
		"td,th{padding:2px 10px;border-bottom:1px solid #ddd;text-align:right}th{text-align:left}" +
		".fail{color:#b00}.pass{color:#070}svg{background:#fafafa;border:1px solid #ddd;margin:1em 0}</style>\n")
	p("</head><body>\n<h1>relaymesh load test: %s</h1>\n", e(s.Scenario))
	verdict, class := "PASS: no acked message lost", "pass"
	if s.Chatroom != nil {
		verdict = "PASS: no acked HIGH message copy lost"
	}
	if !s.Passed {
		verdict, class = fmt.Sprintf("FAIL: %d acked message copies lost", s.Lost), "fail"
	}
	p("<p class=\"%s\"><b>%s</b></p>\n", class, e(verdict))
	p("<p>started %s · %.1f s · targets %s · %d worker(s)</p>\n", e(s.Started), s.ElapsedS, e(strings.Join(s.Targets, ", ")), s.Workers)

	p("<table>\n")
	row := func(k string, v any) { p("<tr><th>%s</th><td>%s</td></tr>\n", e(k), e(fmt.Sprint(v))) }
	row("sessions logged in", fmt.Sprintf("%d / %d", s.Sessions, s.SessionsRequested))
	row("sent / acked", fmt.Sprintf("%d / %d", s.Sent, s.Acked))
	row("expected / delivered / late", fmt.Sprintf("%d / %d / %d", s.Expected, s.Delivered, s.Late))
	row("lost (after dedup)", fmt.Sprintf("%d (%d)", s.Lost, s.LostAfterDedup))
	row("duplicates (after dedup)", fmt.Sprintf("%d (%d)", s.Duplicates, s.DuplicatesAfterDedup))
	row("throughput, acked msg/s", fmt.Sprintf("%.1f", s.ThroughputPerS))
	qrow := func(k string, q Quantiles) {
		row(k, fmt.Sprintf("p50 %.2f · p90 %.2f · p99 %.2f · max %.2f (n=%d)", q.P50, q.P90, q.P99, q.Max, q.Count))
	}
	qrow("connect latency ms", s.ConnectLatencyMS)
	qrow("send→ack latency ms", s.LatencyMS)
	qrow("send→delivery latency ms", s.DeliveryLatencyMS)
	if s.RecoverMS != nil {
		qrow("reconnect→unread ms", *s.RecoverMS)
	}
	if c := s.Chatroom; c != nil {
		row("chatroom members per room", fmt.Sprint(c.Members))
		row("fan-out deliveries/s", fmt.Sprintf("%.0f", s.DeliveriesPerS))
		for _, name := range prioNames {
			if x := c.Priorities[name]; x != nil {
				row(name+": delivered / expected (missing), edge dropped frames",
					fmt.Sprintf("%d / %d (%.2f%%, %d), %d", x.Delivered, x.Expected, 100*x.DeliveredRatio, x.Missing, x.DroppedFrames))
				qrow(name+": send→delivery ms", x.DeliveryLatencyMS)
			}
		}
		if sr := c.SlowReaders; sr != nil {
			row("slow readers (disconnected by the server), edge overflow closes",
				fmt.Sprintf("%d (%d), %d", sr.Members, sr.Disconnected, c.EdgeOverflowCloses))
			for _, name := range prioNames {
				sl, no := sr.Slow[name], sr.Normal[name]
				row(name+": delivered at slow / normal readers",
					fmt.Sprintf("%d / %d (%.2f%%) · %d / %d (%.2f%%)", sl.Delivered, sl.Expected, 100*sl.DeliveredRatio,
						no.Delivered, no.Expected, 100*no.DeliveredRatio))
			}
		}
	}
	if s.ServerRSSBytes > 0 {
		row("server RSS bytes per session", fmt.Sprintf("%.0f (%s)", s.ServerRSSBytesPerSession, s.RSSSource))
	}
	p("</table>\n")

	p("<h2>Latency over time</h2>\n")
	timePlot(b, []series{
		{"send→ack p50", "#1f77b4", pts(s.AckSeries, func(x Point) float64 { return x.P50 })},
		{"send→ack p99", "#aec7e8", pts(s.AckSeries, func(x Point) float64 { return x.P99 })},
		{"delivery p50", "#d62728", pts(s.DeliverySeries, func(x Point) float64 { return x.P50 })},
		{"delivery p99", "#ff9896", pts(s.DeliverySeries, func(x Point) float64 { return x.P99 })},
	}, "seconds since start", "ms", false)
	p("<h2>Latency distribution</h2>\n")
	timePlot(b, []series{
		{"send→ack", "#1f77b4", spectrum(s.AckHistogram)},
		{"delivery", "#d62728", spectrum(s.DeliveryHistogram)},
	}, "percentile", "ms", true)
	if len(s.Errors) > 0 {
		p("<h2>Errors</h2>\n<ul>\n")
		for _, x := range s.Errors {
			p("<li>%s</li>\n", e(x))
		}
		p("</ul>\n")
	}
	p("</body></html>\n")
	return b.Flush()
}

type xy struct{ x, y float64 }

type series struct {
	name, color string
	pts         []xy
}

func pts(ps []Point, f func(Point) float64) []xy {
	out := make([]xy, 0, len(ps))
	for _, p := range ps {
		if p.Count > 0 {
			out = append(out, xy{float64(p.Second), f(p)})
		}
	}
	return out
}

// spectrum turns buckets into the HDR percentile plot: x = -log10(1-q),
// so 90% is at 1, 99% at 2; y = latency in ms.
func spectrum(bs []Bucket) []xy {
	var total int64
	for _, b := range bs {
		total += b.Count
	}
	if total == 0 {
		return nil
	}
	out := []xy{{0, float64(bs[0].From) / 1000}}
	var cum int64
	for _, b := range bs {
		cum += b.Count
		q := float64(cum) / float64(total)
		// the last bucket sits at the resolution of the sample: 1/total
		x := math.Log10(float64(total))
		if q < 1 {
			x = min(x, -math.Log10(1-q))
		}
		out = append(out, xy{x, float64(b.To) / 1000})
	}
	return out
}

// timePlot draws line series in a 720×300 SVG with axes and a legend;
// with percentileX the x ticks are -log10(1-q) labelled as percentiles.
func timePlot(w io.Writer, ss []series, xlabel, ylabel string, percentileX bool) {
	const W, H, L, R, T, B = 720.0, 300.0, 60.0, 150.0, 15.0, 40.0
	var maxX, maxY float64
	n := 0
	for _, s := range ss {
		for _, p := range s.pts {
			maxX, maxY = max(maxX, p.x), max(maxY, p.y)
			n++
		}
	}
	fmt.Fprintf(w, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\">\n", W, H, W, H)
	defer fmt.Fprint(w, "</svg>\n")
	if n == 0 {
		fmt.Fprintf(w, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">no data</text>\n", W/2, H/2)
		return
	}
	maxX, maxY = max(maxX, 1), niceCeil(maxY)
	px := func(x float64) float64 { return L + x/maxX*(W-L-R) }
	py := func(y float64) float64 { return H - B - y/maxY*(H-T-B) }
	fmt.Fprintf(w, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#444\"/>\n", L, py(0), W-R, py(0))
	fmt.Fprintf(w, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#444\"/>\n", L, py(0), L, T)
	for i := 0; i <= 4; i++ {
		y := maxY * float64(i) / 4
		fmt.Fprintf(w, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"end\">%s</text>\n", L-4, py(y)+4, trimFloat(y))
		if !percentileX {
			x := maxX * float64(i) / 4
			fmt.Fprintf(w, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"middle\">%s</text>\n", px(x), H-B+14, trimFloat(x))
		}
	}
	if percentileX {
		for x := 0; float64(x) <= maxX; x++ {
			label := strconv.FormatFloat(100-100*math.Pow(10, -float64(x)), 'f', -1, 64) + "%"
			fmt.Fprintf(w, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"middle\">%s</text>\n", px(float64(x)), H-B+14, label)
		}
	}
	fmt.Fprintf(w, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" text-anchor=\"middle\">%s</text>\n", (L+W-R)/2, H-6, html.EscapeString(xlabel))
	fmt.Fprintf(w, "<text x=\"12\" y=\"%.1f\" font-size=\"12\" transform=\"rotate(-90 12 %.1f)\" text-anchor=\"middle\">%s</text>\n", (T+H-B)/2, (T+H-B)/2, html.EscapeString(ylabel))
	for i, s := range ss {
		if len(s.pts) == 0 {
			continue
		}
		var d strings.Builder
		for j, p := range s.pts {
			cmd := "L"
			if j == 0 {
				cmd = "M"
			}
			fmt.Fprintf(&d, "%s%.1f,%.1f ", cmd, px(p.x), py(p.y))
		}
		fmt.Fprintf(w, "<path d=\"%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\"/>\n", strings.TrimSpace(d.String()), s.color)
		ly := T + 14 + float64(i)*16
		fmt.Fprintf(w, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"3\"/>\n", W-R+10, ly-4, W-R+30, ly-4, s.color)
		fmt.Fprintf(w, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\">%s</text>\n", W-R+35, ly, html.EscapeString(s.name))
	}
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func trimFloat(v float64) string {
	if v == math.Trunc(v) {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.2g", v)
}
