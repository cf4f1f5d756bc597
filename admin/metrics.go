package admin

import (
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"

	"github.com/mxcont/mxcont/spool"
)

// httpMetrics are the admin server's own instruments.
type httpMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	logins   *prometheus.CounterVec
	scrape   fasthttp.RequestHandler
}

func (m *httpMetrics) observe(route, method string, code int, took time.Duration) {
	m.requests.WithLabelValues(route, method, strconv.Itoa(code)).Inc()
	m.duration.WithLabelValues(route).Observe(took.Seconds())
}

// registerMetrics registers the admin and spool collectors in s.reg.
func registerMetrics(s *Server) (*httpMetrics, error) {
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mxcont_admin_http_requests_total", Help: "Admin HTTP requests by route, method and status code.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "mxcont_admin_http_request_duration_seconds", Help: "Admin HTTP request latency by route.",
			Buckets: []float64{.001, .005, .025, .1, .5, 2.5, 10},
		}, []string{"route"}),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mxcont_admin_logins_total", Help: "Login attempts by result (success, failure, throttled).",
		}, []string{"result"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.logins, &spoolCollector{s: s}} {
		if err := s.reg.Register(c); err != nil {
			return nil, fmt.Errorf("admin: register metrics: %w", err)
		}
	}
	m.scrape = fasthttpadaptor.NewFastHTTPHandler(promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{}))
	return m, nil
}

var (
	descShardMessages = prometheus.NewDesc("mxcont_spool_messages", "Live messages per spool shard.", []string{"shard"}, nil)
	descShardLive     = prometheus.NewDesc("mxcont_spool_live_bytes", "Bytes on disk that belong to live messages, per shard.", []string{"shard"}, nil)
	descShardDisk     = prometheus.NewDesc("mxcont_spool_disk_bytes", "Bytes in the shard's WAL segments.", []string{"shard"}, nil)
	descShardSegments = prometheus.NewDesc("mxcont_spool_segments", "WAL segments per shard.", []string{"shard"}, nil)
	descShardSticky   = prometheus.NewDesc("mxcont_spool_sticky_error", "1 while the shard refuses appends after a failed write or fsync.", []string{"shard"}, nil)
	descQueueMessages = prometheus.NewDesc("mxcont_queue_messages", "Messages queued for all domains.", nil, nil)
	descQueueBytes    = prometheus.NewDesc("mxcont_queue_bytes", "Bytes queued for all domains.", nil, nil)
	descQueueDomains  = prometheus.NewDesc("mxcont_queue_domains", "Domains with queued mail.", nil, nil)
	descDomainQueued  = prometheus.NewDesc("mxcont_domain_queued_messages", "Queued messages of the domains with the most mail (top N only).", []string{"domain"}, nil)
	descDomainBytes   = prometheus.NewDesc("mxcont_domain_queued_bytes", "Queued bytes of the domains with the most mail (top N only).", []string{"domain"}, nil)
	descDomainFailed  = prometheus.NewDesc("mxcont_domain_failed_messages", "Permanently failed messages kept for the domains with the most mail (top N only).", []string{"domain"}, nil)
	descDomains       = prometheus.NewDesc("mxcont_domains", "Domains in the registry by relay state.", []string{"relay_state"}, nil)
	descEventsDropped = prometheus.NewDesc("mxcont_admin_events_dropped_total", "Events lost because the event queue was full.", nil, nil)
)

// spoolCollector reads the spool and registry at scrape time. Per-domain
// series are limited to the top Config.MetricsTopDomains domains by queued
// messages, so that their number stays bounded.
type spoolCollector struct{ s *Server }

func (c *spoolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descShardMessages, descShardLive, descShardDisk, descShardSegments,
		descShardSticky, descQueueMessages, descQueueBytes, descQueueDomains, descDomainQueued, descDomainBytes,
		descDomainFailed, descDomains, descEventsDropped} {
		ch <- d
	}
}

func (c *spoolCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for _, st := range c.s.deps.Spool.Stats() {
		shard := strconv.Itoa(st.Shard)
		gauge(descShardMessages, float64(st.Messages), shard)
		gauge(descShardLive, float64(st.LiveBytes), shard)
		gauge(descShardDisk, float64(st.DiskBytes), shard)
		gauge(descShardSegments, float64(st.Segments), shard)
		sticky := 0.0
		if st.Err != "" {
			sticky = 1
		}
		gauge(descShardSticky, sticky, shard)
	}
	doms := c.s.deps.Spool.Domains()
	var msgs int
	var bytes int64
	for _, d := range doms {
		msgs += d.Messages
		bytes += d.Bytes
	}
	gauge(descQueueMessages, float64(msgs))
	gauge(descQueueBytes, float64(bytes))
	gauge(descQueueDomains, float64(len(doms)))
	slices.SortFunc(doms, func(a, b spool.DomainStats) int {
		if a.Messages != b.Messages {
			return b.Messages - a.Messages
		}
		if a.Domain < b.Domain {
			return -1
		}
		return 1
	})
	for _, d := range doms[:min(len(doms), c.s.cfg.MetricsTopDomains)] {
		gauge(descDomainQueued, float64(d.Messages), d.Domain)
		gauge(descDomainBytes, float64(d.Bytes), d.Domain)
		gauge(descDomainFailed, float64(d.Failed), d.Domain)
	}
	if all, err := c.s.deps.Domains.List(); err == nil {
		count := map[string]int{RelayUp: 0, RelayDown: 0, RelayUnknown: 0}
		for _, d := range all {
			count[c.s.relayStatus(d.Name).State]++
		}
		for state, n := range count {
			gauge(descDomains, float64(n), state)
		}
	}
	ch <- prometheus.MustNewConstMetric(descEventsDropped, prometheus.CounterValue, float64(c.s.events.Dropped()))
}

// handleMetrics serves the Prometheus text format to operators (session
// or API token), or to anyone with Config.MetricsOpen.
func (s *Server) handleMetrics(ctx *fasthttp.RequestCtx) {
	if !s.cfg.MetricsOpen {
		p, status, msg := s.authenticate(ctx)
		if p == nil {
			ctx.Response.Header.Set("WWW-Authenticate", `Bearer realm="mxcont"`)
			writeError(ctx, status, msg, "")
			return
		}
		if !operatorOnly(ctx, p) {
			return
		}
	}
	s.met.scrape(ctx)
}

type healthResponse struct {
	Status   string   `json:"status"`
	Problems []string `json:"problems,omitempty"`
}

// handleHealth answers {"status":"ok"}, or 503 while a spool shard has a
// sticky write error. It needs no credentials and reveals no detail.
func (s *Server) handleHealth(ctx *fasthttp.RequestCtx) {
	var problems []string
	for _, st := range s.deps.Spool.Stats() {
		if st.Err != "" {
			problems = append(problems, fmt.Sprintf("spool shard %d: write failed, refusing mail", st.Shard))
		}
	}
	if len(problems) > 0 {
		writeJSON(ctx, fasthttp.StatusServiceUnavailable, healthResponse{Status: "error", Problems: problems})
		return
	}
	writeJSON(ctx, fasthttp.StatusOK, healthResponse{Status: "ok"})
}
