package admin

import (
	"errors"
	"fmt"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/mxcont/mxcont/admin/events"
	"github.com/mxcont/mxcont/engine/registry"
	"github.com/mxcont/mxcont/spool"
)

// messageView is one queued message in a queue listing.
type messageView struct {
	ID            string     `json:"id"`
	Domain        string     `json:"domain"`
	From          string     `json:"from"`
	Rcpts         []string   `json:"rcpts"`
	Size          int64      `json:"size"`
	ReceivedAt    time.Time  `json:"received_at"`
	Attempts      int        `json:"attempts"`
	NextAttemptAt *time.Time `json:"next_attempt_at"`
	LastError     string     `json:"last_error"`
	State         string     `json:"state"`
}

func newMessageView(m spool.Message) messageView {
	rc := m.Rcpts
	if rc == nil {
		rc = []string{}
	}
	return messageView{ID: m.ID.String(), Domain: m.Domain, From: m.From, Rcpts: rc, Size: m.Size,
		ReceivedAt: m.ReceivedAt.UTC(), Attempts: m.Attempts, NextAttemptAt: timePtr(m.NextAttempt),
		LastError: m.LastError, State: m.State}
}

type queueResponse struct {
	Domain     string        `json:"domain"`
	Messages   []messageView `json:"messages"`
	NextCursor string        `json:"next_cursor"`
}

// queueDomain resolves the {domain} of a queue URL. Operators may also
// reach the leftover queue of a domain no longer in the registry.
func (s *Server) queueDomain(ctx *fasthttp.RequestCtx, p *principal) (string, bool) {
	name := param(ctx, "domain")
	d, err := s.deps.Domains.Get(name)
	switch {
	case err == nil && p.canSee(d.Account):
		return d.Name, true
	case err != nil && errors.Is(err, registry.ErrNotFound) && p.user.IsOperator():
		if n, err := registry.NormalizeName(name); err == nil && s.deps.Spool.DomainStats(n).Messages > 0 {
			return n, true
		}
	case err != nil && !errors.Is(err, registry.ErrNotFound):
		s.writeErr(ctx, err)
		return "", false
	}
	writeError(ctx, fasthttp.StatusNotFound, "no such domain", "")
	return "", false
}

// handleQueue pages through a domain's queue, oldest first. The cursor is
// the last message ID of the previous page; each page costs
// O(log n + limit).
func (s *Server) handleQueue(ctx *fasthttp.RequestCtx, p *principal) {
	domain, ok := s.queueDomain(ctx, p)
	if !ok {
		return
	}
	limit, ok := queryInt(ctx, "limit", 50, 1, 1000)
	if !ok {
		return
	}
	var after spool.ID
	if c := query(ctx, "cursor"); c != "" {
		id, err := spool.ParseID(c)
		if err != nil {
			writeError(ctx, fasthttp.StatusBadRequest, "cursor: must be a message id (16 hex digits)", "cursor")
			return
		}
		after = id
	}
	msgs, next := s.deps.Spool.List(domain, after, limit)
	resp := queueResponse{Domain: domain, Messages: make([]messageView, len(msgs))}
	for i, m := range msgs {
		resp.Messages[i] = newMessageView(m)
	}
	if next != 0 {
		resp.NextCursor = next.String()
	}
	writeJSON(ctx, fasthttp.StatusOK, resp)
}

func (s *Server) handleFlush(ctx *fasthttp.RequestCtx, p *principal) {
	domain, ok := s.queueDomain(ctx, p)
	if !ok {
		return
	}
	if s.deps.Relay == nil {
		writeError(ctx, fasthttp.StatusServiceUnavailable, "the relay engine is not running", "")
		return
	}
	s.deps.Relay.FlushDomain(domain)
	s.events.Record(events.Event{Type: events.QueueFlushed, Actor: p.actor(), Domain: domain,
		Account: s.accountOf(domain), Detail: "delivery attempt requested"})
	writeJSON(ctx, fasthttp.StatusAccepted, map[string]string{"status": "flush requested", "domain": domain})
}

