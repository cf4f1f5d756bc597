package submit

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	stdlog "log"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
	"go.uber.org/zap"

	"github.com/mxcont/mxcont/admin/auth"
	"github.com/mxcont/mxcont/internal/connlimit"
	"github.com/mxcont/mxcont/outbound"
)

// Server is the submission server. Create it with New.
type Server struct {
	log   *zap.Logger
	cfg   Config
	users Users
	q     *outbound.Queue
	srv   *smtp.Server

	userThrottle *auth.Throttle
	ipThrottle   *auth.Throttle
	rate         *rateLimiter
	lim          *connlimit.Limiter

	ctx    context.Context // ends pending Authenticate calls on shutdown
	cancel context.CancelFunc

	mu        sync.Mutex
	listeners []net.Listener
	conns     map[*sconn]struct{}
	draining  atomic.Bool
}

// New returns a submission server that queues mail in q for the mailbox
// users that users authenticates.
func New(log *zap.Logger, cfg Config, users Users, q *outbound.Queue) (*Server, error) {
	if log == nil {
		log = zap.NewNop()
	}
	if users == nil || q == nil {
		return nil, errors.New("submit: users and queue are required")
	}
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	s := &Server{
		log: log, cfg: cfg, users: users, q: q,
		userThrottle: auth.NewThrottle(cfg.UserThrottle),
		ipThrottle:   auth.NewThrottle(cfg.IPThrottle),
		rate:         newRateLimiter(cfg.MessagesPerHour, time.Hour),
		conns:        make(map[*sconn]struct{}),
	}
	s.lim = connlimit.New(connlimit.Config{
		MaxTotal: cfg.MaxConns,
		MaxPerIP: cfg.MaxConnsPerIP,
		Exempt:   connlimit.ExemptAddrs(cfg.InsecureAuth),
	})
	s.ctx, s.cancel = context.WithCancel(context.Background())
	srv := smtp.NewServer(backend{s})
	srv.Domain = cfg.Hostname
	srv.TLSConfig = cfg.TLSConfig
	srv.MaxMessageBytes = cfg.MaxMessageBytes
	srv.MaxRecipients = cfg.MaxRecipients
	// A body line longer than this is refused by go-smtp (and kills the
	// connection); keep it far above what real mail has.
	srv.MaxLineLength = 1 << 20
	// AUTH without TLS is decided per connection (Config.InsecureAuth) by
	// the session; go-smtp's switch is all or nothing.
	srv.AllowInsecureAuth = true
	// Our connection wrapper sets idle deadlines before every read and
	// write; go-smtp's timeouts would bound a whole DATA phase.
	srv.ReadTimeout, srv.WriteTimeout = 0, 0
	srv.ErrorLog = stdlog.New(zapWriter{s.log}, "", 0)
	s.srv = srv
	return s, nil
}

// zapWriter sends go-smtp's internal error log to zap.
type zapWriter struct{ l *zap.Logger }

func (w zapWriter) Write(p []byte) (int, error) {
	w.l.Debug("smtp server", zap.ByteString("detail", p))
	return len(p), nil
}

// Serve accepts connections on ln until Shutdown. It returns nil after
// Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.draining.Load() {
		s.mu.Unlock()
		return ln.Close()
	}
	s.listeners = append(s.listeners, ln)
	s.mu.Unlock()
	refuse := func(c net.Conn) {
		s.log.Info("connection refused", zap.Stringer("client-ip", connlimit.AddrOf(c.RemoteAddr())), zap.String("reason", "too many connections"))
		_, _ = io.WriteString(c, tooManyConnections)
	}
	err := s.srv.Serve(&listener{Listener: connlimit.NewListener(ln, s.lim, refuse), s: s})
	if s.draining.Load() {
		return nil
	}
	return err
}

// Shutdown stops accepting connections, ends idle ones, and waits for
// those in a transaction to finish until ctx is done; then it closes them.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.draining.Store(true)
	for _, ln := range s.listeners {
		_ = ln.Close()
	}
	for c := range s.conns {
		_ = c.Conn.SetReadDeadline(time.Now()) // wake idle readers
	}
	s.mu.Unlock()
	err := s.srv.Shutdown(ctx)
	if errors.Is(err, smtp.ErrServerClosed) || errors.Is(err, net.ErrClosed) {
		err = nil // closed before, by us or by an earlier Shutdown
	}
	if ctx.Err() != nil {
		s.mu.Lock()
		for c := range s.conns {
			_ = c.Conn.Close()
		}
		s.mu.Unlock()
	}
	s.cancel()
	return err
}

