package bench

import (
	"fmt"
	"html"
	"io"
	"math"
	"strings"
)

// series is one line of a chart.
type series struct {
	name   string
	color  string
	xs, ys []float64
}

// chart is one panel: a line chart with log or linear axes.
type chart struct {
	title, xLabel, yLabel string
	xLog, yLog            bool
	series                []series
}

// Chart geometry.
const (
	panelW, panelH = 520, 400
	marginL        = 78
	marginR        = 20
	marginT        = 56
	marginB        = 58
)

// WriteSVG draws the report's charts side by side: commands/s against
// concurrency per mode, and one command's latency against stream length,
// cached and stateless.
func (r *Report) WriteSVG(w io.Writer) error {
	var charts []chart
	if len(r.Throughput) > 0 {
		c := chart{title: "Throughput vs concurrency", xLabel: "concurrent senders (C)", yLabel: "commands/s", xLog: true}
		for _, m := range []struct{ mode, color string }{{ModeActor, "#1f77b4"}, {ModeStateless, "#ff7f0e"}} {
			s := series{name: m.mode, color: m.color}
			for _, cc := range r.concurrencies() {
				if t, ok := r.find(m.mode, cc); ok {
					s.xs = append(s.xs, float64(cc))
					s.ys = append(s.ys, t.CommandsPerSec)
				}
			}
			c.series = append(c.series, s)
		}
		charts = append(charts, c)
	}
	if len(r.StreamLength) > 0 {
		c := chart{title: "One command's latency vs stream length", xLabel: "events in the stream", yLabel: "p50 latency (ms)",
			xLog: true, yLog: true}
		cached := series{name: "actor (cached)", color: "#1f77b4"}
		stateless := series{name: "stateless", color: "#ff7f0e"}
		for _, l := range r.StreamLength {
			cached.xs, cached.ys = append(cached.xs, float64(l.Events)), append(cached.ys, l.Cached.P50)
			stateless.xs, stateless.ys = append(stateless.xs, float64(l.Events)), append(stateless.ys, l.Stateless.P50)
		}
		c.series = []series{cached, stateless}
		charts = append(charts, c)
	}
	width := max(len(charts), 1) * panelW
	var sb strings.Builder
	fmt.Fprintf(&sb, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n",
		width, panelH, width, panelH)
	fmt.Fprintf(&sb, `<rect width="%d" height="%d" fill="white"/>`+"\n", width, panelH)
	for i, c := range charts {
		fmt.Fprintf(&sb, `<g transform="translate(%d,0)">`+"\n", i*panelW)
		c.draw(&sb)
		sb.WriteString("</g>\n")
	}
	sb.WriteString("</svg>\n")
	_, err := io.WriteString(w, sb.String())
	return err
}

// axis maps data values to pixels.
type axis struct {
	log      bool
	lo, hi   float64 // data range (log10 of it on a log axis)
	p0, p1   float64 // pixel range
	ticks    []float64
	tickText []string
}

func (a axis) pos(v float64) float64 {
	if a.log {
		v = math.Log10(math.Max(v, 1e-9))
	}
	if a.hi == a.lo {
		return (a.p0 + a.p1) / 2
	}
	return a.p0 + (v-a.lo)/(a.hi-a.lo)*(a.p1-a.p0)
}

// newAxis fits an axis to values.
func newAxis(values []float64, log, fromZero bool, p0, p1 float64) axis {
	a := axis{log: log, p0: p0, p1: p1}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, v := range values {
		if log && v <= 0 {
			continue
		}
		lo, hi = math.Min(lo, v), math.Max(hi, v)
	}
	if math.IsInf(lo, 1) {
		lo, hi = 1, 10
	}
	if log {
		a.lo, a.hi = math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
		if a.hi == a.lo {
			a.hi++
		}
		for d := a.lo; d <= a.hi; d++ {
			a.ticks = append(a.ticks, d)
			a.tickText = append(a.tickText, formatTick(math.Pow(10, d)))
		}
		return a
	}
	if fromZero {
		lo = 0
	}
	step := niceStep((hi - lo) / 5)
	a.lo = math.Floor(lo/step) * step
	a.hi = math.Ceil(hi*1.05/step) * step
	if a.hi == a.lo {
		a.hi = a.lo + step
	}
	for t := a.lo; t <= a.hi+step/2; t += step {
		a.ticks = append(a.ticks, t)
		a.tickText = append(a.tickText, formatTick(t))
	}
	return a
}

