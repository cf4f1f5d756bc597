package admin

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/mxcont/mxcont/admin/auth"
	"github.com/mxcont/mxcont/admin/events"
)

// Users added by userFixture besides the fixture's admin, alice and bob.
const (
	carolPass  = "carol-password"
	opAcmePass = "opacme-password"
)

// userFixture adds carol, a second admin of acme, and opacme, an operator
// attached to account acme (visible to alice in GET /users, but not hers
// to change).
func (e *env) userFixture() {
	e.t.Helper()
	ctx := context.Background()
	for _, nu := range []auth.NewUser{
		{Username: "carol", Password: carolPass, Role: auth.RoleAdmin, Account: "acme"},
		{Username: "opacme", Password: opAcmePass, Role: auth.RoleOperator, Account: "acme"},
	} {
		if _, err := e.srv.Auth().CreateUser(ctx, nu); err != nil {
			e.t.Fatal(err)
		}
	}
}

// newToken makes an API token for c's user and returns it.
func (c *client) newToken(name string) tokenResponse {
	c.e.t.Helper()
	r := c.do("POST", "/api/v1/tokens", map[string]string{"name": name})
	expect(c.e.t, "create token "+name, r, http.StatusCreated)
	var tr tokenResponse
	r.json(c.e.t, &tr)
	return tr
}

// bearer returns a client authenticating with token.
func (e *env) bearer(token string) *client {
	c := e.anon()
	c.bearer = token
	return c
}

// works reports whether c still authenticates (GET /api/v1/me is 200; it
// must otherwise be 401).
func (c *client) works() bool {
	c.e.t.Helper()
	r := c.do("GET", "/api/v1/me", nil)
	if r.status != http.StatusOK && r.status != http.StatusUnauthorized {
		c.e.t.Fatalf("GET /me: %d %s", r.status, r.body)
	}
	return r.status == http.StatusOK
}

// adminLogin reports whether user logs in to the API with pass.
func (e *env) adminLogin(user, pass string) bool {
	e.t.Helper()
	r := e.anon().do("POST", "/api/v1/login", map[string]string{"username": user, "password": pass})
	if r.status != http.StatusOK && r.status != http.StatusUnauthorized {
		e.t.Fatalf("login %s: %d %s", user, r.status, r.body)
	}
	return r.status == http.StatusOK
}

// listTokens returns c's GET /api/v1/tokens (with query q) after checking
// its status.
func (c *client) listTokens(q string, want int) []tokenView {
	c.e.t.Helper()
	r := c.do("GET", "/api/v1/tokens"+q, nil)
	expect(c.e.t, "list tokens"+q, r, want)
	if want != http.StatusOK {
		return nil
	}
	var tl tokensResponse
	r.json(c.e.t, &tl)
	return tl.Tokens
}

// eventsOf returns the stored events of type typ.
func (e *env) eventsOf(typ string) []events.Event {
	e.t.Helper()
	evs, _, err := e.srv.Events().List(eventsQuery(typ))
	if err != nil {
		e.t.Fatal(err)
	}
	return evs
}

// assertNoSecrets fails if an event or a captured log entry contains one
// of secrets.
func (e *env) assertNoSecrets(secrets ...string) {
	e.t.Helper()
	evs, _, err := e.srv.Events().List(events.Query{Limit: 1000})
	if err != nil {
		e.t.Fatal(err)
	}
	for _, s := range secrets {
		if s == "" {
			e.t.Fatal("empty secret")
		}
		for _, ev := range evs {
			if strings.Contains(fmt.Sprint(ev), s) {
				e.t.Errorf("event %+v contains a secret", ev)
			}
		}
		for _, le := range e.logs.All() {
			if text := logText(le); strings.Contains(text, s) {
				e.t.Errorf("log entry %q contains a secret", text)
			}
		}
	}
}

