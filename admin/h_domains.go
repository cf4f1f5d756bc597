package admin

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/mxcont/mxcont/admin/events"
	"github.com/mxcont/mxcont/engine/registry"
	"github.com/mxcont/mxcont/spool"
)

// statusView is the "status" object of a domain (DESIGN.md section 5).
type statusView struct {
	RelayState     string      `json:"relay_state"`
	LastProbeAt    *time.Time  `json:"last_probe_at"`
	LastProbeError string      `json:"last_probe_error"`
	QueuedMessages int         `json:"queued_messages"`
	QueuedBytes    int64       `json:"queued_bytes"`
	OldestQueuedAt *time.Time  `json:"oldest_queued_at"`
	FailedMessages int         `json:"failed_messages"`
	Outage         *outageView `json:"outage"`
}

type outageView struct {
	StartedAt       time.Time  `json:"started_at"`
	EndedAt         *time.Time `json:"ended_at,omitempty"`
	DurationSeconds int64      `json:"duration_seconds"`
	Error           string     `json:"error,omitempty"`
}

// domainView is a domain as the API shows it: its fields plus status.
type domainView struct {
	registry.Domain
	Status  statusView   `json:"status"`
	Outages []outageView `json:"outages,omitempty"`
}

func (s *Server) relayStatus(domain string) DomainStatus {
	if s.deps.Relay == nil {
		return DomainStatus{State: RelayUnknown}
	}
	st := s.deps.Relay.Status(domain)
	switch st.State {
	case RelayUp, RelayDown:
	default:
		st.State = RelayUnknown
	}
	return st
}

func newOutageView(o Outage, now time.Time) outageView {
	end := o.EndedAt
	if end.IsZero() {
		end = now
	}
	return outageView{StartedAt: o.StartedAt.UTC(), EndedAt: timePtr(o.EndedAt),
		DurationSeconds: int64(end.Sub(o.StartedAt).Seconds()), Error: o.Error}
}

func (s *Server) status(domain string) statusView {
	rs := s.relayStatus(domain)
	qs := s.deps.Spool.DomainStats(domain)
	v := statusView{
		RelayState: rs.State, LastProbeAt: timePtr(rs.LastProbeAt), LastProbeError: rs.LastProbeError,
		QueuedMessages: qs.Messages, QueuedBytes: qs.Bytes, OldestQueuedAt: timePtr(qs.Oldest),
		FailedMessages: qs.Failed,
	}
	if rs.Outage != nil {
		o := newOutageView(*rs.Outage, time.Now())
		v.Outage = &o
	}
	return v
}

// visibleDomain returns the named domain if p may see it; otherwise it
// answers 404 and returns false.
func (s *Server) visibleDomain(ctx *fasthttp.RequestCtx, p *principal, name string) (registry.Domain, bool) {
	d, err := s.deps.Domains.Get(name)
	if err == nil && p.canSee(d.Account) {
		return d, true
	}
	if err != nil && !errors.Is(err, registry.ErrNotFound) {
		s.writeErr(ctx, err)
		return registry.Domain{}, false
	}
	writeError(ctx, fasthttp.StatusNotFound, "no such domain", "")
	return registry.Domain{}, false
}

func (s *Server) handleListDomains(ctx *fasthttp.RequestCtx, p *principal) {
	all, err := s.deps.Domains.List()
	if err != nil {
		s.writeErr(ctx, err)
		return
	}
	account := query(ctx, "account")
	out := make([]domainView, 0, len(all))
	for _, d := range all {
		if p.canSee(d.Account) && (account == "" || d.Account == account) {
			out = append(out, domainView{Domain: d, Status: s.status(d.Name)})
		}
	}
	writeJSON(ctx, fasthttp.StatusOK, map[string]any{"domains": out})
}

func (s *Server) handleGetDomain(ctx *fasthttp.RequestCtx, p *principal) {
	d, ok := s.visibleDomain(ctx, p, param(ctx, "domain"))
	if !ok {
		return
	}
	v := domainView{Domain: d, Status: s.status(d.Name)}
	if h, ok := s.deps.Relay.(OutageHistory); ok {
		now := time.Now()
		for _, o := range h.Outages(d.Name, 20) {
			v.Outages = append(v.Outages, newOutageView(o, now))
		}
	}
	writeJSON(ctx, fasthttp.StatusOK, v)
}

