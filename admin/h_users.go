package admin

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/mxcont/mxcont/admin/auth"
	"github.com/mxcont/mxcont/admin/events"
)

// This file: revoking API tokens, changing and resetting passwords and
// deleting users.

// managedUser returns the user named by the path parameter "username" if p
// may change it (see canManage), or answers 404 or 403.
func (s *Server) managedUser(ctx *fasthttp.RequestCtx, p *principal, name string) (auth.User, bool) {
	u, ok := s.auth.User(strings.ToLower(strings.TrimSpace(name)))
	switch canManage(p, u, ok) {
	case fasthttp.StatusNotFound:
		writeError(ctx, fasthttp.StatusNotFound, "no such user", "")
		return auth.User{}, false
	case fasthttp.StatusForbidden:
		writeError(ctx, fasthttp.StatusForbidden, "only operators may change operators", "")
		return auth.User{}, false
	}
	return u, true
}

// canManage says whether p may change user u (found false: no such user):
// 0 if so; operators may change anyone, an admin only the admins of its
// own account. A user p cannot see (unknown, or of another account) is
// 404, so that other tenants' users do not show; an operator of the
// admin's own account (visible in GET /users) is 403.
func canManage(p *principal, u auth.User, found bool) int {
	switch {
	case !found || !p.canSee(u.Account):
		return fasthttp.StatusNotFound
	case !p.user.IsOperator() && u.IsOperator():
		return fasthttp.StatusForbidden
	}
	return 0
}

// errAnswered means the reply has been written.
var errAnswered = errors.New("admin: answered")

// checkPassword verifies user name's password under the login throttles
// (per user and per client address). It answers 429 while either delays
// password checks, and a store failure, itself (errAnswered). A wrong
// password (auth.ErrInvalidCredentials; the caller answers) counts
// against both throttles and is recorded as a failed login: event
// detail what + "from <ip>", log line logMsg. A right one lifts the
// user's throttle.
func (s *Server) checkPassword(ctx *fasthttp.RequestCtx, name, password, what, logMsg string) (auth.User, error) {
	ip := ctx.RemoteIP().String()
	userKey, ipKey := "user:"+truncate(name, 64), "ip:"+ip
	if wait := max(s.users.Wait(userKey), s.ips.Wait(ipKey)); wait > 0 {
		s.met.logins.WithLabelValues("throttled").Inc()
		ctx.Response.Header.Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
		writeError(ctx, fasthttp.StatusTooManyRequests,
			fmt.Sprintf("too many failed logins; try again in %s", wait.Round(time.Second)), "")
		return auth.User{}, errAnswered
	}
	u, err := s.auth.Authenticate(ctx, name, password)
	switch {
	case errors.Is(err, auth.ErrInvalidCredentials):
		s.users.Fail(userKey)
		s.ips.Fail(ipKey)
		s.met.logins.WithLabelValues("failure").Inc()
		account := ""
		if known, ok := s.auth.User(name); ok {
			account = known.Account
		}
		actor := sanitize(truncate(name, 64))
		s.events.Record(events.Event{Type: events.LoginFailed, Actor: actor, Account: account, Detail: what + "from " + ip})
		s.log.Info(logMsg, zap.String("username", actor), zap.String("remote-ip", ip))
		return auth.User{}, err
	case err != nil:
		s.writeErr(ctx, err)
		return auth.User{}, errAnswered
	}
	s.users.Succeed(userKey)
	return u, nil
}

type tokenView struct {
	ID         string     `json:"id"`
	Name       string     `json:"name"`
	Username   string     `json:"username"`
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
	// Current marks the token that authenticated this request.
	Current bool `json:"current"`
}

type tokensResponse struct {
	Tokens []tokenView `json:"tokens"`
}

