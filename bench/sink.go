package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"sync"
	"time"
)

// SinkConfig configures the fake customer primary.
type SinkConfig struct {
	Addr string // listen address (required)
	// Latency delays the reply to the end of DATA.
	Latency time.Duration
	// FailRate is the share of messages refused at the end of DATA, with
	// FailCodes used in turn (default 451: a temporary failure the MTA
	// must retry; a 5xx is a permanent one it must not).
	FailRate  float64
	FailCodes []int
	// Log, if set, receives every accepted delivery as a JSONL Delivery.
	Log io.Writer
	// Checker, if set, is told of every accepted delivery.
	Checker *Checker
}

// Sink is an SMTP server that plays the customer's primary: it accepts
// everything (or fails on purpose), checks digests and counts. Its SMTP
// side (sinkconn.go) is made to cost the MTA under test as little CPU as
// possible: DATA is read line by line, replies to pipelined commands are
// sent together.
type Sink struct {
	cfg    SinkConfig
	ln     net.Listener
	wg     sync.WaitGroup
	conns  map[net.Conn]struct{} // under mu
	closed bool                  // under mu
	up     time.Time
	cpu0   float64

	notify chan struct{} // cap 1: a delivery happened

	mu       sync.Mutex
	logw     *bufio.Writer
	enc      *json.Encoder
	logErr   error
	seq      uint64 // messages seen at end of DATA, for fail injection
	msgs     int64
	rcpts    int64
	bytes    int64
	injected int64
	digest   map[string]int64
	first    time.Time
	last     time.Time
	timeline []Point
}

// StartSink listens on cfg.Addr and serves until Close.
func StartSink(cfg SinkConfig) (*Sink, error) {
	if cfg.Addr == "" {
		return nil, errors.New("bench: sink needs an address")
	}
	if cfg.FailRate < 0 || cfg.FailRate > 1 {
		return nil, errors.New("bench: fail rate must be within 0..1")
	}
	if len(cfg.FailCodes) == 0 {
		cfg.FailCodes = []int{451}
	}
	for _, c := range cfg.FailCodes {
		if c < 400 || c > 599 {
			return nil, errors.New("bench: fail codes must be 4xx or 5xx")
		}
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, err
	}
	s := &Sink{cfg: cfg, ln: ln, up: time.Now(), cpu0: SelfCPU(), notify: make(chan struct{}, 1),
		digest: map[string]int64{}, conns: map[net.Conn]struct{}{}}
	if cfg.Log != nil {
		s.logw = bufio.NewWriterSize(cfg.Log, 256<<10)
		s.enc = json.NewEncoder(s.logw)
	}
	s.wg.Add(1)
	go s.serve()
	return s, nil
}

// Addr is the address the sink listens on.
func (s *Sink) Addr() string { return s.ln.Addr().String() }

// Up is when the sink started listening.
func (s *Sink) Up() time.Time { return s.up }

// Close stops the sink (dropping open connections) and flushes its log.
// It may be called more than once.
func (s *Sink) Close() error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		s.ln.Close()
		for c := range s.conns {
			c.Close()
		}
	}
	s.mu.Unlock()
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.logw != nil && s.logErr == nil {
		s.logErr = s.logw.Flush()
	}
	return s.logErr
}

// Wait returns when done() reports true (checked after every delivery
// and every 100 ms) or ctx ends.
func (s *Sink) Wait(ctx context.Context, done func() bool) error {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for !done() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.notify:
		case <-t.C:
		}
	}
	return nil
}

// Messages is the number of accepted deliveries so far.
func (s *Sink) Messages() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.msgs
}

// SinkStats is what the sink received.
type SinkStats struct {
	Type      string           `json:"type"` // "sink"
	Label     string           `json:"label,omitempty"`
	Addr      string           `json:"addr"`
	Messages  int64            `json:"messages"` // accepted deliveries (transactions)
	Rcpts     int64            `json:"rcpts"`
	Bytes     int64            `json:"bytes"`
	Injected  int64            `json:"injected_failures"`
	Digests   map[string]int64 `json:"digests"` // ok / bad / none
	Elapsed   float64          `json:"elapsed_s"`
	FirstS    float64          `json:"first_delivery_s"` // sink up → first accepted delivery; -1: none
	LastS     float64          `json:"last_delivery_s"`
	DrainRate float64          `json:"drain_msgs_per_s"`   // messages / (last - first)
	T50S      float64          `json:"t50_s"`              // sink up → half of the messages received
	T99S      float64          `json:"t99_s"`              // sink up → 99% received
	Rate99    float64          `json:"drain99_msgs_per_s"` // first 99% / (t99 - first): the rate without stragglers
	FlushAtS  float64          `json:"flush_at_s,omitempty"`
	FlushCmd  string           `json:"flush_cmd,omitempty"`
	Check     *CheckResult     `json:"check,omitempty"`
	Proc      *ProcStats       `json:"mta_proc,omitempty"`
	Timeline  []Point          `json:"timeline,omitempty"`
	TimedOut  bool             `json:"timed_out,omitempty"`
	SelfCPU   float64          `json:"mxbench_cpu_s"` // the sink process's own CPU time since it started
}

