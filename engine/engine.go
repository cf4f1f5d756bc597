// Package engine builds an mxcont node from plain settings and runs it:
// the spool, the control database and domain registry, the SMTP acceptor,
// the relay queues and the admin server, with a graceful shutdown that
// stops intake first and closes the spool last.
package engine

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.etcd.io/bbolt"
	"go.uber.org/zap"

	"github.com/mxcont/mxcont/admin"
	"github.com/mxcont/mxcont/engine/registry"
	"github.com/mxcont/mxcont/mailbox"
	"github.com/mxcont/mxcont/mailbox/imapd"
	"github.com/mxcont/mxcont/outbound"
	"github.com/mxcont/mxcont/relayq"
	"github.com/mxcont/mxcont/smtpd"
	"github.com/mxcont/mxcont/spool"
	"github.com/mxcont/mxcont/submit"
)

// Config is everything a node needs. cmd/mxcont fills it from flags and
// the config file; tests fill it directly.
type Config struct {
	DataDir  string // required: spool/, control.db, tls/
	Hostname string // banners, EHLO, Received (default: os.Hostname)
	SMTPAddr string // required
	HTTPAddr string // admin API and portal; empty: none

	// IMAPAddr (STARTTLS) and IMAPSAddr (implicit TLS) serve the shadow
	// mailboxes of mode-both domains, SubmissionAddr takes their users'
	// replies; empty: none.
	IMAPAddr, IMAPSAddr, SubmissionAddr string

	// TLSCertFile and TLSKeyFile are a PEM pair for STARTTLS. Empty: a
	// self-signed certificate is generated once under DataDir/tls.
	TLSCertFile, TLSKeyFile string

	// Domains are written to the registry at start (create or replace),
	// so that a node can run from configuration alone.
	Domains []registry.Domain

	Spool spool.Config  // Dir is set to DataDir/spool
	SMTP  smtpd.Config  // Hostname, TLSConfig and Metrics are filled in
	Relay relayq.Config // Hostname, OwnAddrs and Metrics are filled in
	Admin admin.Config

	Mailbox  mailbox.Config  // Dir is DataDir/mailbox; Outages is the node
	Outbound outbound.Config // Dir is DataDir/outbound; Hostname and Route are filled in
	Submit   submit.Config   // Hostname and TLSConfig filled in; InsecureAuth defaults to loopback
	IMAP     imapd.Config    // Hostname and TLS filled in; InsecureAuth defaults to loopback
}

// Node is a running (or ready) mxcont node.
type Node struct {
	log   *zap.Logger
	cfg   Config
	sp    *spool.Spool
	db    *bbolt.DB
	reg   *registry.BoltStore
	smtp  *smtpd.Server
	relay *relayq.Queue
	admin *admin.Server
	prom  *prometheus.Registry
	tls   *tls.Config

	metrics *metrics
	mb      *mailbox.Store
	shadow  shadowFiler
	out     *outbound.Queue
	sub     *submit.Server
	imap    *imapd.Server

	smtpLn, httpLn         net.Listener
	imapLn, imapsLn, subLn net.Listener
	purgeStop              chan struct{}
	adminPassword          string

	wg        sync.WaitGroup
	closeOnce sync.Once
}

// New opens the node's storage and builds its servers; nothing listens
// until Start. A second node on the same data directory fails here with
// spool.ErrLocked.
func New(log *zap.Logger, cfg Config) (n *Node, err error) {
	if log == nil {
		log = zap.NewNop()
	}
	if cfg.DataDir == "" || cfg.SMTPAddr == "" {
		return nil, errors.New("engine: data dir and SMTP address are required")
	}
	if cfg.Hostname == "" {
		if cfg.Hostname, err = os.Hostname(); err != nil || cfg.Hostname == "" {
			cfg.Hostname = "localhost"
		}
	}
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	n = &Node{log: log, cfg: cfg, prom: prometheus.NewRegistry()}
	built := n // the named result is nil on the error paths below
	defer func() {
		if err != nil {
			_ = built.closeStores()
		}
	}()
	m := newMetrics(n.prom)
	n.metrics = m
	n.prom.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	scfg := cfg.Spool
	scfg.Dir = filepath.Join(cfg.DataDir, "spool")
	scfg.OnCommit = m.spoolCommit
	if n.sp, err = spool.Open(log.Named("spool"), scfg); err != nil {
		return nil, err
	}
	if n.db, err = bbolt.Open(filepath.Join(cfg.DataDir, "control.db"), 0o600, &bbolt.Options{Timeout: time.Second}); err != nil {
		return nil, fmt.Errorf("engine: control database: %w", err)
	}
	if n.reg, err = registry.Open(log.Named("registry"), n.db); err != nil {
		return nil, err
	}
	for _, d := range cfg.Domains {
		if _, err := n.reg.Put(d); err != nil {
			return nil, fmt.Errorf("engine: domain %s: %w", d.Name, err)
		}
	}

	if n.tls, err = n.tlsConfig(); err != nil {
		return nil, err
	}
	if err := n.openBoth(m); err != nil {
		return nil, err
	}
	sc := cfg.SMTP
	sc.Hostname, sc.TLSConfig, sc.Metrics, sc.Shadow = cfg.Hostname, n.tls, m, n.shadow
	if n.smtp, err = smtpd.New(log.Named("smtpd"), sc, n.reg, n.sp); err != nil {
		return nil, err
	}
	rc := cfg.Relay
	rc.Hostname, rc.Metrics = cfg.Hostname, m
	rc.OwnAddrs = append(rc.OwnAddrs, cfg.SMTPAddr)
	rc.OnEvent = n.relayEvent // outages, expiries and probe failures go to the admin event log
	if n.relay, err = relayq.New(log.Named("relayq"), rc, n.sp, n.db, n.reg); err != nil {
		return nil, err
	}
	if cfg.HTTPAddr != "" {
		n.admin, err = admin.New(log.Named("admin"), cfg.Admin, admin.Deps{
			Domains: n.reg, Spool: n.sp, Relay: relayAdapter{n.relay}, DB: n.db, Metrics: n.prom,
			Mailboxes: n.mb,
		})
		if err != nil {
			return nil, err
		}
		if n.adminPassword, err = n.admin.EnsureAdmin(context.Background()); err != nil {
			return nil, err
		}
	}
	for _, d := range n.sp.Damage() {
		m.spoolDamage.Add(float64(d.Entries))
		n.recordEvent("spool-damage", "", fmt.Sprintf("shard %d segment %s: %d entries, %d messages lost (%s); original kept as %s",
			d.Shard, d.Segment, d.Entries, d.Messages, d.Reason, d.BrokenFile))
	}
	return n, nil
}

