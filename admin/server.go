package admin

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/valyala/fasthttp"
	"go.etcd.io/bbolt"
	"go.uber.org/zap"

	"github.com/mxcont/mxcont/admin/auth"
	"github.com/mxcont/mxcont/admin/events"
	"github.com/mxcont/mxcont/engine/registry"
)

// EnvAdminPassword names the environment variable whose value, on a first
// start, becomes the password of the operator "admin" (DESIGN.md section 5).
const EnvAdminPassword = "MXCONT_ADMIN_PASSWORD"

// Config holds the server's settings. Zero values take the defaults shown.
type Config struct {
	// MetricsOpen lets anyone scrape /metrics without credentials; by
	// default it needs an operator's session or API token.
	MetricsOpen bool
	// SecureCookies marks the session cookie Secure even on plain HTTP
	// (behind a TLS-terminating proxy). It is always Secure over TLS.
	SecureCookies bool
	// MaxBodyBytes bounds request bodies (1 MiB).
	MaxBodyBytes int
	// ReadTimeout bounds reading a request (10 s).
	ReadTimeout time.Duration
	// WriteTimeout bounds writing a response (30 s).
	WriteTimeout time.Duration
	// IdleTimeout closes idle keep-alive connections (2 min).
	IdleTimeout time.Duration
	// SessionTTL is the lifetime of a login session (12 h).
	SessionTTL time.Duration
	// Password sets the argon2id costs (auth.DefaultParams).
	Password auth.Params
	// UserThrottle limits failed logins per user name (after 5 failures,
	// a delay from 1 s doubling to 15 min).
	UserThrottle auth.ThrottleConfig
	// IPThrottle limits failed logins per client address (after 20).
	IPThrottle auth.ThrottleConfig
	// HistoryInterval is the queue-depth sampling period (1 min).
	HistoryInterval time.Duration
	// HistorySamples is how many samples are kept per domain (180).
	HistorySamples int
	// MetricsTopDomains bounds the per-domain queue metrics to the domains
	// with the most mail (50).
	MetricsTopDomains int
	// MaxEvents is the number of events kept (100 000).
	MaxEvents int
}

func (c *Config) setDefaults() {
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = 1 << 20
	}
	if c.ReadTimeout <= 0 {
		c.ReadTimeout = 10 * time.Second
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 30 * time.Second
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 2 * time.Minute
	}
	if c.IPThrottle.Free <= 0 {
		c.IPThrottle.Free = 20
	}
	if c.HistoryInterval <= 0 {
		c.HistoryInterval = time.Minute
	}
	if c.HistorySamples <= 0 {
		c.HistorySamples = 180
	}
	if c.MetricsTopDomains <= 0 {
		c.MetricsTopDomains = 50
	}
}

// Deps are the components the server works with.
type Deps struct {
	// Domains is the domain registry (required).
	Domains registry.Store
	// Spool is the message store, normally a *spool.Spool (required).
	Spool Spool
	// Relay is the relay engine; nil reports every domain as "unknown"
	// and refuses flushes with 503.
	Relay Relay
	// Mailboxes is the shadow mailbox store of domains in mode "both"; nil
	// when the node keeps no mailboxes: the mailbox endpoints then answer
	// 501 and deleting a domain deletes no mailboxes.
	Mailboxes Mailboxes
	// DB is the bbolt database shared with the registry (required); the
	// server keeps its buckets "accounts", "users", "sessions", "tokens"
	// and "events" in it. The caller closes it after Shutdown.
	DB *bbolt.DB
	// Metrics is the registry /metrics serves. When nil the server makes
	// one with the Go and process collectors; either way the server adds
	// its own collectors and Registry returns it, so that the other
	// components can register theirs.
	Metrics *prometheus.Registry
}

// Server is the admin HTTP server. Create it with New.
type Server struct {
	log    *zap.Logger
	cfg    Config
	deps   Deps
	auth   *auth.Store
	events *events.Store
	users  *auth.Throttle
	ips    *auth.Throttle
	hist   *history
	reg    *prometheus.Registry
	met    *httpMetrics
	http   *fasthttp.Server
	portal *portal
	// imports admits one mailbox CSV import at a time.
	imports chan struct{}

	stop     chan struct{}
	wg       sync.WaitGroup
	stopOnce sync.Once
}

