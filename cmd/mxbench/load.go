package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/mxcont/mxcont/bench"
)

// loadFlags are the load generator's flags, shared by load and outage.
type loadFlags struct {
	addr       string
	sessions   int
	perConn    int
	pipelining onOff
	rcpts      int
	domains    int
	domain     string
	size       string
	mix        bool
	rate       float64
	count      int64
	duration   time.Duration
	timeout    time.Duration
	from       string
	pid        int
}

func (l *loadFlags) register(fs *flag.FlagSet, defCount int64, defPerConn int) {
	l.pipelining = true
	fs.StringVar(&l.addr, "addr", "127.0.0.1:2525", "the MTA's SMTP address")
	fs.IntVar(&l.sessions, "sessions", 20, "concurrent SMTP sessions")
	fs.IntVar(&l.perConn, "per-conn", defPerConn, "messages per connection (0: one connection per session for the whole run)")
	fs.Var(&l.pipelining, "pipelining", "on/off: pipeline MAIL, RCPT and DATA when the server offers PIPELINING")
	fs.IntVar(&l.rcpts, "rcpts", 1, "recipients per message")
	fs.IntVar(&l.domains, "domains", 0, "N distinct recipient domains d0.example … d<N-1>.example (overrides --domain)")
	fs.StringVar(&l.domain, "domain", "example.test", "the recipient domain")
	fs.StringVar(&l.size, "size", "4096", "body size in bytes (4096, 4k, 64KiB, 1M)")
	fs.BoolVar(&l.mix, "mix", false, "realistic size mix instead of --size: 60% text 1–8 KiB, 25% HTML 8–64 KiB, 12% attachment 64 KiB–1 MiB, 3% 1–4 MiB")
	fs.Float64Var(&l.rate, "rate", 0, "target messages per second (0: as fast as possible)")
	fs.Int64Var(&l.count, "count", defCount, "messages to offer (0: use --duration)")
	fs.DurationVar(&l.duration, "duration", 0, "run time when --count is 0")
	fs.DurationVar(&l.timeout, "timeout", time.Minute, "bound on the connect and on each transaction")
	fs.StringVar(&l.from, "from", "sender@mxbench.invalid", "envelope sender and From:")
	fs.IntVar(&l.pid, "pid", 0, "the MTA's PID: sample its process tree's CPU time and peak RSS/PSS from /proc")
}

func (l *loadFlags) config() (bench.LoadConfig, error) {
	size := 0
	if !l.mix {
		var err error
		if size, err = parseSize(l.size); err != nil {
			return bench.LoadConfig{}, err
		}
		if size == 0 {
			return bench.LoadConfig{}, errors.New("--size must be > 0 (or use --mix)")
		}
	}
	if l.count == 0 && l.duration <= 0 {
		return bench.LoadConfig{}, errors.New("give --count or --duration")
	}
	gen, err := bench.NewGenerator(l.from, size)
	if err != nil {
		return bench.LoadConfig{}, err
	}
	doms := []string{l.domain}
	if l.domains > 0 {
		doms = doms[:0]
		for i := range l.domains {
			doms = append(doms, fmt.Sprintf("d%d.example", i))
		}
	}
	return bench.LoadConfig{
		Addr: l.addr, Sessions: l.sessions, PerConn: l.perConn, Pipelining: bool(l.pipelining),
		Rcpts: l.rcpts, Domains: doms, Gen: gen, Rate: l.rate, Count: l.count, Duration: l.duration,
		Timeout: l.timeout, PID: l.pid,
	}, nil
}

