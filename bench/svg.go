package bench

import (
	"fmt"
	"html"
	"io"
	"math"
	"strings"
)

// Series is a cumulative count over time, drawn as a rate (per second).
type Series struct {
	Name   string
	Offset float64 // seconds added to every point's time
	Points []Point // cumulative, time-ordered
}

// rates resamples a cumulative series into per-step rates: the value at
// t is the count added during (t-step, t], divided by step.
func rates(pts []Point, step float64) []Point {
	if len(pts) == 0 {
		return nil
	}
	at := func(t float64) float64 { // cumulative count at t, interpolated
		if t <= 0 {
			return 0
		}
		prev := Point{}
		for _, p := range pts {
			if p.T >= t {
				if p.T == prev.T {
					return float64(p.N)
				}
				return float64(prev.N) + float64(p.N-prev.N)*(t-prev.T)/(p.T-prev.T)
			}
			prev = p
		}
		return float64(prev.N)
	}
	end := pts[len(pts)-1].T
	var out []Point
	for t := step; t < end+step; t += step {
		tt := math.Min(t, end)
		d := tt - (t - step)
		if d <= 0 {
			break
		}
		out = append(out, Point{T: tt, N: int64(math.Round((at(tt) - at(t-step)) / d))})
	}
	return out
}

var svgColors = []string{"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"}

// WriteSVG draws the series as throughput (messages per second) over time.
func WriteSVG(w io.Writer, title string, series ...Series) error {
	const W, H, ml, mr, mt, mb = 860.0, 380.0, 70.0, 20.0, 40.0, 50.0
	type line struct {
		name string
		pts  []Point
	}
	var lines []line
	maxT, maxY := 1.0, 1.0
	for _, s := range series {
		step := 1.0
		if n := len(s.Points); n > 0 && s.Points[n-1].T < 10 {
			step = 0.25
		}
		r := rates(s.Points, step)
		for i := range r {
			r[i].T += s.Offset
			maxT = math.Max(maxT, r[i].T)
			maxY = math.Max(maxY, float64(r[i].N))
		}
		lines = append(lines, line{s.Name, r})
	}
	maxY = niceCeil(maxY * 1.05)
	maxT = niceCeil(maxT)
	x := func(t float64) float64 { return ml + (W-ml-mr)*t/maxT }
	y := func(v float64) float64 { return H - mb - (H-mt-mb)*v/maxY }

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="12">`+"\n", W, H, W, H)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%.0f" y="22" font-size="15" font-weight="bold">%s</text>`+"\n", ml, html.EscapeString(title))
	for i := 0; i <= 5; i++ {
		v := maxY * float64(i) / 5
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", ml, y(v), W-mr, y(v))
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="end">%s</text>`+"\n", ml-6, y(v)+4, fmtNum(v))
		t := maxT * float64(i) / 5
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", x(t), H-mb+18, fmtNum(t))
	}
	fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="black"/>`+"\n", ml, H-mb, W-mr, H-mb)
	fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="black"/>`+"\n", ml, mt, ml, H-mb)
	fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">seconds</text>`+"\n", (ml+W-mr)/2, H-10)
	fmt.Fprintf(&b, `<text transform="translate(16 %.1f) rotate(-90)" text-anchor="middle">messages / s</text>`+"\n", (mt+H-mb)/2)
	for i, l := range lines {
		c := svgColors[i%len(svgColors)]
		if len(l.pts) > 0 {
			var pts []string
			for _, p := range l.pts {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(p.T), y(float64(p.N))))
			}
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", c, strings.Join(pts, " "))
		}
		ly := mt + 8 + 16*float64(i)
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="14" height="3" fill="%s"/>`, W-mr-200, ly-4, c)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f">%s</text>`+"\n", W-mr-180, ly, html.EscapeString(l.name))
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

func fmtNum(v float64) string {
	if v == math.Trunc(v) {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}
