package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/mxcont/mxcont/engine/registry"
	"github.com/mxcont/mxcont/mailbox"
	"github.com/mxcont/mxcont/mailbox/imapd"
	"github.com/mxcont/mxcont/outbound"
	"github.com/mxcont/mxcont/spool"
	"github.com/mxcont/mxcont/submit"
)

// This file wires "both" mode: the shadow mailboxes (package mailbox),
// filled by the acceptor before its 250 and read over IMAP (package
// imapd); the submission server (package submit) for replies, which go
// out through the outbound queue (package outbound) or, for recipients in
// domains this node protects, back into the inbound path.

// purgeEvery is how often expired shadow copies are purged.
const purgeEvery = 10 * time.Minute

// shadowFiler is the acceptor's smtpd.Shadow: it copies a committed spool
// record into the shadow mailboxes of its recipients that have one.
type shadowFiler struct {
	sp *spool.Spool
	mb *mailbox.Store
	m  *metrics
}

func (f shadowFiler) File(env spool.Envelope, id spool.ID) error {
	users := 0
	for _, r := range env.Rcpts {
		if f.mb.HasUser(r) {
			users++
		}
	}
	if users == 0 {
		return nil // no mailbox user among the recipients: nothing to read back
	}
	body, err := f.sp.OpenBody(id)
	if err != nil {
		return fmt.Errorf("engine: shadow copy of %s: %w", id, err)
	}
	defer body.Close()
	n, err := f.mb.Deliver(env.Rcpts, body, time.Now())
	if err != nil {
		return fmt.Errorf("engine: shadow copy of %s: %w", id, err)
	}
	f.m.shadowFiled.Add(float64(n))
	return nil
}

// shadowCollector exports the mailbox store's totals; one Stats call (a
// walk over the users) serves all three gauges of a scrape.
type shadowCollector struct{ mb *mailbox.Store }

var (
	shadowUsersDesc    = prometheus.NewDesc("mxcont_shadow_users", "Mailbox users of both-mode domains.", nil, nil)
	shadowMessagesDesc = prometheus.NewDesc("mxcont_shadow_messages", "Messages in shadow mailboxes (one per user copy).", nil, nil)
	shadowBytesDesc    = prometheus.NewDesc("mxcont_shadow_bytes", "Size of the messages in shadow mailboxes (per user copy).", nil, nil)
)

func (shadowCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- shadowUsersDesc
	ch <- shadowMessagesDesc
	ch <- shadowBytesDesc
}

func (c shadowCollector) Collect(ch chan<- prometheus.Metric) {
	users, msgs, bytes := c.mb.Stats()
	ch <- prometheus.MustNewConstMetric(shadowUsersDesc, prometheus.GaugeValue, float64(users))
	ch <- prometheus.MustNewConstMetric(shadowMessagesDesc, prometheus.GaugeValue, float64(msgs))
	ch <- prometheus.MustNewConstMetric(shadowBytesDesc, prometheus.GaugeValue, float64(bytes))
}

// DomainOutage implements mailbox.OutageClock from relayq's durable
// outage history: the newest outage of the domain is open, or ended then.
func (n *Node) DomainOutage(domain string) (active bool, lastEnded time.Time) {
	if n.relay == nil {
		return true, time.Time{} // not wired yet: keep everything
	}
	os, err := n.relay.Outages(domain, 1)
	if err != nil {
		n.log.Error("outage history", zap.String("domain", domain), zap.Error(err))
		return true, time.Time{} // when in doubt, keep the mail
	}
	if len(os) == 0 {
		return false, time.Time{}
	}
	if os[0].Ongoing() {
		return true, time.Time{}
	}
	return false, os[0].EndedAt
}

// mailboxUsers adapts the mailbox store to submit.Users.
type mailboxUsers struct{ mb *mailbox.Store }

func (u mailboxUsers) Authenticate(ctx context.Context, address, password string) error {
	_, err := u.mb.Authenticate(ctx, address, password)
	if err != nil && !errors.Is(err, mailbox.ErrAuth) {
		return fmt.Errorf("%w: %w", submit.ErrUnavailable, err)
	}
	return err
}

