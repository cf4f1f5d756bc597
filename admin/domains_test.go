package admin

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mxcont/mxcont/admin/events"
	"github.com/mxcont/mxcont/engine/registry"
	"github.com/mxcont/mxcont/spool"
)

func TestDomainCreateValidation(t *testing.T) {
	e := newEnv(t)
	op := e.login("admin", opPass)
	for _, tc := range []struct {
		body  string
		field string
	}{
		{`{"relay_host":"mx.a.example"}`, "name"},
		{`{"name":"not a domain","relay_host":"mx.a.example"}`, "name"},
		{`{"name":"a.example","relay_host":"mx.a.example:99999"}`, "relay_host"},
		{`{"name":"a.example","relay_host":"mx.a.example","mode":"mirror"}`, "mode"},
		{`{"name":"a.example","relay_host":"mx.a.example","alert_emails":["ok@a.example","not an address"]}`, "alert_emails[1]"},
		{`{"name":"a.example","relay_host":"mx.a.example","allowed_sources":["10.0.0.0/33"]}`, "allowed_sources[0]"},
		{`{"name":"a.example","relay_host":"mx.a.example","retention_days":-1}`, "retention_days"},
		{`{"name":"a.example","relay_host":"mx.a.example","monitoring":"yes"}`, "monitoring"},
		{`{"name":"a.example","relay_host":"mx.a.example","alert_emails":"noc@a.example"}`, "alert_emails"},
		{`{"name":"a.example","relay_host":"mx.a.example","colour":"blue"}`, "colour"},
		{`{"name":"a.example","relay_host":"mx.a.example","account":"nobody"}`, "account"},
	} {
		r := op.do("POST", "/api/v1/domains", tc.body)
		expect(t, tc.body, r, http.StatusBadRequest)
		if f := r.errField(t); f != tc.field {
			t.Errorf("%s: field %q, want %q", tc.body, f, tc.field)
		}
	}
	expect(t, "empty body", op.do("POST", "/api/v1/domains", ""), http.StatusBadRequest)
	expect(t, "two values", op.do("POST", "/api/v1/domains", `{"name":"a.example","relay_host":"mx"} {}`), http.StatusBadRequest)
	r := op.do("POST", "/api/v1/domains", map[string]any{"name": "ACME.example.", "relay_host": "mx.other.example"})
	expect(t, "duplicate (after normalization)", r, http.StatusConflict)
	if f := r.errField(t); f != "name" {
		t.Errorf("409 field %q", f)
	}
}