// New builds a server from cfg and deps and starts its background work
// (event writer, queue-depth sampler, session cleanup). Serve or
// ListenAndServe then answers requests; Shutdown stops everything.
// A nil log is replaced by a no-op logger.
func New(log *zap.Logger, cfg Config, deps Deps) (*Server, error) {
	if log == nil {
		log = zap.NewNop()
	}
	switch {
	case deps.Domains == nil:
		return nil, errors.New("admin: no domain registry")
	case deps.Spool == nil:
		return nil, errors.New("admin: no spool")
	case deps.DB == nil:
		return nil, errors.New("admin: no database")
	}
	cfg.setDefaults()
	as, err := auth.Open(log.Named("auth"), deps.DB, auth.Config{Params: cfg.Password, SessionTTL: cfg.SessionTTL})
	if err != nil {
		return nil, err
	}
	ev, err := events.Open(log.Named("events"), deps.DB, events.Config{Max: cfg.MaxEvents})
	if err != nil {
		return nil, err
	}
	s := &Server{
		log: log, cfg: cfg, deps: deps, auth: as, events: ev,
		users:   auth.NewThrottle(cfg.UserThrottle),
		ips:     auth.NewThrottle(cfg.IPThrottle),
		hist:    newHistory(cfg.HistorySamples),
		reg:     deps.Metrics,
		stop:    make(chan struct{}),
		imports: make(chan struct{}, 1),
	}
	if s.reg == nil {
		s.reg = prometheus.NewRegistry()
		s.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	if s.met, err = registerMetrics(s); err != nil {
		_ = ev.Close()
		return nil, err
	}
	if s.portal, err = newPortal(); err != nil {
		_ = ev.Close()
		return nil, err
	}
	s.http = &fasthttp.Server{
		Handler:            s.handler(),
		Name:               "mxcont",
		ReadTimeout:        cfg.ReadTimeout,
		WriteTimeout:       cfg.WriteTimeout,
		IdleTimeout:        cfg.IdleTimeout,
		MaxRequestBodySize: cfg.MaxBodyBytes,
		Logger:             fasthttpLogger{log.Named("http")},
		ErrorHandler:       s.connError,
	}
	s.sampleQueues()
	s.wg.Add(1)
	go s.background()
	return s, nil
}

// EnsureAdmin creates the operator "admin" when there is no user yet, with
// the password from $MXCONT_ADMIN_PASSWORD, or else a random one that it
// returns for the caller to print once. It returns "" otherwise.
func (s *Server) EnsureAdmin(ctx context.Context) (string, error) {
	return s.auth.EnsureAdmin(ctx, os.Getenv(EnvAdminPassword))
}

// Auth returns the account and user store (for the command line).
func (s *Server) Auth() *auth.Store { return s.auth }

// Events returns the event log.
func (s *Server) Events() *events.Store { return s.events }

// Registry returns the Prometheus registry /metrics serves; the other
// components register their collectors in it.
func (s *Server) Registry() *prometheus.Registry { return s.reg }

// Handler returns the request handler, for tests and custom servers.
func (s *Server) Handler() fasthttp.RequestHandler { return s.http.Handler }

// Record implements EventSink: it stores an event from another component,
// filling in the domain's account when it is empty.
func (s *Server) Record(e events.Event) {
	if e.Account == "" && e.Domain != "" {
		if d, ok := s.deps.Domains.Lookup(e.Domain); ok {
			e.Account = d.Account
		}
	}
	s.events.Record(e)
}

// Serve answers requests on ln until Shutdown. It returns nil after
// Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	s.log.Info("admin server listening", zap.String("addr", ln.Addr().String()))
	if err := s.http.Serve(ln); err != nil {
		return fmt.Errorf("admin: serve: %w", err)
	}
	return nil
}

// ListenAndServe listens on the TCP address addr and calls Serve.
func (s *Server) ListenAndServe(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	return s.Serve(ln)
}

// Shutdown stops accepting connections, waits (until ctx is done) for
// requests in progress, stops the background work and writes the queued
// events.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.http.ShutdownWithContext(ctx)
	s.stopOnce.Do(func() { close(s.stop) })
	s.wg.Wait()
	if cerr := s.events.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("admin: shutdown: %w", err)
	}
	return nil
}

// background samples queue depths and purges expired sessions.
func (s *Server) background() {
	defer s.wg.Done()
	sample := time.NewTicker(s.cfg.HistoryInterval)
	defer sample.Stop()
	purge := time.NewTicker(10 * time.Minute)
	defer purge.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-sample.C:
			s.sampleQueues()
		case <-purge.C:
			if n, err := s.auth.PurgeExpired(); err != nil {
				s.log.Error("session purge failed", zap.Error(err))
			} else if n > 0 {
				s.log.Debug("expired sessions purged", zap.Int("sessions", n))
			}
		}
	}
}

// connError answers errors fasthttp meets before a handler runs (body
// too large, malformed request, timeout).
func (s *Server) connError(ctx *fasthttp.RequestCtx, err error) {
	var timeout interface{ Timeout() bool }
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		writeError(ctx, fasthttp.StatusRequestEntityTooLarge, "request body too large", "")
	case errors.As(err, &timeout) && timeout.Timeout():
		writeError(ctx, fasthttp.StatusRequestTimeout, "request timeout", "")
	default:
		writeError(ctx, fasthttp.StatusBadRequest, "malformed request", "")
	}
}

// fasthttpLogger adapts zap to fasthttp.Logger.
type fasthttpLogger struct{ log *zap.Logger }

func (l fasthttpLogger) Printf(format string, args ...any) {
	l.log.Warn(fmt.Sprintf(format, args...))
}