// Stats returns the figures so far (Check and Proc are left to the
// caller).
func (s *Sink) Stats() SinkStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := SinkStats{Type: "sink", Addr: s.Addr(), Messages: s.msgs, Rcpts: s.rcpts, Bytes: s.bytes,
		Injected: s.injected, Digests: map[string]int64{}, Elapsed: time.Since(s.up).Seconds(), FirstS: -1,
		SelfCPU: SelfCPU() - s.cpu0}
	for k, v := range s.digest {
		st.Digests[k] = v
	}
	if !s.first.IsZero() {
		st.FirstS = s.first.Sub(s.up).Seconds()
		st.LastS = s.last.Sub(s.up).Seconds()
		if d := s.last.Sub(s.first).Seconds(); d > 0 {
			st.DrainRate = float64(s.msgs) / d
		}
	}
	st.Timeline = append([]Point(nil), s.timeline...)
	if s.msgs > 0 {
		st.T50S = quantileTime(st.Timeline, s.msgs, 0.5)
		st.T99S = quantileTime(st.Timeline, s.msgs, 0.99)
		if d := st.T99S - st.FirstS; d > 0 {
			st.Rate99 = 0.99 * float64(s.msgs) / d
		}
	}
	if n := len(st.Timeline); n == 0 || st.Timeline[n-1].N != s.msgs {
		st.Timeline = append(st.Timeline, Point{T: st.Elapsed, N: s.msgs})
	}
	return st
}

// deliver accounts for one message at the end of DATA and returns the
// reply: 250, or an injected failure.
func (s *Sink) deliver(rcpts []string, in Inspected) Reply {
	s.mu.Lock()
	s.seq++
	n := s.seq
	s.mu.Unlock()
	if s.cfg.Latency > 0 {
		time.Sleep(s.cfg.Latency)
	}
	if s.cfg.FailRate > 0 && float64(splitmix(n)>>11)/(1<<53) < s.cfg.FailRate {
		code := s.cfg.FailCodes[int(n)%len(s.cfg.FailCodes)]
		s.mu.Lock()
		s.injected++
		s.mu.Unlock()
		return Reply{Code: code, Text: fmt.Sprintf("%d.0.0 mxbench sink: injected failure", code/100)}
	}
	now := time.Now()
	d := Delivery{MessageID: in.MessageID, Rcpts: rcpts, Digest: in.Digest, Size: in.Size, T: now.Sub(s.up).Seconds()}
	s.mu.Lock()
	if s.first.IsZero() {
		s.first = now
	}
	s.last = now
	s.msgs++
	s.rcpts += int64(len(rcpts))
	s.bytes += in.Size
	s.digest[in.Digest]++
	// one timeline point per 100 ms of sink time at most
	if k := len(s.timeline); k == 0 || d.T-s.timeline[k-1].T >= 0.1 {
		s.timeline = append(s.timeline, Point{T: d.T, N: s.msgs})
	} else {
		s.timeline[k-1].N = s.msgs
	}
	if s.enc != nil && s.logErr == nil {
		s.logErr = s.enc.Encode(d)
	}
	s.mu.Unlock()
	if s.cfg.Checker != nil {
		s.cfg.Checker.Observe(d)
	}
	select {
	case s.notify <- struct{}{}:
	default:
	}
	return Reply{Code: 250, Text: "2.0.0 OK: delivered to the mxbench sink"}
}

// quantileTime is the time of the first point where the cumulative count
// reaches q of total.
func quantileTime(pts []Point, total int64, q float64) float64 {
	want := int64(math.Ceil(q * float64(total)))
	for _, p := range pts {
		if p.N >= want {
			return p.T
		}
	}
	if len(pts) == 0 {
		return 0
	}
	return pts[len(pts)-1].T
}
