package admin

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/mxcont/mxcont/admin/auth"
)

// endpoints lists every route that needs credentials.
var endpoints = []struct{ method, path string }{
	{"POST", "/api/v1/logout"},
	{"GET", "/api/v1/me"},
	{"GET", "/api/v1/domains"},
	{"POST", "/api/v1/domains"},
	{"GET", "/api/v1/domains/" + acmeDom},
	{"PUT", "/api/v1/domains/" + acmeDom},
	{"DELETE", "/api/v1/domains/" + acmeDom},
	{"GET", "/api/v1/domains/" + acmeDom + "/queue"},
	{"POST", "/api/v1/domains/" + acmeDom + "/queue/flush"},
	{"GET", "/api/v1/messages/0000000000000001"},
	{"DELETE", "/api/v1/messages/0000000000000001"},
	{"POST", "/api/v1/messages/0000000000000001/retry"},
	{"POST", "/api/v1/messages/delete"},
	{"GET", "/api/v1/events"},
	{"GET", "/api/v1/stats/queue-history"},
	{"GET", "/api/v1/accounts"},
	{"POST", "/api/v1/accounts"},
	{"GET", "/api/v1/users"},
	{"POST", "/api/v1/users"},
	{"GET", "/api/v1/tokens"},
	{"POST", "/api/v1/tokens"},
	{"DELETE", "/api/v1/tokens/0123456789ab"},
	{"POST", "/api/v1/me/password"},
	{"PUT", "/api/v1/users/alice/password"},
	{"DELETE", "/api/v1/users/alice"},
	{"GET", "/api/v1/domains/" + acmeDom + "/mailboxes"},
	{"POST", "/api/v1/domains/" + acmeDom + "/mailboxes"},
	{"POST", "/api/v1/domains/" + acmeDom + "/mailboxes/import"},
	{"GET", "/api/v1/domains/" + acmeDom + "/mailboxes/u@" + acmeDom},
	{"PUT", "/api/v1/domains/" + acmeDom + "/mailboxes/u@" + acmeDom},
	{"DELETE", "/api/v1/domains/" + acmeDom + "/mailboxes/u@" + acmeDom},
	{"GET", "/metrics"},
}

func TestEveryEndpointNeedsCredentials(t *testing.T) {
	e := newEnv(t)
	anon := e.anon()
	badCookie := e.anon()
	badCookie.cookie = strings.Repeat("A", 43)
	badBearer := e.anon()
	badBearer.bearer = auth.TokenPrefix + strings.Repeat("B", 43)
	for _, ep := range endpoints {
		for name, c := range map[string]*client{"none": anon, "bad cookie": badCookie, "bad bearer": badBearer} {
			r := c.doWith(ep.method, ep.path, `{}`, nil)
			if r.status != http.StatusUnauthorized {
				t.Errorf("%s %s with %s: status %d, want 401 (%s)", ep.method, ep.path, name, r.status, r.body)
				continue
			}
			if !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
				t.Errorf("%s %s: 401 is not JSON", ep.method, ep.path)
			}
			r.errField(t)
		}
	}
	// Unauthenticated by design.
	expect(t, "healthz", anon.do("GET", "/healthz", nil), http.StatusOK)
	expect(t, "portal", anon.do("GET", "/", nil), http.StatusOK)
	r := anon.doWith("GET", "/api/v1/me", nil, map[string]string{"Authorization": "Basic YWRtaW46eA=="})
	expect(t, "basic auth", r, http.StatusUnauthorized)
}