// backend implements smtp.Backend.
type backend struct{ s *Server }

// NewSession is called at EHLO (again after STARTTLS).
func (b backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	return b.s.newSession(c), nil
}

// tooManyConnections answers a connection over a limit (Config.MaxConns,
// Config.MaxConnsPerIP).
const tooManyConnections = "421 4.7.0 too many connections\r\n"

// listener wraps accepted connections in sconns. The connection limits
// are enforced beneath it, by a connlimit.Listener.
type listener struct {
	net.Listener
	s *Server
}

func (l *listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if sc := l.s.admit(c); sc != nil {
			return sc, nil
		}
	}
}

// admit tracks c (within the connection limits already), or refuses it
// with 421 when draining.
func (s *Server) admit(c net.Conn) *sconn {
	ip := connlimit.AddrOf(c.RemoteAddr())
	s.mu.Lock()
	if s.draining.Load() {
		s.mu.Unlock()
		go func() {
			_ = c.SetWriteDeadline(time.Now().Add(connlimit.RefuseTimeout))
			_, _ = io.WriteString(c, "421 4.3.2 Service shutting down\r\n")
			_ = c.Close()
		}()
		s.log.Info("connection refused", zap.String("client-ip", ip.String()), zap.String("reason", "shutting down"))
		return nil
	}
	sc := &sconn{Conn: c, s: s, ip: ip}
	s.conns[sc] = struct{}{}
	s.mu.Unlock()
	return sc
}

// sconn is an accepted connection: it sets an idle deadline before every
// read and write (capped while a body is read), and ends itself at the
// next read once the server drains and no transaction is open.
type sconn struct {
	net.Conn
	s  *Server
	ip netip.Addr

	inTxn        atomic.Bool
	dataDeadline atomic.Int64 // unix nanoseconds; 0 outside DATA
	closeOnce    sync.Once
}

func (c *sconn) Read(p []byte) (int, error) {
	for {
		dl := time.Now().Add(c.s.cfg.IdleTimeout)
		if d := c.dataDeadline.Load(); d != 0 && d < dl.UnixNano() {
			dl = time.Unix(0, d)
		}
		if err := c.Conn.SetReadDeadline(dl); err != nil {
			return 0, err
		}
		// Checked after setting the deadline: Shutdown sets draining and
		// then a past deadline, so one of the two is seen.
		if c.s.draining.Load() && !c.inTxn.Load() {
			return 0, os.ErrDeadlineExceeded // go-smtp answers 421 and closes
		}
		n, err := c.Conn.Read(p)
		if n == 0 && errors.Is(err, os.ErrDeadlineExceeded) && c.s.draining.Load() && time.Now().Before(dl) {
			continue // woken by Shutdown while in a transaction
		}
		return n, err
	}
}

func (c *sconn) Write(p []byte) (int, error) {
	if err := c.Conn.SetWriteDeadline(time.Now().Add(c.s.cfg.IdleTimeout)); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

func (c *sconn) Close() error {
	c.closeOnce.Do(func() {
		c.s.mu.Lock()
		delete(c.s.conns, c)
		c.s.mu.Unlock()
	})
	return c.Conn.Close()
}

// SetDeadline ignores go-smtp's deadlines: ours apply (see sconn).
func (c *sconn) SetDeadline(time.Time) error { return nil }

// SetReadDeadline ignores go-smtp's deadlines: ours apply (see sconn).
func (c *sconn) SetReadDeadline(time.Time) error { return nil }

// SetWriteDeadline ignores go-smtp's deadlines: ours apply (see sconn).
func (c *sconn) SetWriteDeadline(time.Time) error { return nil }

// sconnOf finds our connection under go-smtp's (TLS) connection.
func sconnOf(c net.Conn) *sconn {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	sc, _ := c.(*sconn)
	return sc
}
