package relayq

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"time"
)

// Config holds the queue's settings. Zero values take the defaults shown.
type Config struct {
	// Hostname is the name sent in EHLO/HELO and used in alert mail
	// (default: os.Hostname()).
	Hostname string

	// ProbeInterval is the period between probes of a relay host
	// (default 10s), jittered by ±10%. While a host is down and mail is
	// waiting for it, it is probed every ProbeInterval/4 (at least 500 ms,
	// or ProbeInterval if that is shorter).
	ProbeInterval time.Duration
	// ProbeTimeout bounds each step of a probe: connect, banner, EHLO,
	// QUIT (default 10s).
	ProbeTimeout time.Duration
	// DialTimeout bounds a TCP connect for delivery (default 30s).
	DialTimeout time.Duration
	// CommandTimeout bounds each step of a delivery: every command and
	// reply, and every write of the body (default 2m).
	CommandTimeout time.Duration
	// DataTimeout bounds the wait for the reply after the final dot
	// (default 10m, RFC 5321 section 4.5.3.2.6).
	DataTimeout time.Duration
	// MinDataRate caps the time allowed for a whole body: CommandTimeout +
	// size/MinDataRate (bytes per second, default 16 KiB/s).
	MinDataRate int

	// PoolSize bounds the connections to one relay host, probes included
	// (default 8).
	PoolSize int
	// IdleTimeout closes pooled connections unused for this long
	// (default 30s).
	IdleTimeout time.Duration
	// MaxMessagesPerConn closes a connection after this many messages
	// (default 100).
	MaxMessagesPerConn int

	// RetryBase is the first retry delay after a temporary (4xx) failure
	// (default 30s); it doubles per attempt up to MaxBackoff. Delays are
	// jittered by ±10%.
	RetryBase time.Duration
	// MaxBackoff caps the retry delay (default 15m), and the pause of a
	// relay host after repeated 421 replies or lost connections.
	MaxBackoff time.Duration

	// TLSRootCAs verifies relay host certificates for domains that require
	// TLS (nil: the system roots).
	TLSRootCAs *x509.CertPool

	// OwnAddrs are this node's listener addresses ("host:port", ":25",
	// "[::]:25"). A relay host that resolves to one of them is refused as a
	// mail loop. An unspecified address matches every local address with
	// its port; a loopback address matches every loopback address with its
	// port.
	OwnAddrs []string

	// AlertGrace is how long an outage must last before its start alert is
	// sent (default 2m).
	AlertGrace time.Duration
	// AlertAges are the ages of the oldest queued message of a domain that
	// trigger an alert, once each per backlog (default 1h, 24h).
	AlertAges []time.Duration
	// EndAlertWait bounds how long the end-of-outage alert waits for the
	// backlog to drain before it is sent with the count so far
	// (default 5m).
	EndAlertWait time.Duration
	// AlertSmarthost ("host:port") receives alert mail over plain SMTP. It
	// must not be a customer's relay host.
	AlertSmarthost string
	// AlertFrom is the sender of alert mail (default "mxcont@" + Hostname).
	AlertFrom string
	// AlertWebhook, if set, receives every alert as an HTTP POST of JSON.
	AlertWebhook string
	// Alerter replaces the alerter built from AlertSmarthost and
	// AlertWebhook (tests, other channels).
	Alerter Alerter

	// SweepInterval is how often retention and queue-age alerts are
	// checked (default 1m).
	SweepInterval time.Duration
	// DefaultRetentionDays applies to domains that do not set one and to
	// mail of domains no longer registered (default 30).
	DefaultRetentionDays int

	// OnEvent, if set, receives every event after it is stored (e.g. to
	// copy it into the admin event log). It is called synchronously and
	// must not block.
	OnEvent func(Event)

	// Metrics receives counters (default: none).
	Metrics Metrics
	// Now is the clock used for backoff, retention and ages (default
	// time.Now). Tests shift it to make time pass.
	Now func() time.Time
}

// Defaults.
const (
	DefaultProbeInterval  = 10 * time.Second
	DefaultPoolSize       = 8
	DefaultIdleTimeout    = 30 * time.Second
	DefaultMaxBackoff     = 15 * time.Minute
	DefaultRetryBase      = 30 * time.Second
	DefaultAlertGrace     = 2 * time.Minute
	DefaultRetentionDays  = 30
	minFastProbeInterval  = 250 * time.Millisecond
	defaultMinDataRate    = 16 << 10
	defaultMaxMsgsPerConn = 100
)