func TestTokenListAndRevoke(t *testing.T) {
	e := newEnv(t)
	alice := e.login("alice", alicePass)
	ci, deploy := alice.newToken("ci"), alice.newToken("deploy")
	bob := e.login("bob", bobPass)
	bobTok := bob.newToken("bob-ci")

	// Listing: own tokens only, no secret, last use tracked.
	ciBot := e.bearer(ci.Token)
	if !ciBot.works() {
		t.Fatal("new token does not work")
	}
	r := ciBot.do("GET", "/api/v1/tokens", nil)
	expect(t, "list", r, http.StatusOK)
	for _, tok := range []tokenResponse{ci, deploy} {
		d := tok.Token[len(auth.TokenPrefix):]
		if strings.Contains(string(r.body), d) || strings.Contains(string(r.body), auth.TokenPrefix) {
			t.Fatalf("token list shows a secret: %s", r.body)
		}
	}
	if strings.Contains(string(r.body), "bob-ci") || strings.Contains(string(r.body), bobTok.ID) {
		t.Fatalf("alice's list shows bob's token: %s", r.body)
	}
	var tl tokensResponse
	r.json(t, &tl)
	if len(tl.Tokens) != 2 || tl.Tokens[0].ID != ci.ID || tl.Tokens[1].ID != deploy.ID {
		t.Fatalf("tokens %+v, want ci then deploy", tl.Tokens)
	}
	if c := tl.Tokens[0]; c.Name != "ci" || c.Username != "alice" || c.CreatedAt.IsZero() || c.LastUsedAt == nil || !c.Current {
		t.Errorf("ci token %+v: want name, owner, created_at, last_used_at and current", c)
	}
	if d := tl.Tokens[1]; d.LastUsedAt != nil || d.Current {
		t.Errorf("unused token %+v has a last use or is current", d)
	}

	// Revoking needs the CSRF token with a session.
	deployBot := e.bearer(deploy.Token)
	expect(t, "revoke without CSRF", alice.doWith("DELETE", "/api/v1/tokens/"+deploy.ID, nil, map[string]string{csrfHeader: ""}), http.StatusForbidden)
	if !deployBot.works() {
		t.Fatal("token revoked despite the CSRF refusal")
	}
	expect(t, "revoke", alice.do("DELETE", "/api/v1/tokens/"+deploy.ID, nil), http.StatusNoContent)
	if deployBot.works() {
		t.Fatal("revoked token still authenticates")
	}
	if r := deployBot.do("POST", "/api/v1/domains", map[string]string{"name": "x.example", "relay_host": "mx.x.example"}); r.status != http.StatusUnauthorized {
		t.Fatalf("revoked token changes state: %d", r.status)
	}
	expect(t, "revoke again", alice.do("DELETE", "/api/v1/tokens/"+deploy.ID, nil), http.StatusNotFound)
	for _, id := range []string{"nothex", "0123456789ab", strings.ToUpper(bobTok.ID) + "00"} {
		expect(t, "unknown id "+id, alice.do("DELETE", "/api/v1/tokens/"+id, nil), http.StatusNotFound)
	}
	if got := alice.listTokens("", http.StatusOK); len(got) != 1 || got[0].ID != ci.ID {
		t.Fatalf("after revoke: %+v", got)
	}

	// A token may revoke itself (no CSRF needed with a bearer token).
	expect(t, "self-revoke", ciBot.do("DELETE", "/api/v1/tokens/"+ci.ID, nil), http.StatusNoContent)
	if ciBot.works() {
		t.Fatal("self-revoked token still authenticates")
	}
	if !e.bearer(bobTok.Token).works() {
		t.Fatal("bob's token revoked with alice's")
	}

	evs := e.eventsOf(events.TokenRevoked)
	if len(evs) != 2 || evs[1].Actor != "alice" || evs[1].Account != "acme" || !strings.Contains(evs[1].Detail, deploy.ID) {
		t.Fatalf("token-revoked events %+v", evs)
	}
	e.assertNoSecrets(ci.Token, deploy.Token, bobTok.Token, alice.cookie, alice.csrf)
}