// handleListTokens lists API tokens, oldest first: GET /api/v1/tokens
// lists the caller's own; ?user= another user's, for operators (anyone)
// and admins (admins of their own account, as managedUser). Secrets and
// their digests are never returned; last_used_at is kept to the minute.
func (s *Server) handleListTokens(ctx *fasthttp.RequestCtx, p *principal) {
	owner := p.user.Username
	if name := query(ctx, "user"); name != "" && !strings.EqualFold(strings.TrimSpace(name), owner) {
		u, ok := s.managedUser(ctx, p, name)
		if !ok {
			return
		}
		owner = u.Username
	}
	ts, err := s.auth.Tokens(owner)
	if err != nil {
		s.writeErr(ctx, err)
		return
	}
	out := tokensResponse{Tokens: make([]tokenView, 0, len(ts))}
	for _, t := range ts {
		out.Tokens = append(out.Tokens, tokenView{ID: t.ID, Name: t.Name, Username: t.Username, CreatedAt: t.CreatedAt,
			LastUsedAt: timePtr(t.LastUsedAt), Current: p.via == viaToken && p.tokenID == t.ID})
	}
	writeJSON(ctx, fasthttp.StatusOK, out)
}

// handleDeleteToken revokes an API token: DELETE /api/v1/tokens/{id} →
// 204. Anyone may revoke their own tokens (also the one in use);
// operators any; admins those of the admins of their own account. The
// token fails authentication from the next request on. Tokens of other
// accounts' users answer 404, like unknown ones.
func (s *Server) handleDeleteToken(ctx *fasthttp.RequestCtx, p *principal) {
	t, err := s.auth.TokenByID(param(ctx, "id"))
	if errors.Is(err, auth.ErrNotFound) {
		writeError(ctx, fasthttp.StatusNotFound, "no such token", "")
		return
	}
	if err != nil {
		s.writeErr(ctx, err)
		return
	}
	account := p.user.Account
	if t.Username != p.user.Username {
		owner, ok := s.auth.User(t.Username)
		switch canManage(p, owner, ok) {
		case fasthttp.StatusNotFound:
			writeError(ctx, fasthttp.StatusNotFound, "no such token", "")
			return
		case fasthttp.StatusForbidden:
			writeError(ctx, fasthttp.StatusForbidden, "only operators may revoke operators' tokens", "")
			return
		}
		account = owner.Account
	}
	if _, err := s.auth.DeleteToken(t.ID, t.Username); err != nil {
		if errors.Is(err, auth.ErrNotFound) { // revoked meanwhile
			writeError(ctx, fasthttp.StatusNotFound, "no such token", "")
			return
		}
		s.writeErr(ctx, err)
		return
	}
	s.events.Record(events.Event{Type: events.TokenRevoked, Actor: p.actor(), Account: account,
		Detail: "token " + t.ID + nameSuffix(t.Name) + " of user " + t.Username})
	ctx.SetStatusCode(fasthttp.StatusNoContent)
}

type changePasswordRequest struct {
	CurrentPassword string `json:"current_password"`
	NewPassword     string `json:"new_password"`
}

// handleChangePassword changes the caller's own password: POST
// /api/v1/me/password {current_password, new_password} → 204. The new
// password follows the rules of user creation (400, field
// "new_password"); a wrong current password answers 403 (field
// "current_password") and counts as a failed login for the login
// throttle (429 while throttled). Every other session of the user ends;
// the session making the request, if any, stays valid (same cookie and
// CSRF token, so the portal goes on working). API tokens stay valid:
// revoke them with DELETE /api/v1/tokens/{id}.
func (s *Server) handleChangePassword(ctx *fasthttp.RequestCtx, p *principal) {
	var req changePasswordRequest
	if !decodeJSON(ctx, &req) {
		return
	}
	switch {
	case req.CurrentPassword == "":
		writeError(ctx, fasthttp.StatusBadRequest, "current_password: is required", "current_password")
		return
	case req.NewPassword == "":
		writeError(ctx, fasthttp.StatusBadRequest, "new_password: is required", "new_password")
		return
	case req.NewPassword == req.CurrentPassword:
		writeError(ctx, fasthttp.StatusBadRequest, "new_password: must differ from the current password", "new_password")
		return
	}
	if err := auth.CheckPassword(req.NewPassword); err != nil {
		s.newPasswordErr(ctx, err)
		return
	}
	name := p.user.Username
	_, err := s.checkPassword(ctx, name, req.CurrentPassword,
		"wrong current password on password change, ", "password change refused: wrong current password")
	switch {
	case errors.Is(err, auth.ErrInvalidCredentials):
		writeError(ctx, fasthttp.StatusForbidden, "current_password: wrong password", "current_password")
		return
	case err != nil:
		return
	}
	keep := ""
	if p.via == viaSession {
		keep = p.secret
	}
	n, err := s.auth.SetPassword(ctx, name, req.NewPassword, keep)
	if err != nil {
		s.newPasswordErr(ctx, err)
		return
	}
	s.events.Record(events.Event{Type: events.PasswordChanged, Actor: name, Account: p.user.Account,
		Detail: fmt.Sprintf("own password, via %s; %d other session(s) ended", p.via, n)})
	ctx.SetStatusCode(fasthttp.StatusNoContent)
}

