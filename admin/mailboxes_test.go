package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mxcont/mxcont/admin/events"
	"github.com/mxcont/mxcont/engine/registry"
	"github.com/mxcont/mxcont/mailbox"
)

// mailboxesURL is the mailbox collection of a domain.
func mailboxesURL(domain string) string { return "/api/v1/domains/" + domain + "/mailboxes" }

// csvHeader sends a body as text/csv.
var csvHeader = map[string]string{"Content-Type": "text/csv"}

// canLogin reports whether the store accepts address and password.
func (e *env) canLogin(address, password string) bool {
	e.t.Helper()
	_, err := e.mb.Authenticate(context.Background(), address, password)
	if err != nil && !errors.Is(err, mailbox.ErrAuth) {
		e.t.Fatal(err)
	}
	return err == nil
}

// addresses lists the addresses of a domain's mailbox users in the store.
func (e *env) addresses(domain string) []string {
	e.t.Helper()
	users, err := e.mb.Users(domain)
	if err != nil {
		e.t.Fatal(err)
	}
	out := []string{}
	for _, u := range users {
		out = append(out, u.Address)
	}
	return out
}

func TestMailboxCRUD(t *testing.T) {
	e := newMailboxEnv(t)
	alice := e.login("alice", alicePass)
	var me meResponse
	alice.do("GET", "/api/v1/me", nil).json(t, &me)
	if !me.Mailboxes {
		t.Error("/me does not announce mailboxes")
	}

	var list mailboxList
	r := alice.do("GET", mailboxesURL(acmeDom), nil)
	expect(t, "empty list", r, http.StatusOK)
	if !strings.Contains(string(r.body), `"mailboxes":[]`) {
		t.Errorf("empty list is not []: %s", r.body)
	}

	r = alice.do("POST", mailboxesURL(acmeDom), map[string]string{"address": " Jane.Doe@ACME.example ", "password": "jane-secret-1"})
	expect(t, "create", r, http.StatusCreated)
	var u mailbox.User
	r.json(t, &u)
	if u.Address != "jane.doe@acme.example" || u.Domain != acmeDom || u.Created.IsZero() {
		t.Fatalf("created %+v", u)
	}
	if loc := r.header.Get("Location"); loc != mailboxesURL(acmeDom)+"/jane.doe@acme.example" {
		t.Errorf("Location %q", loc)
	}
	if strings.Contains(string(r.body), "jane-secret-1") || strings.Contains(string(r.body), "argon2") {
		t.Fatalf("create response leaks the password: %s", r.body)
	}
	if !e.canLogin("jane.doe@acme.example", "jane-secret-1") {
		t.Fatal("the new user cannot log in")
	}
	r = alice.do("POST", mailboxesURL(acmeDom), map[string]string{"address": "JANE.DOE@acme.example", "password": "other-secret-2"})
	expect(t, "duplicate", r, http.StatusConflict)
	if f := r.errField(t); f != "address" {
		t.Errorf("409 field %q", f)
	}
	expect(t, "second", alice.do("POST", mailboxesURL(acmeDom), map[string]string{"address": "abe@acme.example", "password": "abe-secret-12"}), http.StatusCreated)

	// Mail filed for a user shows in the listing.
	if n, err := e.mb.Deliver([]string{"jane.doe@acme.example"}, strings.NewReader("Subject: hi\r\n\r\nhello\r\n"), time.Now()); err != nil || n != 1 {
		t.Fatalf("deliver: %d %v", n, err)
	}
	r = alice.do("GET", mailboxesURL(acmeDom), nil)
	expect(t, "list", r, http.StatusOK)
	r.json(t, &list)
	if list.Domain != acmeDom || len(list.Mailboxes) != 2 || list.Mailboxes[0].Address != "abe@acme.example" ||
		list.Mailboxes[1].Messages != 1 || list.Mailboxes[1].Bytes == 0 {
		t.Fatalf("list %+v", list)
	}
	var raw struct{ Mailboxes []map[string]any }
	r.json(t, &raw)
	for _, k := range []string{"address", "created_at", "messages", "bytes"} {
		if _, ok := raw.Mailboxes[0][k]; !ok {
			t.Errorf("listing lacks %q: %s", k, r.body)
		}
	}

	r = alice.do("GET", mailboxesURL(acmeDom)+"/Jane.Doe@acme.example", nil)
	expect(t, "get", r, http.StatusOK)
	r.json(t, &u)
	if u.Address != "jane.doe@acme.example" || u.Messages != 1 {
		t.Fatalf("get %+v", u)
	}
	expect(t, "get unknown", alice.do("GET", mailboxesURL(acmeDom)+"/nobody@acme.example", nil), http.StatusNotFound)
	expect(t, "get not an address", alice.do("GET", mailboxesURL(acmeDom)+"/import", nil), http.StatusNotFound)

	// Password reset.
	r = alice.do("PUT", mailboxesURL(acmeDom)+"/jane.doe%40acme.example", map[string]string{"password": "jane-new-secret"})
	expect(t, "reset", r, http.StatusNoContent)
	if len(r.body) != 0 {
		t.Errorf("204 with a body: %s", r.body)
	}
	if e.canLogin("jane.doe@acme.example", "jane-secret-1") || !e.canLogin("jane.doe@acme.example", "jane-new-secret") {
		t.Fatal("the password was not replaced")
	}
	r = alice.do("PUT", mailboxesURL(acmeDom)+"/jane.doe@acme.example", map[string]string{"password": "short"})
	expect(t, "short password", r, http.StatusBadRequest)
	if f := r.errField(t); f != "password" {
		t.Errorf("field %q: %s", f, r.body)
	}
	r = alice.do("PUT", mailboxesURL(acmeDom)+"/jane.doe@acme.example", map[string]string{})
	expect(t, "no password", r, http.StatusBadRequest)
	if f := r.errField(t); f != "password" {
		t.Errorf("field %q", f)
	}
	expect(t, "reset unknown", alice.do("PUT", mailboxesURL(acmeDom)+"/nobody@acme.example", map[string]string{"password": "long-enough-1"}), http.StatusNotFound)

	// Deletion.
	r = alice.do("DELETE", mailboxesURL(acmeDom)+"/jane.doe@acme.example", nil)
	expect(t, "delete", r, http.StatusNoContent)
	expect(t, "get deleted", alice.do("GET", mailboxesURL(acmeDom)+"/jane.doe@acme.example", nil), http.StatusNotFound)
	expect(t, "delete again", alice.do("DELETE", mailboxesURL(acmeDom)+"/jane.doe@acme.example", nil), http.StatusNotFound)
	if got := e.addresses(acmeDom); len(got) != 1 || got[0] != "abe@acme.example" {
		t.Fatalf("store holds %v", got)
	}
	if e.canLogin("jane.doe@acme.example", "jane-new-secret") {
		t.Fatal("a deleted user can log in")
	}

	// Every change is audited, with who and which mailbox.
	evs, _, _ := e.srv.Events().List(events.Query{Domain: acmeDom, Limit: 100})
	var got []string
	for _, ev := range evs {
		if strings.HasPrefix(ev.Type, "mailbox-") {
			got = append(got, ev.Type+" "+ev.Detail)
			if ev.Actor != "alice" || ev.Account != "acme" {
				t.Errorf("event %+v: actor or account wrong", ev)
			}
		}
	}
	want := []string{
		"mailbox-deleted mailbox jane.doe@acme.example with 1 message(s)",
		"mailbox-password-reset mailbox jane.doe@acme.example",
		"mailbox-created mailbox abe@acme.example",
		"mailbox-created mailbox jane.doe@acme.example",
	}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("events\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestMailboxIDN checks that addresses and domains in Unicode meet their
// punycode forms.
func TestMailboxIDN(t *testing.T) {
	e := newMailboxEnv(t)
	op := e.login("admin", opPass)
	expect(t, "create IDN domain", op.do("POST", "/api/v1/domains", map[string]any{"name": "bücher.example", "mode": "both", "relay_host": "mx.example"}), http.StatusCreated)
	r := op.do("POST", mailboxesURL("b%C3%BCcher.example"), map[string]string{"address": "Anna@BÜCHER.example", "password": "anna-secret-1"})
	expect(t, "create", r, http.StatusCreated)
	var u mailbox.User
	r.json(t, &u)
	if u.Address != "anna@xn--bcher-kva.example" || u.Domain != "xn--bcher-kva.example" {
		t.Fatalf("created %+v", u)
	}
	expect(t, "get by A-label", op.do("GET", mailboxesURL("xn--bcher-kva.example")+"/anna@xn--bcher-kva.example", nil), http.StatusOK)
	expect(t, "delete by U-label", op.do("DELETE", mailboxesURL("xn--bcher-kva.example")+"/anna@b%C3%BCcher.example", nil), http.StatusNoContent)
}

func TestMailboxValidation(t *testing.T) {
	e := newMailboxEnv(t)
	alice := e.login("alice", alicePass)
	for _, tc := range []struct {
		body   string
		status int
		field  string
	}{
		{`{"password":"long-enough-1"}`, http.StatusBadRequest, "address"},
		{`{"address":"","password":"long-enough-1"}`, http.StatusBadRequest, "address"},
		{`{"address":"not-an-address","password":"long-enough-1"}`, http.StatusBadRequest, "address"},
		{`{"address":"@acme.example","password":"long-enough-1"}`, http.StatusBadRequest, "address"},
		{`{"address":"a b@acme.example","password":"long-enough-1"}`, http.StatusBadRequest, "address"},
		{`{"address":"a..b@acme.example","password":"long-enough-1"}`, http.StatusBadRequest, "address"},
		{`{"address":"a@globex.example","password":"long-enough-1"}`, http.StatusUnprocessableEntity, "address"},
		{`{"address":"a@mail.acme.example","password":"long-enough-1"}`, http.StatusUnprocessableEntity, "address"},
		{`{"address":"a@acme.example"}`, http.StatusBadRequest, "password"},
		{`{"address":"a@acme.example","password":"short"}`, http.StatusBadRequest, "password"},
		{`{"address":"a@acme.example","password":"line\nbreak-password"}`, http.StatusBadRequest, "password"},
		{`{"address":"a@acme.example","password":"long-enough-1","role":"x"}`, http.StatusBadRequest, "role"},
		{`{"address":["a@acme.example"],"password":"long-enough-1"}`, http.StatusBadRequest, "address"},
	} {
		r := alice.do("POST", mailboxesURL(acmeDom), tc.body)
		expect(t, tc.body, r, tc.status)
		if f := r.errField(t); f != tc.field {
			t.Errorf("%s: field %q, want %q (%s)", tc.body, f, tc.field, r.body)
		}
		if strings.Contains(string(r.body), "long-enough-1") || strings.Contains(string(r.body), "break-password") {
			t.Errorf("%s: response echoes the password: %s", tc.body, r.body)
		}
	}
	expect(t, "empty body", alice.do("POST", mailboxesURL(acmeDom), ""), http.StatusBadRequest)
	expect(t, "CSV to the JSON endpoint", alice.doWith("POST", mailboxesURL(acmeDom), "a@acme.example,long-enough-1", csvHeader), http.StatusUnsupportedMediaType)
	if got := e.addresses(""); len(got) != 0 {
		t.Fatalf("invalid requests created %v", got)
	}

	// New mailboxes need mode "both"; existing ones stay manageable.
	expect(t, "create", alice.do("POST", mailboxesURL(acmeDom), map[string]string{"address": "kept@acme.example", "password": "kept-secret-1"}), http.StatusCreated)
	e.setMode(acmeDom, registry.ModeRelay)
	r := alice.do("POST", mailboxesURL(acmeDom), map[string]string{"address": "new@acme.example", "password": "new-secret-12"})
	expect(t, "create in mode relay", r, http.StatusConflict)
	if f := r.errField(t); f != "mode" || !strings.Contains(string(r.body), `\"both\"`) {
		t.Errorf("409 %s", r.body)
	}
	expect(t, "import in mode relay", alice.doWith("POST", mailboxesURL(acmeDom)+"/import", "new@acme.example,new-secret-12", csvHeader), http.StatusConflict)
	expect(t, "list in mode relay", alice.do("GET", mailboxesURL(acmeDom), nil), http.StatusOK)
	expect(t, "reset in mode relay", alice.do("PUT", mailboxesURL(acmeDom)+"/kept@acme.example", map[string]string{"password": "kept-secret-2"}), http.StatusNoContent)
	expect(t, "delete in mode relay", alice.do("DELETE", mailboxesURL(acmeDom)+"/kept@acme.example", nil), http.StatusNoContent)
}

// TestMailboxTenantIsolation checks that alice (acme) can neither see nor
// change globex's mailboxes, by globex's URLs or by her own.
func TestMailboxTenantIsolation(t *testing.T) {
	e := newMailboxEnv(t)
	alice := e.login("alice", alicePass)
	bob := e.login("bob", bobPass)
	expect(t, "bob creates", bob.do("POST", mailboxesURL(globexDom), map[string]string{"address": "victim@globex.example", "password": "victim-secret-1"}), http.StatusCreated)
	expect(t, "alice creates", alice.do("POST", mailboxesURL(acmeDom), map[string]string{"address": "own@acme.example", "password": "own-secret-123"}), http.StatusCreated)
	victim := mailboxesURL(globexDom) + "/victim@globex.example"
	viaAcme := mailboxesURL(acmeDom) + "/victim@globex.example"

	for _, ep := range []struct {
		method, path string
		body         any
		hdr          map[string]string
	}{
		{"GET", mailboxesURL(globexDom), nil, nil},
		{"POST", mailboxesURL(globexDom), map[string]string{"address": "spy@globex.example", "password": "spy-secret-12"}, nil},
		{"POST", mailboxesURL(globexDom) + "/import", "spy2@globex.example,spy-secret-12", csvHeader},
		{"GET", victim, nil, nil},
		{"PUT", victim, map[string]string{"password": "hijacked-pass"}, nil},
		{"DELETE", victim, nil, nil},
		// The domain in the path is hers, the mailbox is not.
		{"GET", viaAcme, nil, nil},
		{"PUT", viaAcme, map[string]string{"password": "hijacked-pass"}, nil},
		{"DELETE", viaAcme, nil, nil},
		{"GET", mailboxesURL("nope.example"), nil, nil},
	} {
		r := alice.doWith(ep.method, ep.path, ep.body, ep.hdr)
		if r.status != http.StatusNotFound {
			t.Errorf("alice %s %s: %d, want 404 (%s)", ep.method, ep.path, r.status, r.body)
		}
		if strings.Contains(string(r.body), "victim") || strings.Contains(string(r.body), "globex") {
			t.Errorf("alice %s %s: body reveals globex: %s", ep.method, ep.path, r.body)
		}
	}
	// Creating a globex address through her own domain is refused.
	r := alice.do("POST", mailboxesURL(acmeDom), map[string]string{"address": "spy3@globex.example", "password": "spy-secret-12"})
	expect(t, "foreign address", r, http.StatusUnprocessableEntity)
	var res importResult
	r = alice.doWith("POST", mailboxesURL(acmeDom)+"/import", "spy4@globex.example,spy-secret-12\nmine@acme.example,mine-secret-12\n", csvHeader)
	expect(t, "import with a foreign line", r, http.StatusOK)
	r.json(t, &res)
	if res.Created != 1 || len(res.Failed) != 1 || res.Failed[0].Line != 1 {
		t.Fatalf("import %+v", res)
	}

	// Nothing of globex changed.
	if got := e.addresses(globexDom); len(got) != 1 || got[0] != "victim@globex.example" {
		t.Fatalf("globex mailboxes %v", got)
	}
	if !e.canLogin("victim@globex.example", "victim-secret-1") || e.canLogin("victim@globex.example", "hijacked-pass") {
		t.Fatal("the victim's password changed")
	}
	var list mailboxList
	alice.do("GET", mailboxesURL(acmeDom), nil).json(t, &list)
	for _, u := range list.Mailboxes {
		if u.Domain != acmeDom {
			t.Errorf("alice lists %+v", u)
		}
	}
	// An API token of alice is held to the same rules.
	var tr tokenResponse
	alice.do("POST", "/api/v1/tokens", map[string]string{"name": "ci"}).json(t, &tr)
	bot := e.anon()
	bot.bearer = tr.Token
	expect(t, "token lists globex", bot.do("GET", mailboxesURL(globexDom), nil), http.StatusNotFound)
	expect(t, "token deletes via acme", bot.do("DELETE", viaAcme, nil), http.StatusNotFound)
	expect(t, "token lists acme", bot.do("GET", mailboxesURL(acmeDom), nil), http.StatusOK)

	// The operator reaches both.
	op := e.login("admin", opPass)
	expect(t, "operator lists globex", op.do("GET", mailboxesURL(globexDom), nil), http.StatusOK)
	expect(t, "operator deletes", op.do("DELETE", victim, nil), http.StatusNoContent)
}

func TestMailboxCredentialsAndCSRF(t *testing.T) {
	e := newMailboxEnv(t)
	alice := e.login("alice", alicePass)
	expect(t, "create", alice.do("POST", mailboxesURL(acmeDom), map[string]string{"address": "jo@acme.example", "password": "jo-secret-123"}), http.StatusCreated)
	one := mailboxesURL(acmeDom) + "/jo@acme.example"
	noCSRF := map[string]string{csrfHeader: ""}
	for _, ep := range []struct {
		method, path string
		body         any
		hdr          map[string]string
	}{
		{"POST", mailboxesURL(acmeDom), map[string]string{"address": "x@acme.example", "password": "x-secret-1234"}, noCSRF},
		{"PUT", one, map[string]string{"password": "changed-secret"}, noCSRF},
		{"DELETE", one, nil, noCSRF},
		{"POST", mailboxesURL(acmeDom) + "/import", "y@acme.example,y-secret-1234", map[string]string{csrfHeader: "", "Content-Type": "text/csv"}},
		{"POST", mailboxesURL(acmeDom) + "/import", "y@acme.example,y-secret-1234", map[string]string{csrfHeader: "x" + alice.csrf, "Content-Type": "text/csv"}},
	} {
		r := alice.doWith(ep.method, ep.path, ep.body, ep.hdr)
		expect(t, ep.method+" "+ep.path+" without CSRF token", r, http.StatusForbidden)
	}
	if got := e.addresses(acmeDom); len(got) != 1 || !e.canLogin("jo@acme.example", "jo-secret-123") {
		t.Fatalf("a refused request changed something: %v", got)
	}
	expect(t, "GET needs no token", alice.doWith("GET", mailboxesURL(acmeDom), nil, noCSRF), http.StatusOK)
	// Without credentials (TestEveryEndpointNeedsCredentials covers bad ones).
	for _, m := range []string{"GET", "POST"} {
		expect(t, m+" anonymous", e.anon().do(m, mailboxesURL(acmeDom), `{}`), http.StatusUnauthorized)
	}
	expect(t, "anonymous import", e.anon().doWith("POST", mailboxesURL(acmeDom)+"/import", "z@acme.example,z-secret-1234", csvHeader), http.StatusUnauthorized)
	expect(t, "anonymous delete", e.anon().do("DELETE", one, nil), http.StatusUnauthorized)
	if got := e.addresses(acmeDom); len(got) != 1 {
		t.Fatalf("anonymous requests changed %v", got)
	}
}

func TestMailboxesNotConfigured(t *testing.T) {
	e := newEnv(t)
	e.setMode(acmeDom, registry.ModeBoth)
	alice := e.login("alice", alicePass)
	var me meResponse
	alice.do("GET", "/api/v1/me", nil).json(t, &me)
	if me.Mailboxes {
		t.Error("/me announces mailboxes without a store")
	}
	r := alice.do("GET", mailboxesURL(acmeDom), nil)
	expect(t, "list", r, http.StatusNotImplemented)
	if !strings.Contains(string(r.body), "not enabled") {
		t.Errorf("501 body %s", r.body)
	}
	expect(t, "create", alice.do("POST", mailboxesURL(acmeDom), map[string]string{"address": "a@acme.example", "password": "a-secret-1234"}), http.StatusNotImplemented)
	expect(t, "foreign domain is still 404", alice.do("GET", mailboxesURL(globexDom), nil), http.StatusNotFound)
	r = alice.do("DELETE", "/api/v1/domains/"+acmeDom, nil)
	expect(t, "domain delete without a store", r, http.StatusOK)
	if !strings.Contains(string(r.body), `"deleted_mailboxes":0`) {
		t.Errorf("delete body %s", r.body)
	}
}

func TestDeleteDomainDeletesMailboxes(t *testing.T) {
	e := newMailboxEnv(t)
	alice := e.login("alice", alicePass)
	bob := e.login("bob", bobPass)
	for _, a := range []string{"a1@acme.example", "a2@acme.example", "a3@acme.example"} {
		expect(t, "create "+a, alice.do("POST", mailboxesURL(acmeDom), map[string]string{"address": a, "password": "a-password-123"}), http.StatusCreated)
	}
	expect(t, "create globex", bob.do("POST", mailboxesURL(globexDom), map[string]string{"address": "b1@globex.example", "password": "b-password-123"}), http.StatusCreated)

	r := alice.do("DELETE", "/api/v1/domains/"+acmeDom, nil)
	expect(t, "delete domain", r, http.StatusOK)
	var res struct {
		DeletedMailboxes int `json:"deleted_mailboxes"`
	}
	r.json(t, &res)
	if res.DeletedMailboxes != 3 {
		t.Fatalf("deleted_mailboxes %d: %s", res.DeletedMailboxes, r.body)
	}
	if got := e.addresses(acmeDom); len(got) != 0 {
		t.Fatalf("mailboxes left: %v", got)
	}
	if got := e.addresses(globexDom); len(got) != 1 {
		t.Fatalf("globex lost its mailboxes: %v", got)
	}
	evs, _, _ := e.srv.Events().List(eventsQuery(events.DomainDeleted))
	if len(evs) != 1 || !strings.Contains(evs[0].Detail, "3 mailboxes") {
		t.Fatalf("deletion event %+v", evs)
	}

	// Whoever creates the name next starts without mailboxes, even ones a
	// failed deletion left behind.
	if _, err := e.mb.AddUser(context.Background(), "orphan@acme.example", "orphan-secret"); err != nil {
		t.Fatal(err)
	}
	expect(t, "bob creates the name", bob.do("POST", "/api/v1/domains", map[string]any{"name": acmeDom, "mode": "both", "relay_host": "mx.globex.example"}), http.StatusCreated)
	r = bob.do("GET", mailboxesURL(acmeDom), nil)
	expect(t, "bob lists", r, http.StatusOK)
	var list mailboxList
	r.json(t, &list)
	if len(list.Mailboxes) != 0 || len(e.addresses(acmeDom)) != 0 {
		t.Fatalf("the new owner inherits %+v", list.Mailboxes)
	}
}

// failingMailboxes is a mailbox store whose AddUser fails with an error
// that quotes the password, as a careless store might.
type failingMailboxes struct{ Mailboxes }

func (failingMailboxes) AddUser(_ context.Context, address, password string) (mailbox.User, error) {
	return mailbox.User{}, fmt.Errorf("mailbox: disk on fire while storing %s with %q", address, password)
}

// skewedMailboxes files every new user under globex.example, as a store
// that normalizes domains differently from the registry would.
type skewedMailboxes struct{ Mailboxes }

func (s skewedMailboxes) AddUser(ctx context.Context, address, password string) (mailbox.User, error) {
	local := address[:strings.LastIndexByte(address, '@')]
	return s.Mailboxes.AddUser(ctx, local+"@"+globexDom, password)
}

func TestMailboxStoreMisbehaves(t *testing.T) {
	e := newMailboxEnv(t, func(_ *Config, d *Deps) { d.Mailboxes = failingMailboxes{d.Mailboxes} })
	alice := e.login("alice", alicePass)
	r := alice.do("POST", mailboxesURL(acmeDom), map[string]string{"address": "a@acme.example", "password": "leaky-secret-1"})
	expect(t, "store failure", r, http.StatusInternalServerError)
	r = alice.doWith("POST", mailboxesURL(acmeDom)+"/import", "b@acme.example,leaky-secret-2\nc@acme.example,leaky-secret-3\n", csvHeader)
	expect(t, "import with store failure", r, http.StatusOK)
	var res importResult
	r.json(t, &res)
	if res.Created != 0 || len(res.Failed) != 2 || res.Failed[0].Error != "internal error" ||
		!strings.Contains(res.Failed[1].Error, "stopped") && res.Failed[1].Error != "internal error" {
		t.Fatalf("import %+v", res)
	}
	found := false
	for _, le := range e.logs.All() {
		text := logText(le)
		if strings.Contains(text, "disk on fire") {
			found = true
		}
		if strings.Contains(text, "leaky-secret") {
			t.Errorf("log entry %q contains a password", text)
		}
	}
	if !found {
		t.Error("the store failure was not logged")
	}

	s := newMailboxEnv(t, func(_ *Config, d *Deps) { d.Mailboxes = skewedMailboxes{d.Mailboxes} })
	alice = s.login("alice", alicePass)
	r = alice.do("POST", mailboxesURL(acmeDom), map[string]string{"address": "x@acme.example", "password": "skewed-secret-1"})
	expect(t, "user filed in another domain", r, http.StatusInternalServerError)
	if got := s.addresses(""); len(got) != 0 {
		t.Fatalf("a user filed in the wrong domain was kept: %v", got)
	}
}

// TestMailboxPasswordsNotLogged sends passwords through every mailbox
// endpoint, valid and not, and checks that none reaches a log (the admin
// server's or the store's, debug level included), an event or a response.
func TestMailboxPasswordsNotLogged(t *testing.T) {
	e := newMailboxEnv(t)
	alice := e.login("alice", alicePass)
	pw := func(i int) string { return fmt.Sprintf("Pw-%d-zq8Xk", i) }
	var bodies []string
	send := func(method, path string, body any, hdr map[string]string) {
		bodies = append(bodies, string(alice.doWith(method, path, body, hdr).body))
	}
	send("POST", mailboxesURL(acmeDom), map[string]string{"address": "p@acme.example", "password": pw(1)}, nil)
	send("POST", mailboxesURL(acmeDom), map[string]string{"address": "p@acme.example", "password": pw(2)}, nil)      // exists
	send("POST", mailboxesURL(acmeDom), map[string]string{"address": "q@globex.example", "password": pw(3)}, nil)    // other domain
	send("POST", mailboxesURL(acmeDom), map[string]string{"address": "bad address", "password": pw(4)}, nil)         // invalid
	send("POST", mailboxesURL(acmeDom), map[string]string{"address": "r@acme.example", "password": "Pw-5\x00"}, nil) // invalid password
	send("PUT", mailboxesURL(acmeDom)+"/p@acme.example", map[string]string{"password": pw(6)}, nil)
	send("PUT", mailboxesURL(acmeDom)+"/p@acme.example", map[string]string{"password": "Pw-7"}, nil)
	send("PUT", mailboxesURL(acmeDom)+"/nobody@acme.example", map[string]string{"password": pw(8)}, nil)
	send("POST", mailboxesURL(acmeDom)+"/import", fmt.Sprintf("s@acme.example,%s\n%s,t@acme.example\nu@acme.example,Pw-11\np@acme.example,%s\n",
		pw(9), pw(10), pw(12)), csvHeader)
	send("DELETE", mailboxesURL(acmeDom)+"/p@acme.example", nil, nil)
	e.srv.Events().Sync()

	secrets := []string{"Pw-5", "Pw-7", "Pw-11"}
	for i := 1; i <= 12; i++ {
		secrets = append(secrets, pw(i))
	}
	for _, b := range bodies {
		for _, s := range secrets {
			if strings.Contains(b, s) {
				t.Errorf("response %s contains the password %q", b, s)
			}
		}
	}
	entries := append(e.logs.All(), e.mbLogs.All()...)
	if len(entries) < 5 {
		t.Fatalf("only %d log entries captured", len(entries))
	}
	for _, le := range entries {
		text := logText(le)
		for _, s := range secrets {
			if strings.Contains(text, s) {
				t.Errorf("log entry %q contains the password %q", text, s)
			}
		}
	}
	evs, _, _ := e.srv.Events().List(events.Query{Limit: 1000})
	for _, ev := range evs {
		for _, s := range secrets {
			if strings.Contains(fmt.Sprint(ev), s) {
				t.Errorf("event %+v contains the password %q", ev, s)
			}
		}
	}
}