func TestTokenPermissions(t *testing.T) {
	e := newEnv(t)
	e.userFixture()
	op, alice, bob := e.login("admin", opPass), e.login("alice", alicePass), e.login("bob", bobPass)
	carol, opAcme := e.login("carol", carolPass), e.login("opacme", opAcmePass)
	opTok, aliceTok, bobTok := op.newToken("op"), alice.newToken("alice"), bob.newToken("bob")
	carolTok, opAcmeTok := carol.newToken("carol"), opAcme.newToken("opacme")

	// Another tenant's users and tokens do not exist for bob.
	for _, q := range []string{"?user=alice", "?user=carol", "?user=admin", "?user=nobody"} {
		r := bob.do("GET", "/api/v1/tokens"+q, nil)
		expect(t, "bob lists "+q, r, http.StatusNotFound)
		if strings.Contains(string(r.body), "acme") || strings.Contains(string(r.body), "alice") {
			t.Errorf("404 names the other tenant: %s", r.body)
		}
	}
	for _, tok := range []tokenResponse{aliceTok, carolTok, opTok, opAcmeTok} {
		expect(t, "bob revokes "+tok.Username+"'s", bob.do("DELETE", "/api/v1/tokens/"+tok.ID, nil), http.StatusNotFound)
	}
	// alice: her account's admins yes, operators no (403 for the one she
	// can see, 404 for the one she cannot).
	if got := alice.listTokens("?user=carol", http.StatusOK); len(got) != 1 || got[0].ID != carolTok.ID {
		t.Fatalf("alice lists carol's tokens: %+v", got)
	}
	alice.listTokens("?user=opacme", http.StatusForbidden)
	alice.listTokens("?user=admin", http.StatusNotFound)
	alice.listTokens("?user=bob", http.StatusNotFound)
	expect(t, "alice revokes opacme's", alice.do("DELETE", "/api/v1/tokens/"+opAcmeTok.ID, nil), http.StatusForbidden)
	expect(t, "alice revokes admin's", alice.do("DELETE", "/api/v1/tokens/"+opTok.ID, nil), http.StatusNotFound)
	for _, tok := range []tokenResponse{opTok, bobTok, opAcmeTok} {
		if !e.bearer(tok.Token).works() {
			t.Fatalf("%s's token revoked by a refused request", tok.Username)
		}
	}
	expect(t, "alice revokes carol's", alice.do("DELETE", "/api/v1/tokens/"+carolTok.ID, nil), http.StatusNoContent)
	if e.bearer(carolTok.Token).works() {
		t.Fatal("carol's token works after alice revoked it")
	}

	// The operator: anyone's.
	if got := op.listTokens("?user=BOB", http.StatusOK); len(got) != 1 || got[0].ID != bobTok.ID {
		t.Fatalf("operator lists bob's tokens: %+v", got)
	}
	op.listTokens("?user=nobody", http.StatusNotFound)
	expect(t, "operator revokes bob's", op.do("DELETE", "/api/v1/tokens/"+bobTok.ID, nil), http.StatusNoContent)
	if e.bearer(bobTok.Token).works() {
		t.Fatal("bob's token works after the operator revoked it")
	}
	if !e.bearer(aliceTok.Token).works() {
		t.Fatal("alice's token revoked too")
	}
	evs := e.eventsOf(events.TokenRevoked)
	if len(evs) != 2 || evs[0].Actor != "admin" || evs[0].Account != "globex" || evs[1].Actor != "alice" || evs[1].Account != "acme" {
		t.Fatalf("token-revoked events %+v", evs)
	}
}

