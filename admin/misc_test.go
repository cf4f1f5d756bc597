package admin

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/valyala/fasthttp"

	"github.com/mxcont/mxcont/admin/events"
	"github.com/mxcont/mxcont/engine/registry"
	"github.com/mxcont/mxcont/spool"
)

func TestMetrics(t *testing.T) {
	e := newEnv(t, func(c *Config, _ *Deps) { c.MetricsTopDomains = 2 })
	for i := 0; i < 3; i++ {
		if _, err := e.reg.Create(registry.Domain{Name: fmt.Sprintf("m%d.example", i), RelayHost: "mx.example"}); err != nil {
			t.Fatal(err)
		}
		e.appendN(fmt.Sprintf("m%d.example", i), 3+i)
	}
	e.relay.set("m0.example", DomainStatus{State: RelayDown})
	op := e.login("admin", opPass)
	r := op.do("GET", "/metrics", nil)
	expect(t, "metrics", r, http.StatusOK)
	text := string(r.body)
	for _, want := range []string{
		`mxcont_spool_messages{shard="0"}`, `mxcont_spool_live_bytes{shard="3"}`, `mxcont_spool_disk_bytes{shard="1"}`,
		`mxcont_spool_sticky_error{shard="2"} 0`, `mxcont_spool_segments{shard="0"}`,
		"mxcont_queue_messages 12", "mxcont_queue_domains 3",
		`mxcont_domain_queued_messages{domain="m2.example"} 5`, `mxcont_domain_queued_messages{domain="m1.example"} 4`,
		`mxcont_domains{relay_state="down"} 1`, `mxcont_domains{relay_state="unknown"} 4`,
		`mxcont_admin_http_requests_total{code="200",method="POST",route="/api/v1/login"} 1`,
		`mxcont_admin_logins_total{result="success"} 1`, "mxcont_admin_events_dropped_total 0",
		"go_goroutines", "process_",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if strings.Contains(text, `domain="m0.example"`) {
		t.Error("per-domain series not limited to the top 2")
	}

	// Bearer tokens work for scrapers; tenant admins are refused.
	tok := op.do("POST", "/api/v1/tokens", map[string]string{"name": "prometheus"})
	var tr tokenResponse
	tok.json(t, &tr)
	scraper := e.anon()
	scraper.bearer = tr.Token
	expect(t, "scrape with token", scraper.do("GET", "/metrics", nil), http.StatusOK)
	expect(t, "anonymous scrape", e.anon().do("GET", "/metrics", nil), http.StatusUnauthorized)

	open := newEnv(t, func(c *Config, _ *Deps) { c.MetricsOpen = true })
	r = open.anon().do("GET", "/metrics", nil)
	expect(t, "open scrape", r, http.StatusOK)
	if !strings.Contains(string(r.body), "mxcont_spool_messages") {
		t.Error("open scrape lacks spool metrics")
	}
	// Other components register in the same registry.
	if open.srv.Registry() == nil {
		t.Fatal("no registry")
	}
}

// stickySpool reports a sticky write error on shard 1.
type stickySpool struct{ *spool.Spool }

func (s stickySpool) Stats() []spool.ShardStats {
	st := s.Spool.Stats()
	st[1].Err = "write /var/lib/mxcont/spool/shard-001: no space left on device"
	return st
}

func TestHealthz(t *testing.T) {
	e := newEnv(t)
	r := e.anon().do("GET", "/healthz", nil)
	expect(t, "healthz", r, http.StatusOK)
	if strings.TrimSpace(string(r.body)) != `{"status":"ok"}` {
		t.Fatalf("healthz body %s", r.body)
	}
	bad := newEnv(t, func(_ *Config, d *Deps) { d.Spool = stickySpool{d.Spool.(*spool.Spool)} })
	r = bad.anon().do("GET", "/healthz", nil)
	expect(t, "healthz with sticky error", r, http.StatusServiceUnavailable)
	if !strings.Contains(string(r.body), "shard 1") || strings.Contains(string(r.body), "/var/lib") {
		t.Fatalf("healthz body %s: want the shard, not the path", r.body)
	}
	op := bad.login("admin", opPass)
	if m := op.do("GET", "/metrics", nil); !strings.Contains(string(m.body), `mxcont_spool_sticky_error{shard="1"} 1`) {
		t.Error("sticky error not in metrics")
	}
}

func TestEventsAPI(t *testing.T) {
	e := newEnv(t)
	op := e.login("admin", opPass)
	start := time.Date(2026, 2, 1, 8, 0, 0, 0, time.UTC)
	var sink EventSink = e.srv
	sink.Record(events.Event{Time: start, Type: events.OutageStarted, Actor: "relayq", Domain: acmeDom, Detail: "connection refused"})
	sink.Record(events.Event{Time: start.Add(time.Hour), Type: events.OutageEnded, Actor: "relayq", Domain: acmeDom, Detail: "after 1h"})
	sink.Record(events.Event{Type: events.ProbeFailed, Actor: "relayq", Domain: globexDom, Detail: "timeout"})

	var er eventsResponse
	r := op.do("GET", "/api/v1/events?domain="+acmeDom, nil)
	expect(t, "events", r, http.StatusOK)
	r.json(t, &er)
	if len(er.Events) != 2 || er.Events[0].Type != events.OutageEnded || er.Events[0].Account != "acme" || er.Events[1].Time != start {
		t.Fatalf("acme events %+v", er.Events)
	}
	op.do("GET", "/api/v1/events?limit=2", nil).json(t, &er)
	if len(er.Events) != 2 || er.NextCursor == "" {
		t.Fatalf("page 1: %d events, cursor %q", len(er.Events), er.NextCursor)
	}
	var page2 eventsResponse
	op.do("GET", "/api/v1/events?limit=2&cursor="+er.NextCursor, nil).json(t, &page2)
	if len(page2.Events) == 0 || page2.Events[0].ID >= er.Events[1].ID {
		t.Fatalf("page 2 %+v", page2.Events)
	}
	for _, bad := range []struct{ qs, field string }{{"limit=0", "limit"}, {"domain=not_a_domain", "domain"}, {"cursor=zz", "cursor"}} {
		r := op.do("GET", "/api/v1/events?"+bad.qs, nil)
		expect(t, bad.qs, r, http.StatusBadRequest)
		if f := r.errField(t); f != bad.field {
			t.Errorf("%s: field %q", bad.qs, f)
		}
	}
	// Logins are events too, with who.
	var all eventsResponse
	op.do("GET", "/api/v1/events?limit=1000", nil).json(t, &all)
	found := false
	for _, ev := range all.Events {
		if ev.Type == events.Login && ev.Actor == "admin" && strings.Contains(ev.Detail, "127.0.0.1") {
			found = true
		}
	}
	if !found {
		t.Error("no login event for admin")
	}
}

func TestQueueHistory(t *testing.T) {
	e := newEnv(t, func(c *Config, _ *Deps) { c.HistorySamples = 3 })
	op := e.login("admin", opPass)
	for i := 1; i <= 4; i++ {
		e.appendN(acmeDom, 1)
		e.srv.sampleQueues()
	}
	var hr historyResponse
	r := op.do("GET", "/api/v1/stats/queue-history", nil)
	expect(t, "history", r, http.StatusOK)
	r.json(t, &hr)
	if len(hr.Times) != 3 || hr.IntervalSeconds != 60 {
		t.Fatalf("%d samples, interval %d", len(hr.Times), hr.IntervalSeconds)
	}
	if got := fmt.Sprint(hr.Series[acmeDom]); got != "[2 3 4]" {
		t.Fatalf("acme series %s, want the last 3 samples [2 3 4]", got)
	}
	if !hr.Times[0].Before(hr.Times[2]) && !hr.Times[0].Equal(hr.Times[2]) {
		t.Fatal("times not oldest first")
	}
	var one historyResponse
	op.do("GET", "/api/v1/stats/queue-history?domain="+acmeDom, nil).json(t, &one)
	if len(one.Series) != 1 {
		t.Fatalf("filtered series %v", one.Series)
	}
}

func TestPortal(t *testing.T) {
	e := newEnv(t)
	anon := e.anon()
	r := anon.do("GET", "/", nil)
	expect(t, "index", r, http.StatusOK)
	if !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") {
		t.Fatalf("index content type %q", r.header.Get("Content-Type"))
	}
	for _, id := range []string{"login-username", "login-password", "login-submit", "add-domain-form", "domain-table",
		"queue-domain-select", "load-queue", "queue-table", "events-table", "dashboard-table", "outage-banner", "queue-chart",
		"domain-mode-note", "edit-domain-form", "queue-delete-selected", "message-view",
		"domain-outbound-smarthost", "edit-outbound-smarthost", "edit-mailboxes-link", "view-mailboxes", "mailboxes-domain-select",
		"mailbox-table", "add-mailbox-form", "reset-mailbox-form", "import-mailboxes-form", "import-file", "import-text", "import-failures"} {
		if !strings.Contains(string(r.body), `id="`+id+`"`) {
			t.Errorf("index lacks #%s", id)
		}
	}
	if strings.Contains(string(r.body), "https://") || strings.Contains(string(r.body), "http://") {
		t.Error("index references another origin")
	}
	csp := r.header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "default-src 'self'") || r.header.Get("X-Frame-Options") != "DENY" {
		t.Errorf("security headers: CSP %q", csp)
	}
	for _, f := range []string{"/core.js", "/dashboard.js", "/domains.js", "/queue.js", "/events.js", "/mailboxes.js", "/account.js", "/style.css", "/favicon.svg"} {
		r := anon.do("GET", f, nil)
		expect(t, f, r, http.StatusOK)
		if strings.Contains(string(r.body), "cdn.") || strings.Contains(string(r.body), "fonts.googleapis") {
			t.Errorf("%s loads from a CDN", f)
		}
		if et := r.header.Get("ETag"); et == "" {
			t.Errorf("%s without ETag", f)
		} else {
			expect(t, f+" revalidation", anon.doWith("GET", f, nil, map[string]string{"If-None-Match": et}), http.StatusNotModified)
		}
	}
	expect(t, "missing file", anon.do("GET", "/nope.js", nil), http.StatusNotFound)
	expect(t, "path traversal", anon.do("GET", "/../../etc/passwd", nil), http.StatusNotFound)
	r = anon.do("GET", "/api/v1/nope", nil)
	expect(t, "unknown API path", r, http.StatusNotFound)
	r.errField(t)
	expect(t, "wrong method", anon.do("PATCH", "/api/v1/domains", nil), http.StatusMethodNotAllowed)
}

