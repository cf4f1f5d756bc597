package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// OutageConfig is the continuity scenario against a running MTA.
type OutageConfig struct {
	// Load is the acceptance phase; Load.Addr is the MTA. Its Record is
	// replaced by one that keeps the entries in memory (and writes them
	// to RecordTo, if set).
	Load     LoadConfig
	RecordTo io.Writer
	// SinkAddr is where the MTA relays the domain's mail: it must be
	// down until the load is over.
	SinkAddr string
	SinkLog  io.Writer // optional: the sink's deliveries (JSONL)
	// API and Domain, if set, are used to check the domain's relay host,
	// and to read its queue before and after.
	API    *API
	Domain string
	// DrainTimeout bounds the wait for every message (default 10 min).
	DrainTimeout time.Duration
	// Settle is how long the sink stays up after the last expected
	// delivery, to catch duplicates (default 3s).
	Settle time.Duration
	// PID, if > 0, is the MTA's process, sampled during the drain (set
	// Load.PID for the acceptance).
	PID int
	// Progress, if set, is called about twice a second with the phase
	// ("load" or "drain").
	Progress func(phase string, p Progress)
	// Logf, if set, reports the steps.
	Logf func(format string, args ...any)
}

// OutageResult is the outcome of RunOutage.
type OutageResult struct {
	Type  string `json:"type"` // "outage"
	Label string `json:"label,omitempty"`

	Load *LoadResult `json:"load"`
	Sink SinkStats   `json:"sink"`

	QueuedBefore     int64 `json:"queued_before"` // from the API; -1: unknown
	QueuedAfterLoad  int64 `json:"queued_after_load"`
	QueuedAfterDrain int64 `json:"queued_after_drain"`

	SinkUpS        float64 `json:"sink_up_s"`        // load start → primary up
	FirstDeliveryS float64 `json:"first_delivery_s"` // primary up → first delivery
	AllDeliveredS  float64 `json:"all_delivered_s"`  // primary up → last acknowledged message delivered
	DrainRate      float64 `json:"drain_msgs_per_s"` // acknowledged messages / (last - first delivery)
	Lost           int     `json:"lost_messages"`
	Duplicates     int     `json:"duplicate_copies"`
	TimedOut       bool    `json:"timed_out"`
	OK             bool    `json:"ok"`
}

// ErrPrimaryUp is returned when something already listens on the sink
// address before the load.
var ErrPrimaryUp = errors.New("bench: something listens on the primary's address; it must be down during the load")