func TestChangeOwnPassword(t *testing.T) {
	e := newEnv(t)
	const newPass = "alice-new-password"
	s1, s2 := e.login("alice", alicePass), e.login("alice", alicePass)
	tok := s1.newToken("ci")
	change := func(cur, next string) map[string]string {
		return map[string]string{"current_password": cur, "new_password": next}
	}

	expect(t, "without CSRF", s1.doWith("POST", "/api/v1/me/password", change(alicePass, newPass), map[string]string{csrfHeader: ""}), http.StatusForbidden)
	for _, tc := range []struct {
		body   any
		status int
		field  string
	}{
		{change("wrong-password", newPass), http.StatusForbidden, "current_password"},
		{change(alicePass, "short"), http.StatusBadRequest, "new_password"},
		{change(alicePass, strings.Repeat("x", 1025)), http.StatusBadRequest, "new_password"},
		{change(alicePass, alicePass), http.StatusBadRequest, "new_password"},
		{change("", newPass), http.StatusBadRequest, "current_password"},
		{map[string]string{"current_password": alicePass, "password": newPass}, http.StatusBadRequest, "password"},
	} {
		r := s1.do("POST", "/api/v1/me/password", tc.body)
		expect(t, fmt.Sprint(tc.body), r, tc.status)
		if f := r.errField(t); f != tc.field {
			t.Errorf("%v: field %q, want %q", tc.body, f, tc.field)
		}
	}
	if !s2.works() || !e.adminLogin("alice", alicePass) {
		t.Fatal("a refused change had an effect")
	}

	expect(t, "change", s1.do("POST", "/api/v1/me/password", change(alicePass, newPass)), http.StatusNoContent)
	if !s1.works() {
		t.Fatal("the session that changed the password was ended")
	}
	expect(t, "same session goes on changing state", s1.do("POST", "/api/v1/domains",
		map[string]string{"name": "after.acme.example", "relay_host": "mx.acme.example"}), http.StatusCreated)
	if s2.works() {
		t.Fatal("alice's other session survived the password change")
	}
	if !e.bearer(tok.Token).works() {
		t.Fatal("API token ended by the password change")
	}
	if e.adminLogin("alice", alicePass) {
		t.Fatal("old password still logs in")
	}
	if !e.adminLogin("alice", newPass) {
		t.Fatal("new password does not log in")
	}

	// Through an API token: every session ends.
	s3 := e.login("alice", newPass)
	const third = "alice-third-password"
	expect(t, "change by token", e.bearer(tok.Token).do("POST", "/api/v1/me/password", change(newPass, third)), http.StatusNoContent)
	if s1.works() || s3.works() {
		t.Fatal("a session survived a password change made with a token")
	}
	if !e.adminLogin("alice", third) || e.adminLogin("alice", newPass) {
		t.Fatal("token-made change did not take")
	}

	evs := e.eventsOf(events.PasswordChanged) // newest first
	if len(evs) != 2 || evs[1].Actor != "alice" || evs[1].Account != "acme" || !strings.Contains(evs[1].Detail, "via session") ||
		!strings.Contains(evs[0].Detail, "via token") {
		t.Fatalf("password-changed events %+v", evs)
	}
	evs = e.eventsOf(events.LoginFailed) // the wrong current password, then two logins with old passwords
	if len(evs) != 3 || evs[2].Actor != "alice" || !strings.Contains(evs[2].Detail, "password change") {
		t.Fatalf("wrong current password not recorded as a failed login: %+v", evs)
	}
	e.assertNoSecrets(alicePass, newPass, third, "wrong-password", tok.Token)
}

// TestChangePasswordThrottled checks that guessing the current password
// through a stolen session is slowed down like logins.
func TestChangePasswordThrottled(t *testing.T) {
	e := newEnv(t)
	alice := e.login("alice", alicePass)
	for i := 0; i < 5; i++ {
		r := alice.do("POST", "/api/v1/me/password", map[string]string{"current_password": fmt.Sprintf("guess-%d-xyz", i), "new_password": "stolen-password"})
		expect(t, "guess", r, http.StatusForbidden)
	}
	r := alice.do("POST", "/api/v1/me/password", map[string]string{"current_password": alicePass, "new_password": "stolen-password"})
	expect(t, "throttled", r, http.StatusTooManyRequests)
	if r.header.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
	if _, err := e.srv.Auth().Authenticate(context.Background(), "alice", alicePass); err != nil {
		t.Fatalf("password changed while throttled: %v", err)
	}
}

