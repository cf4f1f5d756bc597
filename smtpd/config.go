package smtpd

import (
	"crypto/tls"
	"fmt"
	"net/netip"
	"os"
	"time"

	"go.uber.org/zap"

	"github.com/mxcont/mxcont/engine/registry"
)

// Values of Config.BareNewlines.
const (
	// BareNewlinesNormalize rewrites a bare LF or bare CR in a message to
	// CRLF while it is stored.
	BareNewlinesNormalize = "normalize"
	// BareNewlinesReject refuses a message containing a bare LF or bare CR
	// with 554 5.6.11 (like Postfix's smtpd_forbid_bare_newline).
	BareNewlinesReject = "reject"
)

// Defaults applied by New to zero fields of Config.
const (
	DefaultMaxMessageBytes     = 50 << 20
	DefaultMaxRecipients       = 1000
	DefaultMaxDomains          = 50
	DefaultMaxConnections      = 1000
	DefaultMaxConnectionsPerIP = 50
	DefaultIdleTimeout         = 5 * time.Minute
	DefaultDataTimeout         = 30 * time.Minute
	DefaultMaxLineLength       = 4096
	DefaultMaxDataLineLength   = 1 << 20
	DefaultMinFreeBytes        = 256 << 20
	DefaultProxyHeaderTimeout  = 5 * time.Second
	DefaultMaxReceivedHeaders  = 30
)

// minLineLength is RFC 5321's command line limit (section 4.5.3.1.4); a
// smaller MaxLineLength would refuse valid commands.
const minLineLength = 512

// Config holds the acceptor's settings. Zero values take the defaults
// named in each field's comment; New validates the result.
type Config struct {
	// Hostname is this node's name in the greeting and in Received:
	// fields (default os.Hostname()).
	Hostname string
	// MaxMessageBytes bounds one message as sent by the client; it is
	// advertised with SIZE, checked against MAIL SIZE= and enforced while
	// reading DATA or BDAT (552 5.3.4). Default 50 MiB. The spool's own
	// MaxMessageBytes must leave room for the added Received: field.
	MaxMessageBytes int64
	// MaxRecipients bounds the accepted recipients of one transaction
	// (452 4.5.3 for the next one). Default 1000.
	MaxRecipients int
	// MaxDomains bounds the distinct recipient domains of one transaction
	// (452 4.5.3; the client sends the rest in another transaction). Each
	// domain is streamed into its own spool writer. Default 50.
	// Shadow, if set, files a copy of every message for a domain in mode
	// both into the recipients' shadow mailboxes after the spool commit and
	// before the 250 (see Shadow).
	Shadow     Shadow
	MaxDomains int
	// MaxConnections bounds concurrent connections (including those still
	// sending a PROXY header). Default 1000.
	MaxConnections int
	// MaxConnectionsPerIP bounds concurrent connections from one client
	// address (the PROXY address when there is one; IPv6 clients are
	// grouped by /64). Default 50.
	MaxConnectionsPerIP int
	// IdleTimeout is the longest wait for the next bytes from the client,
	// reset by every read, in commands and in DATA alike; it also bounds
	// each write. Default 5 minutes.
	IdleTimeout time.Duration
	// DataTimeout caps the whole of one DATA (or BDAT) body, however
	// steadily it arrives. Default 30 minutes.
	DataTimeout time.Duration
	// MaxLineLength bounds a command line, CRLF included, and each
	// address in MAIL and RCPT. Default 4096; at least 512 (RFC 5321).
	MaxLineLength int
	// MaxDataLineLength bounds one line of a message body (go-smtp's
	// MaxLineLength, which also bounds command lines over TLS). Default
	// 1 MiB; at least MaxLineLength.
	MaxDataLineLength int
	// BareNewlines is BareNewlinesNormalize (default) or BareNewlinesReject.
	BareNewlines string
	// MinFreeBytes is the free-space floor on the spool's filesystem: below
	// it, MAIL and DATA get 452 4.3.1 (a MAIL SIZE= that would cross it
	// too). Default 256 MiB; negative disables the check.
	MinFreeBytes int64
	// TLSConfig enables STARTTLS when set (see LoadOrCreateCert).
	TLSConfig *tls.Config
	// ProxyFrom lists the networks whose connections may start with a
	// PROXY protocol v1 or v2 header; the header's source address then
	// stands for the client everywhere (limits, allowed sources, logs,
	// Received:). A connection from these networks that sends no header
	// within ProxyHeaderTimeout is served with its own address. A PROXY
	// header from any other address closes the connection.
	ProxyFrom []netip.Prefix
	// ProxyHeaderTimeout bounds the wait for a PROXY header from a
	// ProxyFrom network. Default 5 seconds.
	ProxyHeaderTimeout time.Duration
	// MaxReceivedHeaders is the most Received: fields a message may
	// already carry; more is taken for a mail loop (554 5.4.6). Default 30.
	MaxReceivedHeaders int
	// Logger receives the mail log, one line per transaction. It should
	// not be sampled. Nil means the logger passed to New.
	Logger *zap.Logger
	// Metrics receives counters (nil: none).
	Metrics Metrics

	// goSMTPData is a test seam: read DATA bodies through go-smtp's own
	// reader instead of bodyReader.
	goSMTPData bool
}