func (n *Node) tlsConfig() (*tls.Config, error) {
	var cert tls.Certificate
	var err error
	if n.cfg.TLSCertFile != "" {
		cert, err = tls.LoadX509KeyPair(n.cfg.TLSCertFile, n.cfg.TLSKeyFile)
	} else {
		cert, err = smtpd.LoadOrCreateCert(filepath.Join(n.cfg.DataDir, "tls"), n.cfg.Hostname)
	}
	if err != nil {
		return nil, fmt.Errorf("engine: TLS certificate: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// AdminPassword is the generated password of the operator "admin" when
// this start created it (print it once), or "".
func (n *Node) AdminPassword() string { return n.adminPassword }

// Spool returns the node's spool (tests, tools).
func (n *Node) Spool() *spool.Spool { return n.sp }

// Registry returns the domain registry.
func (n *Node) Registry() registry.Store { return n.reg }

// Relay returns the relay queue.
func (n *Node) Relay() *relayq.Queue { return n.relay }

// SMTPAddr and HTTPAddr return the bound listener addresses after Start.
func (n *Node) SMTPAddr() string { return n.smtpLn.Addr().String() }

// HTTPAddr returns the admin listener's address, or "" without one.
func (n *Node) HTTPAddr() string {
	if n.httpLn == nil {
		return ""
	}
	return n.httpLn.Addr().String()
}

// Start binds the listeners and starts serving and delivering.
func (n *Node) Start() error {
	var err error
	if n.smtpLn, err = smtpd.Listen(n.cfg.SMTPAddr); err != nil {
		return fmt.Errorf("engine: smtp listener: %w", err)
	}
	if err := n.relay.AddOwnAddr(n.smtpLn.Addr().String()); err != nil { // the bound port, when configured as :0
		_ = n.smtpLn.Close()
		return fmt.Errorf("engine: %w", err)
	}
	if n.admin != nil {
		if n.httpLn, err = net.Listen("tcp", n.cfg.HTTPAddr); err != nil {
			_ = n.smtpLn.Close()
			return fmt.Errorf("engine: http listener: %w", err)
		}
	}
	if err := n.startBoth(); err != nil {
		for _, ln := range []net.Listener{n.smtpLn, n.httpLn, n.imapLn, n.imapsLn, n.subLn} {
			if ln != nil {
				_ = ln.Close()
			}
		}
		return err
	}
	n.relay.Start()
	n.serve("smtp", func() error { return n.smtp.Serve(n.smtpLn) })
	if n.admin != nil {
		n.serve("http", func() error { return n.admin.Serve(n.httpLn) })
	}
	n.log.Info("node started", zap.String("smtp-addr", n.SMTPAddr()), zap.String("http-addr", n.HTTPAddr()),
		zap.String("imap-addr", n.IMAPAddr()), zap.String("imaps-addr", n.IMAPSAddr()),
		zap.String("submission-addr", n.SubmissionAddr()), zap.String("hostname", n.cfg.Hostname))
	return nil
}

func (n *Node) serve(name string, fn func() error) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := fn(); err != nil && !errors.Is(err, net.ErrClosed) && !errors.Is(err, smtpd.ErrServerClosed) {
			n.log.Error("server stopped", zap.String("server", name), zap.Error(err))
		}
	}()
}

// Shutdown stops intake (in-flight SMTP transactions finish, bounded by
// ctx), stops delivery, and closes the spool and the database.
func (n *Node) Shutdown(ctx context.Context) error {
	var errs []error
	n.closeOnce.Do(func() {
		n.log.Info("node stopping")
		if n.smtpLn != nil {
			errs = append(errs, n.smtp.Shutdown(ctx))
		}
		if n.admin != nil && n.httpLn != nil {
			errs = append(errs, n.admin.Shutdown(ctx))
		}
		errs = append(errs, n.shutdownBoth(ctx)...)
		errs = append(errs, n.relay.Stop(ctx))
		n.wg.Wait()
		errs = append(errs, n.closeStores())
		n.log.Info("node stopped")
	})
	return errors.Join(errs...)
}

func (n *Node) closeStores() error {
	var errs []error
	if n.out != nil {
		errs = append(errs, n.out.Stop(context.Background())) // closes its spool; a no-op after shutdownBoth
	}
	if n.mb != nil {
		errs = append(errs, n.mb.Close())
	}
	if n.sp != nil {
		errs = append(errs, n.sp.Close())
	}
	if n.db != nil {
		errs = append(errs, n.db.Close())
	}
	return errors.Join(errs...)
}
