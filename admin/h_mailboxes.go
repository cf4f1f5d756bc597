package admin

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/mxcont/mxcont/admin/events"
	"github.com/mxcont/mxcont/engine/registry"
	"github.com/mxcont/mxcont/mailbox"
)

// The mailbox users of domains in mode "both" (DESIGN.md section 6). Every
// endpoint resolves {domain} like the domain endpoints (unknown or not
// visible: 404) and answers 501 when the node has no mailbox store. New
// mailboxes need the domain in mode "both" (409 otherwise); listing,
// password resets and deletions work in any mode, so that the mailboxes of
// a domain switched back to "relay" can still be cleaned up. Passwords are
// never logged, stored in events or echoed in responses.

type mailboxRequest struct {
	Address  string `json:"address"`
	Password string `json:"password"`
}

type passwordRequest struct {
	Password string `json:"password"`
}

// decodePassword reads a {password} body; an empty password answers 400.
func decodePassword(ctx *fasthttp.RequestCtx) (string, bool) {
	var req passwordRequest
	if !decodeJSON(ctx, &req) {
		return "", false
	}
	if req.Password == "" {
		writeError(ctx, fasthttp.StatusBadRequest, "password: is required", "password")
		return "", false
	}
	return req.Password, true
}

type mailboxList struct {
	Domain    string         `json:"domain"`
	Mailboxes []mailbox.User `json:"mailboxes"`
}

// mailboxDomain resolves the {domain} of a mailbox URL: 404 unless p may
// see it, then 501 when there is no mailbox store.
func (s *Server) mailboxDomain(ctx *fasthttp.RequestCtx, p *principal) (registry.Domain, bool) {
	d, ok := s.visibleDomain(ctx, p, param(ctx, "domain"))
	if !ok {
		return registry.Domain{}, false
	}
	if s.deps.Mailboxes == nil {
		writeError(ctx, fasthttp.StatusNotImplemented, "shadow mailboxes are not enabled on this node", "")
		return registry.Domain{}, false
	}
	return d, true
}

// requireBoth answers 409 unless d is in mode "both".
func requireBoth(ctx *fasthttp.RequestCtx, d registry.Domain) bool {
	if d.Mode == registry.ModeBoth {
		return true
	}
	writeError(ctx, fasthttp.StatusConflict, fmt.Sprintf(
		"mode: %s is in mode %q; mailboxes need mode %q (change the domain's mode first)", d.Name, d.Mode, registry.ModeBoth), "mode")
	return false
}

// addressDomain returns the domain of a mail address in canonical form
// (as registry.NormalizeName gives it), or false when addr is not
// local@domain with a valid domain.
func addressDomain(addr string) (string, bool) {
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 || at == len(addr)-1 {
		return "", false
	}
	d, err := registry.NormalizeName(addr[at+1:])
	return d, err == nil
}

// userDomain is the domain the store filed u under.
func userDomain(u mailbox.User) string {
	if u.Domain != "" {
		return u.Domain
	}
	d, _ := addressDomain(u.Address)
	return d
}

// checkAddress validates a new mailbox's address for domain: 400 when it is
// missing or malformed, 422 when it belongs to another domain. It returns
// the status (0 if valid) and the message.
func checkAddress(addr, domain string) (int, string) {
	if addr == "" {
		return fasthttp.StatusBadRequest, "address: is required"
	}
	d, ok := addressDomain(addr)
	if !ok || strings.ContainsAny(addr, " \t\r\n") {
		return fasthttp.StatusBadRequest, "address: not a valid mail address; want user@" + domain
	}
	if d != domain {
		return fasthttp.StatusUnprocessableEntity, fmt.Sprintf("address: %s is not in the domain %s", sanitize(truncate(addr, 320)), domain)
	}
	return 0, ""
}

