package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"time"

	"github.com/mxcont/mxcont/bench"
)

func readRecordFile(name string) ([]bench.RecordEntry, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return bench.ReadRecord(f)
}

func cmdSink(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sink", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o output
	o.register(fs)
	addr := fs.String("addr", "127.0.0.1:2626", "listen address")
	latency := fs.Duration("latency", 0, "delay before the reply to the end of DATA")
	failRate := fs.Float64("fail-rate", 0, "share of messages refused at the end of DATA (0..1)")
	failCodes := fs.String("fail-codes", "451", "reply codes of the injected failures, used in turn (e.g. 451,550)")
	logName := fs.String("log", "", "write every received message (Message-ID, recipients, digest) to this JSONL file")
	check := fs.String("check", "", "record of the load generator: report missing and duplicate messages against it")
	untilDone := fs.Bool("until-done", false, "with --check: exit once every recorded message has arrived")
	expect := fs.Int64("expect", 0, "exit once this many messages have arrived")
	timeout := fs.Duration("timeout", 0, "exit after this long (0: until done or a signal)")
	settle := fs.Duration("settle", 0, "once done, stay up this long to catch duplicates")
	flushAfter := fs.Duration("flush-after", 0, "run --flush-cmd if nothing arrived this long after start")
	flushCmd := fs.String("flush-cmd", "", "command (sh -c) that makes the MTA retry now, e.g. 'postqueue -f'")
	pid := fs.Int("pid", 0, "the MTA's PID: sample its process tree during the drain")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	codes, err := parseCodes(*failCodes)
	if err != nil {
		fmt.Fprintln(stderr, "mxbench sink:", err)
		return 2
	}
	if *untilDone && *check == "" {
		fmt.Fprintln(stderr, "mxbench sink: --until-done needs --check")
		return 2
	}
	defer o.startProfile(stderr)()
	cfg := bench.SinkConfig{Addr: *addr, Latency: *latency, FailRate: *failRate, FailCodes: codes}
	var checker *bench.Checker
	var want int64
	if *check != "" {
		entries, err := readRecordFile(*check)
		if err != nil {
			return fail(stderr, err)
		}
		checker = bench.NewChecker(entries)
		cfg.Checker = checker
		for _, e := range entries {
			want += int64(len(e.Rcpts))
		}
	}
	if *logName != "" {
		f, err := os.Create(*logName)
		if err != nil {
			return fail(stderr, err)
		}
		defer f.Close()
		cfg.Log = f
	}
	var sampler *bench.ProcSampler
	if *pid > 0 {
		if sampler, err = bench.StartProcSampler(*pid, 500*time.Millisecond); err != nil {
			return fail(stderr, err)
		}
	}
	sink, err := bench.StartSink(cfg)
	if err != nil {
		if sampler != nil {
			sampler.Stop()
		}
		return fail(stderr, err)
	}
	if !o.quiet && !o.json {
		fmt.Fprintf(stderr, "mxbench: sink listening on %s\n", sink.Addr())
	}

	wctx := ctx
	if *timeout > 0 {
		var cancel context.CancelFunc
		wctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}
	var flushAt float64
	flushDone, stopFlush := make(chan struct{}), make(chan struct{})
	if *flushCmd != "" {
		go func() {
			defer close(flushDone)
			t := time.NewTimer(*flushAfter)
			defer t.Stop()
			select {
			case <-t.C:
			case <-wctx.Done():
				return
			case <-stopFlush:
				return
			}
			if sink.Messages() > 0 {
				return
			}
			flushAt = time.Since(sink.Up()).Seconds()
			out, err := exec.CommandContext(wctx, "sh", "-c", *flushCmd).CombinedOutput()
			if err != nil {
				fmt.Fprintf(stderr, "mxbench: flush command: %v: %s\n", err, out)
			}
		}()
	} else {
		close(flushDone)
	}

	done := func() bool {
		switch {
		case *untilDone:
			return checker.Done()
		case *expect > 0:
			return sink.Messages() >= *expect
		}
		return false
	}
	pr := newProgress(stderr, o.quiet)
	stopProgress := make(chan struct{})
	go func() {
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		var last int64
		lastT := time.Now()
		for {
			select {
			case <-stopProgress:
				return
			case now := <-t.C:
				n := sink.Messages()
				target := *expect
				if checker != nil {
					n, target = int64(checker.Delivered()), want
				}
				p := bench.Progress{Elapsed: now.Sub(sink.Up()), Accepted: n, Target: target,
					Rate: float64(n-last) / now.Sub(lastT).Seconds()}
				if p.Rate > 0 && target > 0 {
					p.ETA = time.Duration(float64(target-n) / p.Rate * float64(time.Second))
				}
				last, lastT = n, now
				pr.show("sink", p)
			}
		}
	}()
	werr := sink.Wait(wctx, done)
	close(stopFlush)
	close(stopProgress)
	pr.clear()
	atDone := sink.Stats()
	timedOut := werr != nil && ctx.Err() == nil && (*untilDone || *expect > 0)
	if werr == nil && *settle > 0 {
		select {
		case <-time.After(*settle):
		case <-ctx.Done():
		}
	}
	<-flushDone
	st := sink.Stats()
	if err := sink.Close(); err != nil {
		fmt.Fprintln(stderr, "mxbench sink:", err)
	}
	// Drain figures stop at the moment the expected mail had all arrived.
	if werr == nil && (*untilDone || *expect > 0) {
		st.LastS, st.DrainRate, st.T50S, st.T99S, st.Rate99 = atDone.LastS, atDone.DrainRate, atDone.T50S, atDone.T99S, atDone.Rate99
	}
	st.Label, st.TimedOut, st.FlushAtS = o.label, timedOut, flushAt
	if flushAt > 0 {
		st.FlushCmd = *flushCmd
	}
	if checker != nil {
		c := checker.Result(10)
		st.Check = &c
	}
	if sampler != nil {
		ps := sampler.Stop()
		st.Proc = &ps
	}
	if err := o.writeChart(chartTitle("deliveries", o.label, st.Addr), bench.Series{Name: "delivered", Points: st.Timeline}); err != nil {
		return fail(stderr, err)
	}
	if err := o.emit(stdout, stderr, &st, func(w io.Writer) { bench.WriteSink(w, &st) }); err != nil {
		return fail(stderr, err)
	}
	if timedOut || (st.Check != nil && !st.Check.OK) {
		return 1
	}
	return 0
}

func cmdCheck(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print the result as JSON")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: mxbench check [--json] RECORD SINKLOG...")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() < 2 {
		fs.Usage()
		return 2
	}
	entries, err := readRecordFile(fs.Arg(0))
	if err != nil {
		return fail(stderr, err)
	}
	var all []bench.Delivery
	for _, name := range fs.Args()[1:] {
		f, err := os.Open(name)
		if err != nil {
			return fail(stderr, err)
		}
		ds, err := bench.ReadDeliveries(f)
		f.Close()
		if err != nil {
			return fail(stderr, fmt.Errorf("%s: %w", name, err))
		}
		all = append(all, ds...)
	}
	res := bench.Check(entries, all)
	o := output{json: *asJSON}
	if err := o.emit(stdout, stderr, &res, func(w io.Writer) { bench.WriteCheck(w, &res) }); err != nil {
		return fail(stderr, err)
	}
	if !res.OK {
		return 1
	}
	return 0
}
