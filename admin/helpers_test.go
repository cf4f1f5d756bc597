package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/bbolt"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mxcont/mxcont/admin/auth"
	"github.com/mxcont/mxcont/admin/events"
	"github.com/mxcont/mxcont/engine/registry"
	"github.com/mxcont/mxcont/mailbox"
	"github.com/mxcont/mxcont/spool"
)

// Test fixture: two tenant accounts with one domain and one admin each,
// plus the operator "admin".
const (
	opPass    = "operator-password"
	alicePass = "alice-password"
	bobPass   = "bob-password-42"
	acmeDom   = "acme.example"
	globexDom = "globex.example"
)

// fakeRelay is a Relay whose answers the test sets.
type fakeRelay struct {
	mu       sync.Mutex
	status   map[string]DomainStatus
	outages  map[string][]Outage
	flushed  []string
	messages []spool.ID
}

func newFakeRelay() *fakeRelay {
	return &fakeRelay{status: map[string]DomainStatus{}, outages: map[string][]Outage{}}
}

func (r *fakeRelay) Status(d string) DomainStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status[d]
}

func (r *fakeRelay) FlushDomain(d string) {
	r.mu.Lock()
	r.flushed = append(r.flushed, d)
	r.mu.Unlock()
}

func (r *fakeRelay) FlushMessage(id spool.ID) {
	r.mu.Lock()
	r.messages = append(r.messages, id)
	r.mu.Unlock()
}

func (r *fakeRelay) Outages(d string, limit int) []Outage {
	r.mu.Lock()
	defer r.mu.Unlock()
	o := r.outages[d]
	return o[:min(len(o), limit)]
}

func (r *fakeRelay) set(d string, st DomainStatus) {
	r.mu.Lock()
	r.status[d] = st
	r.mu.Unlock()
}

// env is one running server with real bbolt, registry and spool.
type env struct {
	t     testing.TB
	srv   *Server
	url   string
	db    *bbolt.DB
	reg   *registry.BoltStore
	sp    *spool.Spool
	relay *fakeRelay
	logs  *observer.ObservedLogs
	// mb is the mailbox store (newMailboxEnv only), mbLogs its log.
	mb     *mailbox.Store
	mbLogs *observer.ObservedLogs
}

type envOption func(*Config, *Deps)

func withoutRelay() envOption { return func(_ *Config, d *Deps) { d.Relay = nil } }

// newEnv starts a server with the test fixture (see fixture).
func newEnv(t testing.TB, opts ...envOption) *env {
	t.Helper()
	e := newBareEnv(t, opts...)
	e.fixture()
	return e
}

// newMailboxEnv is newEnv with a real mailbox store (cheap password
// hashing) whose log is captured in e.mbLogs, and with acme.example and
// globex.example in mode "both".
func newMailboxEnv(t testing.TB, opts ...envOption) *env {
	t.Helper()
	obsCore, logs := observer.New(zap.DebugLevel)
	log := zap.New(zapcore.NewTee(obsCore, zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)).Core()))
	mb, err := mailbox.Open(log.Named("mailbox"), mailbox.Config{Dir: t.TempDir(), Hash: auth.Params{Memory: 64, Time: 1, Threads: 1}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // runs after the server's cleanup
		if err := mb.Close(); err != nil {
			t.Errorf("mailbox close: %v", err)
		}
	})
	opts = append([]envOption{func(_ *Config, d *Deps) { d.Mailboxes = mb }}, opts...)
	e := newEnv(t, opts...)
	e.mb, e.mbLogs = mb, logs
	for _, name := range []string{acmeDom, globexDom} {
		e.setMode(name, registry.ModeBoth)
	}
	return e
}

// setMode changes a domain's mode in the registry.
func (e *env) setMode(name, mode string) {
	e.t.Helper()
	d, err := e.reg.Get(name)
	if err != nil {
		e.t.Fatal(err)
	}
	d.Mode = mode
	if _, err := e.reg.Put(d); err != nil {
		e.t.Fatal(err)
	}
}