func TestLoginMeLogout(t *testing.T) {
	e := newEnv(t)
	anon := e.anon()
	for _, tc := range []struct {
		body  string
		field string
	}{
		{`{"password":"x"}`, "username"},
		{`{"username":"admin"}`, "password"},
		{`{"username":"admin","password":"x","extra":1}`, "extra"},
		{`{"username":1,"password":"x"}`, "username"},
	} {
		r := anon.do("POST", "/api/v1/login", tc.body)
		expect(t, tc.body, r, http.StatusBadRequest)
		if f := r.errField(t); f != tc.field {
			t.Errorf("%s: field %q, want %q", tc.body, f, tc.field)
		}
	}
	expect(t, "malformed JSON", anon.do("POST", "/api/v1/login", `{"username":`), http.StatusBadRequest)
	expect(t, "form login", anon.doWith("POST", "/api/v1/login", "username=admin", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}), http.StatusUnsupportedMediaType)
	expect(t, "wrong password", anon.do("POST", "/api/v1/login", map[string]string{"username": "admin", "password": "nope-nope"}), http.StatusUnauthorized)

	r := anon.do("POST", "/api/v1/login", map[string]string{"username": "Admin", "password": opPass})
	expect(t, "login", r, http.StatusOK)
	var lr loginResponse
	r.json(t, &lr)
	if lr.Username != "admin" || lr.Role != auth.RoleOperator || lr.CSRFToken == "" {
		t.Fatalf("login response %+v", lr)
	}
	ck, err := http.ParseSetCookie(r.header.Get("Set-Cookie"))
	if err != nil {
		t.Fatal(err)
	}
	if ck.Name != cookieName || len(ck.Value) < 40 || !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode ||
		ck.Path != "/" || ck.MaxAge <= 0 || ck.Secure {
		t.Errorf("session cookie %+v: want HttpOnly, SameSite=Strict, Path=/, Max-Age, not Secure on plain HTTP", ck)
	}

	c := e.login("admin", opPass)
	var me meResponse
	r = c.do("GET", "/api/v1/me", nil)
	expect(t, "me", r, http.StatusOK)
	r.json(t, &me)
	if me.Username != "admin" || me.Via != viaSession || me.CSRFToken != c.csrf {
		t.Fatalf("me = %+v", me)
	}
	expect(t, "logout without CSRF", c.doWith("POST", "/api/v1/logout", nil, map[string]string{csrfHeader: ""}), http.StatusForbidden)
	r = c.do("POST", "/api/v1/logout", nil)
	expect(t, "logout", r, http.StatusOK)
	if !strings.Contains(r.header.Get("Set-Cookie"), cookieName+"=;") && !strings.Contains(r.header.Get("Set-Cookie"), "expires=") {
		t.Errorf("logout does not clear the cookie: %q", r.header.Get("Set-Cookie"))
	}
	expect(t, "me after logout", c.do("GET", "/api/v1/me", nil), http.StatusUnauthorized)
}

func TestSecureCookieOption(t *testing.T) {
	e := newEnv(t, func(c *Config, _ *Deps) { c.SecureCookies = true })
	r := e.anon().do("POST", "/api/v1/login", map[string]string{"username": "admin", "password": opPass})
	expect(t, "login", r, http.StatusOK)
	if ck, err := http.ParseSetCookie(r.header.Get("Set-Cookie")); err != nil || !ck.Secure {
		t.Fatalf("cookie not Secure: %q", r.header.Get("Set-Cookie"))
	}
}

func TestCSRF(t *testing.T) {
	e := newEnv(t)
	c := e.login("admin", opPass)
	dom := map[string]any{"name": "csrf.example", "relay_host": "mx.csrf.example"}
	expect(t, "no header", c.doWith("POST", "/api/v1/domains", dom, map[string]string{csrfHeader: ""}), http.StatusForbidden)
	expect(t, "wrong header", c.doWith("POST", "/api/v1/domains", dom, map[string]string{csrfHeader: "x" + c.csrf}), http.StatusForbidden)
	other := e.login("admin", opPass) // another session's token does not fit
	expect(t, "other session's token", c.doWith("POST", "/api/v1/domains", dom, map[string]string{csrfHeader: other.csrf}), http.StatusForbidden)
	expect(t, "delete without header", c.doWith("DELETE", "/api/v1/domains/"+acmeDom, nil, map[string]string{csrfHeader: ""}), http.StatusForbidden)
	if _, err := e.reg.Get("csrf.example"); err == nil {
		t.Fatal("domain created despite CSRF refusal")
	}
	expect(t, "form body", c.doWith("POST", "/api/v1/domains", "name=x", map[string]string{"Content-Type": "text/plain"}), http.StatusUnsupportedMediaType)
	expect(t, "GET needs no token", c.doWith("GET", "/api/v1/domains", nil, map[string]string{csrfHeader: ""}), http.StatusOK)
	expect(t, "with token", c.do("POST", "/api/v1/domains", dom), http.StatusCreated)
}

