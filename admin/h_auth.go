package admin

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/mxcont/mxcont/admin/auth"
	"github.com/mxcont/mxcont/admin/events"
)

type loginRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

type loginResponse struct {
	CSRFToken string    `json:"csrf_token"`
	Username  string    `json:"username"`
	Role      string    `json:"role"`
	Account   string    `json:"account"`
	ExpiresAt time.Time `json:"expires_at"`
	// Mailboxes: see meResponse.
	Mailboxes bool `json:"mailboxes"`
}

// handleLogin checks a user name and password, throttling failures per
// user and per client address, and starts a session.
func (s *Server) handleLogin(ctx *fasthttp.RequestCtx) {
	if !isJSON(ctx) {
		writeError(ctx, fasthttp.StatusUnsupportedMediaType, "request body must be application/json", "")
		return
	}
	var req loginRequest
	if !decodeJSON(ctx, &req) {
		return
	}
	name := strings.ToLower(strings.TrimSpace(req.Username))
	switch {
	case name == "":
		writeError(ctx, fasthttp.StatusBadRequest, "username: is required", "username")
		return
	case req.Password == "":
		writeError(ctx, fasthttp.StatusBadRequest, "password: is required", "password")
		return
	}
	u, err := s.checkPassword(ctx, name, req.Password, "", "login failed")
	switch {
	case errors.Is(err, auth.ErrInvalidCredentials):
		writeError(ctx, fasthttp.StatusUnauthorized, "invalid username or password", "")
		return
	case err != nil:
		return
	}
	ip := ctx.RemoteIP().String()
	secret, sess, err := s.auth.NewSession(u.Username)
	if errors.Is(err, auth.ErrNotFound) { // deleted since Authenticate
		writeError(ctx, fasthttp.StatusUnauthorized, "invalid username or password", "")
		return
	}
	if err != nil {
		s.writeErr(ctx, err)
		return
	}
	s.setCookie(ctx, secret, s.auth.SessionTTL())
	s.met.logins.WithLabelValues("success").Inc()
	s.events.Record(events.Event{Type: events.Login, Actor: u.Username, Account: u.Account, Detail: "session from " + ip})
	s.log.Info("login", zap.String("username", u.Username), zap.String("remote-ip", ip))
	writeJSON(ctx, fasthttp.StatusOK, loginResponse{CSRFToken: sess.CSRF, Username: u.Username, Role: u.Role,
		Account: u.Account, ExpiresAt: sess.ExpiresAt, Mailboxes: s.deps.Mailboxes != nil})
}

// setCookie sets (ttl > 0) or clears (ttl <= 0) the session cookie.
func (s *Server) setCookie(ctx *fasthttp.RequestCtx, secret string, ttl time.Duration) {
	c := fasthttp.AcquireCookie()
	defer fasthttp.ReleaseCookie(c)
	c.SetKey(cookieName)
	c.SetValue(secret)
	c.SetPath("/")
	c.SetHTTPOnly(true)
	c.SetSameSite(fasthttp.CookieSameSiteStrictMode)
	c.SetSecure(ctx.IsTLS() || s.cfg.SecureCookies)
	if ttl > 0 {
		c.SetMaxAge(int(ttl.Seconds()))
	} else {
		c.SetExpire(fasthttp.CookieExpireDelete)
	}
	ctx.Response.Header.SetCookie(c)
}

func (s *Server) handleLogout(ctx *fasthttp.RequestCtx, p *principal) {
	if p.via == viaSession {
		if err := s.auth.DeleteSession(p.secret); err != nil {
			s.writeErr(ctx, err)
			return
		}
		s.setCookie(ctx, "", 0)
		s.events.Record(events.Event{Type: events.Logout, Actor: p.actor(), Account: p.user.Account})
	}
	writeJSON(ctx, fasthttp.StatusOK, map[string]string{"status": "logged out"})
}

type meResponse struct {
	Username  string `json:"username"`
	Role      string `json:"role"`
	Account   string `json:"account"`
	Via       string `json:"via"`
	CSRFToken string `json:"csrf_token,omitempty"`
	// Mailboxes tells the portal whether the node keeps shadow mailboxes
	// (domains in mode "both").
	Mailboxes bool `json:"mailboxes"`
}

