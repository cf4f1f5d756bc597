// Command mxbench measures an MTA over SMTP and HTTP only: a load
// generator, a fake customer primary (sink), the whole outage scenario,
// and the reports used by scripts/compare-postfix.sh. See package bench.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mxcont/mxcont/bench"
)

const usage = `usage: mxbench <command> [flags]

commands:
  load     SMTP load generator (acceptance rate, latency, MTA CPU and memory)
  sink     fake customer primary: accept, count, verify digests, check a record
  outage   the whole scenario against a running node: primary down, load,
           primary up, time to first delivery, drain rate, exactly-once check
  check    compare a load record with sink logs offline
  run      time an external load tool (e.g. smtp-source) and sample the MTA
  report   side-by-side markdown tables from JSON results labelled mta/scenario

"mxbench <command> -h" lists the flags of a command.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cmds := map[string]func(context.Context, []string, io.Writer, io.Writer) int{
		"load": cmdLoad, "sink": cmdSink, "outage": cmdOutage, "check": cmdCheck, "run": cmdRun, "report": cmdReport,
	}
	fn, ok := cmds[args[0]]
	if !ok {
		if args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
			fmt.Fprint(stdout, usage)
			return 0
		}
		fmt.Fprintf(stderr, "mxbench: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	return fn(ctx, args[1:], stdout, stderr)
}

// output holds the flags every measuring command shares.
type output struct {
	json       bool
	out        string
	chart      string
	label      string
	quiet      bool
	cpuprofile string
}

func (o *output) register(fs *flag.FlagSet) {
	fs.BoolVar(&o.json, "json", false, "print the result as JSON on stdout instead of the table")
	fs.StringVar(&o.out, "out", "", "also write the JSON result to this file")
	fs.StringVar(&o.chart, "chart", "", "write an SVG chart of throughput over time to this file")
	fs.StringVar(&o.label, "label", "", "label of the result (mta/scenario for reports)")
	fs.BoolVar(&o.quiet, "quiet", false, "no progress line")
	fs.StringVar(&o.cpuprofile, "cpuprofile", "", "write a CPU profile of mxbench itself to this file")
}

// startProfile starts the CPU profile if asked; call the result at exit.
func (o *output) startProfile(stderr io.Writer) func() {
	if o.cpuprofile == "" {
		return func() {}
	}
	f, err := os.Create(o.cpuprofile)
	if err != nil {
		fmt.Fprintln(stderr, "mxbench:", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		fmt.Fprintln(stderr, "mxbench:", err)
		f.Close()
		return func() {}
	}
	return func() { pprof.StopCPUProfile(); f.Close() }
}

// emit prints v as a table (human) or as JSON, and writes --out.
func (o *output) emit(stdout, stderr io.Writer, v any, table func(io.Writer)) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if o.out != "" {
		if err := os.WriteFile(o.out, b, 0o644); err != nil {
			return err
		}
	}
	if o.json {
		_, err = stdout.Write(b)
		return err
	}
	table(stdout)
	return nil
}

func (o *output) writeChart(title string, series ...bench.Series) error {
	if o.chart == "" {
		return nil
	}
	f, err := os.Create(o.chart)
	if err != nil {
		return err
	}
	if err := bench.WriteSVG(f, title, series...); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// progress draws a one-line progress display on a terminal.
type progress struct {
	w       io.Writer
	enabled bool
	drawn   bool
}

func newProgress(w io.Writer, quiet bool) *progress {
	p := &progress{w: w}
	if f, ok := w.(*os.File); ok && !quiet {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			p.enabled = true
		}
	}
	return p
}

func (p *progress) show(phase string, s bench.Progress) {
	if !p.enabled {
		return
	}
	done := fmt.Sprint(s.Accepted)
	if s.Target > 0 {
		done = fmt.Sprintf("%d/%d", s.Accepted, s.Target)
	}
	eta := "–"
	if s.ETA > 0 {
		eta = s.ETA.Round(time.Second).String()
	}
	fail := ""
	if s.Failed > 0 {
		fail = fmt.Sprintf("  failed %d", s.Failed)
	}
	fmt.Fprintf(p.w, "\r\033[K%s: %s msgs  %.0f msg/s  %s elapsed  ETA %s%s", phase, done, s.Rate,
		s.Elapsed.Round(time.Second), eta, fail)
	p.drawn = true
}

func (p *progress) clear() {
	if p.drawn {
		fmt.Fprint(p.w, "\r\033[K")
		p.drawn = false
	}
}

// parseSize reads "4096", "4k", "4KiB", "64K", "1M", "2MiB".
func parseSize(s string) (int, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	mult := 1
	for _, suf := range []struct {
		s string
		m int
	}{{"kib", 1 << 10}, {"mib", 1 << 20}, {"kb", 1000}, {"mb", 1000 * 1000}, {"k", 1 << 10}, {"m", 1 << 20}, {"b", 1}} {
		if strings.HasSuffix(t, suf.s) {
			t, mult = strings.TrimSuffix(t, suf.s), suf.m
			break
		}
	}
	n, err := strconv.Atoi(strings.TrimSpace(t))
	if err != nil || n < 0 {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return n * mult, nil
}

// onOff is a flag taking on/off (or true/false).
type onOff bool

func (b *onOff) String() string {
	if *b {
		return "on"
	}
	return "off"
}

func (b *onOff) Set(s string) error {
	switch strings.ToLower(s) {
	case "on", "true", "yes", "1":
		*b = true
	case "off", "false", "no", "0":
		*b = false
	default:
		return errors.New("want on or off")
	}
	return nil
}

// parseCodes reads "451,550".
func parseCodes(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("bad reply code %q", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func fail(stderr io.Writer, err error) int {
	fmt.Fprintln(stderr, "mxbench:", err)
	return 1
}
