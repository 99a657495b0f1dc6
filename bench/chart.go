package bench

import (
	"fmt"
	"html"
	"io"
	"math"
	"strings"
)

// The chart's geometry, in SVG user units.
const (
	chartW, chartH                     = 860, 440
	plotLeft, plotRight                = 80, 580
	plotTop, plotBottom                = 50, 390
	legendX                            = 600
	subjectColor, baselineColor, muted = "#c2410c", "#1d4ed8", "#6b7280"
)

// series is one line of the chart.
type series struct {
	label, color, dash string
	width              float64
	points             [][2]float64 // (rate, latency µs)
}

// WriteChart draws the comparison as an SVG: open-loop latency percentiles
// (log scale) against offered load for the subject and the baseline, with
// each side's closed-loop maximum throughput as a vertical line. Each
// point is the median over rounds. The load axis ends a little past the
// subject's maximum, where the open-loop points are; a baseline maximum
// beyond it is written at the edge rather than squeezing the curves.
func WriteChart(w io.Writer, c *Comparison) error {
	pct := func(side func(Pair) *Result, get func(Latency) float64) [][2]float64 {
		var pts [][2]float64
		for _, pt := range c.Open {
			v := median(mapPairs(pt.Rounds, func(p Pair) float64 { return get(side(p).Latency) }))
			if v > 0 {
				pts = append(pts, [2]float64{pt.Rate, v})
			}
		}
		return pts
	}
	subj := func(p Pair) *Result { return p.Subject }
	base := func(p Pair) *Result { return p.Baseline }
	p50 := func(l Latency) float64 { return l.P50 }
	p99 := func(l Latency) float64 { return l.P99 }
	p999 := func(l Latency) float64 { return l.P999 }
	lines := []series{
		{c.Subject + " p50", subjectColor, "", 1.5, pct(subj, p50)},
		{c.Subject + " p99", subjectColor, "", 3, pct(subj, p99)},
		{c.Subject + " p99.9", subjectColor, "2 3", 1.5, pct(subj, p999)},
		{c.Baseline + " p50", baselineColor, "", 1.5, pct(base, p50)},
		{c.Baseline + " p99", baselineColor, "", 3, pct(base, p99)},
		{c.Baseline + " p99.9", baselineColor, "2 3", 1.5, pct(base, p999)},
	}

	xMax := c.Summary.SubjectThroughput
	yMin, yMax := math.Inf(1), math.Inf(-1)
	for _, s := range lines {
		for _, p := range s.points {
			xMax = max(xMax, p[0])
			yMin, yMax = min(yMin, p[1]), max(yMax, p[1])
		}
	}
	if math.IsInf(yMin, 0) { // no open-loop points
		yMin, yMax = 10, 1000
	}
	xMax = niceCeil(xMax * 1.05)
	lo, hi := math.Floor(math.Log10(yMin)), math.Ceil(math.Log10(yMax))
	if hi <= lo {
		hi = lo + 1
	}
	x := func(v float64) float64 { return plotLeft + v/xMax*(plotRight-plotLeft) }
	y := func(v float64) float64 {
		return plotBottom - (math.Log10(v)-lo)/(hi-lo)*(plotBottom-plotTop)
	}

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", chartW, chartH, chartW, chartH)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%d" y="22" font-size="15" font-weight="bold">%s: latency vs offered load</text>`+"\n", plotLeft, esc(c.Scenario))
	fmt.Fprintf(&b, `<text x="%d" y="38" fill="%s">open loop, latency from the scheduled send time; median of %d rounds; %d CPUs, load avg %s at start</text>`+"\n",
		plotLeft, muted, c.Settings.Rounds, c.Machine.CPUs, esc(c.Machine.LoadAvg))

	// Grid and axes: a line per decade of latency, five steps of load.
	for e := lo; e <= hi; e++ {
		v := math.Pow(10, e)
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#e5e7eb"/>`+"\n", plotLeft, plotRight, y(v), y(v))
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end" dominant-baseline="middle">%s</text>`+"\n", plotLeft-6, y(v), tickLabel(v))
		for _, m := range []float64{2, 5} {
			if e < hi {
				fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#f3f4f6"/>`+"\n", plotLeft, plotRight, y(v*m), y(v*m))
			}
		}
	}
	for i := 0; i <= 5; i++ {
		v := xMax * float64(i) / 5
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#e5e7eb"/>`+"\n", x(v), x(v), plotTop, plotBottom)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", x(v), plotBottom+16, rateLabel(v))
	}
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#9ca3af"/>`+"\n", plotLeft, plotTop, plotRight-plotLeft, plotBottom-plotTop)
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">offered load (requests/s)</text>`+"\n", (plotLeft+plotRight)/2, plotBottom+36)
	fmt.Fprintf(&b, `<text transform="translate(18 %d) rotate(-90)" text-anchor="middle">latency (log scale)</text>`+"\n", (plotTop+plotBottom)/2)

	// The closed-loop maxima.
	for _, m := range []struct {
		label, color string
		v            float64
	}{{c.Subject + " max", subjectColor, c.Summary.SubjectThroughput}, {c.Baseline + " max", baselineColor, c.Summary.BaselineThroughput}} {
		if m.v <= 0 {
			continue
		}
		if m.v > xMax {
			fmt.Fprintf(&b, `<text x="%d" y="%d" fill="%s" text-anchor="end">%s %s/s →</text>`+"\n", plotRight-4, plotBottom-8, m.color, esc(m.label), rateLabel(m.v))
			continue
		}
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="%s" stroke-dasharray="6 4" opacity="0.6"/>`+"\n", x(m.v), x(m.v), plotTop, plotBottom, m.color)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" fill="%s" text-anchor="end" transform="rotate(-90 %.1f %d)">%s %s/s</text>`+"\n",
			x(m.v)-4, plotTop+4, m.color, x(m.v)-4, plotTop+4, esc(m.label), rateLabel(m.v))
	}

	for i, s := range lines {
		if len(s.points) == 0 {
			continue
		}
		var d strings.Builder
		for j, p := range s.points {
			cmd := "L"
			if j == 0 {
				cmd = "M"
			}
			fmt.Fprintf(&d, "%s%.1f %.1f ", cmd, x(p[0]), y(p[1]))
		}
		dash := ""
		if s.dash != "" {
			dash = fmt.Sprintf(` stroke-dasharray="%s"`, s.dash)
		}
		fmt.Fprintf(&b, `<path d="%s" fill="none" stroke="%s" stroke-width="%.1f"%s/>`+"\n", strings.TrimSpace(d.String()), s.color, s.width, dash)
		for _, p := range s.points {
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="2.5" fill="%s"><title>%s at %s/s: %s</title></circle>`+"\n",
				x(p[0]), y(p[1]), s.color, esc(s.label), rateLabel(p[0]), us(p[1]))
		}
		// Legend.
		ly := float64(plotTop + 10 + i*20)
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="%s" stroke-width="%.1f"%s/>`+"\n", legendX, legendX+28, ly, ly, s.color, s.width, dash)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" dominant-baseline="middle">%s</text>`+"\n", legendX+34, ly, esc(s.label))
	}
	sm := c.Summary
	notes := []string{
		fmt.Sprintf("max throughput ratio %.2f", sm.ThroughputRatio),
		fmt.Sprintf("closed p99: %s vs %s", us(sm.SubjectP99), us(sm.BaselineP99)),
	}
	if sm.MachineCPURatio > 0 {
		notes = append(notes, fmt.Sprintf("machine CPU/request ratio %.2f", sm.MachineCPURatio))
	}
	if sm.HalfLoad != nil {
		notes = append(notes, fmt.Sprintf("p99 at %.0f%%: %s vs %s", sm.HalfLoad.Load*100, us(sm.HalfLoad.SubjectP99), us(sm.HalfLoad.BaselineP99)))
	}
	if sm.RedisPerRequest > 0 {
		notes = append(notes, fmt.Sprintf("Redis per request: %.2f round trips,", sm.RedisRoundTrips),
			fmt.Sprintf("  %.2f commands incl. the script's", sm.RedisPerRequest))
	}
	for i, n := range notes {
		fmt.Fprintf(&b, `<text x="%d" y="%d" fill="%s">%s</text>`+"\n", legendX, plotTop+150+i*18, muted, esc(n))
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// tickLabel formats a decade of microseconds: 10µs, 1ms, 1s.
func tickLabel(v float64) string {
	switch {
	case v < 1000:
		return fmt.Sprintf("%.0fµs", v)
	case v < 1e6:
		return fmt.Sprintf("%.0fms", v/1e3)
	}
	return fmt.Sprintf("%.0fs", v/1e6)
}

// niceCeil rounds v up to a round number (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8
// times a power of ten), so that the axis's five steps are round too.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

// rateLabel formats a rate compactly: 12.5k.
func rateLabel(v float64) string {
	if v >= 1000 {
		return strings.TrimSuffix(fmt.Sprintf("%.1f", v/1000), ".0") + "k"
	}
	return fmt.Sprintf("%.0f", v)
}

func esc(s string) string { return html.EscapeString(s) }