func TestDomainCRUD(t *testing.T) {
	e := newEnv(t)
	op := e.login("admin", opPass)
	started := time.Now().Add(-90 * time.Minute).UTC().Truncate(time.Second)
	e.relay.set("new.example", DomainStatus{State: RelayDown, LastProbeAt: time.Now(), LastProbeError: "connection refused",
		Outage: &Outage{StartedAt: started, Error: "connection refused"}})
	e.relay.outages["new.example"] = []Outage{{StartedAt: started}, {StartedAt: started.Add(-48 * time.Hour), EndedAt: started.Add(-47 * time.Hour)}}

	r := op.do("POST", "/api/v1/domains", map[string]any{
		"name": "New.Example", "mode": "both", "relay_host": "MX.New.Example", "monitoring": true,
		"alert_emails": []string{"noc@provider.example"}, "allowed_sources": []string{"192.0.2.7"},
		"retention_days": 10, "account": "acme",
	})
	expect(t, "create", r, http.StatusCreated)
	var dv domainView
	r.json(t, &dv)
	if dv.Name != "new.example" || dv.RelayHost != "mx.new.example:25" || dv.Mode != "both" || dv.Account != "acme" ||
		len(dv.AllowedSources) != 1 || dv.AllowedSources[0] != "192.0.2.7/32" || dv.RetentionDays != 10 {
		t.Fatalf("created domain %+v", dv.Domain)
	}
	if dv.Status.RelayState != RelayDown || dv.Status.LastProbeError != "connection refused" || dv.Status.Outage == nil ||
		!dv.Status.Outage.StartedAt.Equal(started) || dv.Status.Outage.DurationSeconds < 5000 {
		t.Fatalf("status %+v", dv.Status)
	}
	if _, err := e.reg.Get("new.example"); err != nil {
		t.Fatal("not in the registry:", err)
	}

	e.appendN("new.example", 3)
	r = op.do("GET", "/api/v1/domains/new.example", nil)
	expect(t, "get", r, http.StatusOK)
	var raw map[string]any
	r.json(t, &raw)
	st := raw["status"].(map[string]any)
	for _, k := range []string{"relay_state", "last_probe_at", "last_probe_error", "queued_messages", "queued_bytes", "oldest_queued_at", "failed_messages", "outage"} {
		if _, ok := st[k]; !ok {
			t.Errorf("status lacks %q", k)
		}
	}
	if st["queued_messages"].(float64) != 3 || st["queued_bytes"].(float64) <= 0 || st["oldest_queued_at"] == nil {
		t.Errorf("queue status %v", st)
	}
	if o, _ := raw["outages"].([]any); len(o) != 2 {
		t.Errorf("outage history %v", raw["outages"])
	}
	expect(t, "get U-label", op.do("GET", "/api/v1/domains/NEW.EXAMPLE.", nil), http.StatusOK)
	expect(t, "get unknown", op.do("GET", "/api/v1/domains/nope.example", nil), http.StatusNotFound)

	// PUT applies the body over the stored domain.
	r = op.do("PUT", "/api/v1/domains/new.example", map[string]any{"relay_host": "[2001:db8::1]:2525", "monitoring": false})
	expect(t, "put", r, http.StatusOK)
	r.json(t, &dv)
	if dv.RelayHost != "[2001:db8::1]:2525" || dv.Monitoring || len(dv.AlertEmails) != 1 || dv.Mode != "both" || dv.Account != "acme" {
		t.Fatalf("updated domain %+v", dv.Domain)
	}
	r = op.do("PUT", "/api/v1/domains/new.example", map[string]any{"relay_host": "bad host!"})
	expect(t, "put invalid", r, http.StatusBadRequest)
	if f := r.errField(t); f != "relay_host" {
		t.Errorf("field %q", f)
	}
	r = op.do("PUT", "/api/v1/domains/new.example", map[string]any{"name": "renamed.example"})
	expect(t, "rename", r, http.StatusBadRequest)
	if f := r.errField(t); f != "name" {
		t.Errorf("field %q", f)
	}
	expect(t, "same name", op.do("PUT", "/api/v1/domains/new.example", map[string]any{"name": "NEW.example"}), http.StatusOK)
	expect(t, "put unknown", op.do("PUT", "/api/v1/domains/nope.example", map[string]any{"relay_host": "mx"}), http.StatusNotFound)

	var list struct{ Domains []domainView }
	op.do("GET", "/api/v1/domains", nil).json(t, &list)
	if len(list.Domains) != 3 {
		t.Fatalf("list has %d domains", len(list.Domains))
	}
	op.do("GET", "/api/v1/domains?account=globex", nil).json(t, &list)
	if len(list.Domains) != 1 || list.Domains[0].Name != globexDom {
		t.Fatalf("account filter: %+v", list.Domains)
	}

	// Config changes are audited with the actor and what changed.
	evs, _, _ := e.srv.Events().List(events.Query{Domain: "new.example"})
	var types []string
	for _, ev := range evs {
		types = append(types, ev.Type)
		if ev.Actor != "admin" || ev.Account != "acme" {
			t.Errorf("event %+v: actor or account wrong", ev)
		}
	}
	if strings.Join(types, ",") != "domain-updated,domain-updated,domain-created" {
		t.Fatalf("events %v", types)
	}
	if !strings.Contains(evs[1].Detail, "relay_host mx.new.example:25 → [2001:db8::1]:2525") || !strings.Contains(evs[1].Detail, "monitoring true → false") {
		t.Errorf("update detail %q", evs[1].Detail)
	}
}

func TestDeleteDomain(t *testing.T) {
	e := newEnv(t)
	op := e.login("admin", opPass)
	ids := e.appendN(acmeDom, 25)

	r := op.do("DELETE", "/api/v1/domains/"+acmeDom, nil)
	expect(t, "delete with queue", r, http.StatusConflict)
	if f := r.errField(t); f != "queued" || !strings.Contains(string(r.body), "25 queued") {
		t.Errorf("409 body %s", r.body)
	}
	r = op.do("DELETE", "/api/v1/domains/"+acmeDom+"?queued=keep", nil)
	expect(t, "bad queued", r, http.StatusBadRequest)
	if f := r.errField(t); f != "queued" {
		t.Errorf("field %q", f)
	}
	if _, err := e.reg.Get(acmeDom); err != nil {
		t.Fatal("refused delete removed the domain")
	}

	r = op.do("DELETE", "/api/v1/domains/"+acmeDom+"?queued=delete", nil)
	expect(t, "delete with queued=delete", r, http.StatusOK)
	var res struct {
		Deleted         string `json:"deleted"`
		DeletedMessages int    `json:"deleted_messages"`
	}
	r.json(t, &res)
	if res.Deleted != acmeDom || res.DeletedMessages != 25 {
		t.Fatalf("delete result %+v", res)
	}
	if n := e.sp.DomainStats(acmeDom).Messages; n != 0 {
		t.Fatalf("%d messages left", n)
	}
	if _, err := e.sp.Get(ids[0]); err != spool.ErrNotFound {
		t.Fatalf("message still there: %v", err)
	}
	if _, err := e.reg.Get(acmeDom); err == nil {
		t.Fatal("domain still registered")
	}
	expect(t, "get deleted", op.do("GET", "/api/v1/domains/"+acmeDom, nil), http.StatusNotFound)

	// Without mail, no parameter is needed.
	expect(t, "delete empty", op.do("DELETE", "/api/v1/domains/"+globexDom, nil), http.StatusOK)
	evs, _, _ := e.srv.Events().List(eventsQuery(events.DomainDeleted))
	if len(evs) != 2 || evs[1].Domain != acmeDom || evs[1].Account != "acme" || !strings.Contains(evs[1].Detail, "25 queued") {
		t.Fatalf("deletion events %+v", evs)
	}
	var list struct{ Domains []registry.Domain }
	op.do("GET", "/api/v1/domains", nil).json(t, &list)
	if len(list.Domains) != 0 {
		t.Fatalf("domains left: %+v", list.Domains)
	}
}

