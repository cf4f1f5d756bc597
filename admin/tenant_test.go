package admin

import (
	"net/http"
	"strings"
	"testing"

	"github.com/mxcont/mxcont/admin/events"
	"github.com/mxcont/mxcont/engine/registry"
)

// TestTenantIsolation checks that alice (admin of acme) can neither see
// nor touch anything of globex, and that listings do not reveal it.
func TestTenantIsolation(t *testing.T) {
	e := newEnv(t)
	alice := e.login("alice", alicePass)
	bob := e.login("bob", bobPass)
	acmeIDs := e.appendN(acmeDom, 3)
	globexIDs := e.appendN(globexDom, 4)
	gid := globexIDs[0].String()
	e.srv.Record(events.Event{Type: events.OutageStarted, Actor: "relayq", Domain: globexDom, Detail: "connection refused"})
	e.srv.Record(events.Event{Type: events.OutageStarted, Actor: "relayq", Domain: acmeDom, Detail: "timeout"})
	bob.do("PUT", "/api/v1/domains/"+globexDom, map[string]any{"monitoring": true}) // a globex config change
	e.srv.sampleQueues()

	// Every globex resource is 404 for alice, whatever the method.
	for _, ep := range []struct{ method, path string }{
		{"GET", "/api/v1/domains/" + globexDom},
		{"PUT", "/api/v1/domains/" + globexDom},
		{"DELETE", "/api/v1/domains/" + globexDom},
		{"DELETE", "/api/v1/domains/" + globexDom + "?queued=delete"},
		{"GET", "/api/v1/domains/" + globexDom + "/queue"},
		{"POST", "/api/v1/domains/" + globexDom + "/queue/flush"},
		{"GET", "/api/v1/messages/" + gid},
		{"POST", "/api/v1/messages/" + gid + "/retry"},
		{"DELETE", "/api/v1/messages/" + gid},
		{"GET", "/api/v1/events?domain=" + globexDom},
	} {
		var body any
		if ep.method == "PUT" {
			body = map[string]any{"relay_host": "evil.example"}
		}
		r := alice.do(ep.method, ep.path, body)
		if r.status != http.StatusNotFound {
			t.Errorf("alice %s %s: %d, want 404 (%s)", ep.method, ep.path, r.status, r.body)
		}
		if strings.Contains(string(r.body), "globex") && ep.method != "GET" {
			t.Errorf("alice %s %s: body names globex: %s", ep.method, ep.path, r.body)
		}
	}
	// Nothing changed.
	if d, err := e.reg.Get(globexDom); err != nil || d.RelayHost != "mail.globex.example:25" {
		t.Fatalf("globex domain changed: %+v %v", d, err)
	}
	if n := e.sp.DomainStats(globexDom).Messages; n != 4 {
		t.Fatalf("globex queue changed: %d", n)
	}
	if len(e.relay.flushed) != 0 || len(e.relay.messages) != 0 {
		t.Fatalf("relay was asked to flush for alice: %v %v", e.relay.flushed, e.relay.messages)
	}
	// Bulk deletion of globex mail reports it as not found.
	var bd bulkDeleteResponse
	r := alice.do("POST", "/api/v1/messages/delete", map[string]any{"ids": []string{gid, acmeIDs[0].String()}})
	expect(t, "bulk", r, http.StatusOK)
	r.json(t, &bd)
	if len(bd.Deleted) != 1 || bd.Deleted[0] != acmeIDs[0].String() || len(bd.NotFound) != 1 || bd.NotFound[0] != gid {
		t.Fatalf("bulk result %+v", bd)
	}
	if _, err := e.sp.Get(globexIDs[0]); err != nil {
		t.Fatal("globex message deleted by alice")
	}

	// Listings hold acme only and count nothing else.
	var dl struct{ Domains []domainView }
	alice.do("GET", "/api/v1/domains", nil).json(t, &dl)
	if len(dl.Domains) != 1 || dl.Domains[0].Name != acmeDom {
		t.Fatalf("alice lists %+v", dl.Domains)
	}
	alice.do("GET", "/api/v1/domains?account=globex", nil).json(t, &dl)
	if len(dl.Domains) != 0 {
		t.Fatalf("account filter leaks: %+v", dl.Domains)
	}
	var el eventsResponse
	alice.do("GET", "/api/v1/events?limit=1000", nil).json(t, &el)
	if len(el.Events) == 0 {
		t.Fatal("alice sees no events at all")
	}
	for _, ev := range el.Events {
		if ev.Account != "acme" || strings.Contains(ev.Domain, "globex") || strings.Contains(ev.Detail, "globex") {
			t.Errorf("alice sees event %+v", ev)
		}
	}
	var hr historyResponse
	alice.do("GET", "/api/v1/stats/queue-history", nil).json(t, &hr)
	if _, ok := hr.Series[globexDom]; ok || len(hr.Series) != 1 {
		t.Fatalf("alice's queue history: %v", hr.Series)
	}
	var byName historyResponse
	alice.do("GET", "/api/v1/stats/queue-history?domain="+globexDom, nil).json(t, &byName)
	if len(byName.Series) != 0 {
		t.Fatalf("history by name leaks: %v", byName.Series)
	}

	// Creating a domain in another account lands in her own.
	r = alice.do("POST", "/api/v1/domains", registry.Domain{Name: "shop.acme.example", RelayHost: "mx.acme.example", Account: "globex"})
	expect(t, "create", r, http.StatusCreated)
	var dv domainView
	r.json(t, &dv)
	if dv.Account != "acme" {
		t.Fatalf("alice created a domain in %q", dv.Account)
	}
	// Moving her domain to another account is not possible either.
	r = alice.do("PUT", "/api/v1/domains/shop.acme.example", map[string]any{"account": "globex"})
	expect(t, "move", r, http.StatusOK)
	r.json(t, &dv)
	if dv.Account != "acme" {
		t.Fatalf("alice moved a domain to %q", dv.Account)
	}
	expect(t, "metrics", alice.do("GET", "/metrics", nil), http.StatusForbidden)

	// The operator sees both.
	op := e.login("admin", opPass)
	op.do("GET", "/api/v1/domains", nil).json(t, &dl)
	if len(dl.Domains) != 3 {
		t.Fatalf("operator lists %d domains", len(dl.Domains))
	}
	expect(t, "operator reads globex message", op.do("GET", "/api/v1/messages/"+gid, nil), http.StatusOK)
	op.do("GET", "/api/v1/events?domain="+globexDom, nil).json(t, &el)
	if len(el.Events) != 2 {
		t.Fatalf("operator sees %d globex events, want 2", len(el.Events))
	}
}
