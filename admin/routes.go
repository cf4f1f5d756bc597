package admin

import (
	"bytes"
	"crypto/subtle"
	"strings"
	"time"

	"github.com/fasthttp/router"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/mxcont/mxcont/admin/auth"
)

const (
	cookieName = "mxcont_session"
	csrfHeader = "X-CSRF-Token"
)

// How a request was authenticated.
const (
	viaSession = "session"
	viaToken   = "token"
)

// principal is the authenticated user of a request.
type principal struct {
	user    auth.User
	via     string
	secret  string       // session cookie value, when via == viaSession
	session auth.Session // when via == viaSession
	tokenID string       // when via == viaToken
}

// canSee reports whether the user may see things of account.
func (p *principal) canSee(account string) bool {
	return p.user.IsOperator() || account == p.user.Account
}

// actor is how the user appears in events and spool records.
func (p *principal) actor() string { return p.user.Username }

type authHandler func(ctx *fasthttp.RequestCtx, p *principal)

// handler builds the router and wraps it with the common layers.
func (s *Server) handler() fasthttp.RequestHandler {
	r := router.New()
	r.SaveMatchedRoutePath = true
	r.RedirectTrailingSlash = false
	r.RedirectFixedPath = false
	r.HandleOPTIONS = false

	r.POST("/api/v1/login", s.handleLogin)
	r.GET("/healthz", s.handleHealth)
	r.GET("/metrics", s.handleMetrics)

	a := func(method, path string, h authHandler) { r.Handle(method, path, s.authed(h)) }
	a("POST", "/api/v1/logout", s.handleLogout)
	a("GET", "/api/v1/me", s.handleMe)
	a("GET", "/api/v1/domains", s.handleListDomains)
	a("POST", "/api/v1/domains", s.handleCreateDomain)
	a("GET", "/api/v1/domains/{domain}", s.handleGetDomain)
	a("PUT", "/api/v1/domains/{domain}", s.handlePutDomain)
	a("DELETE", "/api/v1/domains/{domain}", s.handleDeleteDomain)
	a("GET", "/api/v1/domains/{domain}/queue", s.handleQueue)
	a("POST", "/api/v1/domains/{domain}/queue/flush", s.handleFlush)
	a("GET", "/api/v1/messages/{id}", s.handleGetMessage)
	a("DELETE", "/api/v1/messages/{id}", s.handleDeleteMessage)
	a("POST", "/api/v1/messages/{id}/retry", s.handleRetryMessage)
	a("POST", "/api/v1/messages/delete", s.handleBulkDelete)
	a("GET", "/api/v1/events", s.handleEvents)
	a("GET", "/api/v1/stats/queue-history", s.handleQueueHistory)
	a("GET", "/api/v1/accounts", s.handleListAccounts)
	a("POST", "/api/v1/accounts", s.handleCreateAccount)
	a("GET", "/api/v1/users", s.handleListUsers)
	a("POST", "/api/v1/users", s.handleCreateUser)
	a("POST", "/api/v1/me/password", s.handleChangePassword)
	a("PUT", "/api/v1/users/{username}/password", s.handleResetPassword)
	a("DELETE", "/api/v1/users/{username}", s.handleDeleteUser)
	a("GET", "/api/v1/tokens", s.handleListTokens)
	a("POST", "/api/v1/tokens", s.handleCreateToken)
	a("DELETE", "/api/v1/tokens/{id}", s.handleDeleteToken)
	a("GET", "/api/v1/domains/{domain}/mailboxes", s.handleListMailboxes)
	a("POST", "/api/v1/domains/{domain}/mailboxes", s.handleCreateMailbox)
	a("GET", "/api/v1/domains/{domain}/mailboxes/{address}", s.handleGetMailbox)
	a("PUT", "/api/v1/domains/{domain}/mailboxes/{address}", s.handleSetMailboxPassword)
	a("DELETE", "/api/v1/domains/{domain}/mailboxes/{address}", s.handleDeleteMailbox)
	r.POST("/api/v1/domains/{domain}/mailboxes/import", s.authedBody(s.handleImportMailboxes, mediaCSV))

	r.NotFound = func(ctx *fasthttp.RequestCtx) {
		if bytes.HasPrefix(ctx.Path(), []byte("/api/")) {
			writeError(ctx, fasthttp.StatusNotFound, "no such endpoint", "")
			return
		}
		s.portal.serve(ctx)
	}
	r.MethodNotAllowed = func(ctx *fasthttp.RequestCtx) {
		writeError(ctx, fasthttp.StatusMethodNotAllowed, "method not allowed", "")
	}
	r.PanicHandler = func(ctx *fasthttp.RequestCtx, v any) {
		s.log.Error("handler panic", zap.String("path", string(ctx.Path())), zap.Any("panic", v), zap.Stack("stack"))
		writeError(ctx, fasthttp.StatusInternalServerError, "internal error", "")
	}
	return s.wrap(r.Handler)
}