func (c *Config) setDefaults() error {
	if c.Hostname == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("smtpd: no Hostname configured and os.Hostname failed: %w", err)
		}
		c.Hostname = h
	}
	setDefault(&c.MaxMessageBytes, DefaultMaxMessageBytes)
	setDefault(&c.MaxRecipients, DefaultMaxRecipients)
	setDefault(&c.MaxDomains, DefaultMaxDomains)
	setDefault(&c.MaxConnections, DefaultMaxConnections)
	setDefault(&c.MaxConnectionsPerIP, DefaultMaxConnectionsPerIP)
	setDefault(&c.IdleTimeout, DefaultIdleTimeout)
	setDefault(&c.DataTimeout, DefaultDataTimeout)
	setDefault(&c.MaxLineLength, DefaultMaxLineLength)
	setDefault(&c.MaxDataLineLength, DefaultMaxDataLineLength)
	setDefault(&c.MinFreeBytes, DefaultMinFreeBytes)
	setDefault(&c.ProxyHeaderTimeout, DefaultProxyHeaderTimeout)
	setDefault(&c.MaxReceivedHeaders, DefaultMaxReceivedHeaders)
	if c.BareNewlines == "" {
		c.BareNewlines = BareNewlinesNormalize
	}
	if c.Metrics == nil {
		c.Metrics = NopMetrics{}
	}
	return nil
}

func setDefault[T int | int64 | time.Duration](p *T, def T) {
	if *p == 0 {
		*p = def
	}
}

// validate checks a Config after setDefaults.
func (c *Config) validate() error {
	h, err := registry.NormalizeHostname(c.Hostname)
	if err != nil {
		return fmt.Errorf("smtpd: invalid Hostname %q", c.Hostname)
	}
	c.Hostname = h
	positive := []struct {
		name string
		v    int64
	}{
		{"MaxMessageBytes", c.MaxMessageBytes},
		{"MaxRecipients", int64(c.MaxRecipients)},
		{"MaxDomains", int64(c.MaxDomains)},
		{"MaxConnections", int64(c.MaxConnections)},
		{"MaxConnectionsPerIP", int64(c.MaxConnectionsPerIP)},
		{"IdleTimeout", int64(c.IdleTimeout)},
		{"DataTimeout", int64(c.DataTimeout)},
		{"ProxyHeaderTimeout", int64(c.ProxyHeaderTimeout)},
		{"MaxReceivedHeaders", int64(c.MaxReceivedHeaders)},
	}
	for _, p := range positive {
		if p.v < 0 {
			return fmt.Errorf("smtpd: %s must not be negative", p.name)
		}
	}
	if c.MaxLineLength < minLineLength {
		return fmt.Errorf("smtpd: MaxLineLength %d is below the RFC 5321 minimum of %d", c.MaxLineLength, minLineLength)
	}
	if c.MaxDataLineLength < c.MaxLineLength {
		return fmt.Errorf("smtpd: MaxDataLineLength %d is below MaxLineLength %d", c.MaxDataLineLength, c.MaxLineLength)
	}
	switch c.BareNewlines {
	case BareNewlinesNormalize, BareNewlinesReject:
	default:
		return fmt.Errorf("smtpd: invalid BareNewlines %q (want %q or %q)", c.BareNewlines, BareNewlinesNormalize, BareNewlinesReject)
	}
	for i, p := range c.ProxyFrom {
		if !p.IsValid() {
			return fmt.Errorf("smtpd: invalid ProxyFrom[%d]", i)
		}
	}
	return nil
}