// RunOutage runs the scenario: with the primary down, offer the load to
// the MTA; then start the sink as the primary, measure the time to the
// first delivery and the drain rate until every acknowledged message has
// arrived, and check that each arrived exactly once.
func RunOutage(ctx context.Context, cfg OutageConfig) (*OutageResult, error) {
	logf := cfg.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = 10 * time.Minute
	}
	if cfg.Settle <= 0 {
		cfg.Settle = 3 * time.Second
	}
	res := &OutageResult{Type: "outage", QueuedBefore: -1, QueuedAfterLoad: -1, QueuedAfterDrain: -1}

	if c, err := net.DialTimeout("tcp", cfg.SinkAddr, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("%w (%s)", ErrPrimaryUp, cfg.SinkAddr)
	}
	queued := func() int64 {
		if cfg.API == nil {
			return -1
		}
		d, err := cfg.API.Domain(ctx, cfg.Domain)
		if err != nil {
			logf("api: %v", err)
			return -1
		}
		return d.Status.QueuedMessages
	}
	if cfg.API != nil {
		d, err := cfg.API.Domain(ctx, cfg.Domain)
		if err != nil {
			return nil, err
		}
		if !sameHostPort(d.RelayHost, cfg.SinkAddr) {
			return nil, fmt.Errorf("bench: domain %s is relayed to %s, not to the sink at %s", cfg.Domain, d.RelayHost, cfg.SinkAddr)
		}
		res.QueuedBefore = d.Status.QueuedMessages
		logf("domain %s: relay host %s (%s), %d queued", cfg.Domain, d.RelayHost, d.Status.RelayState, res.QueuedBefore)
	}

	rec := NewRecorder(cfg.RecordTo, true)
	lc := cfg.Load
	lc.Record = rec
	if cfg.Progress != nil {
		lc.Progress = func(p Progress) { cfg.Progress("load", p) }
	}
	logf("primary %s down; loading %s", cfg.SinkAddr, cfg.Load.Addr)
	loadStart := time.Now()
	lr, err := RunLoad(ctx, lc)
	if err != nil {
		return nil, err
	}
	res.Load = lr
	res.QueuedAfterLoad = queued()
	entries := rec.Entries()
	logf("%d of %d messages acknowledged in %.1fs; node reports %d queued", lr.Accepted, lr.Offered, lr.Elapsed, res.QueuedAfterLoad)

	checker := NewChecker(entries)
	wantRcpts := int64(0)
	for _, e := range entries {
		wantRcpts += int64(len(e.Rcpts))
	}
	var sampler *ProcSampler
	if cfg.PID > 0 {
		if sampler, err = StartProcSampler(cfg.PID, 500*time.Millisecond); err != nil {
			return nil, err
		}
	}
	sink, err := StartSink(SinkConfig{Addr: cfg.SinkAddr, Log: cfg.SinkLog, Checker: checker})
	if err != nil {
		if sampler != nil {
			sampler.Stop()
		}
		return nil, err
	}
	res.SinkUpS = sink.Up().Sub(loadStart).Seconds()
	logf("primary up at %s; waiting for %d messages", cfg.SinkAddr, len(entries))
	dctx, cancel := context.WithTimeout(ctx, cfg.DrainTimeout)
	stopProgress := make(chan struct{})
	if cfg.Progress != nil {
		go drainProgress(stopProgress, sink, checker, wantRcpts, cfg.Progress)
	}
	werr := sink.Wait(dctx, checker.Done)
	cancel()
	close(stopProgress)
	atDone := sink.Stats()
	allAt := time.Since(sink.Up()).Seconds()
	if werr != nil {
		res.TimedOut = true
		logf("drain: %v after %.0fs", werr, allAt)
	} else {
		logf("all acknowledged messages arrived %.2fs after the primary came up; settling %s", allAt, cfg.Settle)
		sleepCtx(ctx, cfg.Settle)
	}
	st := sink.Stats()
	if err := sink.Close(); err != nil {
		logf("sink: %v", err)
	}
	chk := checker.Result(10)
	st.Check = &chk
	if sampler != nil {
		ps := sampler.Stop()
		st.Proc = &ps
	}
	if !res.TimedOut {
		st.LastS, st.DrainRate, st.T50S, st.T99S, st.Rate99 = atDone.LastS, atDone.DrainRate, atDone.T50S, atDone.T99S, atDone.Rate99
	}
	res.Sink = st
	res.FirstDeliveryS = st.FirstS
	if !res.TimedOut {
		res.AllDeliveredS = atDone.LastS
		if d := atDone.LastS - atDone.FirstS; d > 0 {
			res.DrainRate = float64(len(entries)) / d
		}
	}
	res.Lost = chk.MissingMessages
	res.Duplicates = chk.Duplicates
	res.QueuedAfterDrain = queued()
	res.OK = chk.OK && !res.TimedOut
	return res, nil
}

func drainProgress(stop <-chan struct{}, sink *Sink, c *Checker, want int64, fn func(string, Progress)) {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	type sample struct {
		t time.Time
		n int64
	}
	var recent []sample
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			n := int64(c.Delivered())
			recent = append(recent, sample{now, n})
			if len(recent) > 10 {
				recent = recent[1:]
			}
			p := Progress{Elapsed: now.Sub(sink.Up()), Offered: want, Accepted: n, Target: want}
			if len(recent) > 1 {
				a, b := recent[0], recent[len(recent)-1]
				p.Rate = float64(b.n-a.n) / b.t.Sub(a.t).Seconds()
			}
			if p.Rate > 0 {
				p.ETA = time.Duration(float64(want-n) / p.Rate * float64(time.Second))
			}
			fn("drain", p)
		}
	}
}

// sameHostPort compares two host:port addresses, treating "localhost"
// and 127.0.0.1 alike.
func sameHostPort(a, b string) bool {
	norm := func(s string) string {
		h, p, err := net.SplitHostPort(s)
		if err != nil {
			return s
		}
		if h == "localhost" {
			h = "127.0.0.1"
		}
		return net.JoinHostPort(h, p)
	}
	return norm(a) == norm(b)
}