// checkAccount forces an admin's domains into its account and checks that
// an operator names an existing account (or none).
func (s *Server) checkAccount(ctx *fasthttp.RequestCtx, p *principal, d *registry.Domain) bool {
	if !p.user.IsOperator() {
		d.Account = p.user.Account
		return true
	}
	d.Account = strings.TrimSpace(d.Account)
	if d.Account != "" {
		if _, ok := s.auth.Account(d.Account); !ok {
			writeError(ctx, fasthttp.StatusBadRequest, fmt.Sprintf("account: no account %q", d.Account), "account")
			return false
		}
	}
	return true
}

func (s *Server) handleCreateDomain(ctx *fasthttp.RequestCtx, p *principal) {
	var d registry.Domain
	if !decodeJSON(ctx, &d) || !s.checkAccount(ctx, p, &d) {
		return
	}
	if n, err := registry.NormalizeName(d.Name); err == nil {
		if _, err := s.deps.Domains.Get(n); errors.Is(err, registry.ErrNotFound) {
			// A new domain starts without mailboxes, even if an earlier
			// deletion of the same name failed to remove them.
			if left, err := s.deleteMailboxes(n); err != nil {
				s.writeErr(ctx, err)
				return
			} else if left > 0 {
				s.log.Warn("leftover mailboxes deleted", zap.String("domain", n), zap.Int("mailboxes", left))
			}
		}
	}
	stored, err := s.deps.Domains.Create(d)
	if err != nil {
		s.writeErr(ctx, err)
		return
	}
	s.events.Record(events.Event{Type: events.DomainCreated, Actor: p.actor(), Domain: stored.Name,
		Account: stored.Account, Detail: fmt.Sprintf("mode %s, relay host %s", stored.Mode, stored.RelayHost)})
	writeJSON(ctx, fasthttp.StatusCreated, domainView{Domain: stored, Status: s.status(stored.Name)})
}

// handlePutDomain updates a domain. The body is applied over the stored
// domain: fields it leaves out keep their values. The name cannot change.
func (s *Server) handlePutDomain(ctx *fasthttp.RequestCtx, p *principal) {
	old, ok := s.visibleDomain(ctx, p, param(ctx, "domain"))
	if !ok {
		return
	}
	d := old
	d.AlertEmails = slices.Clone(old.AlertEmails)
	d.AllowedSources = slices.Clone(old.AllowedSources)
	if !decodeJSON(ctx, &d) {
		return
	}
	if d.Name != old.Name {
		if n, err := registry.NormalizeName(d.Name); err != nil || n != old.Name {
			writeError(ctx, fasthttp.StatusBadRequest, "name: a domain cannot be renamed; create the new one and delete this one", "name")
			return
		}
	}
	if !s.checkAccount(ctx, p, &d) {
		return
	}
	stored, err := s.deps.Domains.Put(d)
	if err != nil {
		s.writeErr(ctx, err)
		return
	}
	s.events.Record(events.Event{Type: events.DomainUpdated, Actor: p.actor(), Domain: stored.Name,
		Account: stored.Account, Detail: domainDiff(old, stored)})
	writeJSON(ctx, fasthttp.StatusOK, domainView{Domain: stored, Status: s.status(stored.Name)})
}

// domainDiff describes what changed between two versions of a domain.
func domainDiff(a, b registry.Domain) string {
	var ch []string
	add := func(field string, x, y any) {
		if fmt.Sprint(x) != fmt.Sprint(y) {
			ch = append(ch, fmt.Sprintf("%s %v → %v", field, x, y))
		}
	}
	add("mode", a.Mode, b.Mode)
	add("relay_host", a.RelayHost, b.RelayHost)
	add("monitoring", a.Monitoring, b.Monitoring)
	add("alert_emails", a.AlertEmails, b.AlertEmails)
	add("allowed_sources", a.AllowedSources, b.AllowedSources)
	add("retention_days", a.RetentionDays, b.RetentionDays)
	add("require_tls", a.RequireTLS, b.RequireTLS)
	add("outbound_smarthost", a.OutboundSmarthost, b.OutboundSmarthost)
	add("account", a.Account, b.Account)
	if len(ch) == 0 {
		return "no change"
	}
	return strings.Join(ch, "; ")
}