func TestResetPassword(t *testing.T) {
	e := newEnv(t)
	e.userFixture()
	op, alice, bob := e.login("admin", opPass), e.login("alice", alicePass), e.login("bob", bobPass)
	carol := e.login("carol", carolPass)
	carolTok := carol.newToken("ci")
	const carolNew, bobNew = "carol-reset-password", "bob-reset-password"
	pw := func(p string) map[string]string { return map[string]string{"password": p} }

	for _, tc := range []struct {
		c      *client
		user   string
		status int
	}{
		{bob, "carol", http.StatusNotFound},
		{bob, "admin", http.StatusNotFound},
		{alice, "bob", http.StatusNotFound},
		{alice, "admin", http.StatusNotFound},
		{alice, "nobody", http.StatusNotFound},
		{alice, "opacme", http.StatusForbidden},
		{alice, "alice", http.StatusForbidden},
		{op, "admin", http.StatusForbidden},
	} {
		r := tc.c.do("PUT", "/api/v1/users/"+tc.user+"/password", pw("taken-over-pw"))
		expect(t, tc.user, r, tc.status)
		r.errField(t)
		if tc.status == http.StatusNotFound && strings.Contains(string(r.body), tc.user) {
			t.Errorf("404 names the user: %s", r.body)
		}
	}
	expect(t, "without CSRF", alice.doWith("PUT", "/api/v1/users/carol/password", pw(carolNew), map[string]string{csrfHeader: ""}), http.StatusForbidden)
	r := alice.do("PUT", "/api/v1/users/carol/password", pw("short"))
	expect(t, "weak", r, http.StatusBadRequest)
	if f := r.errField(t); f != "password" {
		t.Errorf("weak password: field %q", f)
	}
	for _, u := range []struct{ name, pass string }{{"admin", opPass}, {"alice", alicePass}, {"bob", bobPass}, {"opacme", opAcmePass}, {"carol", carolPass}} {
		if !e.adminLogin(u.name, u.pass) {
			t.Fatalf("refused reset changed %s's password", u.name)
		}
	}
	if !carol.works() || !bob.works() {
		t.Fatal("a refused reset ended sessions")
	}

	// Tenant admin resets an admin of her account; a throttled user is
	// let in again.
	for i := 0; i < 5; i++ {
		e.anon().do("POST", "/api/v1/login", map[string]string{"username": "carol", "password": "guess-guess"})
	}
	expect(t, "alice resets carol", alice.do("PUT", "/api/v1/users/carol/password", pw(carolNew)), http.StatusNoContent)
	if carol.works() {
		t.Fatal("carol's session survived the reset")
	}
	if !e.bearer(carolTok.Token).works() {
		t.Fatal("carol's API token ended by the reset")
	}
	if e.adminLogin("carol", carolPass) || !e.adminLogin("carol", carolNew) {
		t.Fatal("reset did not take (or the throttle was not lifted)")
	}
	// The operator resets anyone's.
	expect(t, "operator resets bob", op.do("PUT", "/api/v1/users/bob/password", pw(bobNew)), http.StatusNoContent)
	if bob.works() || e.adminLogin("bob", bobPass) || !e.adminLogin("bob", bobNew) {
		t.Fatal("operator's reset of bob did not take")
	}
	if !op.works() || !alice.works() {
		t.Fatal("the resetters' sessions ended")
	}
	evs := e.eventsOf(events.PasswordReset) // newest first
	if len(evs) != 2 || evs[1].Actor != "alice" || evs[1].Account != "acme" || !strings.Contains(evs[1].Detail, "user carol") ||
		evs[0].Actor != "admin" || evs[0].Account != "globex" || !strings.Contains(evs[0].Detail, "user bob") {
		t.Fatalf("password-reset events %+v", evs)
	}
	e.assertNoSecrets(carolNew, bobNew, "taken-over-pw", carolPass)
}