// handleMe returns the current user; for a session also its CSRF token,
// so the portal keeps working after a page reload.
func (s *Server) handleMe(ctx *fasthttp.RequestCtx, p *principal) {
	writeJSON(ctx, fasthttp.StatusOK, meResponse{Username: p.user.Username, Role: p.user.Role,
		Account: p.user.Account, Via: p.via, CSRFToken: p.session.CSRF, Mailboxes: s.deps.Mailboxes != nil})
}

func (s *Server) handleListAccounts(ctx *fasthttp.RequestCtx, p *principal) {
	out := []auth.Account{}
	for _, a := range s.auth.Accounts() {
		if p.canSee(a.Name) {
			out = append(out, a)
		}
	}
	writeJSON(ctx, fasthttp.StatusOK, map[string]any{"accounts": out})
}

func (s *Server) handleCreateAccount(ctx *fasthttp.RequestCtx, p *principal) {
	if !operatorOnly(ctx, p) {
		return
	}
	var req struct {
		Name string `json:"name"`
	}
	if !decodeJSON(ctx, &req) {
		return
	}
	a, err := s.auth.CreateAccount(req.Name)
	if err != nil {
		s.writeErr(ctx, err)
		return
	}
	s.events.Record(events.Event{Type: events.AccountCreated, Actor: p.actor(), Account: a.Name})
	writeJSON(ctx, fasthttp.StatusCreated, a)
}

func (s *Server) handleListUsers(ctx *fasthttp.RequestCtx, p *principal) {
	out := []auth.User{}
	for _, u := range s.auth.Users() {
		if p.user.IsOperator() || u.Account == p.user.Account {
			out = append(out, u)
		}
	}
	writeJSON(ctx, fasthttp.StatusOK, map[string]any{"users": out})
}

// handleCreateUser creates a user. Operators create any user; an admin
// creates admins of its own account only.
func (s *Server) handleCreateUser(ctx *fasthttp.RequestCtx, p *principal) {
	var req auth.NewUser
	if !decodeJSON(ctx, &req) {
		return
	}
	if !p.user.IsOperator() {
		if r := strings.ToLower(strings.TrimSpace(req.Role)); r != "" && r != auth.RoleAdmin {
			writeError(ctx, fasthttp.StatusForbidden, "role: only operators may create operators", "role")
			return
		}
		req.Role, req.Account = auth.RoleAdmin, p.user.Account
	}
	u, err := s.auth.CreateUser(ctx, req)
	if err != nil {
		if errors.Is(err, auth.ErrExists) {
			writeError(ctx, fasthttp.StatusConflict, "user already exists", "username")
			return
		}
		s.writeErr(ctx, err)
		return
	}
	s.events.Record(events.Event{Type: events.UserCreated, Actor: p.actor(), Account: u.Account,
		Detail: fmt.Sprintf("user %s, role %s", u.Username, u.Role)})
	writeJSON(ctx, fasthttp.StatusCreated, u)
}

type tokenResponse struct {
	Token     string    `json:"token"`
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Username  string    `json:"username"`
	CreatedAt time.Time `json:"created_at"`
}

// handleCreateToken makes an API token for the current user; the secret
// is in this response only.
func (s *Server) handleCreateToken(ctx *fasthttp.RequestCtx, p *principal) {
	var req struct {
		Name string `json:"name"`
	}
	if len(ctx.PostBody()) > 0 && !decodeJSON(ctx, &req) {
		return
	}
	secret, t, err := s.auth.NewToken(p.user.Username, req.Name)
	if err != nil {
		s.writeErr(ctx, err)
		return
	}
	s.events.Record(events.Event{Type: events.TokenCreated, Actor: p.actor(), Account: p.user.Account,
		Detail: "token " + t.ID + nameSuffix(t.Name)})
	writeJSON(ctx, fasthttp.StatusCreated, tokenResponse{Token: secret, ID: t.ID, Name: t.Name,
		Username: t.Username, CreatedAt: t.CreatedAt})
}

func nameSuffix(n string) string {
	if n == "" {
		return ""
	}
	return " (" + n + ")"
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// sanitize replaces control characters in user-supplied text kept in
// events and logs.
func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}