func TestBearerToken(t *testing.T) {
	e := newEnv(t)
	alice := e.login("alice", alicePass)
	expect(t, "token without CSRF", alice.doWith("POST", "/api/v1/tokens", `{"name":"ci"}`, map[string]string{csrfHeader: ""}), http.StatusForbidden)
	r := alice.do("POST", "/api/v1/tokens", map[string]string{"name": "ci"})
	expect(t, "create token", r, http.StatusCreated)
	var tr tokenResponse
	r.json(t, &tr)
	if !strings.HasPrefix(tr.Token, auth.TokenPrefix) || tr.Username != "alice" || tr.Name != "ci" {
		t.Fatalf("token response %+v", tr)
	}
	expect(t, "token with empty body", alice.do("POST", "/api/v1/tokens", nil), http.StatusCreated)

	bot := e.anon()
	bot.bearer = tr.Token
	var me meResponse
	r = bot.do("GET", "/api/v1/me", nil)
	expect(t, "me", r, http.StatusOK)
	r.json(t, &me)
	if me.Username != "alice" || me.Account != "acme" || me.Via != viaToken || me.CSRFToken != "" {
		t.Fatalf("token identity %+v", me)
	}
	// No CSRF header needed, and the token acts as alice (forced into acme).
	r = bot.do("POST", "/api/v1/domains", map[string]any{"name": "bot.example", "relay_host": "mx.bot.example", "account": "globex"})
	expect(t, "create with token", r, http.StatusCreated)
	var dv domainView
	r.json(t, &dv)
	if dv.Account != "acme" {
		t.Fatalf("admin's domain created in account %q", dv.Account)
	}
	expect(t, "token sees no globex", bot.do("GET", "/api/v1/domains/"+globexDom, nil), http.StatusNotFound)
	bot.bearer = tr.Token + "x"
	expect(t, "tampered token", bot.do("GET", "/api/v1/me", nil), http.StatusUnauthorized)
}

func TestLoginThrottle(t *testing.T) {
	e := newEnv(t)
	anon := e.anon()
	for i := 0; i < 5; i++ {
		r := anon.do("POST", "/api/v1/login", map[string]string{"username": "alice", "password": fmt.Sprintf("guess-%d", i)})
		expect(t, "wrong password", r, http.StatusUnauthorized)
	}
	r := anon.do("POST", "/api/v1/login", map[string]string{"username": "alice", "password": alicePass})
	expect(t, "throttled login", r, http.StatusTooManyRequests)
	if r.header.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
	// Other users (from the same address, below its own limit) are not locked out.
	e.login("bob", bobPass)
	// Failed logins are audited.
	evs, _, err := e.srv.Events().List(eventsQuery("login-failed"))
	if err != nil || len(evs) != 5 || evs[0].Actor != "alice" || evs[0].Account != "acme" {
		t.Fatalf("login-failed events: %d %+v %v", len(evs), evs, err)
	}
}

func TestPerAddressThrottle(t *testing.T) {
	e := newEnv(t, func(c *Config, _ *Deps) { c.IPThrottle = auth.ThrottleConfig{Free: 3, Base: 3600e9} })
	anon := e.anon()
	for i := 0; i < 3; i++ { // three different users, same address
		expect(t, "wrong", anon.do("POST", "/api/v1/login", map[string]string{"username": fmt.Sprintf("user%d", i), "password": "wrong-pass"}), http.StatusUnauthorized)
	}
	expect(t, "address throttled", anon.do("POST", "/api/v1/login", map[string]string{"username": "bob", "password": bobPass}), http.StatusTooManyRequests)
}

func TestEnsureAdminFromEnv(t *testing.T) {
	e := newEnv(t) // the fixture already made "admin"
	if pw, err := e.srv.EnsureAdmin(context.Background()); err != nil || pw != "" {
		t.Fatalf("EnsureAdmin on a store with users = %q, %v", pw, err)
	}
	// A fresh store: the environment variable wins and nothing is returned.
	t.Setenv(EnvAdminPassword, "env-admin-password")
	e2 := newBareEnv(t)
	pw, err := e2.srv.EnsureAdmin(context.Background())
	if err != nil || pw != "" {
		t.Fatalf("EnsureAdmin with %s = %q, %v", EnvAdminPassword, pw, err)
	}
	e2.login("admin", "env-admin-password")
}

