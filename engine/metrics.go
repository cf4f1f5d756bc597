package engine

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics implements smtpd.Metrics, relayq.Metrics and the spool's commit
// hook with Prometheus collectors. Labels are bounded: reasons and results
// are fixed sets; no per-message, per-address or per-host labels.
type metrics struct {
	accepted      prometheus.Counter
	acceptedBytes prometheus.Counter
	rejected      *prometheus.CounterVec
	fsync         prometheus.Histogram
	batch         prometheus.Histogram
	recipients    *prometheus.CounterVec
	probes        *prometheus.CounterVec
	probeSeconds  prometheus.Histogram
	domainsDown   prometheus.Gauge
	spoolDamage   prometheus.Counter
	shadowFiled   prometheus.Counter
	shadowPurged  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		accepted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mxcont_smtp_messages_accepted_total", Help: "SMTP transactions whose message was spooled (250 sent)."}),
		acceptedBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mxcont_smtp_accepted_bytes_total", Help: "Body bytes of accepted messages."}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mxcont_smtp_rejected_total", Help: "Refused commands, messages and connections by reason."}, []string{"reason"}),
		fsync: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "mxcont_spool_fsync_seconds", Help: "Duration of spool group-commit fsyncs.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)}),
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "mxcont_spool_commit_batch_records", Help: "Records per spool group commit.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 13)}),
		recipients: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mxcont_relay_recipients_total", Help: "Recipient outcomes of delivery attempts (delivered, deferred, failed, expired)."}, []string{"result"}),
		probes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mxcont_relay_probes_total", Help: "Relay host probes by result."}, []string{"result"}),
		probeSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "mxcont_relay_probe_seconds", Help: "Duration of relay host probes.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15)}),
		domainsDown: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mxcont_relay_domains_down", Help: "Domains whose relay host is down."}),
		spoolDamage: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mxcont_spool_damaged_entries_total", Help: "WAL entries found damaged and moved aside by repair at start."}),
		shadowFiled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mxcont_shadow_messages_filed_total", Help: "Messages filed into shadow mailboxes (one per mailbox user)."}),
		shadowPurged: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mxcont_shadow_messages_purged_total", Help: "Shadow mailbox messages purged after their keep time."}),
	}
	reg.MustRegister(m.accepted, m.acceptedBytes, m.rejected, m.fsync, m.batch, m.recipients,
		m.probes, m.probeSeconds, m.domainsDown, m.spoolDamage, m.shadowFiled, m.shadowPurged)
	return m
}

// Accepted implements smtpd.Metrics.
func (m *metrics) Accepted(bytes int) {
	m.accepted.Inc()
	m.acceptedBytes.Add(float64(bytes))
}

// Rejected implements smtpd.Metrics.
func (m *metrics) Rejected(reason string) { m.rejected.WithLabelValues(reason).Inc() }

// Recipients implements relayq.Metrics. The domain is not a label: the
// number of domains is unbounded (per-domain figures are in the API).
func (m *metrics) Recipients(_ string, result string, n int) {
	m.recipients.WithLabelValues(result).Add(float64(n))
}

// Probe implements relayq.Metrics.
func (m *metrics) Probe(_ string, ok bool, took time.Duration) {
	r := "down"
	if ok {
		r = "up"
	}
	m.probes.WithLabelValues(r).Inc()
	m.probeSeconds.Observe(took.Seconds())
}

// DomainsDown implements relayq.Metrics.
func (m *metrics) DomainsDown(n int) { m.domainsDown.Set(float64(n)) }

func (m *metrics) spoolCommit(_ int, records, _ int, fsync time.Duration) {
	if fsync > 0 {
		m.fsync.Observe(fsync.Seconds())
	}
	if records > 0 {
		m.batch.Observe(float64(records))
	}
}
