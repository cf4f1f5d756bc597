package bench

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// LoadConfig describes one load run. Zero values take the defaults named.
type LoadConfig struct {
	Addr       string        // the MTA's SMTP address (required)
	Helo       string        // EHLO name (default "mxbench.invalid")
	Sessions   int           // concurrent SMTP sessions (default 1)
	PerConn    int           // messages per connection; 0 keeps each connection for the whole run
	Pipelining bool          // pipeline MAIL, RCPT and DATA when the server offers PIPELINING
	Rcpts      int           // recipients per message (default 1)
	Domains    []string      // recipient domains, used in turn (default example.test)
	Gen        *Generator    // message source (required)
	Rate       float64       // target messages per second over all sessions; 0: as fast as possible
	Count      int64         // messages to offer; 0: until Duration
	Duration   time.Duration // run time when Count is 0
	Timeout    time.Duration // bound on the connect and on each transaction (default 60s)

	// Record, if set, receives every acknowledged message.
	Record *Recorder
	// PID, if > 0, is the MTA's process: its tree's CPU time and peak
	// memory are sampled during the run.
	PID int
	// Progress, if set, is called about twice a second.
	Progress func(Progress)
}

// Progress is a snapshot of a running load.
type Progress struct {
	Elapsed  time.Duration
	Offered  int64 // transactions started
	Accepted int64
	Failed   int64
	Rate     float64 // accepted per second over the last few seconds
	Target   int64   // Count, or 0
	ETA      time.Duration
}

// LoadResult is the outcome of a load run. Rates are per second of wall
// time from the first connection to the last reply.
type LoadResult struct {
	Type       string  `json:"type"` // "load"
	Label      string  `json:"label,omitempty"`
	Addr       string  `json:"addr"`
	Sessions   int     `json:"sessions"`
	PerConn    int     `json:"per_conn"`
	Pipelining bool    `json:"pipelining"`
	Rcpts      int     `json:"rcpts"`
	Domains    int     `json:"domains"`
	Size       string  `json:"size"` // body bytes, or "mix"
	TargetRate float64 `json:"target_rate,omitempty"`

	Offered    int64          `json:"offered"`
	Accepted   int64          `json:"accepted"`
	Failed     int64          `json:"failed"`
	Bytes      int64          `json:"bytes"` // accepted message bytes
	Elapsed    float64        `json:"elapsed_s"`
	MsgsPerSec float64        `json:"msgs_per_s"`
	MBPerSec   float64        `json:"mb_per_s"`
	Latency    Latency        `json:"data_latency_ms"` // DATA command → final reply
	Errors     map[string]int `json:"errors,omitempty"`
	Proc       *ProcStats     `json:"mta_proc,omitempty"`
	SelfCPU    float64        `json:"mxbench_cpu_s"` // the load generator's own CPU time
	Timeline   []Point        `json:"timeline,omitempty"`
}

// Point is a cumulative count at a time since the start of a run.
type Point struct {
	T float64 `json:"t"`
	N int64   `json:"n"`
}