func TestAccountsAndUsers(t *testing.T) {
	e := newEnv(t)
	op := e.login("admin", opPass)
	alice := e.login("alice", alicePass)

	expect(t, "admin creates account", alice.do("POST", "/api/v1/accounts", map[string]string{"name": "evil"}), http.StatusForbidden)
	r := op.do("POST", "/api/v1/accounts", map[string]string{"name": "initech"})
	expect(t, "create account", r, http.StatusCreated)
	r = op.do("POST", "/api/v1/accounts", map[string]string{"name": "Bad Name"})
	expect(t, "bad account", r, http.StatusBadRequest)
	if f := r.errField(t); f != "name" {
		t.Errorf("field %q", f)
	}
	expect(t, "dup account", op.do("POST", "/api/v1/accounts", map[string]string{"name": "initech"}), http.StatusConflict)

	r = op.do("POST", "/api/v1/users", auth.NewUser{Username: "peter", Password: "peter-password", Role: "admin", Account: "initech"})
	expect(t, "create user", r, http.StatusCreated)
	if strings.Contains(string(r.body), "peter-password") || strings.Contains(string(r.body), "argon2") {
		t.Fatalf("user response leaks the password: %s", r.body)
	}
	for _, tc := range []struct {
		u     auth.NewUser
		field string
	}{
		{auth.NewUser{Username: "x y", Password: "long-enough", Role: "admin", Account: "initech"}, "username"},
		{auth.NewUser{Username: "xy", Password: "short", Role: "admin", Account: "initech"}, "password"},
		{auth.NewUser{Username: "xy", Password: "long-enough", Role: "king", Account: "initech"}, "role"},
		{auth.NewUser{Username: "xy", Password: "long-enough", Role: "admin", Account: "nowhere"}, "account"},
	} {
		r := op.do("POST", "/api/v1/users", tc.u)
		expect(t, "invalid user", r, http.StatusBadRequest)
		if f := r.errField(t); f != tc.field {
			t.Errorf("%+v: field %q, want %q", tc.u, f, tc.field)
		}
	}
	expect(t, "dup user", op.do("POST", "/api/v1/users", auth.NewUser{Username: "peter", Password: "peter-password", Role: "admin", Account: "initech"}), http.StatusConflict)
	e.login("peter", "peter-password")

	// An admin creates admins of its own account only.
	r = alice.do("POST", "/api/v1/users", auth.NewUser{Username: "carol", Password: "carol-password", Account: "globex"})
	expect(t, "admin creates user", r, http.StatusCreated)
	var u auth.User
	r.json(t, &u)
	if u.Account != "acme" || u.Role != auth.RoleAdmin {
		t.Fatalf("admin-created user %+v", u)
	}
	r = alice.do("POST", "/api/v1/users", auth.NewUser{Username: "mallory", Password: "mallory-password", Role: "operator"})
	expect(t, "admin creates operator", r, http.StatusForbidden)

	var ul struct{ Users []auth.User }
	op.do("GET", "/api/v1/users", nil).json(t, &ul)
	if len(ul.Users) != 5 {
		t.Errorf("operator sees %d users, want 5", len(ul.Users))
	}
	alice.do("GET", "/api/v1/users", nil).json(t, &ul)
	for _, u := range ul.Users {
		if u.Account != "acme" {
			t.Errorf("alice sees user %+v", u)
		}
	}
	var al struct{ Accounts []auth.Account }
	op.do("GET", "/api/v1/accounts", nil).json(t, &al)
	if len(al.Accounts) != 3 {
		t.Errorf("operator sees %d accounts", len(al.Accounts))
	}
	alice.do("GET", "/api/v1/accounts", nil).json(t, &al)
	if len(al.Accounts) != 1 || al.Accounts[0].Name != "acme" {
		t.Errorf("alice sees accounts %+v", al.Accounts)
	}
}