func (c *Config) setDefaults() error {
	if c.Hostname == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "localhost"
		}
		c.Hostname = h
	}
	dur := func(p *time.Duration, def time.Duration) {
		if *p == 0 {
			*p = def
		}
	}
	dur(&c.ProbeInterval, DefaultProbeInterval)
	dur(&c.ProbeTimeout, 10*time.Second)
	dur(&c.DialTimeout, 30*time.Second)
	dur(&c.CommandTimeout, 2*time.Minute)
	dur(&c.DataTimeout, 10*time.Minute)
	dur(&c.IdleTimeout, DefaultIdleTimeout)
	dur(&c.RetryBase, DefaultRetryBase)
	dur(&c.MaxBackoff, DefaultMaxBackoff)
	dur(&c.AlertGrace, DefaultAlertGrace)
	dur(&c.EndAlertWait, 5*time.Minute)
	dur(&c.SweepInterval, time.Minute)
	if c.MinDataRate == 0 {
		c.MinDataRate = defaultMinDataRate
	}
	if c.PoolSize == 0 {
		c.PoolSize = DefaultPoolSize
	}
	if c.MaxMessagesPerConn == 0 {
		c.MaxMessagesPerConn = defaultMaxMsgsPerConn
	}
	if c.AlertAges == nil {
		c.AlertAges = []time.Duration{time.Hour, 24 * time.Hour}
	}
	if c.DefaultRetentionDays == 0 {
		c.DefaultRetentionDays = DefaultRetentionDays
	}
	if c.AlertFrom == "" {
		c.AlertFrom = "mxcont@" + c.Hostname
	}
	if c.Metrics == nil {
		c.Metrics = NopMetrics{}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c.validate()
}

func (c *Config) validate() error {
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"probe interval", c.ProbeInterval}, {"probe timeout", c.ProbeTimeout},
		{"dial timeout", c.DialTimeout}, {"command timeout", c.CommandTimeout},
		{"data timeout", c.DataTimeout}, {"idle timeout", c.IdleTimeout},
		{"retry base", c.RetryBase}, {"max backoff", c.MaxBackoff},
		{"alert grace", c.AlertGrace}, {"end alert wait", c.EndAlertWait},
		{"sweep interval", c.SweepInterval},
	} {
		if d.v < 0 {
			return fmt.Errorf("relayq: negative %s %v", d.name, d.v)
		}
	}
	if c.PoolSize < 0 || c.PoolSize > 1000 {
		return fmt.Errorf("relayq: pool size %d, want 1..1000", c.PoolSize)
	}
	if c.MaxMessagesPerConn < 0 || c.MinDataRate < 0 || c.DefaultRetentionDays < 0 {
		return errors.New("relayq: negative limit")
	}
	for _, a := range c.AlertAges {
		if a <= 0 {
			return fmt.Errorf("relayq: alert age %v, want > 0", a)
		}
	}
	if c.AlertSmarthost != "" {
		if err := checkHostPort(c.AlertSmarthost); err != nil {
			return fmt.Errorf("relayq: alert smarthost %q: %w", c.AlertSmarthost, err)
		}
	}
	if c.AlertWebhook != "" {
		u, err := url.Parse(c.AlertWebhook)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("relayq: alert webhook %q: want an http or https URL", c.AlertWebhook)
		}
	}
	return nil
}

func checkHostPort(s string) error {
	h, p, err := net.SplitHostPort(s)
	if err != nil {
		return err
	}
	if h == "" {
		return errors.New("missing host")
	}
	if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("invalid port %q", p)
	}
	return nil
}

// Metrics receives the queue's counters; the admin package implements it
// with Prometheus. Methods must be cheap and safe for concurrent use.
type Metrics interface {
	// Recipients counts recipient outcomes of delivery attempts: result is
	// "delivered", "deferred" or "failed"; messages expired by retention
	// are counted with "expired".
	Recipients(domain, result string, n int)
	// Probe reports one probe of a relay host.
	Probe(relayHost string, ok bool, took time.Duration)
	// DomainsDown reports how many domains have their relay host down.
	DomainsDown(n int)
}

// NopMetrics is a Metrics that discards everything.
type NopMetrics struct{}

// Recipients implements Metrics.
func (NopMetrics) Recipients(string, string, int) {}

// Probe implements Metrics.
func (NopMetrics) Probe(string, bool, time.Duration) {}

// DomainsDown implements Metrics.
func (NopMetrics) DomainsDown(int) {}