// Latency summarises latencies in milliseconds.
type Latency struct {
	P50  float64 `json:"p50"`
	P95  float64 `json:"p95"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

func summarize(us []uint32) Latency {
	if len(us) == 0 {
		return Latency{}
	}
	slices.Sort(us)
	q := func(p float64) float64 {
		i := int(p*float64(len(us)-1) + 0.5)
		return float64(us[i]) / 1000
	}
	var sum float64
	for _, v := range us {
		sum += float64(v)
	}
	return Latency{P50: q(0.50), P95: q(0.95), P99: q(0.99), Max: float64(us[len(us)-1]) / 1000, Mean: sum / float64(len(us)) / 1000}
}

// recipients returns the recipients of message seq: distinct local parts,
// domains in turn.
func recipients(seq int64, n int, domains []string) []string {
	r := make([]string, n)
	for j := range n {
		d := domains[(seq+int64(j))%int64(len(domains))]
		r[j] = fmt.Sprintf("u%d.%d@%s", seq, j, d)
	}
	return r
}

// queueID extracts the id from a "250 ... queued as <id>" reply.
func queueID(text string) string {
	i := strings.Index(strings.ToLower(text), "queued as ")
	if i < 0 {
		return ""
	}
	f := strings.Fields(text[i+len("queued as "):])
	if len(f) == 0 {
		return ""
	}
	return strings.Trim(f[0], "<>")
}

// RunLoad offers messages to cfg.Addr until cfg.Count were offered or
// cfg.Duration has passed, and reports what was acknowledged. Refusals
// and broken connections are counted, not retried; a refused connection
// attempt counts as one failed message.
func RunLoad(ctx context.Context, cfg LoadConfig) (*LoadResult, error) {
	if cfg.Addr == "" || cfg.Gen == nil {
		return nil, errors.New("bench: load needs an address and a generator")
	}
	if cfg.Count <= 0 && cfg.Duration <= 0 {
		return nil, errors.New("bench: load needs a count or a duration")
	}
	cfg.Sessions = max(cfg.Sessions, 1)
	cfg.Rcpts = max(cfg.Rcpts, 1)
	if len(cfg.Domains) == 0 {
		cfg.Domains = []string{"example.test"}
	}
	if cfg.Helo == "" {
		cfg.Helo = "mxbench.invalid"
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 60 * time.Second
	}
	res := &LoadResult{Type: "load", Addr: cfg.Addr, Sessions: cfg.Sessions, PerConn: cfg.PerConn,
		Pipelining: cfg.Pipelining, Rcpts: cfg.Rcpts, Domains: len(cfg.Domains), TargetRate: cfg.Rate,
		Errors: map[string]int{}}
	if cfg.Gen.size > 0 {
		res.Size = fmt.Sprint(cfg.Gen.size)
	} else {
		res.Size = "mix"
	}

	var sampler *ProcSampler
	if cfg.PID > 0 {
		var err error
		if sampler, err = StartProcSampler(cfg.PID, 500*time.Millisecond); err != nil {
			return nil, err
		}
	}

	var claimed, accepted, failed, bytes atomic.Int64
	cpu0 := SelfCPU()
	start := time.Now()
	claim := func() (int64, bool) {
		if ctx.Err() != nil {
			return 0, false
		}
		i := claimed.Add(1) - 1
		if cfg.Count > 0 && i >= cfg.Count {
			return 0, false
		}
		if cfg.Count <= 0 && time.Since(start) >= cfg.Duration {
			return 0, false
		}
		if cfg.Rate > 0 {
			at := start.Add(time.Duration(float64(i) / cfg.Rate * float64(time.Second)))
			if d := time.Until(at); d > 0 {
				t := time.NewTimer(d)
				select {
				case <-t.C:
				case <-ctx.Done():
					t.Stop()
					return 0, false
				}
			}
		}
		return i, true
	}

	var mu sync.Mutex
	var lats []uint32
	var wg sync.WaitGroup
	for range cfg.Sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]uint32, 0, 1024)
			errs := map[string]int{}
			defer func() {
				mu.Lock()
				lats = append(lats, local...)
				for k, v := range errs {
					res.Errors[k] += v
				}
				mu.Unlock()
			}()
			var c *client
			onConn := 0
			for {
				seq, ok := claim()
				if !ok {
					break
				}
				if c == nil {
					var err error
					if c, err = dial(ctx, cfg.Addr, cfg.Helo, cfg.Timeout); err != nil {
						c = nil
						errs[errorKey(err)]++
						failed.Add(1)
						sleepCtx(ctx, 100*time.Millisecond) // do not spin on a refused port
						continue
					}
					onConn = 0
				}
				m := cfg.Gen.New(seq, recipients(seq, cfg.Rcpts, cfg.Domains))
				tr, err := c.send(m, cfg.Pipelining)
				onConn++
				for _, code := range tr.refused {
					errs[fmt.Sprintf("%d RCPT", code)]++
				}
				if err == nil && tr.reply.Code == 250 {
					accepted.Add(1)
					bytes.Add(int64(m.Size()))
					local = append(local, uint32(min(tr.latency.Microseconds(), 1<<32-1)))
					if cfg.Record != nil {
						cfg.Record.Add(RecordEntry{MessageID: m.ID, QueueID: queueID(tr.reply.Text),
							Digest: m.Digest, Rcpts: tr.accepted, Size: m.Size()})
					}
				} else {
					failed.Add(1)
					switch {
					case err != nil:
						errs[errorKey(err)]++
					case tr.stage != "RCPT": // refused recipients are counted above
						errs[fmt.Sprintf("%d %s", tr.reply.Code, tr.stage)]++
					}
				}
				if err != nil {
					c.close()
					c = nil
				} else if cfg.PerConn > 0 && onConn >= cfg.PerConn {
					c.quit()
					c = nil
				}
			}
			if c != nil {
				c.quit()
			}
		}()
	}

	done := make(chan struct{})
	var timeline []Point
	var tlDone sync.WaitGroup
	tlDone.Add(1)
	go func() {
		defer tlDone.Done()
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		type sample struct {
			t time.Time
			n int64
		}
		var recent []sample
		for k := 1; ; k++ {
			select {
			case <-done:
				return
			case now := <-tick.C:
				n := accepted.Load()
				if k%2 == 0 {
					timeline = append(timeline, Point{T: now.Sub(start).Seconds(), N: n})
				}
				recent = append(recent, sample{now, n})
				if len(recent) > 10 {
					recent = recent[1:]
				}
				if cfg.Progress == nil {
					continue
				}
				p := Progress{Elapsed: now.Sub(start), Offered: claimed.Load(),
					Accepted: n, Failed: failed.Load(), Target: cfg.Count}
				if cfg.Count > 0 {
					p.Offered = min(p.Offered, cfg.Count)
				}
				if len(recent) > 1 {
					a, b := recent[0], recent[len(recent)-1]
					p.Rate = float64(b.n-a.n) / b.t.Sub(a.t).Seconds()
				}
				if cfg.Count > 0 && p.Rate > 0 {
					p.ETA = time.Duration(float64(cfg.Count-n-p.Failed) / p.Rate * float64(time.Second))
				} else if cfg.Duration > 0 {
					p.ETA = cfg.Duration - p.Elapsed
				}
				cfg.Progress(p)
			}
		}
	}()
	wg.Wait()
	end := time.Now()
	close(done)
	tlDone.Wait()

	res.Elapsed = end.Sub(start).Seconds()
	res.SelfCPU = SelfCPU() - cpu0
	res.Accepted, res.Failed, res.Bytes = accepted.Load(), failed.Load(), bytes.Load()
	res.Offered = res.Accepted + res.Failed
	res.Timeline = append(timeline, Point{T: res.Elapsed, N: res.Accepted})
	if res.Elapsed > 0 {
		res.MsgsPerSec = float64(res.Accepted) / res.Elapsed
		res.MBPerSec = float64(res.Bytes) / res.Elapsed / 1e6
	}
	res.Latency = summarize(lats)
	if sampler != nil {
		st := sampler.Stop()
		res.Proc = &st
	}
	if cfg.Record != nil {
		if err := cfg.Record.Flush(); err != nil {
			return res, fmt.Errorf("bench: record: %w", err)
		}
	}
	return res, ctx.Err()
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