// handleDeleteDomain removes a domain. With mail queued it answers 409
// unless ?queued=delete, which deletes the queued mail as well.
func (s *Server) handleDeleteDomain(ctx *fasthttp.RequestCtx, p *principal) {
	d, ok := s.visibleDomain(ctx, p, param(ctx, "domain"))
	if !ok {
		return
	}
	mode := query(ctx, "queued")
	if mode != "" && mode != "delete" {
		writeError(ctx, fasthttp.StatusBadRequest, `queued: the only accepted value is "delete"`, "queued")
		return
	}
	if n := s.deps.Spool.DomainStats(d.Name).Messages; n > 0 && mode != "delete" {
		writeError(ctx, fasthttp.StatusConflict, fmt.Sprintf(
			"domain has %d queued messages; delete them too with ?queued=delete, or wait until they are delivered", n), "queued")
		return
	}
	// Remove the domain first so that no new mail is accepted, then purge.
	if err := s.deps.Domains.Delete(d.Name); err != nil {
		s.writeErr(ctx, err)
		return
	}
	deleted, err := s.purgeQueue(d.Name, p.actor())
	mailboxes, merr := s.deleteMailboxes(d.Name)
	var with []string
	if deleted > 0 {
		with = append(with, fmt.Sprintf("%d queued messages", deleted))
	}
	if mailboxes > 0 {
		with = append(with, fmt.Sprintf("%d mailboxes", mailboxes))
	}
	detail := "domain deleted"
	if len(with) > 0 {
		detail += " with " + strings.Join(with, " and ")
	}
	s.events.Record(events.Event{Type: events.DomainDeleted, Actor: p.actor(), Domain: d.Name, Account: d.Account, Detail: detail})
	if err == nil {
		err = merr
	}
	if err != nil {
		s.writeErr(ctx, err)
		return
	}
	writeJSON(ctx, fasthttp.StatusOK, map[string]any{"deleted": d.Name, "deleted_messages": deleted, "deleted_mailboxes": mailboxes})
}

// deleteMailboxes removes the mailbox users of a domain, if the node keeps
// mailboxes. Leftovers must not survive the domain: whoever creates the
// domain next, possibly another account, would get them.
func (s *Server) deleteMailboxes(domain string) (int, error) {
	if s.deps.Mailboxes == nil {
		return 0, nil
	}
	n, err := s.deps.Mailboxes.DeleteDomain(domain)
	if err != nil {
		return n, fmt.Errorf("admin: delete mailboxes of %s: %w", domain, err)
	}
	return n, nil
}

// purgeQueue deletes every message queued for domain and returns how many
// it deleted. Deletions run in parallel so that they share fsyncs.
func (s *Server) purgeQueue(domain, actor string) (int, error) {
	total := 0
	for {
		msgs, _ := s.deps.Spool.List(domain, 0, 1000)
		if len(msgs) == 0 {
			return total, nil
		}
		ids := make([]spool.ID, len(msgs))
		for i, m := range msgs {
			ids[i] = m.ID
		}
		n, err := s.deleteMany(ids, actor)
		total += n
		if err != nil {
			return total, err
		}
		if n == 0 {
			return total, errors.New("admin: queue purge made no progress")
		}
	}
}

// deleteWorkers is how many deletions run at once. Each spool deletion is
// durable; concurrent ones share their shard's fsync (100,000 queued
// messages are purged in a few seconds).
const deleteWorkers = 64

// deleteMany deletes ids with deleteWorkers workers; messages already gone are
// not errors (and not counted).
func (s *Server) deleteMany(ids []spool.ID, actor string) (int, error) {
	errs := make([]error, len(ids))
	parallel(len(ids), deleteWorkers, func(i int) { errs[i] = s.deps.Spool.Delete(ids[i], actor) })
	n := 0
	var first error
	for i, err := range errs {
		switch {
		case err == nil:
			n++
		case errors.Is(err, spool.ErrNotFound):
		default:
			if first == nil {
				first = err
			}
			s.log.Error("message delete failed", zap.String("msg-id", ids[i].String()), zap.Error(err))
		}
	}
	return n, first
}

// parallel calls fn(0..n-1) from up to workers goroutines. Spool updates
// issued concurrently share their shard's fsyncs (group commit).
func parallel(n, workers int, fn func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < min(workers, n); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				fn(i)
			}
		}()
	}
	wg.Wait()
}
