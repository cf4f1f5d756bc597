package smtpd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/emersion/go-smtp"
	"go.uber.org/zap"

	"github.com/mxcont/mxcont/engine/registry"
	"github.com/mxcont/mxcont/spool"
)

// ErrServerClosed is returned by Serve and ListenAndServe after Shutdown
// or Close.
var ErrServerClosed = errors.New("smtpd: server closed")

// Shadow files shadow mailbox copies. File is called once per committed
// spool record of a mode-both domain with the record's envelope; it reads
// the body from the spool and must return only when the copies are
// durable. An error makes the acceptor delete the transaction's records
// and answer 451.
type Shadow interface {
	File(env spool.Envelope, id spool.ID) error
}

// Domains is the part of the domain registry the acceptor needs.
// registry.Store implementations satisfy it.
type Domains interface {
	// Lookup returns the domain for name as written in a RCPT command:
	// case-insensitive, trailing dot ignored, U-label or A-label. The
	// returned Domain must not be modified.
	Lookup(name string) (*registry.Domain, bool)
}

// Server is the SMTP acceptor. Create it with New, run it with Serve or
// ListenAndServe, stop it with Shutdown.
type Server struct {
	log     *zap.Logger // operations
	mlog    *zap.Logger // mail log: one line per transaction
	cfg     Config
	domains Domains
	sp      *spool.Spool
	metrics Metrics
	smtp    *smtp.Server
	limits  *connLimits
	free    freeSpace
	panics  atomic.Int64
	// bulkBodies counts DATA bodies read by bodyReader (for tests).
	bulkBodies atomic.Int64

	closing   atomic.Bool
	mu        sync.Mutex
	listeners map[*listener]struct{}
	conns     map[*sconn]struct{}
}

// New returns a Server that accepts mail for domains into sp. A nil log is
// replaced by a no-op logger. cfg is copied; zero fields take defaults.
func New(log *zap.Logger, cfg Config, domains Domains, sp *spool.Spool) (*Server, error) {
	if log == nil {
		log = zap.NewNop()
	}
	if domains == nil {
		return nil, errors.New("smtpd: no domain registry")
	}
	if sp == nil {
		return nil, errors.New("smtpd: no spool")
	}
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg.ProxyFrom = append([]netip.Prefix(nil), cfg.ProxyFrom...)
	for i, p := range cfg.ProxyFrom {
		cfg.ProxyFrom[i] = p.Masked()
	}
	s := &Server{
		log:       log,
		mlog:      cfg.Logger,
		cfg:       cfg,
		domains:   domains,
		sp:        sp,
		metrics:   cfg.Metrics,
		limits:    newConnLimits(cfg.MaxConnections, cfg.MaxConnectionsPerIP),
		listeners: make(map[*listener]struct{}),
		conns:     make(map[*sconn]struct{}),
	}
	if s.mlog == nil {
		s.mlog = log
	}
	// The mail log line is always written from the same place: its caller
	// field says nothing and runtime.Caller cost half of the line's CPU.
	s.mlog = s.mlog.WithOptions(zap.WithCaller(false))
	ss := smtp.NewServer(backend{s})
	ss.Domain = cfg.Hostname
	ss.MaxMessageBytes = cfg.MaxMessageBytes
	ss.MaxRecipients = cfg.MaxRecipients
	ss.MaxLineLength = cfg.MaxDataLineLength
	ss.ReadTimeout = 0 // sconn keeps an idle deadline; go-smtp's would bound all of DATA
	ss.WriteTimeout = 0
	ss.EnableSMTPUTF8 = true
	ss.TLSConfig = cfg.TLSConfig
	ss.ErrorLog = errorLog{s}
	s.smtp = ss
	return s, nil
}

// Serve accepts connections on ln until Shutdown or Close (then it returns
// ErrServerClosed) or until ln fails. It may be called for several
// listeners. ln is closed when Serve returns.
func (s *Server) Serve(ln net.Listener) error {
	l := newListener(s, ln)
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		_ = ln.Close()
		return ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	s.log.Info("smtp listening", zap.Stringer("addr", ln.Addr()), zap.String("hostname", s.cfg.Hostname),
		zap.Bool("starttls", s.cfg.TLSConfig != nil), zap.Int("proxy-networks", len(s.cfg.ProxyFrom)))
	l.start()
	err := s.smtp.Serve(l)
	_ = l.Close()
	l.wg.Wait()
	s.mu.Lock()
	delete(s.listeners, l)
	s.mu.Unlock()
	if s.closing.Load() {
		return ErrServerClosed
	}
	if err == nil {
		err = ErrServerClosed
	}
	return err
}

// Listen opens a TCP listener for Serve on addr. Its connections have no
// TCP keepalive: every read has an idle deadline (Config.IdleTimeout),
// which ends a vanished client's connection, so keepalive probes would add
// nothing but four setsockopt calls to every accepted connection.
func Listen(addr string) (net.Listener, error) {
	lc := net.ListenConfig{KeepAlive: -1}
	return lc.Listen(context.Background(), "tcp", addr)
}