// accountOf returns the account owning domain ("" if none or unknown).
func (s *Server) accountOf(domain string) string {
	if d, ok := s.deps.Domains.Lookup(domain); ok {
		return d.Account
	}
	return ""
}

// visibleMessage parses id and returns the message if p may see it;
// otherwise it answers 400 or 404.
func (s *Server) visibleMessage(ctx *fasthttp.RequestCtx, p *principal, raw string) (spool.Message, bool) {
	id, err := spool.ParseID(raw)
	if err != nil {
		writeError(ctx, fasthttp.StatusBadRequest, "id: must be a message id (16 hex digits)", "id")
		return spool.Message{}, false
	}
	m, ok := s.messageFor(p, id)
	if !ok {
		writeError(ctx, fasthttp.StatusNotFound, "no such message", "")
	}
	return m, ok
}

// messageFor returns message id if it exists and p may see it: its domain
// must be in p's account (operators also see mail of removed domains).
func (s *Server) messageFor(p *principal, id spool.ID) (spool.Message, bool) {
	m, err := s.deps.Spool.Get(id)
	if err != nil {
		return spool.Message{}, false
	}
	d, known := s.deps.Domains.Lookup(m.Domain)
	if p.user.IsOperator() || known && p.canSee(d.Account) {
		return m, true
	}
	return spool.Message{}, false
}

type rcptView struct {
	Address string `json:"address"`
	Status  string `json:"status"`
}

type deliveryView struct {
	RelayHost      string      `json:"relay_host"`
	RelayState     string      `json:"relay_state"`
	LastProbeAt    *time.Time  `json:"last_probe_at"`
	LastProbeError string      `json:"last_probe_error"`
	Outage         *outageView `json:"outage"`
}

type messageDetail struct {
	messageView
	Recipients       []rcptView     `json:"recipients"`
	Headers          []header       `json:"headers"`
	HeadersTruncated bool           `json:"headers_truncated"`
	HeadersError     string         `json:"headers_error,omitempty"`
	Delivery         deliveryView   `json:"delivery"`
	History          []events.Event `json:"history"`
}

// handleGetMessage shows one message: envelope, per-recipient status,
// headers (from the first 64 KiB of the body), delivery state and the
// events that concern it.
func (s *Server) handleGetMessage(ctx *fasthttp.RequestCtx, p *principal) {
	m, ok := s.visibleMessage(ctx, p, param(ctx, "id"))
	if !ok {
		return
	}
	v := messageDetail{messageView: newMessageView(m), Recipients: make([]rcptView, len(m.Rcpts)), Headers: []header{}}
	for i, r := range m.Rcpts {
		st := spool.Pending
		if i < len(m.Status) {
			st = m.Status[i]
		}
		v.Recipients[i] = rcptView{Address: r, Status: st.String()}
	}
	hs, truncated, err := s.readHeaders(m.ID)
	switch {
	case err != nil && errors.Is(err, spool.ErrNotFound):
		writeError(ctx, fasthttp.StatusNotFound, "no such message", "")
		return
	case err != nil:
		v.HeadersError = "the message body could not be read"
	default:
		v.Headers, v.HeadersTruncated = hs, truncated
	}
	rs := s.relayStatus(m.Domain)
	v.Delivery = deliveryView{RelayState: rs.State, LastProbeAt: timePtr(rs.LastProbeAt), LastProbeError: rs.LastProbeError}
	if d, ok := s.deps.Domains.Lookup(m.Domain); ok {
		v.Delivery.RelayHost = d.RelayHost
	}
	if rs.Outage != nil {
		o := newOutageView(*rs.Outage, time.Now())
		v.Delivery.Outage = &o
	}
	v.History, _, err = s.events.List(events.Query{MessageID: v.ID, Limit: 100, Scan: 20_000})
	if err != nil {
		s.writeErr(ctx, err)
		return
	}
	writeJSON(ctx, fasthttp.StatusOK, v)
}

