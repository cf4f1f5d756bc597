package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
)

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func fmtErrors(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	keys := slices.Sorted(maps.Keys(m))
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s: %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

func procLine(p *ProcStats, msgs int64) string {
	if p == nil {
		return ""
	}
	per := ""
	if msgs > 0 {
		per = fmt.Sprintf(" (%.2f ms/msg)", p.CPUSeconds*1000/float64(msgs))
	}
	return fmt.Sprintf("pid %d tree: %.2f CPU s%s, peak RSS %.1f MiB, peak PSS %.1f MiB, %d %s",
		p.PID, p.CPUSeconds, per, p.PeakRSSMiB, p.PeakPSSMiB, p.PeakProcs, plural(p.PeakProcs, "process", "processes"))
}

// WriteLoad prints a load result as a table.
func WriteLoad(w io.Writer, r *LoadResult) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	pc := "whole run"
	if r.PerConn > 0 {
		pc = fmt.Sprint(r.PerConn)
	}
	size := r.Size + "-byte bodies"
	if r.Size == "mix" {
		size = "realistic mix"
	}
	onoff := map[bool]string{true: "on", false: "off"}
	fmt.Fprintf(tw, "load\t%s%s\n", r.Addr, labelSuffix(r.Label))
	fmt.Fprintf(tw, "shape\t%d %s, %s msg/conn, pipelining %s, %d rcpt/msg, %d %s, %s\n", r.Sessions,
		plural(r.Sessions, "session", "sessions"), pc, onoff[r.Pipelining], r.Rcpts, r.Domains, plural(r.Domains, "domain", "domains"), size)
	if r.TargetRate > 0 {
		fmt.Fprintf(tw, "target rate\t%.0f msg/s\n", r.TargetRate)
	}
	pct := 0.0
	if r.Offered > 0 {
		pct = 100 * float64(r.Accepted) / float64(r.Offered)
	}
	fmt.Fprintf(tw, "accepted\t%d of %d (%.1f%%)\n", r.Accepted, r.Offered, pct)
	fmt.Fprintf(tw, "elapsed\t%.2f s\n", r.Elapsed)
	fmt.Fprintf(tw, "throughput\t%.1f msg/s, %.2f MB/s\n", r.MsgsPerSec, r.MBPerSec)
	l := r.Latency
	fmt.Fprintf(tw, "DATA→250\tp50 %.1f ms, p95 %.1f ms, p99 %.1f ms, max %.1f ms\n", l.P50, l.P95, l.P99, l.Max)
	fmt.Fprintf(tw, "errors\t%s\n", fmtErrors(r.Errors))
	if r.Proc != nil {
		fmt.Fprintf(tw, "MTA\t%s\n", procLine(r.Proc, r.Accepted))
	}
	fmt.Fprintf(tw, "mxbench\t%.2f CPU s (the load generator itself)\n", r.SelfCPU)
	tw.Flush()
}

func labelSuffix(l string) string {
	if l == "" {
		return ""
	}
	return " [" + l + "]"
}

// FirstDelivery renders the time from the primary coming up to the first
// delivery, honest about a flush command and about no delivery at all.
func FirstDelivery(s *SinkStats) string {
	switch {
	case s.FlushAtS > 0 && s.FlushAtS < 1 && s.FirstS >= s.FlushAtS:
		return fmt.Sprintf("%.2f s (flushed at once)", s.FirstS)
	case s.FlushAtS > 0 && (s.FirstS < 0 || s.FirstS >= s.FlushAtS):
		return fmt.Sprintf(">%.0f s (none before the flush)", s.FlushAtS)
	case s.FirstS < 0:
		return fmt.Sprintf(">%.0f s (none)", s.Elapsed)
	default:
		return fmt.Sprintf("%.2f s", s.FirstS)
	}
}

// WriteSink prints a sink result as a table.
func WriteSink(w io.Writer, s *SinkStats) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "sink\t%s%s\n", s.Addr, labelSuffix(s.Label))
	fmt.Fprintf(tw, "received\t%d messages, %d recipients, %.1f MB in %.1f s\n", s.Messages, s.Rcpts, float64(s.Bytes)/1e6, s.Elapsed)
	if s.Injected > 0 {
		fmt.Fprintf(tw, "injected failures\t%d\n", s.Injected)
	}
	fmt.Fprintf(tw, "digests\tok %d, bad %d, none %d\n", s.Digests[DigestOK], s.Digests[DigestBad], s.Digests[DigestMissing])
	fmt.Fprintf(tw, "first delivery\t%s after the sink came up\n", FirstDelivery(s))
	if s.FlushAtS > 0 {
		fmt.Fprintf(tw, "flush\t%q at %.1f s\n", s.FlushCmd, s.FlushAtS)
	}
	if s.FirstS >= 0 {
		fmt.Fprintf(tw, "last delivery\t%.2f s\n", s.LastS)
		fmt.Fprintf(tw, "drain rate\t%.1f msg/s (first to last delivery)\n", s.DrainRate)
		fmt.Fprintf(tw, "50%% / 99%% received\tat %.2f s / %.2f s (%.1f msg/s up to 99%%)\n", s.T50S, s.T99S, s.Rate99)
	}
	if s.TimedOut {
		fmt.Fprintf(tw, "timed out\tyes\n")
	}
	if s.Proc != nil {
		fmt.Fprintf(tw, "MTA\t%s\n", procLine(s.Proc, s.Messages))
	}
	fmt.Fprintf(tw, "mxbench\t%.2f CPU s (the sink itself)\n", s.SelfCPU)
	tw.Flush()
	if s.Check != nil {
		WriteCheck(w, s.Check)
	}
}