// niceStep rounds a raw step up to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	if raw <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if raw <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func formatTick(v float64) string {
	switch {
	case v >= 1000:
		return fmtInt(int64(math.Round(v)))
	case v >= 1 || v == 0:
		return fmt.Sprintf("%g", math.Round(v*100)/100)
	default:
		return fmt.Sprintf("%g", v)
	}
}

// draw writes the chart's elements.
func (c chart) draw(sb *strings.Builder) {
	var xs, ys []float64
	for _, s := range c.series {
		xs = append(xs, s.xs...)
		ys = append(ys, s.ys...)
	}
	x := newAxis(xs, c.xLog, false, marginL, panelW-marginR)
	if c.xLog && len(xs) > 0 {
		// Categorical ticks at the measured values read better than
		// decades for a handful of points.
		x.ticks, x.tickText = nil, nil
		seen := map[float64]bool{}
		for _, v := range xs {
			if v > 0 && !seen[v] {
				seen[v] = true
				x.ticks = append(x.ticks, math.Log10(v))
				x.tickText = append(x.tickText, formatTick(v))
			}
		}
		lo, hi := math.Inf(1), math.Inf(-1)
		for _, t := range x.ticks {
			lo, hi = math.Min(lo, t), math.Max(hi, t)
		}
		pad := math.Max((hi-lo)*0.08, 0.1)
		x.lo, x.hi = lo-pad, hi+pad
	}
	y := newAxis(ys, c.yLog, true, panelH-marginB, marginT)
	esc := html.EscapeString
	fmt.Fprintf(sb, `<text x="%d" y="24" font-size="15" font-weight="bold">%s</text>`+"\n", marginL, esc(c.title))
	// Grid and tick labels.
	for i, t := range y.ticks {
		py := y.pos(tickValue(y, t))
		fmt.Fprintf(sb, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#e0e0e0"/>`+"\n", marginL, py, panelW-marginR, py)
		fmt.Fprintf(sb, `<text x="%d" y="%.1f" text-anchor="end" dominant-baseline="middle">%s</text>`+"\n", marginL-6, py, esc(y.tickText[i]))
	}
	for i, t := range x.ticks {
		px := x.pos(tickValue(x, t))
		fmt.Fprintf(sb, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#e0e0e0"/>`+"\n", px, marginT, px, panelH-marginB)
		fmt.Fprintf(sb, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", px, panelH-marginB+16, esc(x.tickText[i]))
	}
	// Axes and labels.
	fmt.Fprintf(sb, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`+"\n", marginL, panelH-marginB, panelW-marginR, panelH-marginB)
	fmt.Fprintf(sb, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`+"\n", marginL, marginT, marginL, panelH-marginB)
	fmt.Fprintf(sb, `<text x="%d" y="%d" text-anchor="middle">%s</text>`+"\n", (marginL+panelW-marginR)/2, panelH-16, esc(c.xLabel))
	fmt.Fprintf(sb, `<text transform="translate(16,%d) rotate(-90)" text-anchor="middle">%s</text>`+"\n", (marginT+panelH-marginB)/2, esc(c.yLabel))
	// Lines, points and the legend.
	for i, s := range c.series {
		type point struct{ px, py, v float64 }
		var pts []point
		for j := range s.xs {
			if (c.xLog && s.xs[j] <= 0) || (c.yLog && s.ys[j] <= 0) {
				continue
			}
			pts = append(pts, point{x.pos(s.xs[j]), y.pos(s.ys[j]), s.ys[j]})
		}
		if len(pts) > 1 {
			coords := make([]string, len(pts))
			for j, p := range pts {
				coords[j] = fmt.Sprintf("%.1f,%.1f", p.px, p.py)
			}
			fmt.Fprintf(sb, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", s.color, strings.Join(coords, " "))
		}
		for _, p := range pts {
			fmt.Fprintf(sb, `<circle cx="%.1f" cy="%.1f" r="3.5" fill="%s"><title>%s: %s</title></circle>`+"\n", p.px, p.py, s.color,
				esc(s.name), esc(formatTick(p.v)))
		}
		// The legend sits in the top margin, under the title, clear of
		// the plot area.
		lx := marginL + i*150
		fmt.Fprintf(sb, `<rect x="%d" y="36" width="14" height="4" fill="%s"/>`+"\n", lx, s.color)
		fmt.Fprintf(sb, `<text x="%d" y="38" dominant-baseline="middle">%s</text>`+"\n", lx+20, esc(s.name))
	}
}

// tickValue turns a tick (a log10 exponent on a log axis) back into a data
// value for pos.
func tickValue(a axis, t float64) float64 {
	if a.log {
		return math.Pow(10, t)
	}
	return t
}
