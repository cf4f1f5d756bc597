// Command mxcont runs an email continuity node: `mxcont serve`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/mxcont/mxcont/engine"
	"github.com/mxcont/mxcont/mailbox"
	"github.com/mxcont/mxcont/mailbox/imapd"
	"github.com/mxcont/mxcont/outbound"
	"github.com/mxcont/mxcont/relayq"
	"github.com/mxcont/mxcont/smtpd"
	"github.com/mxcont/mxcont/spool"
	"github.com/mxcont/mxcont/submit"
)

const usage = `usage: mxcont serve [flags]

Runs an mxcont node. Flags override the config file.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run returns the process exit code: 0 after a clean shutdown, 1 when the
// node fails at run time, 2 for bad usage or configuration.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "serve" {
		fmt.Fprint(stderr, usage)
		return 2
	}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "YAML config file")
	dataDir := fs.String("data-dir", "", "data directory (spool, control database)")
	smtpAddr := fs.String("smtp-addr", "", "SMTP listen address")
	httpAddr := fs.String("http-addr", "", "admin API and portal listen address")
	imapAddr := fs.String("imap-addr", "", "IMAP listen address for shadow mailboxes (both mode)")
	submissionAddr := fs.String("submission-addr", "", "submission listen address for mailbox users (both mode)")
	probe := fs.Duration("probe-interval", 0, "relay host probe period")
	logLevel := fs.String("log-level", "", "debug, info, warn or error")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	cfg, err := loadConfig(*configPath)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["data-dir"] {
		cfg.DataDir = *dataDir
	}
	if set["smtp-addr"] {
		cfg.SMTPAddr = *smtpAddr
	}
	if set["http-addr"] {
		cfg.HTTPAddr = *httpAddr
	}
	if set["imap-addr"] {
		cfg.IMAPAddr = *imapAddr
	}
	if set["submission-addr"] {
		cfg.SubmissionAddr = *submissionAddr
	}
	if set["probe-interval"] {
		cfg.ProbeInterval = *probe
	}
	if set["log-level"] {
		cfg.LogLevel = *logLevel
	}
	if err := cfg.validate(); err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	log, flush, err := newLogger(cfg.LogLevel, stdout)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	defer flush()

	node, err := engine.New(log, engineConfig(cfg))
	if err != nil {
		log.Error("cannot start node", zap.Error(err))
		fmt.Fprintln(stderr, "mxcont:", err)
		if errors.Is(err, spool.ErrLocked) {
			fmt.Fprintln(stderr, "mxcont: another mxcont process uses this data directory")
		}
		return 1
	}
	if err := node.Start(); err != nil {
		fmt.Fprintln(stderr, "mxcont:", err)
		_ = node.Shutdown(context.Background())
		return 1
	}
	if pw := node.AdminPassword(); pw != "" {
		fmt.Fprintf(stderr, "mxcont: created operator \"admin\" with password %s (shown once; set %s to choose it)\n",
			pw, "MXCONT_ADMIN_PASSWORD")
	}
	fmt.Fprintf(stderr, "mxcont: SMTP on %s, admin portal on http://%s/\n", node.SMTPAddr(), node.HTTPAddr())
	if a := node.IMAPAddr(); a != "" {
		fmt.Fprintf(stderr, "mxcont: IMAP (shadow mailboxes) on %s\n", a)
	}
	if a := node.SubmissionAddr(); a != "" {
		fmt.Fprintf(stderr, "mxcont: submission on %s\n", a)
	}
	if len(cfg.Domains) > 0 {
		fmt.Fprintf(stderr, "mxcont: try: swaks --server %s --to user@%s\n", node.SMTPAddr(), cfg.Domains[0].Name)
	}

	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	s := <-sig
	log.Info("signal received, shutting down", zap.String("signal", s.String()))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	go func() { // a second signal stops waiting for in-flight transactions
		<-sig
		cancel()
	}()
	if err := node.Shutdown(ctx); err != nil {
		log.Error("shutdown", zap.Error(err))
		return 1
	}
	return 0
}

func engineConfig(c *fileConfig) engine.Config {
	var proxy []netip.Prefix
	for _, p := range c.ProxyProtocolFrom {
		proxy = append(proxy, netip.MustParsePrefix(p)) // validated
	}
	return engine.Config{
		DataDir:        c.DataDir,
		Hostname:       c.Hostname,
		SMTPAddr:       c.SMTPAddr,
		HTTPAddr:       c.HTTPAddr,
		IMAPAddr:       c.IMAPAddr,
		IMAPSAddr:      c.IMAPSAddr,
		SubmissionAddr: c.SubmissionAddr,
		Mailbox:        mailbox.Config{Keep: c.ShadowKeep},
		Outbound:       outbound.Config{Smarthost: c.OutboundSmarthost},
		IMAP:           imapd.Config{MaxConnections: c.IMAPMaxConnections, MaxConnectionsPerIP: c.IMAPMaxConnectionsPerIP},
		Submit:         submit.Config{MaxConns: c.SubmissionMaxConnections, MaxConnsPerIP: c.SubmissionMaxConnectionsPerIP},
		TLSCertFile:    c.TLSCert,
		TLSKeyFile:     c.TLSKey,
		Domains:        c.Domains,
		// The spool's own limit is a safety net above smtpd's: the trace
		// header and CRLF normalisation (a bare LF becomes two bytes) grow
		// a message after smtpd has counted it.
		Spool: spool.Config{Shards: c.Shards, MaxMessageBytes: 2*c.MaxMessageBytes + 1<<20},
		SMTP: smtpd.Config{
			MaxMessageBytes:     c.MaxMessageBytes,
			MaxRecipients:       c.MaxRecipients,
			MaxConnections:      c.MaxConnections,
			MaxConnectionsPerIP: c.MaxConnectionsPerIP,
			IdleTimeout:         c.IdleTimeout,
			DataTimeout:         c.DataTimeout,
			MinFreeBytes:        c.MinFreeBytes,
			BareNewlines:        c.BareNewlines,
			ProxyFrom:           proxy,
		},
		Relay: relayq.Config{
			ProbeInterval:  c.ProbeInterval,
			PoolSize:       c.RelayPoolSize,
			ProbeTimeout:   c.RelayProbeTimeout,
			DialTimeout:    c.RelayDialTimeout,
			CommandTimeout: c.RelayCommandTimeout,
			DataTimeout:    c.RelayDataTimeout,
			RetryBase:      c.RelayRetryBase,
			AlertSmarthost: c.AlertSmarthost,
			AlertFrom:      c.AlertFrom,
			AlertWebhook:   c.AlertWebhook,
		},
	}
}

// newLogger builds the JSON logger described in shared research: RFC 3339
// times, sampled ops logging, never buffered beyond a second.
func newLogger(level string, w io.Writer) (*zap.Logger, func(), error) {
	var lvl zapcore.Level
	if err := lvl.Set(level); err != nil {
		return nil, nil, fmt.Errorf("config: log_level: %w", err)
	}
	ec := zap.NewProductionEncoderConfig()
	ec.EncodeTime = zapcore.RFC3339NanoTimeEncoder
	ec.EncodeDuration = zapcore.MillisDurationEncoder
	ws := &zapcore.BufferedWriteSyncer{WS: zapcore.AddSync(w), Size: 256 << 10, FlushInterval: time.Second}
	core := zapcore.NewCore(zapcore.NewJSONEncoder(ec), ws, zap.NewAtomicLevelAt(lvl))
	host, _ := os.Hostname()
	log := zap.New(core, zap.AddCaller(), zap.AddStacktrace(zap.ErrorLevel)).With(zap.String("node", host))
	return log, func() { _ = log.Sync(); _ = ws.Stop() }, nil
}