func (s *Server) handleListMailboxes(ctx *fasthttp.RequestCtx, p *principal) {
	d, ok := s.mailboxDomain(ctx, p)
	if !ok {
		return
	}
	users, err := s.deps.Mailboxes.Users(d.Name)
	if err != nil {
		s.mailboxErr(ctx, err, "")
		return
	}
	out := make([]mailbox.User, 0, len(users))
	for _, u := range users {
		if userDomain(u) == d.Name {
			out = append(out, u)
		}
	}
	writeJSON(ctx, fasthttp.StatusOK, mailboxList{Domain: d.Name, Mailboxes: out})
}

func (s *Server) handleCreateMailbox(ctx *fasthttp.RequestCtx, p *principal) {
	d, ok := s.mailboxDomain(ctx, p)
	if !ok || !requireBoth(ctx, d) {
		return
	}
	var req mailboxRequest
	if !decodeJSON(ctx, &req) {
		return
	}
	addr := strings.TrimSpace(req.Address)
	if status, msg := checkAddress(addr, d.Name); status != 0 {
		writeError(ctx, status, msg, "address")
		return
	}
	if req.Password == "" {
		writeError(ctx, fasthttp.StatusBadRequest, "password: is required", "password")
		return
	}
	u, err := s.addMailbox(ctx, d, addr, req.Password)
	if err != nil {
		s.mailboxErr(ctx, err, req.Password)
		return
	}
	s.events.Record(events.Event{Type: events.MailboxCreated, Actor: p.actor(), Domain: d.Name, Account: d.Account,
		Detail: "mailbox " + u.Address})
	ctx.Response.Header.Set("Location", "/api/v1/domains/"+url.PathEscape(d.Name)+"/mailboxes/"+url.PathEscape(u.Address))
	writeJSON(ctx, fasthttp.StatusCreated, u)
}

// errWrongDomain means the store filed a new user under another domain
// than the admin checked (the two normalizations disagree).
var errWrongDomain = errors.New("admin: mailbox store filed the user under another domain")

// addMailbox creates a user of d. The address was checked against d, but
// the store normalizes it itself: a user that lands in another domain is
// removed again, so that no account reaches another's domain this way.
func (s *Server) addMailbox(ctx *fasthttp.RequestCtx, d registry.Domain, addr, password string) (mailbox.User, error) {
	u, err := s.deps.Mailboxes.AddUser(ctx, addr, password)
	if err != nil {
		return mailbox.User{}, err
	}
	if got := userDomain(u); got != d.Name {
		if derr := s.deps.Mailboxes.DeleteUser(u.Address); derr != nil {
			s.log.Error("mailbox delete failed", zap.String("address", u.Address), zap.Error(derr))
		}
		return mailbox.User{}, fmt.Errorf("%w: %s in %q, want %q", errWrongDomain, u.Address, got, d.Name)
	}
	return u, nil
}

// visibleMailbox resolves the {address} of a mailbox URL within d: 404
// unless the store has that user in d.
func (s *Server) visibleMailbox(ctx *fasthttp.RequestCtx, d registry.Domain) (mailbox.User, bool) {
	addr := strings.TrimSpace(param(ctx, "address"))
	if dom, ok := addressDomain(addr); ok && dom == d.Name {
		u, err := s.deps.Mailboxes.User(addr)
		if err == nil && userDomain(u) == d.Name {
			return u, true
		}
		if err != nil && !errors.Is(err, mailbox.ErrNotFound) && !errors.Is(err, mailbox.ErrInvalid) {
			s.mailboxErr(ctx, err, "")
			return mailbox.User{}, false
		}
	}
	writeError(ctx, fasthttp.StatusNotFound, "no such mailbox", "")
	return mailbox.User{}, false
}

func (s *Server) handleGetMailbox(ctx *fasthttp.RequestCtx, p *principal) {
	d, ok := s.mailboxDomain(ctx, p)
	if !ok {
		return
	}
	if u, ok := s.visibleMailbox(ctx, d); ok {
		writeJSON(ctx, fasthttp.StatusOK, u)
	}
}