func (s *Server) handleRetryMessage(ctx *fasthttp.RequestCtx, p *principal) {
	m, ok := s.visibleMessage(ctx, p, param(ctx, "id"))
	if !ok {
		return
	}
	if err := s.deps.Spool.Retry(m.ID, p.actor()); err != nil {
		s.writeErr(ctx, err)
		return
	}
	if s.deps.Relay != nil {
		s.deps.Relay.FlushMessage(m.ID)
	}
	s.events.Record(events.Event{Type: events.MessageRetried, Actor: p.actor(), Domain: m.Domain,
		Account: s.accountOf(m.Domain), MessageID: m.ID.String(), Detail: "retry requested"})
	writeJSON(ctx, fasthttp.StatusOK, map[string]string{"status": "retry scheduled", "id": m.ID.String()})
}

func (s *Server) handleDeleteMessage(ctx *fasthttp.RequestCtx, p *principal) {
	m, ok := s.visibleMessage(ctx, p, param(ctx, "id"))
	if !ok {
		return
	}
	if err := s.deps.Spool.Delete(m.ID, p.actor()); err != nil {
		s.writeErr(ctx, err)
		return
	}
	s.recordDeleted(p, m)
	writeJSON(ctx, fasthttp.StatusOK, map[string]any{"deleted": []string{m.ID.String()}})
}

func (s *Server) recordDeleted(p *principal, m spool.Message) {
	s.events.Record(events.Event{Type: events.MessageDeleted, Actor: p.actor(), Domain: m.Domain,
		Account: s.accountOf(m.Domain), MessageID: m.ID.String(),
		Detail: fmt.Sprintf("from <%s>, %d recipients, %d bytes", m.From, len(m.Rcpts), m.Size)})
}

// maxBulk bounds the IDs of one bulk deletion.
const maxBulk = 1000

type bulkDeleteResponse struct {
	Deleted  []string `json:"deleted"`
	NotFound []string `json:"not_found"`
}

// handleBulkDelete deletes the messages {"ids": [...]}. IDs that do not
// exist, or that the user may not see, are listed in not_found.
func (s *Server) handleBulkDelete(ctx *fasthttp.RequestCtx, p *principal) {
	var req struct {
		IDs []string `json:"ids"`
	}
	if !decodeJSON(ctx, &req) {
		return
	}
	if len(req.IDs) == 0 || len(req.IDs) > maxBulk {
		writeError(ctx, fasthttp.StatusBadRequest, fmt.Sprintf("ids: give 1 to %d message ids", maxBulk), "ids")
		return
	}
	ids := make([]spool.ID, len(req.IDs))
	for i, raw := range req.IDs {
		id, err := spool.ParseID(raw)
		if err != nil {
			field := fmt.Sprintf("ids[%d]", i)
			writeError(ctx, fasthttp.StatusBadRequest, field+": must be a message id (16 hex digits)", field)
			return
		}
		ids[i] = id
	}
	resp := bulkDeleteResponse{Deleted: []string{}, NotFound: []string{}}
	var msgs []spool.Message
	seen := make(map[spool.ID]bool, len(ids))
	for _, id := range ids {
		if seen[id] {
			continue
		}
		seen[id] = true
		if m, ok := s.messageFor(p, id); ok {
			msgs = append(msgs, m)
		} else {
			resp.NotFound = append(resp.NotFound, id.String())
		}
	}
	errs := make([]error, len(msgs))
	parallel(len(msgs), deleteWorkers, func(i int) { errs[i] = s.deps.Spool.Delete(msgs[i].ID, p.actor()) })
	var failed error
	for i, m := range msgs {
		switch err := errs[i]; {
		case err == nil:
			resp.Deleted = append(resp.Deleted, m.ID.String())
			s.recordDeleted(p, m)
		case errors.Is(err, spool.ErrNotFound):
			resp.NotFound = append(resp.NotFound, m.ID.String())
		default:
			failed = err
		}
	}
	if failed != nil {
		s.writeErr(ctx, failed)
		return
	}
	writeJSON(ctx, fasthttp.StatusOK, resp)
}
