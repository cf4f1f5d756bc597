package outbound

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/mxcont/mxcont/engine/registry"
	"github.com/mxcont/mxcont/spool"
)

// rcptFailure is one recipient refused for good, as its DSN reports it.
type rcptFailure struct {
	idx    int
	status string // enhanced status code, "5.1.1"
	diag   string // Diagnostic-Code value, "smtp; 550 5.1.1 no such user"
	remote string // the host that refused it ("" when none did)
}

// outcome is the result of one delivery attempt of one message; every
// pending recipient ends up in exactly one of the three lists.
type outcome struct {
	delivered []int
	failed    []rcptFailure
	deferred  []int
	err       string // the last error, kept for the admin
	remote    string // the host that took the message
	tls       bool
}

func pending(m *spool.Message) []int {
	var idx []int
	for i, st := range m.Status {
		if st == spool.Pending {
			idx = append(idx, i)
		}
	}
	return idx
}

// deferAll is the outcome "nothing happened, try again later".
func deferAll(m *spool.Message, err string) *outcome {
	return &outcome{deferred: pending(m), err: err}
}

// failAll is the outcome "every pending recipient fails with status".
func failAll(m *spool.Message, status, diag, remote string) *outcome {
	o := &outcome{err: diag}
	for _, i := range pending(m) {
		o.failed = append(o.failed, rcptFailure{idx: i, status: status, diag: diag, remote: remote})
	}
	return o
}

// domainOf returns the normalized domain of an address, or "".
func domainOf(addr string) string {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return ""
	}
	d, err := registry.NormalizeName(addr[at+1:])
	if err != nil {
		return ""
	}
	return d
}

// route is where a message goes: a smarthost, or the recipient domain's
// MX hosts when host is "".
type route struct {
	host string // "host:port"
	auth bool   // send the node smarthost's credentials
	bad  string // why the route override is unusable
}

func (q *Queue) routeFor(from string) route {
	if q.cfg.Route != nil {
		if d := domainOf(from); d != "" {
			if h := q.cfg.Route(d); h != "" {
				n, err := registry.NormalizeRelayHost(h)
				if err != nil {
					return route{host: h, bad: err.Error()}
				}
				return route{host: n, auth: n == q.cfg.Smarthost && q.cfg.SmarthostUser != ""}
			}
		}
	}
	if q.cfg.Smarthost != "" {
		return route{host: q.cfg.Smarthost, auth: q.cfg.SmarthostUser != ""}
	}
	return route{}
}

// deliverDomain makes one delivery attempt for each of ms, all for domain.
func (q *Queue) deliverDomain(ctx context.Context, domain string, ms []spool.Message) {
	if q.local != nil && q.local.IsLocal(domain) {
		for i := range ms {
			if ctx.Err() != nil {
				return
			}
			q.finish(&ms[i], q.deliverLocal(&ms[i]))
		}
		return
	}
	var order []route
	groups := map[route][]*spool.Message{}
	for i := range ms {
		rt := q.routeFor(ms[i].From)
		if _, ok := groups[rt]; !ok {
			order = append(order, rt)
		}
		groups[rt] = append(groups[rt], &ms[i])
	}
	for _, rt := range order {
		if rt.bad != "" {
			for _, m := range groups[rt] {
				q.finish(m, deferAll(m, "route: "+rt.bad))
			}
			continue
		}
		q.deliverRemote(ctx, domain, rt, groups[rt])
	}
}

// deliverLocal hands a message for a local domain to Local.Accept.
func (q *Queue) deliverLocal(m *spool.Message) *outcome {
	idx := pending(m)
	rcpts := make([]string, len(idx))
	for i, k := range idx {
		rcpts[i] = m.Rcpts[k]
	}
	body, err := q.sp.OpenBody(m.ID)
	if err != nil {
		q.log.Error("open spool body", zap.String("msg-id", m.ID.String()), zap.Error(err))
		return deferAll(m, "local delivery: cannot read the queued message")
	}
	err = q.local.Accept(m.From, rcpts, body)
	_ = body.Close()
	switch {
	case err == nil:
		return &outcome{delivered: idx, remote: "local"}
	case errors.Is(err, ErrPermanent):
		return failAll(m, "5.0.0", "smtp; 550 5.0.0 "+oneLine(err.Error()), "")
	default:
		return deferAll(m, "local delivery: "+err.Error())
	}
}