// newPasswordErr answers an error of auth.CheckPassword or SetPassword
// for POST /me/password, where the field is "new_password".
func (s *Server) newPasswordErr(ctx *fasthttp.RequestCtx, err error) {
	var fe *auth.FieldError
	if errors.As(err, &fe) && fe.Field == "password" {
		writeError(ctx, fasthttp.StatusBadRequest, "new_password: "+fe.Msg, "new_password")
		return
	}
	s.writeErr(ctx, err)
}

// handleResetPassword sets another user's password: PUT
// /api/v1/users/{username}/password {password} → 204. Operators reset
// anyone's; admins those of the admins of their own account (others:
// 404, operators 403). Every session of the user ends and its login
// throttle is lifted; its API tokens stay valid. Users change their own
// password with POST /api/v1/me/password, which asks for the current one
// (403 here).
func (s *Server) handleResetPassword(ctx *fasthttp.RequestCtx, p *principal) {
	u, ok := s.managedUser(ctx, p, param(ctx, "username"))
	if !ok {
		return
	}
	if u.Username == p.user.Username {
		writeError(ctx, fasthttp.StatusForbidden, "change your own password with POST /api/v1/me/password", "")
		return
	}
	password, ok := decodePassword(ctx)
	if !ok {
		return
	}
	n, err := s.auth.SetPassword(ctx, u.Username, password, "")
	if err != nil {
		if errors.Is(err, auth.ErrNotFound) { // deleted meanwhile
			writeError(ctx, fasthttp.StatusNotFound, "no such user", "")
			return
		}
		s.writeErr(ctx, err)
		return
	}
	s.users.Succeed("user:" + u.Username)
	s.events.Record(events.Event{Type: events.PasswordReset, Actor: p.actor(), Account: u.Account,
		Detail: fmt.Sprintf("user %s; %d session(s) ended", u.Username, n)})
	ctx.SetStatusCode(fasthttp.StatusNoContent)
}

// handleDeleteUser removes a user with its sessions and API tokens: DELETE
// /api/v1/users/{username} → 204. Permissions as handleResetPassword.
// Deleting yourself or the last operator answers 409; the user's sessions
// and tokens fail authentication from the next request on.
func (s *Server) handleDeleteUser(ctx *fasthttp.RequestCtx, p *principal) {
	u, ok := s.managedUser(ctx, p, param(ctx, "username"))
	if !ok {
		return
	}
	if u.Username == p.user.Username {
		msg := "you cannot delete yourself; ask another operator or admin"
		if u.IsOperator() && s.operators() == 1 {
			msg = lastOperatorMsg
		}
		writeError(ctx, fasthttp.StatusConflict, msg, "")
		return
	}
	_, rm, err := s.auth.DeleteUser(u.Username)
	switch {
	case errors.Is(err, auth.ErrLastOperator):
		writeError(ctx, fasthttp.StatusConflict, lastOperatorMsg, "")
		return
	case errors.Is(err, auth.ErrNotFound):
		writeError(ctx, fasthttp.StatusNotFound, "no such user", "")
		return
	case err != nil:
		s.writeErr(ctx, err)
		return
	}
	s.events.Record(events.Event{Type: events.UserDeleted, Actor: p.actor(), Account: u.Account,
		Detail: fmt.Sprintf("user %s, role %s; %d session(s) and %d API token(s) ended", u.Username, u.Role, rm.Sessions, rm.Tokens)})
	ctx.SetStatusCode(fasthttp.StatusNoContent)
}

const lastOperatorMsg = "cannot delete the last operator; create another operator first"

// operators counts the users with role operator.
func (s *Server) operators() int {
	n := 0
	for _, u := range s.auth.Users() {
		if u.IsOperator() {
			n++
		}
	}
	return n
}