// WriteCheck prints a check result.
func WriteCheck(w io.Writer, c *CheckResult) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	verdict := "OK: every acknowledged message arrived exactly once"
	if !c.OK {
		verdict = "FAILED"
	}
	fmt.Fprintf(tw, "check\t%s\n", verdict)
	fmt.Fprintf(tw, "expected\t%d messages, %d recipients\n", c.ExpectedMessages, c.ExpectedRcpts)
	fmt.Fprintf(tw, "delivered\t%d recipients\n", c.DeliveredRcpts)
	fmt.Fprintf(tw, "lost\t%d recipients of %d messages\n", c.Missing, c.MissingMessages)
	fmt.Fprintf(tw, "duplicates\t%d extra copies\n", c.Duplicates)
	fmt.Fprintf(tw, "bad digests\t%d\n", c.DigestBad)
	if c.Unexpected > 0 {
		fmt.Fprintf(tw, "other mail\t%d recipients not in the record\n", c.Unexpected)
	}
	if len(c.MissingSample) > 0 {
		fmt.Fprintf(tw, "missing, e.g.\t%s\n", strings.Join(c.MissingSample, " "))
	}
	tw.Flush()
}

// WriteOutage prints an outage result.
func WriteOutage(w io.Writer, r *OutageResult) {
	fmt.Fprintf(w, "== acceptance (primary down)\n")
	WriteLoad(w, r.Load)
	fmt.Fprintf(w, "\n== recovery (primary up)\n")
	WriteSink(w, &r.Sink)
	fmt.Fprintf(w, "\n== outage scenario%s\n", labelSuffix(r.Label))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	q := func(n int64) string {
		if n < 0 {
			return "?"
		}
		return fmt.Sprint(n)
	}
	fmt.Fprintf(tw, "queued (API)\tbefore %s, after load %s, after drain %s\n", q(r.QueuedBefore), q(r.QueuedAfterLoad), q(r.QueuedAfterDrain))
	fmt.Fprintf(tw, "acceptance\t%.1f msg/s (%d messages)\n", r.Load.MsgsPerSec, r.Load.Accepted)
	fmt.Fprintf(tw, "first delivery\t%s after the primary came up\n", FirstDelivery(&r.Sink))
	if !r.TimedOut {
		fmt.Fprintf(tw, "all delivered\t%.2f s after the primary came up\n", r.AllDeliveredS)
		fmt.Fprintf(tw, "drain rate\t%.1f msg/s (all); %.1f msg/s up to 99%% (at %.2f s)\n", r.DrainRate, r.Sink.Rate99, r.Sink.T99S)
	} else {
		fmt.Fprintf(tw, "all delivered\tNO (timed out)\n")
	}
	fmt.Fprintf(tw, "lost\t%d\n", r.Lost)
	fmt.Fprintf(tw, "duplicates\t%d\n", r.Duplicates)
	verdict := "PASS"
	if !r.OK {
		verdict = "FAIL"
	}
	fmt.Fprintf(tw, "result\t%s\n", verdict)
	tw.Flush()
}

// WriteRun prints a RunCommand result.
func WriteRun(w io.Writer, r *RunResult) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "run\t%s%s\n", r.Command, labelSuffix(r.Label))
	fmt.Fprintf(tw, "messages\t%d in %.2f s: %.1f msg/s (exit %d)\n", r.Count, r.Elapsed, r.MsgsPerSec, r.ExitCode)
	if r.Proc != nil {
		fmt.Fprintf(tw, "MTA\t%s\n", procLine(r.Proc, r.Count))
	}
	tw.Flush()
}

// Result is one JSON result of any type, as read back by the report.
type Result struct {
	Type   string
	Label  string
	Load   *LoadResult
	Run    *RunResult
	Sink   *SinkStats
	Outage *OutageResult
}

// DecodeResult reads one JSON result written by mxbench.
func DecodeResult(b []byte) (Result, error) {
	var head struct{ Type, Label string }
	if err := json.Unmarshal(b, &head); err != nil {
		return Result{}, err
	}
	r := Result{Type: head.Type, Label: head.Label}
	var err error
	switch head.Type {
	case "load":
		r.Load = new(LoadResult)
		err = json.Unmarshal(b, r.Load)
	case "run":
		r.Run = new(RunResult)
		err = json.Unmarshal(b, r.Run)
	case "sink":
		r.Sink = new(SinkStats)
		err = json.Unmarshal(b, r.Sink)
	case "outage":
		r.Outage = new(OutageResult)
		err = json.Unmarshal(b, r.Outage)
	default:
		err = fmt.Errorf("bench: unknown result type %q", head.Type)
	}
	return r, err
}

// split cuts a label "mta/scenario".
func (r Result) split() (mta, scenario string) {
	m, s, ok := strings.Cut(r.Label, "/")
	if !ok {
		return r.Label, ""
	}
	return m, s
}