func TestRelayStatusUnknownWithoutRelay(t *testing.T) {
	e := newEnv(t, withoutRelay())
	op := e.login("admin", opPass)
	var dv domainView
	r := op.do("GET", "/api/v1/domains/"+acmeDom, nil)
	expect(t, "get", r, http.StatusOK)
	r.json(t, &dv)
	if dv.Status.RelayState != RelayUnknown || dv.Status.Outage != nil || dv.Status.LastProbeAt != nil {
		t.Fatalf("status without relay %+v", dv.Status)
	}
	expect(t, "flush without relay", op.do("POST", "/api/v1/domains/"+acmeDom+"/queue/flush", nil), http.StatusServiceUnavailable)
}

// TestDomainOutboundSmarthost checks that outbound_smarthost round-trips
// through create, get, update and clear, and is validated and audited.
func TestDomainOutboundSmarthost(t *testing.T) {
	e := newEnv(t)
	alice := e.login("alice", alicePass)
	r := alice.do("POST", "/api/v1/domains", map[string]any{"name": "both.example", "mode": "both", "relay_host": "mx.both.example",
		"outbound_smarthost": "SMTP.Provider.example"})
	expect(t, "create", r, http.StatusCreated)
	var dv domainView
	r.json(t, &dv)
	if dv.OutboundSmarthost != "smtp.provider.example:25" {
		t.Fatalf("created with outbound_smarthost %q", dv.OutboundSmarthost)
	}
	alice.do("GET", "/api/v1/domains/both.example", nil).json(t, &dv)
	if dv.OutboundSmarthost != "smtp.provider.example:25" {
		t.Fatalf("read back %q", dv.OutboundSmarthost)
	}
	r = alice.do("PUT", "/api/v1/domains/both.example", map[string]any{"outbound_smarthost": "[2001:db8::25]:587"})
	expect(t, "update", r, http.StatusOK)
	r.json(t, &dv)
	if dv.OutboundSmarthost != "[2001:db8::25]:587" || dv.RelayHost != "mx.both.example:25" {
		t.Fatalf("updated %+v", dv.Domain)
	}
	r = alice.do("PUT", "/api/v1/domains/both.example", map[string]any{"monitoring": true})
	expect(t, "update without the field", r, http.StatusOK)
	r.json(t, &dv)
	if dv.OutboundSmarthost != "[2001:db8::25]:587" {
		t.Fatalf("a PUT without the field changed it to %q", dv.OutboundSmarthost)
	}
	r = alice.do("PUT", "/api/v1/domains/both.example", map[string]any{"outbound_smarthost": "smtp.provider.example:0"})
	expect(t, "invalid", r, http.StatusBadRequest)
	if f := r.errField(t); f != "outbound_smarthost" {
		t.Errorf("field %q", f)
	}
	r = alice.do("PUT", "/api/v1/domains/both.example", map[string]any{"outbound_smarthost": ""})
	expect(t, "clear", r, http.StatusOK)
	dv = domainView{}
	r.json(t, &dv)
	if d, _ := e.reg.Get("both.example"); dv.OutboundSmarthost != "" || d.OutboundSmarthost != "" {
		t.Fatalf("not cleared: %q / %q", dv.OutboundSmarthost, d.OutboundSmarthost)
	}
	evs, _, _ := e.srv.Events().List(eventsQuery(events.DomainUpdated))
	if len(evs) != 3 || !strings.Contains(evs[2].Detail, "outbound_smarthost smtp.provider.example:25 → [2001:db8::25]:587") ||
		!strings.Contains(evs[0].Detail, "outbound_smarthost [2001:db8::25]:587 → ") {
		t.Fatalf("update events %+v", evs)
	}
}