func cmdLoad(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var lf loadFlags
	var o output
	lf.register(fs, 10000, 1)
	o.register(fs)
	record := fs.String("record", "", "write every acknowledged message (Message-ID, queue id, digest, recipients) to this JSONL file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := lf.config()
	if err != nil {
		fmt.Fprintln(stderr, "mxbench load:", err)
		return 2
	}
	defer o.startProfile(stderr)()
	if *record != "" {
		f, err := os.Create(*record)
		if err != nil {
			return fail(stderr, err)
		}
		defer f.Close()
		cfg.Record = bench.NewRecorder(f, false)
	}
	pr := newProgress(stderr, o.quiet)
	cfg.Progress = func(p bench.Progress) { pr.show("load", p) }
	res, err := bench.RunLoad(ctx, cfg)
	pr.clear()
	if res == nil {
		return fail(stderr, err)
	}
	if err != nil {
		fmt.Fprintln(stderr, "mxbench load: stopped:", err)
	}
	res.Label = o.label
	if err := o.writeChart(chartTitle("acceptance", o.label, cfg.Addr), bench.Series{Name: "accepted", Points: res.Timeline}); err != nil {
		return fail(stderr, err)
	}
	if err := o.emit(stdout, stderr, res, func(w io.Writer) { bench.WriteLoad(w, res) }); err != nil {
		return fail(stderr, err)
	}
	if res.Accepted == 0 {
		return 1
	}
	return 0
}

func chartTitle(what, label, addr string) string {
	if label != "" {
		return what + ": " + label
	}
	return what + ": " + addr
}

func cmdOutage(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("outage", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var lf loadFlags
	var o output
	lf.register(fs, 2000, 10)
	o.register(fs)
	sinkAddr := fs.String("sink-addr", "127.0.0.1:2626", "the domain's relay host: the sink listens here once the load is over")
	api := fs.String("api", "http://127.0.0.1:8080", "mxcont admin API (checks the relay host, reads the queue); empty: none")
	user := fs.String("user", "admin", "admin API user")
	password := fs.String("password", "", "admin API password (default: $MXCONT_ADMIN_PASSWORD)")
	token := fs.String("token", "", "admin API bearer token (default: $MXBENCH_TOKEN), instead of --user/--password")
	record := fs.String("record", "", "also write the record of acknowledged messages to this JSONL file")
	sinkLog := fs.String("sink-log", "", "write the sink's deliveries to this JSONL file")
	drainTimeout := fs.Duration("drain-timeout", 10*time.Minute, "give up waiting for the drain after this long")
	settle := fs.Duration("settle", 3*time.Second, "keep the sink up this long after the last expected delivery, to catch duplicates")
	drainPID := fs.Int("drain-pid", -1, "PID sampled during the drain (-1: the --pid)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := lf.config()
	if err != nil {
		fmt.Fprintln(stderr, "mxbench outage:", err)
		return 2
	}
	defer o.startProfile(stderr)()
	oc := bench.OutageConfig{Load: cfg, SinkAddr: *sinkAddr, Domain: lf.domain, DrainTimeout: *drainTimeout, Settle: *settle, PID: lf.pid}
	if *drainPID >= 0 {
		oc.PID = *drainPID
	}
	if lf.domains > 0 {
		fmt.Fprintln(stderr, "mxbench outage: use one --domain (relayed to --sink-addr), not --domains")
		return 2
	}
	if *api != "" {
		a := bench.NewAPI(*api)
		tok := *token
		if tok == "" {
			tok = os.Getenv("MXBENCH_TOKEN")
		}
		pw := *password
		if pw == "" {
			pw = os.Getenv("MXCONT_ADMIN_PASSWORD")
		}
		switch {
		case tok != "":
			a.SetToken(tok)
			oc.API = a
		case pw != "":
			if err := a.Login(ctx, *user, pw); err != nil {
				return fail(stderr, fmt.Errorf("%w (use --api '' to run without the API)", err))
			}
			oc.API = a
		default:
			fmt.Fprintln(stderr, "mxbench outage: no API password or token (MXCONT_ADMIN_PASSWORD, --password, --token); running without the API")
		}
	}
	for _, f := range []struct {
		name string
		dst  *io.Writer
	}{{*record, &oc.RecordTo}, {*sinkLog, &oc.SinkLog}} {
		if f.name == "" {
			continue
		}
		fh, err := os.Create(f.name)
		if err != nil {
			return fail(stderr, err)
		}
		defer fh.Close()
		*f.dst = fh
	}
	pr := newProgress(stderr, o.quiet)
	oc.Progress = pr.show
	oc.Logf = func(format string, a ...any) {
		pr.clear()
		if !o.quiet {
			fmt.Fprintf(stderr, "mxbench: "+format+"\n", a...)
		}
	}
	res, err := bench.RunOutage(ctx, oc)
	pr.clear()
	if err != nil {
		return fail(stderr, err)
	}
	res.Label = o.label
	res.Load.Label = o.label
	err = o.writeChart(chartTitle("outage", o.label, cfg.Addr),
		bench.Series{Name: "accepted (primary down)", Points: res.Load.Timeline},
		bench.Series{Name: "delivered to the primary", Offset: res.SinkUpS, Points: res.Sink.Timeline})
	if err != nil {
		return fail(stderr, err)
	}
	if err := o.emit(stdout, stderr, res, func(w io.Writer) { bench.WriteOutage(w, res) }); err != nil {
		return fail(stderr, err)
	}
	if !res.OK {
		return 1
	}
	return 0
}
