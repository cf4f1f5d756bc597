package submit

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/mxcont/mxcont/admin/auth"
	"github.com/mxcont/mxcont/engine/registry"
	"github.com/mxcont/mxcont/internal/connlimit"
)

// Users checks mailbox users' passwords. The engine adapts the mailbox
// store to it.
type Users interface {
	// Authenticate returns nil when password is address's password. An
	// error wrapping ErrUnavailable means the check could not be made
	// (the client is told to retry later, 454); any other error is a
	// failed login (535), counted by the login throttles.
	Authenticate(ctx context.Context, address, password string) error
}

// ErrUnavailable may be wrapped by Users.Authenticate when the user store
// cannot answer (closed, I/O error): the login is neither accepted nor
// counted as a failure.
var ErrUnavailable = errors.New("submit: user store unavailable")

// Loopback is a Config.InsecureAuth that allows plain-text AUTH from
// loopback clients only (a webmail on the same host).
func Loopback(a net.Addr) bool {
	ip := connlimit.AddrOf(a)
	return ip.IsValid() && ip.IsLoopback()
}

// Defaults of Config's connection limits.
const (
	DefaultMaxConns      = 200
	DefaultMaxConnsPerIP = 20
)

// Config holds the submission server's settings. Zero values take the
// defaults shown.
type Config struct {
	// Hostname is used in the banner, in Received: and in the Message-ID
	// fields the server adds (default os.Hostname).
	Hostname string
	// TLSConfig, with the node's certificate, enables STARTTLS. Without it
	// AUTH is possible only where InsecureAuth allows it.
	TLSConfig *tls.Config
	// InsecureAuth reports whether a client may use AUTH without TLS
	// (nil: never). The engine passes Loopback.
	InsecureAuth func(net.Addr) bool

	// MaxMessageBytes bounds a message as received (50 MiB; 552 5.3.4).
	MaxMessageBytes int64
	// MaxRecipients bounds the recipients of one message (100; 452 4.5.3).
	MaxRecipients int
	// MessagesPerHour is each user's sending rate (200; 450 4.7.1 when it
	// is used up). A negative value means no limit.
	MessagesPerHour int

	// UserThrottle and IPThrottle slow down password guessing per login
	// name and per client address (admin/auth defaults, the address
	// allowing 20 failures before delays start).
	UserThrottle, IPThrottle auth.ThrottleConfig
	// AuthTimeout bounds one Users.Authenticate call (30 s).
	AuthTimeout time.Duration

	// IdleTimeout bounds each read and write on a connection (5 min).
	IdleTimeout time.Duration
	// DataTimeout bounds the reading of one message body (10 min; 421).
	DataTimeout time.Duration
	// MaxConns bounds open connections (200), MaxConnsPerIP those of one
	// client address, an IPv4 address or an IPv6 /64 (20); more are
	// refused with "421 4.7.0 too many connections".
	//
	// Clients InsecureAuth allows are exempt from MaxConnsPerIP but count
	// toward MaxConns. The engine allows loopback, where the webmail runs
	// and submits for all of its users: one address speaking for many
	// people must not be held to one person's share (as imapd does, and
	// as the login throttles do for IMAP).
	MaxConns, MaxConnsPerIP int

	// KeepHeaders stops the server from adding Message-ID: and Date: to
	// messages that lack them (RFC 6409 section 8).
	KeepHeaders bool
}

func (c *Config) setDefaults() error {
	if c.Hostname == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "localhost"
		}
		c.Hostname = h
	}
	h, err := registry.NormalizeHostname(c.Hostname)
	if err != nil {
		return fmt.Errorf("submit: %w", err)
	}
	c.Hostname = h
	setDefault(&c.MaxMessageBytes, 50<<20)
	setDefault(&c.MaxRecipients, 100)
	if c.MessagesPerHour == 0 {
		c.MessagesPerHour = 200
	}
	if c.IPThrottle.Free <= 0 {
		c.IPThrottle.Free = 20
	}
	setDefault(&c.AuthTimeout, 30*time.Second)
	setDefault(&c.IdleTimeout, 5*time.Minute)
	setDefault(&c.DataTimeout, 10*time.Minute)
	setDefault(&c.MaxConns, DefaultMaxConns)
	setDefault(&c.MaxConnsPerIP, DefaultMaxConnsPerIP)
	if c.InsecureAuth == nil {
		c.InsecureAuth = func(net.Addr) bool { return false }
	}
	return nil
}

func setDefault[T int | int64 | time.Duration](p *T, def T) {
	if *p <= 0 {
		*p = def
	}
}
