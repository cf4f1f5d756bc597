package admin

import (
	"sync"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
)

// history keeps the last n queue-depth samples of every registered domain
// in rings that share one clock: times[i] is when sample i was taken and
// series[domain][i] the domain's queued messages then. Memory is
// n × 4 bytes per domain.
type history struct {
	n int

	mu     sync.RWMutex
	times  []time.Time // ring
	pos    int         // next slot
	filled int
	series map[string][]int32
}

func newHistory(n int) *history {
	return &history{n: n, times: make([]time.Time, n), series: make(map[string][]int32)}
}

// add records one sample; domains missing from depth are dropped.
func (h *history) add(at time.Time, depth map[string]int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for d := range h.series {
		if _, ok := depth[d]; !ok {
			delete(h.series, d)
		}
	}
	for d, v := range depth {
		ring := h.series[d]
		if ring == nil {
			ring = make([]int32, h.n)
			h.series[d] = ring
		}
		ring[h.pos] = int32(min(v, 1<<31-1))
	}
	h.times[h.pos] = at
	h.pos = (h.pos + 1) % h.n
	h.filled = min(h.filled+1, h.n)
}

// snapshot returns the sample times, oldest first, and the series of the
// domains keep accepts.
func (h *history) snapshot(keep func(domain string) bool) ([]time.Time, map[string][]int) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	start := (h.pos - h.filled + h.n) % h.n
	times := make([]time.Time, h.filled)
	for i := range times {
		times[i] = h.times[(start+i)%h.n]
	}
	out := make(map[string][]int)
	for d, ring := range h.series {
		if !keep(d) {
			continue
		}
		s := make([]int, h.filled)
		for i := range s {
			s[i] = int(ring[(start+i)%h.n])
		}
		out[d] = s
	}
	return times, out
}

// sampleQueues takes one queue-depth sample of every registered domain.
func (s *Server) sampleQueues() {
	all, err := s.deps.Domains.List()
	if err != nil {
		s.log.Warn("queue sampling skipped", zap.Error(err))
		return
	}
	depth := make(map[string]int, len(all))
	for _, d := range all {
		depth[d.Name] = s.deps.Spool.DomainStats(d.Name).Messages
	}
	s.hist.add(time.Now().UTC(), depth)
}

type historyResponse struct {
	IntervalSeconds int              `json:"interval_seconds"`
	Times           []time.Time      `json:"times"`
	Series          map[string][]int `json:"series"`
}

// handleQueueHistory returns the queue depth of each visible domain over
// the last hours: GET /api/v1/stats/queue-history[?domain=].
func (s *Server) handleQueueHistory(ctx *fasthttp.RequestCtx, p *principal) {
	only := query(ctx, "domain")
	keep := func(name string) bool {
		if only != "" && name != only {
			return false
		}
		if p.user.IsOperator() {
			return true
		}
		d, ok := s.deps.Domains.Lookup(name)
		return ok && d.Account == p.user.Account
	}
	times, series := s.hist.snapshot(keep)
	writeJSON(ctx, fasthttp.StatusOK, historyResponse{IntervalSeconds: int(s.cfg.HistoryInterval.Seconds()),
		Times: times, Series: series})
}