// finish records an attempt's outcome: delivered recipients are done,
// failed ones get a DSN, deferred ones are retried after a backoff unless
// the message is older than MaxAge (then they fail too). A record with
// nothing left pending is deleted.
func (q *Queue) finish(m *spool.Message, o *outcome) {
	now := time.Now()
	lg := q.log.With(zap.String("msg-id", m.ID.String()), zap.String("domain", m.Domain))
	for _, i := range o.delivered {
		lg.Info("delivered", zap.String("rcpt", m.Rcpts[i]), zap.String("relay-host", o.remote), zap.Bool("tls", o.tls))
	}
	if len(o.deferred) > 0 && now.Sub(m.ReceivedAt) >= q.cfg.MaxAge {
		lg.Info("expired", zap.Int("rcpts", len(o.deferred)), zap.Int("attempts", m.Attempts+1), zap.String("error", o.err))
		diag := "x-mxcont; delivery time expired"
		if o.err != "" {
			diag += "; last error: " + oneLine(o.err)
		}
		for _, i := range o.deferred {
			o.failed = append(o.failed, rcptFailure{idx: i, status: "4.4.7", diag: diag})
		}
		o.deferred = nil
	}
	if len(o.failed) > 0 {
		for _, f := range o.failed {
			lg.Info("failed", zap.String("rcpt", m.Rcpts[f.idx]), zap.String("status", f.status),
				zap.String("relay-host", f.remote), zap.String("error", f.diag))
		}
		if err := q.bounce(m, o.failed); err != nil {
			// Without its DSN a failure would go unnoticed: retry instead.
			lg.Error("bounce not queued, failure retried later", zap.Error(err))
			for _, f := range o.failed {
				o.deferred = append(o.deferred, f.idx)
			}
			o.failed = nil
		}
	}
	if len(o.deferred) == 0 {
		actor := "system: delivered"
		if len(o.failed) > 0 {
			actor = "system: failed"
		}
		if err := q.sp.Delete(m.ID, actor); err != nil {
			q.hold(m.ID, now.Add(q.cfg.RetryMax))
			lg.Error("delete finished message", zap.Error(err))
			return
		}
		lg.Info("done", zap.String("result", strings.TrimPrefix(actor, "system: ")),
			zap.Int("delivered", len(o.delivered)), zap.Int("failed", len(o.failed)))
		return
	}
	next := now.Add(q.cfg.backoff(m.Attempts))
	a := spool.Attempt{Delivered: o.delivered, Error: o.err, Next: next}
	for _, f := range o.failed {
		a.Failed = append(a.Failed, f.idx)
	}
	if err := q.sp.RecordAttempt(m.ID, a); err != nil {
		q.hold(m.ID, next)
		lg.Error("record attempt", zap.Error(err))
	}
	lg.Info("deferred", zap.Int("rcpts", len(o.deferred)), zap.Int("attempts", m.Attempts+1),
		zap.Time("next-attempt", next), zap.String("error", o.err))
}

// bounce queues a DSN for failed recipients to the message's sender;
// it returns nil without one for a null sender (never bounce a bounce)
// or a sender without a usable domain.
func (q *Queue) bounce(m *spool.Message, failed []rcptFailure) error {
	lg := q.log.With(zap.String("msg-id", m.ID.String()))
	if m.From == "" {
		lg.Info("no bounce for a bounce", zap.Int("rcpts", len(failed)))
		return nil
	}
	d := domainOf(m.From)
	if d == "" {
		lg.Warn("no bounce: sender without a valid domain", zap.String("from", m.From))
		return nil
	}
	hdr, err := q.originalHeader(m.ID)
	if err != nil {
		lg.Warn("original header unreadable, bounce without it", zap.Error(err))
	}
	dsn := buildDSN(dsnInput{
		hostname: q.cfg.Hostname,
		msg:      m,
		failed:   failed,
		header:   hdr,
		now:      time.Now(),
	})
	ids, err := q.enqueue("", []group{{domain: d, rcpts: []string{m.From}}}, bytes.NewReader(dsn), "bounce")
	if err != nil {
		return err
	}
	lg.Info("bounced", zap.String("to", m.From), zap.String("dsn-id", ids[0].String()), zap.Int("rcpts", len(failed)))
	return nil
}