// TestBodyLimit announces a 2 MiB body over a raw connection: the server
// answers 413 without reading it (a client that keeps writing would see
// the connection reset).
func TestBodyLimit(t *testing.T) {
	e := newEnv(t)
	op := e.login("admin", opPass)
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "POST /api/v1/domains HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"+
		"Cookie: %s=%s\r\n%s: %s\r\nContent-Length: %d\r\n\r\n{\"name\":", cookieName, op.cookie, csrfHeader, op.csrf, 2<<20)
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("2 MiB body: %d, want 413", res.StatusCode)
	}
	// A body just under the limit is read (and refused for its content).
	r := op.do("POST", "/api/v1/domains", `{"name":"a.example","relay_host":"mx.a.example","x":"`+strings.Repeat("x", 1<<19)+`"}`)
	expect(t, "512 KiB body", r, http.StatusBadRequest)
}

// TestNoSecretsInLogs captures every log entry (debug level included)
// while secrets cross the API and checks that none of them is logged.
func TestNoSecretsInLogs(t *testing.T) {
	e := newEnv(t)
	op := e.login("admin", opPass)
	e.anon().do("POST", "/api/v1/login", map[string]string{"username": "alice", "password": "wrong-guess-1234"})
	e.anon().do("POST", "/api/v1/login", map[string]string{"username": "ghost", "password": "ghost-guess-5678"})
	op.do("POST", "/api/v1/users", map[string]string{"username": "dave", "password": "dave-secret-pw", "role": "operator"})
	op.do("POST", "/api/v1/users", map[string]string{"username": "bad user", "password": "bad-user-secret"})
	var tr tokenResponse
	op.do("POST", "/api/v1/tokens", map[string]string{"name": "x"}).json(t, &tr)
	bot := e.anon()
	bot.bearer = tr.Token
	bot.do("GET", "/api/v1/me", nil)
	bot.bearer = tr.Token + "tampered"
	bot.do("GET", "/api/v1/me", nil)
	dave := e.login("dave", "dave-secret-pw")
	dave.do("POST", "/api/v1/logout", nil)
	e.srv.Events().Sync()

	secrets := []string{opPass, "wrong-guess-1234", "ghost-guess-5678", "dave-secret-pw", "bad-user-secret",
		tr.Token, strings.TrimPrefix(tr.Token, "mxc_"), op.cookie, op.csrf, dave.cookie, dave.csrf}
	entries := e.logs.All()
	if len(entries) < 5 {
		t.Fatalf("only %d log entries captured", len(entries))
	}
	for _, le := range entries {
		text := logText(le)
		for _, s := range secrets {
			if strings.Contains(text, s) {
				t.Errorf("log entry %q contains a secret", text)
			}
		}
	}
	// Nor does the event log.
	evs, _, _ := e.srv.Events().List(events.Query{Limit: 1000})
	for _, ev := range evs {
		for _, s := range secrets {
			if strings.Contains(fmt.Sprint(ev), s) {
				t.Errorf("event %+v contains a secret", ev)
			}
		}
	}
}

func TestShutdownWithoutServe(t *testing.T) {
	e := newBareEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv, err := New(nil, Config{}, Deps{Domains: e.reg, Spool: e.sp, DB: e.db})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := New(nil, Config{}, Deps{Spool: e.sp, DB: e.db}); err == nil {
		t.Fatal("New without a registry succeeded")
	}
}

// TestParamCopies checks that path parameters do not alias the request
// buffer, which fasthttp reuses for the connection's next request.
func TestParamCopies(t *testing.T) {
	var ctx fasthttp.RequestCtx
	for _, raw := range []string{"acme.example", "b%C3%BCcher.example"} {
		buf := []byte(raw)
		ctx.SetUserValue("domain", unsafe.String(&buf[0], len(buf)))
		got := param(&ctx, "domain")
		for i := range buf {
			buf[i] = 'x'
		}
		if want := map[string]string{"acme.example": "acme.example", "b%C3%BCcher.example": "bücher.example"}[raw]; got != want {
			t.Errorf("param(%q) = %q after the buffer changed, want %q", raw, got, want)
		}
	}
}
