package bench

import (
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
)

// Comparison of two MTAs measured with the same scenarios: results are
// labelled "<mta>/<scenario>"; acceptance comes from load and run
// results, drain from sink results.

type acceptRow struct {
	scenario, tool string
	rate           [2]float64
	p99            [2]float64 // 0: not measured
	cpuPerMsg      [2]float64 // ms
	pss, rss       [2]float64
	acc            [2]string
	have           [2]bool
}

type drainRow struct {
	scenario  string
	rate      [2]float64
	first     [2]string
	lostDup   [2]string
	cpuPerMsg [2]float64
	pss       [2]float64
	have      [2]bool
}

func toolOf(r Result) string {
	if r.Run != nil {
		for _, known := range []string{"smtp-source", "swaks"} {
			if strings.Contains(r.Run.Command, known) {
				return known
			}
		}
		f := strings.Fields(r.Run.Command)
		if len(f) > 0 {
			return filepath.Base(f[0])
		}
	}
	return "mxbench"
}

// WriteComparison prints markdown tables comparing mtas[0] (the baseline)
// with mtas[1], with ratios mtas[1] ÷ mtas[0].
func WriteComparison(w io.Writer, results []Result, mtas [2]string) {
	var acc []*acceptRow
	var drn []*drainRow
	findA := func(sc, tool string) *acceptRow {
		for _, r := range acc {
			if r.scenario == sc && r.tool == tool {
				return r
			}
		}
		r := &acceptRow{scenario: sc, tool: tool}
		acc = append(acc, r)
		return r
	}
	findD := func(sc string) *drainRow {
		for _, r := range drn {
			if r.scenario == sc {
				return r
			}
		}
		r := &drainRow{scenario: sc}
		drn = append(drn, r)
		return r
	}
	var peakRSS, peakPSS [2]float64
	notePeak := func(i int, p *ProcStats) {
		if p != nil {
			peakRSS[i] = max(peakRSS[i], p.PeakRSSMiB)
			peakPSS[i] = max(peakPSS[i], p.PeakPSSMiB)
		}
	}
	for _, r := range results {
		mta, sc := r.split()
		i := slices.Index(mtas[:], mta)
		if i < 0 {
			continue
		}
		switch {
		case r.Load != nil:
			row := findA(sc, "mxbench")
			row.have[i] = true
			row.rate[i] = r.Load.MsgsPerSec
			row.p99[i] = r.Load.Latency.P99
			row.acc[i] = fmt.Sprintf("%d/%d", r.Load.Accepted, r.Load.Offered)
			if p := r.Load.Proc; p != nil && r.Load.Accepted > 0 {
				row.cpuPerMsg[i] = p.CPUSeconds * 1000 / float64(r.Load.Accepted)
				row.pss[i], row.rss[i] = p.PeakPSSMiB, p.PeakRSSMiB
			}
			notePeak(i, r.Load.Proc)
		case r.Run != nil:
			row := findA(sc, toolOf(r))
			row.have[i] = true
			row.rate[i] = r.Run.MsgsPerSec
			row.acc[i] = fmt.Sprintf("exit %d", r.Run.ExitCode)
			if p := r.Run.Proc; p != nil && r.Run.Count > 0 {
				row.cpuPerMsg[i] = p.CPUSeconds * 1000 / float64(r.Run.Count)
				row.pss[i], row.rss[i] = p.PeakPSSMiB, p.PeakRSSMiB
			}
			notePeak(i, r.Run.Proc)
		case r.Sink != nil:
			s := r.Sink
			row := findD(sc)
			row.have[i] = true
			row.rate[i] = s.DrainRate
			row.first[i] = FirstDelivery(s)
			if s.FlushAtS >= 1 && s.FirstS >= s.FlushAtS {
				row.first[i] += fmt.Sprintf("; %.2f s after the flush", s.FirstS-s.FlushAtS)
			}
			switch c := s.Check; {
			case c == nil:
				row.lostDup[i] = fmt.Sprintf("%d received", s.Messages)
			case c.OK:
				row.lostDup[i] = "OK"
			default:
				row.lostDup[i] = fmt.Sprintf("%d lost, %d dup, %d bad", c.MissingMessages, c.Duplicates, c.DigestBad)
			}
			if s.TimedOut {
				row.lostDup[i] += " (timed out)"
			}
			if p := s.Proc; p != nil && s.Messages > 0 {
				row.cpuPerMsg[i] = p.CPUSeconds * 1000 / float64(s.Messages)
				row.pss[i] = p.PeakPSSMiB
			}
			notePeak(i, s.Proc)
		}
	}
	a, b := mtas[0], mtas[1]
	ratio := func(x [2]float64) string {
		if x[0] <= 0 || x[1] <= 0 {
			return "–"
		}
		return fmt.Sprintf("**%.1f×**", x[1]/x[0])
	}
	num := func(v float64, f string) string {
		if v <= 0 {
			return "–"
		}
		return fmt.Sprintf(f, v)
	}
	str := func(s string) string {
		if s == "" {
			return "–"
		}
		return s
	}
	var accRatios, drnRatios []float64
	if len(acc) > 0 {
		fmt.Fprintf(w, "Acceptance with the primary down (fsync before 250 in both):\n\n")
		fmt.Fprintf(w, "| scenario | load tool | %s msg/s | %s msg/s | %s ÷ %s | p99 DATA→250 ms (%s / %s) | CPU ms/msg (%s / %s) | peak PSS MiB (%s / %s) | accepted (%s / %s) |\n",
			a, b, b, a, a, b, a, b, a, b, a, b)
		fmt.Fprintf(w, "|---|---|---:|---:|---:|---:|---:|---:|---|\n")
		for _, r := range acc {
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s / %s | %s / %s | %s / %s | %s / %s |\n",
				r.scenario, r.tool, num(r.rate[0], "%.0f"), num(r.rate[1], "%.0f"), ratio(r.rate),
				num(r.p99[0], "%.1f"), num(r.p99[1], "%.1f"), num(r.cpuPerMsg[0], "%.2f"), num(r.cpuPerMsg[1], "%.2f"),
				num(r.pss[0], "%.0f"), num(r.pss[1], "%.0f"), str(r.acc[0]), str(r.acc[1]))
			if r.rate[0] > 0 && r.rate[1] > 0 {
				accRatios = append(accRatios, r.rate[1]/r.rate[0])
			}
		}
		fmt.Fprintln(w)
	}
	if len(drn) > 0 {
		fmt.Fprintf(w, "Drain after the primary comes back:\n\n")
		fmt.Fprintf(w, "| scenario | %s drain msg/s | %s drain msg/s | %s ÷ %s | first delivery %s | first delivery %s | exactly once (%s / %s) | CPU ms/msg (%s / %s) |\n",
			a, b, b, a, a, b, a, b, a, b)
		fmt.Fprintf(w, "|---|---:|---:|---:|---|---|---|---:|\n")
		for _, r := range drn {
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s / %s | %s / %s |\n",
				r.scenario, num(r.rate[0], "%.0f"), num(r.rate[1], "%.0f"), ratio(r.rate),
				str(r.first[0]), str(r.first[1]), str(r.lostDup[0]), str(r.lostDup[1]),
				num(r.cpuPerMsg[0], "%.2f"), num(r.cpuPerMsg[1], "%.2f"))
			if r.rate[0] > 0 && r.rate[1] > 0 {
				drnRatios = append(drnRatios, r.rate[1]/r.rate[0])
			}
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "| summary | %s | %s |\n|---|---:|---:|\n", a, b)
	fmt.Fprintf(w, "| peak RSS of the process tree, MiB (any phase) | %.0f | %.0f |\n", peakRSS[0], peakRSS[1])
	fmt.Fprintf(w, "| peak PSS of the process tree, MiB (any phase) | %.0f | %.0f |\n", peakPSS[0], peakPSS[1])
	if len(accRatios) > 0 {
		fmt.Fprintf(w, "| acceptance ratio %s ÷ %s: min / median / max | %s | |\n", b, a, ratioSpread(accRatios))
	}
	if len(drnRatios) > 0 {
		fmt.Fprintf(w, "| drain ratio %s ÷ %s: min / median / max | %s | |\n", b, a, ratioSpread(drnRatios))
	}
}

func ratioSpread(v []float64) string {
	s := slices.Clone(v)
	slices.Sort(s)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return fmt.Sprintf("%.1f× / %.1f× / %.1f×", s[0], med, s[len(s)-1])
}