func TestDeleteUser(t *testing.T) {
	e := newEnv(t)
	e.userFixture()
	op, alice, bob := e.login("admin", opPass), e.login("alice", alicePass), e.login("bob", bobPass)
	carol := e.login("carol", carolPass)
	carolTok := carol.newToken("ci")
	bobTok := bob.newToken("ci")

	for _, tc := range []struct {
		c      *client
		user   string
		status int
	}{
		{bob, "carol", http.StatusNotFound},
		{alice, "bob", http.StatusNotFound},
		{alice, "admin", http.StatusNotFound},
		{alice, "nobody", http.StatusNotFound},
		{alice, "opacme", http.StatusForbidden},
		{alice, "alice", http.StatusConflict},
	} {
		r := tc.c.do("DELETE", "/api/v1/users/"+tc.user, nil)
		expect(t, tc.user, r, tc.status)
		r.errField(t)
	}
	expect(t, "without CSRF", alice.doWith("DELETE", "/api/v1/users/carol", nil, map[string]string{csrfHeader: ""}), http.StatusForbidden)
	if !carol.works() || !bob.works() || !e.bearer(carolTok.Token).works() {
		t.Fatal("a refused deletion had an effect")
	}

	expect(t, "alice deletes carol", alice.do("DELETE", "/api/v1/users/carol", nil), http.StatusNoContent)
	if carol.works() || e.bearer(carolTok.Token).works() || e.adminLogin("carol", carolPass) {
		t.Fatal("deleted user's session, token or password still works")
	}
	expect(t, "delete again", alice.do("DELETE", "/api/v1/users/carol", nil), http.StatusNotFound)
	var ul struct{ Users []auth.User }
	alice.do("GET", "/api/v1/users", nil).json(t, &ul)
	for _, u := range ul.Users {
		if u.Username == "carol" {
			t.Fatal("deleted user still listed")
		}
	}
	// A new user of the same name inherits nothing.
	expect(t, "recreate carol", op.do("POST", "/api/v1/users", auth.NewUser{Username: "carol", Password: "carol-second-life", Role: "admin", Account: "acme"}), http.StatusCreated)
	if carol.works() || e.bearer(carolTok.Token).works() {
		t.Fatal("old session or token of a deleted user works for a new user of the same name")
	}
	if got := op.listTokens("?user=carol", http.StatusOK); len(got) != 0 {
		t.Fatalf("recreated carol has tokens %+v", got)
	}

	expect(t, "operator deletes bob", op.do("DELETE", "/api/v1/users/bob", nil), http.StatusNoContent)
	if bob.works() || e.bearer(bobTok.Token).works() {
		t.Fatal("bob's session or token survived his deletion")
	}

	// Operators: never yourself, never the last one.
	r := op.do("DELETE", "/api/v1/users/admin", nil)
	expect(t, "operator deletes self", r, http.StatusConflict)
	if !strings.Contains(string(r.body), "yourself") {
		t.Errorf("self-delete message: %s", r.body)
	}
	opAcme := e.login("opacme", opAcmePass)
	expect(t, "opacme deletes admin", opAcme.do("DELETE", "/api/v1/users/admin", nil), http.StatusNoContent)
	if op.works() {
		t.Fatal("deleted operator's session works")
	}
	r = opAcme.do("DELETE", "/api/v1/users/opacme", nil)
	expect(t, "last operator deletes self", r, http.StatusConflict)
	if !strings.Contains(string(r.body), "last operator") {
		t.Errorf("last-operator message: %s", r.body)
	}
	if !opAcme.works() {
		t.Fatal("last operator gone")
	}

	evs := e.eventsOf(events.UserDeleted) // newest first
	if len(evs) != 3 || evs[2].Actor != "alice" || evs[2].Account != "acme" ||
		!strings.Contains(evs[2].Detail, "user carol") || !strings.Contains(evs[2].Detail, "1 session(s) and 1 API token(s)") ||
		evs[1].Actor != "admin" || evs[1].Account != "globex" || evs[0].Actor != "opacme" || !strings.Contains(evs[0].Detail, "user admin") {
		t.Fatalf("user-deleted events %+v", evs)
	}
	e.assertNoSecrets(carolTok.Token, bobTok.Token, carol.cookie, carolPass, "carol-second-life")
}
