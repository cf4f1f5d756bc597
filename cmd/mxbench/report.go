package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/mxcont/mxcont/bench"
)

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o output
	o.register(fs)
	count := fs.Int64("count", 0, "messages the command sends (for the rate)")
	pid := fs.Int("pid", 0, "the MTA's PID: sample its process tree")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: mxbench run --count N [--pid PID] [--label L] [--out FILE] -- COMMAND [ARGS...]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 || *count <= 0 {
		fs.Usage()
		return 2
	}
	res, err := bench.RunCommand(ctx, *count, *pid, fs.Args(), stderr, stderr)
	if err != nil {
		return fail(stderr, err)
	}
	res.Label = o.label
	if err := o.emit(stdout, stderr, res, func(w io.Writer) { bench.WriteRun(w, res) }); err != nil {
		return fail(stderr, err)
	}
	if res.ExitCode != 0 {
		return 1
	}
	return 0
}

func cmdReport(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	fs.SetOutput(stderr)
	mtas := fs.String("mtas", "postfix,mxcont", "baseline,other: the MTA names in the labels (ratios are other ÷ baseline)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: mxbench report [--mtas postfix,mxcont] RESULT.json...")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	names := strings.Split(*mtas, ",")
	if len(names) != 2 || fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	var results []bench.Result
	for _, name := range fs.Args() {
		b, err := os.ReadFile(name)
		if err != nil {
			return fail(stderr, err)
		}
		r, err := bench.DecodeResult(b)
		if err != nil {
			return fail(stderr, fmt.Errorf("%s: %w", name, err))
		}
		if r.Outage != nil { // an outage is a load and a drain
			r.Outage.Load.Label = r.Label
			r.Outage.Sink.Label = r.Label
			results = append(results, bench.Result{Type: "load", Label: r.Label, Load: r.Outage.Load},
				bench.Result{Type: "sink", Label: r.Label, Sink: &r.Outage.Sink})
			continue
		}
		results = append(results, r)
	}
	bench.WriteComparison(stdout, results, [2]string{names[0], names[1]})
	return 0
}