// localDelivery is the outbound queue's outbound.Local: mail submitted to
// a domain this node protects goes into the inbound relay spool (for the
// customer's primary) and the shadow mailboxes, as if received by SMTP.
type localDelivery struct{ n *Node }

func (l localDelivery) IsLocal(domain string) bool {
	_, ok := l.n.reg.Lookup(domain)
	return ok
}

func (l localDelivery) Accept(from string, rcpts []string, body io.Reader) error {
	n := l.n
	type group struct {
		env    spool.Envelope
		shadow bool
	}
	var groups []*group
	byName := map[string]*group{}
	for _, r := range rcpts {
		at := strings.LastIndexByte(r, '@')
		d, ok := n.reg.Lookup(r[at+1:])
		if at < 0 || !ok {
			// The domain was removed since IsLocal: retried later, sent
			// out then.
			return fmt.Errorf("engine: %s is no longer a local domain", r)
		}
		g := byName[d.Name]
		if g == nil {
			g = &group{env: spool.Envelope{Domain: d.Name, From: from}, shadow: d.Mode == registry.ModeBoth}
			byName[d.Name] = g
			groups = append(groups, g)
		}
		g.env.Rcpts = append(g.env.Rcpts, r)
	}
	ws := make([]*spool.Writer, 0, len(groups))
	committed := false
	defer func() {
		if !committed {
			for _, w := range ws {
				w.Abort()
			}
		}
	}()
	for _, g := range groups {
		w, err := n.sp.Create(g.env)
		if err != nil {
			return err
		}
		ws = append(ws, w)
	}
	buf := make([]byte, 64<<10)
	for {
		k, rerr := body.Read(buf)
		for _, w := range ws {
			if k > 0 {
				if _, err := w.Write(buf[:k]); err != nil {
					return err
				}
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return rerr
		}
	}
	committed = true
	ids, err := spool.CommitAll(ws)
	if err != nil {
		return err
	}
	for i, g := range groups {
		if !g.shadow {
			continue
		}
		if err := n.shadow.File(g.env, ids[i]); err != nil {
			// The relay copies are durable; the shadow copy is retried
			// with the whole message, so drop the relay copies first.
			for _, id := range ids {
				_ = n.sp.Delete(id, "outbound")
			}
			return err
		}
	}
	return nil
}

// route is the outbound queue's per-domain smarthost override.
func (n *Node) route(senderDomain string) string {
	if d, ok := n.reg.Lookup(senderDomain); ok {
		return d.OutboundSmarthost
	}
	return ""
}

// openBoth opens the mailbox store and the outbound queue and builds the
// IMAP and submission servers that are configured.
func (n *Node) openBoth(m *metrics) error {
	cfg := n.cfg
	mc := cfg.Mailbox
	mc.Dir = filepath.Join(cfg.DataDir, "mailbox")
	mc.Outages = n
	var err error
	if n.mb, err = mailbox.Open(n.log.Named("mailbox"), mc); err != nil {
		return err
	}
	n.shadow = shadowFiler{sp: n.sp, mb: n.mb, m: m}
	n.prom.MustRegister(shadowCollector{n.mb})

	oc := cfg.Outbound
	oc.Dir = filepath.Join(cfg.DataDir, "outbound")
	oc.Hostname = cfg.Hostname
	oc.Route = n.route
	if n.out, err = outbound.Open(n.log.Named("outbound"), oc, localDelivery{n}); err != nil {
		return err
	}
	out := n.out
	n.prom.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "mxcont_outbound_queued_messages", Help: "Submitted messages waiting for outbound delivery."},
			func() float64 { return float64(out.Stats().Messages) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "mxcont_outbound_queued_bytes", Help: "Bytes of submitted messages waiting for outbound delivery."},
			func() float64 { return float64(out.Stats().Bytes) }))
	if cfg.SubmissionAddr != "" {
		sc := cfg.Submit
		sc.Hostname, sc.TLSConfig = cfg.Hostname, n.tls
		if sc.InsecureAuth == nil {
			sc.InsecureAuth = submit.Loopback
		}
		if n.sub, err = submit.New(n.log.Named("submit"), sc, mailboxUsers{n.mb}, n.out); err != nil {
			return err
		}
	}
	if cfg.IMAPAddr != "" || cfg.IMAPSAddr != "" {
		ic := cfg.IMAP
		ic.Hostname, ic.TLS = cfg.Hostname, n.tls
		if ic.InsecureAuth == nil {
			ic.InsecureAuth = submit.Loopback
		}
		if n.imap, err = imapd.New(n.log.Named("imapd"), ic, n.mb); err != nil {
			return err
		}
	}
	return nil
}