// wrap adds security headers, request metrics and the access log.
func (s *Server) wrap(next fasthttp.RequestHandler) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		start := time.Now()
		h := &ctx.Response.Header
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "+
			"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
		next(ctx)
		route, _ := ctx.UserValue(router.MatchedRoutePathParam).(string)
		if route == "" {
			route = "other"
		}
		took := time.Since(start)
		method := methodLabel(ctx)
		s.met.observe(route, method, ctx.Response.StatusCode(), took)
		if ce := s.log.Check(zap.DebugLevel, "http request"); ce != nil {
			ce.Write(zap.String("method", method), zap.String("path", string(ctx.Path())),
				zap.Int("status", ctx.Response.StatusCode()), zap.Duration("took", took),
				zap.String("remote-ip", ctx.RemoteIP().String()))
		}
	}
}

// methodLabel maps the request method to a bounded set of names.
func methodLabel(ctx *fasthttp.RequestCtx) string {
	switch m := ctx.Method(); string(m) {
	case "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS":
		return string(m)
	}
	return "OTHER"
}

// Media types of request bodies.
const (
	mediaJSON = "application/json"
	mediaCSV  = "text/csv"
)

// authed wraps h with authentication, the CSRF check and the JSON body
// check.
func (s *Server) authed(h authHandler) fasthttp.RequestHandler {
	return s.authedBody(h, mediaJSON)
}

// authedBody is authed for a handler whose request body, if any, is of
// media type mediaType.
func (s *Server) authedBody(h authHandler, mediaType string) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		p, status, msg := s.authenticate(ctx)
		if p == nil {
			if status == fasthttp.StatusUnauthorized {
				ctx.Response.Header.Set("WWW-Authenticate", `Bearer realm="mxcont"`)
			}
			writeError(ctx, status, msg, "")
			return
		}
		if !ctx.IsGet() && !ctx.IsHead() {
			if p.via == viaSession && !validCSRF(ctx, p.session.CSRF) {
				writeError(ctx, fasthttp.StatusForbidden, "missing or invalid CSRF token (X-CSRF-Token header)", "")
				return
			}
			if len(ctx.PostBody()) > 0 && !hasMediaType(ctx, mediaType) {
				writeError(ctx, fasthttp.StatusUnsupportedMediaType, "request body must be "+mediaType, "")
				return
			}
		}
		h(ctx, p)
	}
}

// authenticate identifies the user of a request by bearer token or
// session cookie. On failure it returns the status and message to answer.
func (s *Server) authenticate(ctx *fasthttp.RequestCtx) (*principal, int, string) {
	if authz := ctx.Request.Header.Peek("Authorization"); len(authz) > 0 {
		scheme, secret, _ := strings.Cut(string(authz), " ")
		if !strings.EqualFold(scheme, "Bearer") {
			return nil, fasthttp.StatusUnauthorized, "unsupported authorization scheme; use Bearer"
		}
		t, u, err := s.auth.TokenUser(strings.TrimSpace(secret))
		if err != nil {
			if err != auth.ErrNoSession {
				s.log.Error("token lookup failed", zap.Error(err))
			}
			return nil, fasthttp.StatusUnauthorized, "invalid API token"
		}
		return &principal{user: u, via: viaToken, tokenID: t.ID}, 0, ""
	}
	if c := ctx.Request.Header.Cookie(cookieName); len(c) > 0 {
		secret := string(c)
		sess, u, err := s.auth.Session(secret)
		if err != nil {
			if err != auth.ErrNoSession {
				s.log.Error("session lookup failed", zap.Error(err))
			}
			return nil, fasthttp.StatusUnauthorized, "session expired or invalid; log in again"
		}
		return &principal{user: u, via: viaSession, secret: secret, session: sess}, 0, ""
	}
	return nil, fasthttp.StatusUnauthorized, "authentication required"
}

func validCSRF(ctx *fasthttp.RequestCtx, want string) bool {
	got := ctx.Request.Header.Peek(csrfHeader)
	return len(got) > 0 && want != "" && subtle.ConstantTimeCompare(got, []byte(want)) == 1
}

func isJSON(ctx *fasthttp.RequestCtx) bool { return hasMediaType(ctx, mediaJSON) }

// hasMediaType reports whether the request's Content-Type is mediaType
// (parameters such as charset are ignored).
func hasMediaType(ctx *fasthttp.RequestCtx, mediaType string) bool {
	ct := string(ctx.Request.Header.ContentType())
	mt, _, _ := strings.Cut(ct, ";")
	return strings.EqualFold(strings.TrimSpace(mt), mediaType)
}

// operatorOnly answers 403 for non-operators and reports whether p is one.
func operatorOnly(ctx *fasthttp.RequestCtx, p *principal) bool {
	if p.user.IsOperator() {
		return true
	}
	writeError(ctx, fasthttp.StatusForbidden, "only operators may do this", "")
	return false
}