// newBareEnv starts a server on empty stores.
func newBareEnv(t testing.TB, opts ...envOption) *env {
	t.Helper()
	dir := t.TempDir()
	obsCore, logs := observer.New(zap.DebugLevel)
	log := zap.New(zapcore.NewTee(obsCore, zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)).Core()))
	db, err := bbolt.Open(filepath.Join(dir, "mxcont.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := registry.Open(log.Named("registry"), db)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := spool.Open(log.Named("spool"), spool.Config{Dir: filepath.Join(dir, "spool"), Shards: 4})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, db: db, reg: reg, sp: sp, relay: newFakeRelay(), logs: logs}
	cfg := Config{
		Password:     auth.Params{Memory: 64, Time: 1, Threads: 1},
		UserThrottle: auth.ThrottleConfig{Base: time.Hour}, // never expires within a test
	}
	deps := Deps{Domains: reg, Spool: sp, Relay: e.relay, DB: db}
	for _, o := range opts {
		o(&cfg, &deps)
	}
	e.srv, err = New(log.Named("admin"), cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.url = "http://" + ln.Addr().String()
	done := make(chan error, 1)
	go func() { done <- e.srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := e.srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		sp.Close()
		reg.Close()
		db.Close()
	})
	return e
}

// eventsQuery selects the events of one type.
func eventsQuery(typ string) events.Query {
	return events.Query{Limit: 1000, Match: func(e *events.Event) bool { return e.Type == typ }}
}

// fixture creates the operator, accounts acme and globex, their admins
// alice and bob, and one domain each.
func (e *env) fixture() {
	ctx := context.Background()
	a := e.srv.Auth()
	must := func(err error) {
		if err != nil {
			e.t.Fatal(err)
		}
	}
	_, err := a.EnsureAdmin(ctx, opPass)
	must(err)
	_, err = a.CreateAccount("acme")
	must(err)
	_, err = a.CreateAccount("globex")
	must(err)
	_, err = a.CreateUser(ctx, auth.NewUser{Username: "alice", Password: alicePass, Role: auth.RoleAdmin, Account: "acme"})
	must(err)
	_, err = a.CreateUser(ctx, auth.NewUser{Username: "bob", Password: bobPass, Role: auth.RoleAdmin, Account: "globex"})
	must(err)
	_, err = e.reg.Create(registry.Domain{Name: acmeDom, RelayHost: "mail.acme.example", Account: "acme", Monitoring: true})
	must(err)
	_, err = e.reg.Create(registry.Domain{Name: globexDom, RelayHost: "mail.globex.example", Account: "globex"})
	must(err)
}

// appendN spools n messages for domain and returns their IDs in order.
func (e *env) appendN(domain string, n int) []spool.ID {
	e.t.Helper()
	ids := make([]spool.ID, n)
	for i := range ids {
		body := fmt.Sprintf("From: Sender <s@sender.example>\r\nTo: u%d@%s\r\nSubject: =?UTF-8?Q?caf=C3=A9_%d?=\r\n\r\nhello %d\r\n", i, domain, i, i)
		id, err := e.sp.Append(spool.Envelope{Domain: domain, From: "s@sender.example",
			Rcpts: []string{fmt.Sprintf("u%d@%s", i, domain), "second@" + domain}}, []byte(body))
		if err != nil {
			e.t.Fatal(err)
		}
		ids[i] = id
	}
	return ids
}

// client is an HTTP client with optional session cookie, CSRF token or
// bearer token.
type client struct {
	e      *env
	cookie string
	csrf   string
	bearer string
	hc     *http.Client
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

// errField returns the "field" of an error body.
func (r response) errField(t testing.TB) string {
	var e apiError
	r.json(t, &e)
	if e.Error == "" {
		t.Fatalf("error response without message: %s", r.body)
	}
	return e.Field
}

func (e *env) anon() *client {
	return &client{e: e, hc: &http.Client{Timeout: 30 * time.Second}}
}

// login logs in and returns a client with the session cookie and CSRF token.
func (e *env) login(user, pass string) *client {
	e.t.Helper()
	c := e.anon()
	r := c.do("POST", "/api/v1/login", map[string]string{"username": user, "password": pass})
	if r.status != http.StatusOK {
		e.t.Fatalf("login %s: %d %s", user, r.status, r.body)
	}
	var lr loginResponse
	r.json(e.t, &lr)
	for _, ck := range (&http.Response{Header: r.header}).Cookies() {
		if ck.Name == cookieName {
			c.cookie = ck.Value
		}
	}
	if c.cookie == "" || lr.CSRFToken == "" {
		e.t.Fatalf("login %s: no cookie or CSRF token", user)
	}
	c.csrf = lr.CSRFToken
	return c
}

// do sends a request; body, unless nil, is sent as JSON (a string or
// []byte is sent as is).
func (c *client) do(method, path string, body any) response {
	c.e.t.Helper()
	return c.doWith(method, path, body, nil)
}

func (c *client) doWith(method, path string, body any, hdr map[string]string) response {
	c.e.t.Helper()
	var rd io.Reader
	isJSON := false
	switch b := body.(type) {
	case nil:
	case string:
		rd, isJSON = strings.NewReader(b), true
	case []byte:
		rd, isJSON = bytes.NewReader(b), true
	default:
		j, err := json.Marshal(b)
		if err != nil {
			c.e.t.Fatal(err)
		}
		rd, isJSON = bytes.NewReader(j), true
	}
	req, err := http.NewRequest(method, c.e.url+path, rd)
	if err != nil {
		c.e.t.Fatal(err)
	}
	if isJSON {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.cookie != "" {
		req.AddCookie(&http.Cookie{Name: cookieName, Value: c.cookie})
		if c.csrf != "" && method != "GET" {
			req.Header.Set(csrfHeader, c.csrf)
		}
	}
	if c.bearer != "" {
		req.Header.Set("Authorization", "Bearer "+c.bearer)
	}
	for k, v := range hdr {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	res, err := c.hc.Do(req)
	if err != nil {
		c.e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		c.e.t.Fatal(err)
	}
	return response{status: res.StatusCode, header: res.Header, body: b}
}

// expect fails the test unless r has status want.
func expect(t testing.TB, what string, r response, want int) {
	t.Helper()
	if r.status != want {
		t.Fatalf("%s: status %d, want %d; body %s", what, r.status, want, r.body)
	}
}

// logText renders a captured log entry, message and fields, for searching.
func logText(le observer.LoggedEntry) string {
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range le.Context {
		f.AddTo(enc)
	}
	return le.Message + " " + fmt.Sprint(enc.Fields)
}
