// Package imapd serves the shadow mailboxes of package mailbox over IMAP
// (github.com/emersion/go-imap/v2/imapserver), for Roundcube webmail and
// desktop clients during an outage of a domain's primary mail server.
//
// It offers IMAP4rev1 with the extensions Roundcube uses: SASL-IR and
// AUTH=PLAIN, NAMESPACE, SPECIAL-USE, LIST-EXTENDED and LIST-STATUS,
// UIDPLUS, ESEARCH, MOVE, IDLE, BINARY, UNSELECT. A user sees only their
// own mailbox. Sessions keep a snapshot of the selected folder (UIDs and
// flags in sequence-number order) and, when the store reports a change
// (mailbox.Store.Watch), diff it against the store to send EXPUNGE,
// EXISTS and FETCH FLAGS updates; so changes made by other sessions, by
// the SMTP acceptor or by the purger reach every session.
//
// Passwords travel in the clear only over TLS (implicit, or after
// STARTTLS) or from clients Config.InsecureAuth trusts (the webmail on
// loopback); other clients see LOGINDISABLED until they start TLS.
//
// Connections are limited in total and per client address before any
// IMAP is spoken (package internal/connlimit); a client over a limit is
// greeted with "* BYE too many connections" and disconnected.
package imapd

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"go.uber.org/zap"

	"github.com/mxcont/mxcont/admin/auth"
	"github.com/mxcont/mxcont/internal/connlimit"
	"github.com/mxcont/mxcont/mailbox"
)

// ErrServerClosed is returned by Serve after Close.
var ErrServerClosed = errors.New("imapd: server closed")

// Defaults for Config.
const (
	DefaultMaxConnections      = 1000
	DefaultMaxConnectionsPerIP = 50
	DefaultAppendLimit         = 50 << 20
)

// tooManyConnections is the greeting of a connection over a limit (RFC
// 3501 section 7.1.5: BYE may be sent as the greeting).
const tooManyConnections = "* BYE too many connections\r\n"

// Config configures a Server.
type Config struct {
	// Hostname is shown in the greeting's log lines (informational).
	Hostname string
	// TLS enables STARTTLS; nil: no STARTTLS. Connections from a listener
	// wrapped with tls.NewListener are secure from the start.
	TLS *tls.Config
	// InsecureAuth reports whether a client at addr may log in without
	// TLS (the engine passes "remote is loopback", i.e. the webmail).
	// Nil means never. Such clients are also exempt from the per-IP login
	// throttle (they speak for many users); the per-user one still holds.
	InsecureAuth func(addr net.Addr) bool
	// Throttle slows down password guessing, by user and by client IP;
	// nil: auth.NewThrottle(auth.ThrottleConfig{}).
	Throttle *auth.Throttle
	// MaxConnections bounds the open connections of all listeners
	// together (DefaultMaxConnections); MaxConnectionsPerIP those of one
	// client address, an IPv4 address or an IPv6 /64
	// (DefaultMaxConnectionsPerIP). Connections over a limit are greeted
	// with "* BYE too many connections" and closed.
	//
	// Clients InsecureAuth trusts are exempt from MaxConnectionsPerIP but
	// count toward MaxConnections. The engine trusts loopback, where the
	// webmail runs: Roundcube opens a connection per request for every
	// user, so from its address 50 connections are normal load, not abuse;
	// a separate loopback cap would only be a second total. Behind a proxy
	// on the same host every client would be loopback, and then only the
	// total applies.
	MaxConnections, MaxConnectionsPerIP int
	// AppendLimit bounds APPEND's message size in bytes
	// (DefaultAppendLimit).
	AppendLimit int64
}

// Server is the IMAP server. Create it with New, run it with Serve, stop
// it with Close.
type Server struct {
	log *zap.Logger
	cfg Config
	st  *mailbox.Store

	// Two go-imap servers share the sessions' code: "strict" refuses
	// authentication without TLS, "trusted" allows it. Serve routes each
	// connection to one of them.
	strict, trusted     *imapserver.Server
	strictLn, trustedLn *chanListener
	inner               sync.WaitGroup
	lim                 *connlimit.Limiter

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	sessions  int
	closed    bool
}

// New returns a Server for st. A nil log means zap.NewNop().
func New(log *zap.Logger, cfg Config, st *mailbox.Store) (*Server, error) {
	if log == nil {
		log = zap.NewNop()
	}
	if st == nil {
		return nil, errors.New("imapd: nil store")
	}
	if cfg.Throttle == nil {
		cfg.Throttle = auth.NewThrottle(auth.ThrottleConfig{})
	}
	if cfg.InsecureAuth == nil {
		cfg.InsecureAuth = func(net.Addr) bool { return false }
	}
	if cfg.MaxConnections <= 0 {
		cfg.MaxConnections = DefaultMaxConnections
	}
	if cfg.MaxConnectionsPerIP <= 0 {
		cfg.MaxConnectionsPerIP = DefaultMaxConnectionsPerIP
	}
	if cfg.AppendLimit <= 0 {
		cfg.AppendLimit = DefaultAppendLimit
	}
	if cfg.AppendLimit > 1<<32-1 {
		return nil, fmt.Errorf("imapd: append limit %d too large", cfg.AppendLimit)
	}
	s := &Server{log: log, cfg: cfg, st: st, listeners: make(map[net.Listener]struct{})}
	s.lim = connlimit.New(connlimit.Config{
		MaxTotal: cfg.MaxConnections,
		MaxPerIP: cfg.MaxConnectionsPerIP,
		Exempt:   connlimit.ExemptAddrs(cfg.InsecureAuth),
	})
	caps := imap.CapSet{}
	for _, c := range []imap.Cap{
		imap.CapIMAP4rev1, imap.CapNamespace, imap.CapUIDPlus, imap.CapESearch, imap.CapSearchRes,
		imap.CapListExtended, imap.CapListStatus, imap.CapMove, imap.CapBinary,
		imap.CapSpecialUse, imap.CapLiteralPlus, imap.CapStatusSize, imap.CapChildren,
	} {
		caps[c] = struct{}{}
	}
	mk := func(insecure bool) (*imapserver.Server, *chanListener) {
		srv := imapserver.New(&imapserver.Options{
			NewSession:   s.newSession,
			Caps:         caps,
			Logger:       zapPrintf{log},
			TLSConfig:    cfg.TLS,
			InsecureAuth: insecure,
		})
		return srv, newChanListener()
	}
	s.strict, s.strictLn = mk(false)
	s.trusted, s.trustedLn = mk(true)
	for _, p := range []struct {
		srv *imapserver.Server
		ln  *chanListener
	}{{s.strict, s.strictLn}, {s.trusted, s.trustedLn}} {
		s.inner.Add(1)
		go func() {
			defer s.inner.Done()
			if err := p.srv.Serve(p.ln); err != nil {
				log.Error("imap server stopped", zap.Error(err))
			}
		}()
	}
	return s, nil
}