// startBoth binds the IMAP and submission listeners and starts the
// outbound queue and the purger. On error the caller closes what is open.
func (n *Node) startBoth() error {
	var err error
	if n.imap != nil {
		if n.cfg.IMAPAddr != "" {
			if n.imapLn, err = net.Listen("tcp", n.cfg.IMAPAddr); err != nil {
				return fmt.Errorf("engine: imap listener: %w", err)
			}
		}
		if n.cfg.IMAPSAddr != "" {
			// A plain listener: imapd.ServeTLS adds TLS above its
			// connection limits.
			if n.imapsLn, err = net.Listen("tcp", n.cfg.IMAPSAddr); err != nil {
				return fmt.Errorf("engine: imaps listener: %w", err)
			}
		}
	}
	if n.sub != nil {
		if n.subLn, err = net.Listen("tcp", n.cfg.SubmissionAddr); err != nil {
			return fmt.Errorf("engine: submission listener: %w", err)
		}
	}
	if err := n.out.Start(); err != nil {
		return err
	}
	if n.imapLn != nil {
		n.serve("imap", func() error { return n.imap.Serve(n.imapLn) })
	}
	if n.imapsLn != nil {
		n.serve("imap", func() error { return n.imap.ServeTLS(n.imapsLn) })
	}
	if n.subLn != nil {
		n.serve("submission", func() error { return n.sub.Serve(n.subLn) })
	}
	n.purgeStop = make(chan struct{})
	n.wg.Add(1)
	go n.purgeLoop()
	return nil
}

// purgeLoop purges expired shadow copies until Shutdown.
func (n *Node) purgeLoop() {
	defer n.wg.Done()
	t := time.NewTicker(purgeEvery)
	defer t.Stop()
	for {
		n.purgeOnce()
		select {
		case <-n.purgeStop:
			return
		case <-t.C:
		}
	}
}

func (n *Node) purgeOnce() {
	st, err := n.mb.Purge(time.Now())
	if err != nil {
		n.log.Error("shadow mailbox purge", zap.Error(err))
	}
	if st.Messages > 0 {
		n.metrics.shadowPurged.Add(float64(st.Messages))
		n.log.Info("shadow mailbox purge", zap.Int("messages", st.Messages), zap.Int64("bytes", st.Bytes))
	}
}

// shutdownBoth stops the IMAP and submission servers and the outbound
// queue; the stores are closed by closeStores.
func (n *Node) shutdownBoth(ctx context.Context) []error {
	var errs []error
	if n.purgeStop != nil {
		close(n.purgeStop)
	}
	if n.sub != nil && n.subLn != nil {
		errs = append(errs, n.sub.Shutdown(ctx))
	}
	if n.imap != nil && (n.imapLn != nil || n.imapsLn != nil) {
		errs = append(errs, n.imap.Close())
	}
	if n.out != nil {
		errs = append(errs, n.out.Stop(ctx))
	}
	return errs
}

// Mailboxes returns the shadow mailbox store.
func (n *Node) Mailboxes() *mailbox.Store { return n.mb }

// Outbound returns the outbound queue of submitted mail.
func (n *Node) Outbound() *outbound.Queue { return n.out }

// IMAPAddr returns the bound plain IMAP address ("" without one).
func (n *Node) IMAPAddr() string { return lnAddr(n.imapLn) }

// IMAPSAddr returns the bound implicit-TLS IMAP address ("" without one).
func (n *Node) IMAPSAddr() string { return lnAddr(n.imapsLn) }

// SubmissionAddr returns the bound submission address ("" without one).
func (n *Node) SubmissionAddr() string { return lnAddr(n.subLn) }

func lnAddr(ln net.Listener) string {
	if ln == nil {
		return ""
	}
	return ln.Addr().String()
}