// ListenAndServe listens on the TCP address addr and calls Serve.
func (s *Server) ListenAndServe(addr string) error {
	ln, err := Listen(addr)
	if err != nil {
		return fmt.Errorf("smtpd: %w", err)
	}
	return s.Serve(ln)
}

// Shutdown stops accepting connections, ends idle ones (go-smtp answers
// them "421 4.4.2"), refuses new transactions with 421 4.3.2 and waits for
// the transactions in progress to finish. When ctx ends first, the
// remaining connections are closed and ctx's error returned. A message
// whose commit completes after its connection was closed stays stored
// (the client will send it again: at-least-once). Close the spool only
// after Shutdown has returned.
func (s *Server) Shutdown(ctx context.Context) error {
	for _, c := range s.stop() {
		c.drain()
	}
	err := s.smtp.Shutdown(ctx)
	switch {
	case errors.Is(err, smtp.ErrServerClosed): // a second call
		return nil
	case err != nil && ctx.Err() != nil:
		n := s.closeConns()
		s.log.Warn("smtp shutdown cut short", zap.Error(err), zap.Int("closed-connections", n))
		return err
	case err != nil:
		s.log.Warn("closing a listener failed", zap.Error(err))
	}
	s.log.Info("smtp stopped")
	return nil
}

// Close closes the listeners and every connection at once.
func (s *Server) Close() error {
	s.stop()
	s.closeConns()
	if err := s.smtp.Close(); err != nil && !errors.Is(err, smtp.ErrServerClosed) {
		return err
	}
	return nil
}

// stop refuses new connections and transactions, closes the listeners
// and returns the open connections.
func (s *Server) stop() []*sconn {
	s.mu.Lock()
	s.closing.Store(true)
	ls := make([]*listener, 0, len(s.listeners))
	for l := range s.listeners {
		ls = append(ls, l)
	}
	s.mu.Unlock()
	for _, l := range ls {
		_ = l.Close()
	}
	return s.openList()
}

func (s *Server) openList() []*sconn {
	s.mu.Lock()
	defer s.mu.Unlock()
	cs := make([]*sconn, 0, len(s.conns))
	for c := range s.conns {
		cs = append(cs, c)
	}
	return cs
}

// closeConns closes every connection (go-smtp's Close does nothing once
// its Shutdown has begun); their goroutines then end.
func (s *Server) closeConns() int {
	cs := s.openList()
	for _, c := range cs {
		_ = c.Close()
	}
	return len(cs)
}

// track registers a connection for Shutdown; false if shutting down.
func (s *Server) track(c *sconn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing.Load() {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) untrack(c *sconn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// trusted reports whether a peer may send a PROXY header.
func (s *Server) trusted(a netip.Addr) bool {
	for _, p := range s.cfg.ProxyFrom {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Connections returns the number of open client connections (those
// counted against MaxConnections), for a gauge.
func (s *Server) Connections() int { return s.limits.open() }

// backend is the go-smtp Backend.
type backend struct{ s *Server }

// NewSession implements smtp.Backend; go-smtp calls it at the first EHLO
// or HELO (and again after STARTTLS).
func (b backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	s := b.s
	sc := connOf(c)
	if sc == nil {
		return nil, errTempLocal
	}
	if s.closing.Load() {
		return nil, errShuttingDown
	}
	if len(c.Hostname()) > maxHeloLen {
		s.metrics.Rejected(ReasonHeloTooLong)
		return nil, &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 5, 2}, Message: "HELO argument too long"}
	}
	sess := &session{srv: s, conn: sc, c: c}
	if st, ok := c.TLSConnectionState(); ok {
		sess.tls = strings.ReplaceAll(tls.VersionName(st.Version), " ", "") + " " + tls.CipherSuiteName(st.CipherSuite)
	}
	return sess, nil
}

// connOf finds our sconn under a go-smtp connection (possibly TLS).
func connOf(c *smtp.Conn) *sconn {
	nc := c.Conn()
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	sc, _ := nc.(*sconn)
	return sc
}

// errorLog receives go-smtp's internal error reports: connection errors
// (debug) and recovered panics. A panic in our code is an error and is
// counted. go-smtp itself dereferences a nil Session when it handles a
// command after closing the connection (pipelined after QUIT inside one
// TLS record, or a BDAT goroutine that starts after the client left); it
// recovers, and the connection is over anyway, so that is only logged at
// debug level.
type errorLog struct{ s *Server }

func (e errorLog) Printf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	switch {
	case !strings.HasPrefix(msg, "panic"):
		e.s.log.Debug("smtp connection error", zap.String("error", msg))
	case strings.Contains(msg, "github.com/mxcont/mxcont/"):
		e.s.panics.Add(1)
		e.s.metrics.Rejected(ReasonInternalError)
		e.s.log.Error("smtp session panicked", zap.String("error", msg))
	case strings.Contains(msg, "nil pointer dereference"):
		first, _, _ := strings.Cut(msg, "\n")
		e.s.log.Debug("go-smtp used a closed session", zap.String("error", first))
	default:
		e.s.log.Warn("go-smtp panicked", zap.String("error", msg))
	}
}

func (e errorLog) Println(v ...any) { e.Printf("%s", strings.TrimSuffix(fmt.Sprintln(v...), "\n")) }