// Serve accepts plain connections on ln until Close; STARTTLS is offered
// when Config.TLS is set. For implicit TLS use ServeTLS: the connection
// limits count the TCP connections beneath TLS, so ln must not be a
// tls.NewListener (Serve fails when it yields a *tls.Conn).
func (s *Server) Serve(ln net.Listener) error {
	return s.serve(ln, connlimit.NewListener(ln, s.lim, s.logRefusal(connlimit.RefuseLine(tooManyConnections))), false)
}

// ServeTLS accepts implicit-TLS connections (port 993 style) on ln, a
// plain TCP listener, until Close, with Config.TLS. A connection over a
// limit gets its BYE after the TLS handshake.
func (s *Server) ServeTLS(ln net.Listener) error {
	if s.cfg.TLS == nil {
		return errors.New("imapd: ServeTLS without Config.TLS")
	}
	refuse := func(c net.Conn) {
		tc := tls.Server(c, s.cfg.TLS)
		_, _ = tc.Write([]byte(tooManyConnections))
		_ = tc.Close()
	}
	return s.serve(ln, tls.NewListener(connlimit.NewListener(ln, s.lim, s.logRefusal(refuse)), s.cfg.TLS), true)
}

// logRefusal logs each refused connection before refuse answers it.
func (s *Server) logRefusal(refuse func(net.Conn)) func(net.Conn) {
	return func(c net.Conn) {
		s.log.Info("imap connection refused: too many connections", zap.Stringer("remote", c.RemoteAddr()))
		refuse(c)
	}
}

// serve runs the accept loop of wrapped, ln wrapped in the connection
// limits (and TLS when implicitTLS).
func (s *Server) serve(ln, wrapped net.Listener, implicitTLS bool) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
	}()
	s.log.Info("imap listening", zap.String("addr", ln.Addr().String()), zap.String("hostname", s.cfg.Hostname))
	for {
		c, err := wrapped.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("imapd: accept: %w", err)
		}
		if cc, ok := c.(*connlimit.Conn); ok && !implicitTLS {
			if _, isTLS := cc.Conn.(*tls.Conn); isTLS {
				_ = c.Close()
				_ = ln.Close()
				return errors.New("imapd: Serve given a TLS listener; use ServeTLS")
			}
		}
		target := s.strictLn
		if _, isTLS := c.(*tls.Conn); isTLS || s.cfg.InsecureAuth(c.RemoteAddr()) {
			target = s.trustedLn
		}
		if !target.deliver(c) {
			_ = c.Close()
		}
	}
}

// Close stops the listeners given to Serve and ends every session.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.closed = true
	for ln := range s.listeners {
		_ = ln.Close()
	}
	s.mu.Unlock()
	// Stop the go-imap servers' accept loops first and wait for them, so
	// that their Close never races with their Serve starting up.
	_ = s.strictLn.Close()
	_ = s.trustedLn.Close()
	s.inner.Wait()
	err1 := s.strict.Close()
	err2 := s.trusted.Close()
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("imapd: close: %w", err)
	}
	return nil
}

// Sessions returns the number of open sessions.
func (s *Server) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sessions
}

// newSession is imapserver.Options.NewSession. The connection limits were
// applied when the connection was accepted (Serve).
func (s *Server) newSession(c *imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
	s.mu.Lock()
	s.sessions++
	s.mu.Unlock()
	return &session{srv: s, conn: c, remote: c.NetConn().RemoteAddr()}, nil, nil
}

func (s *Server) sessionDone() {
	s.mu.Lock()
	s.sessions--
	s.mu.Unlock()
}

// chanListener hands connections accepted by Serve to a go-imap server.
type chanListener struct {
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newChanListener() *chanListener {
	return &chanListener{ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *chanListener) deliver(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return chanAddr{} }

type chanAddr struct{}

func (chanAddr) Network() string { return "imapd" }
func (chanAddr) String() string  { return "imapd" }

// zapPrintf adapts zap to imapserver.Logger. go-imap reports client
// disconnects and internal errors this way; none carry message content.
type zapPrintf struct{ log *zap.Logger }

func (z zapPrintf) Printf(format string, args ...any) {
	msg := strings.TrimSpace(fmt.Sprintf(format, args...))
	if strings.HasPrefix(msg, "failed to read command") || strings.HasPrefix(msg, "failed to write greeting") {
		z.log.Debug("imap connection", zap.String("detail", msg))
		return
	}
	z.log.Warn("imap server", zap.String("detail", msg))
}