// handleSetMailboxPassword resets a mailbox user's password: 204.
func (s *Server) handleSetMailboxPassword(ctx *fasthttp.RequestCtx, p *principal) {
	d, ok := s.mailboxDomain(ctx, p)
	if !ok {
		return
	}
	u, ok := s.visibleMailbox(ctx, d)
	if !ok {
		return
	}
	password, ok := decodePassword(ctx)
	if !ok {
		return
	}
	if err := s.deps.Mailboxes.SetPassword(ctx, u.Address, password); err != nil {
		s.mailboxErr(ctx, err, password)
		return
	}
	s.events.Record(events.Event{Type: events.MailboxPasswordReset, Actor: p.actor(), Domain: d.Name, Account: d.Account,
		Detail: "mailbox " + u.Address})
	ctx.SetStatusCode(fasthttp.StatusNoContent)
}

// handleDeleteMailbox removes a mailbox user and its mail: 204.
func (s *Server) handleDeleteMailbox(ctx *fasthttp.RequestCtx, p *principal) {
	d, ok := s.mailboxDomain(ctx, p)
	if !ok {
		return
	}
	u, ok := s.visibleMailbox(ctx, d)
	if !ok {
		return
	}
	if err := s.deps.Mailboxes.DeleteUser(u.Address); err != nil {
		s.mailboxErr(ctx, err, "")
		return
	}
	s.events.Record(events.Event{Type: events.MailboxDeleted, Actor: p.actor(), Domain: d.Name, Account: d.Account,
		Detail: fmt.Sprintf("mailbox %s with %d message(s)", u.Address, u.Messages)})
	ctx.SetStatusCode(fasthttp.StatusNoContent)
}

// mailboxErr answers an error of the mailbox store: invalid input 400
// (naming the field), an existing user 409, no such user 404, a closed
// store 503, anything else 500 (logged). password, the secret of the
// request if any, never appears in the answer or the log.
func (s *Server) mailboxErr(ctx *fasthttp.RequestCtx, err error, password string) {
	switch {
	case errors.Is(err, mailbox.ErrInvalid):
		msg, field := invalidMessage(err, password)
		writeError(ctx, fasthttp.StatusBadRequest, msg, field)
	case errors.Is(err, mailbox.ErrExists):
		writeError(ctx, fasthttp.StatusConflict, "address: a mailbox with this address exists", "address")
	case errors.Is(err, mailbox.ErrNotFound):
		writeError(ctx, fasthttp.StatusNotFound, "no such mailbox", "")
	case errors.Is(err, mailbox.ErrClosed):
		writeError(ctx, fasthttp.StatusServiceUnavailable, "the mailbox store is not available", "")
	default:
		s.log.Error("mailbox request failed", zap.String("path", string(ctx.Path())),
			zap.String("error", redact(err.Error(), password)))
		writeError(ctx, fasthttp.StatusInternalServerError, "internal error", "")
	}
}

// invalidMessage turns a mailbox.ErrInvalid error into the API's
// "field: problem" text and the field, which the store's text names
// ("address" or "password", whichever it names first).
func invalidMessage(err error, password string) (string, string) {
	t := strings.ReplaceAll(err.Error(), mailbox.ErrInvalid.Error(), "")
	t = strings.TrimPrefix(strings.TrimSpace(t), "mailbox:")
	t = strings.Trim(t, " :")
	field := ""
	ia, ip := strings.Index(t, "address"), strings.Index(t, "password")
	switch {
	case ia >= 0 && (ip < 0 || ia < ip):
		field = "address"
	case ip >= 0:
		field = "password"
	}
	if t == "" || (password != "" && strings.Contains(t, password)) {
		t = strings.TrimPrefix(field+": invalid", ": ")
	}
	return t, field
}

// redact replaces every occurrence of secret in s.
func redact(s, secret string) string {
	if secret == "" {
		return s
	}
	return strings.ReplaceAll(s, secret, "[redacted]")
}
