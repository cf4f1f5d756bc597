package outbound

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"time"

	"github.com/mxcont/mxcont/engine/registry"
	"github.com/mxcont/mxcont/spool"
)

// Errors returned by the queue. Test them with errors.Is.
var (
	// ErrInvalid wraps a Submit whose envelope cannot be queued (no
	// recipient, a recipient without a valid domain).
	ErrInvalid = errors.New("outbound: invalid envelope")
	// ErrTooLarge is returned (wrapped) when a body exceeds
	// Config.MaxMessageBytes; it is spool.ErrTooLarge.
	ErrTooLarge = spool.ErrTooLarge
	// ErrPermanent may be wrapped by Local.Accept to refuse a message for
	// good: its recipients fail and the sender gets a DSN. Any other
	// error from Accept is temporary and the message is retried.
	ErrPermanent = errors.New("outbound: permanent failure")
	// ErrStopped is returned by Start after Stop.
	ErrStopped = errors.New("outbound: queue stopped")
)

// Local is the node itself as a destination. Mail for a recipient domain
// this node protects (a registered domain) is not sent out: the engine
// files it into the inbound relay spool and the shadow mailboxes. Its
// methods are called concurrently, for different recipient domains.
type Local interface {
	// IsLocal reports whether domain (lower case, punycode) is protected
	// by this node. It is asked at each delivery attempt, not at Submit.
	IsLocal(domain string) bool
	// Accept takes one message for recipients of a local domain. It must
	// return nil only once the message is durable on the node's side:
	// the outbound record is deleted then. An error wrapping
	// ErrPermanent fails the recipients (DSN); any other error is
	// retried with backoff. body must be read before Accept returns.
	// from is "" for the DSNs this queue sends to local senders.
	Accept(from string, rcpts []string, body io.Reader) error
}

// Resolver looks up mail exchangers and addresses; *net.Resolver
// implements it.
type Resolver interface {
	LookupMX(ctx context.Context, name string) ([]*net.MX, error)
	LookupHost(ctx context.Context, host string) ([]string, error)
}

// Config holds the queue's settings. Zero values take the defaults shown.
type Config struct {
	// Dir holds the outbound spool (required). It must be a directory of
	// its own, never the inbound relay spool's.
	Dir string
	// Shards is the number of spool shards, used when Dir is created (2).
	Shards int
	// MaxMessageBytes bounds one stored body (128 MiB, above the
	// submission limit plus the headers and line-ending fixes it adds).
	MaxMessageBytes int64

	// Hostname is the name given in EHLO and the Reporting-MTA of DSNs
	// (default os.Hostname).
	Hostname string

	// Smarthost ("host:port", port 25 when missing) receives all remote
	// mail unless Route names another host. Empty: MX lookup.
	Smarthost string
	// Route, if set, returns the smarthost for mail from senderDomain (the
	// registry's Domain.OutboundSmarthost); "" falls back to Smarthost.
	// It is called at each delivery attempt.
	Route func(senderDomain string) string
	// SmarthostUser and SmarthostPassword, when set, are sent with AUTH
	// PLAIN to Smarthost (never to a per-domain Route host, and only over
	// TLS: a smarthost without STARTTLS then gets no mail).
	SmarthostUser, SmarthostPassword string
	// SmarthostInsecureTLS skips verification of smarthost certificates.
	// Certificates of MX hosts are never verified (opportunistic TLS).
	SmarthostInsecureTLS bool
	// RootCAs verifies smarthost certificates (nil: the system roots).
	RootCAs *x509.CertPool

	// Resolver looks up MX and address records (net.DefaultResolver).
	Resolver Resolver
	// Port is the SMTP port of MX hosts (25); tests use a loopback port.
	Port int

	// DialTimeout bounds a TCP connect (30 s).
	DialTimeout time.Duration
	// CommandTimeout bounds each read or write of a command, a reply or a
	// piece of the body (5 min, RFC 5321 section 4.5.3.2).
	CommandTimeout time.Duration
	// DataTimeout bounds the wait for the reply to the final dot (10 min).
	DataTimeout time.Duration

	// RetryMin is the delay before the first retry (1 min); each further
	// attempt doubles it up to RetryMax (1 h), with ±20 % jitter.
	RetryMin, RetryMax time.Duration
	// MaxAge is how long a message is retried before it fails with a
	// DSN (5 days).
	MaxAge time.Duration
	// Workers bounds concurrent deliveries, one recipient domain each (4).
	Workers int
	// ScanInterval is how often due mail is looked for when nothing
	// else wakes the queue up (1 s).
	ScanInterval time.Duration
	// Batch is the most messages of one domain taken per delivery run (50).
	Batch int
}

func (c *Config) setDefaults() error {
	if c.Dir == "" {
		return errors.New("outbound: no directory")
	}
	setDefault(&c.Shards, 2)
	setDefault(&c.MaxMessageBytes, 128<<20)
	if c.Hostname == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "localhost"
		}
		c.Hostname = h
	}
	h, err := registry.NormalizeHostname(c.Hostname)
	if err != nil {
		return fmt.Errorf("outbound: %w", err)
	}
	c.Hostname = h
	if c.Smarthost != "" {
		s, err := registry.NormalizeRelayHost(c.Smarthost)
		if err != nil {
			return fmt.Errorf("outbound: smarthost: %w", err)
		}
		c.Smarthost = s
	}
	if (c.SmarthostUser == "") != (c.SmarthostPassword == "") {
		return errors.New("outbound: smarthost user and password go together")
	}
	if c.SmarthostUser != "" && c.Smarthost == "" {
		return errors.New("outbound: smarthost credentials without a smarthost")
	}
	if c.Resolver == nil {
		c.Resolver = net.DefaultResolver
	}
	setDefault(&c.Port, 25)
	if c.Port > 65535 || c.Port < 0 {
		return fmt.Errorf("outbound: invalid port %d", c.Port)
	}
	setDefault(&c.DialTimeout, 30*time.Second)
	setDefault(&c.CommandTimeout, 5*time.Minute)
	setDefault(&c.DataTimeout, 10*time.Minute)
	setDefault(&c.RetryMin, time.Minute)
	setDefault(&c.RetryMax, time.Hour)
	c.RetryMax = max(c.RetryMax, c.RetryMin)
	setDefault(&c.MaxAge, 5*24*time.Hour)
	setDefault(&c.Workers, 4)
	setDefault(&c.ScanInterval, time.Second)
	setDefault(&c.Batch, 50)
	return nil
}

func setDefault[T int | int64 | time.Duration](p *T, def T) {
	if *p <= 0 {
		*p = def
	}
}

// backoff is the delay after a message's attempt number n+1 (n earlier
// attempts): RetryMin·2^n capped at RetryMax, scaled by a random factor
// in [0.8, 1.2] so that retries of a burst spread out.
func (c *Config) backoff(n int) time.Duration {
	d := c.RetryMin
	for i := 0; i < n && d < c.RetryMax; i++ {
		d *= 2
	}
	d = min(d, c.RetryMax)
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}
