package relayq

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mxcont/mxcont/engine/registry"
	"github.com/mxcont/mxcont/spool"
)

func TestExpiryAfterRetention(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.AlertGrace = 1000 * time.Hour })
	e.domain(dom, freeAddr(t, "127.0.0.1"), func(d *registry.Domain) {
		d.RetentionDays = 2
		d.Monitoring = true
		d.AlertEmails = []string{"noc@provider.test"}
	})
	e.start()
	var ids []spool.ID
	for i := range 3 {
		ids = append(ids, e.send(dom, body(i, 100)))
	}
	e.clock.Advance(47 * time.Hour)
	time.Sleep(500 * time.Millisecond) // several sweeps: inside retention
	for _, id := range ids {
		if _, ok := e.get(id); !ok {
			t.Fatalf("%s expired early", id)
		}
	}
	e.clock.Advance(2 * time.Hour)
	waitFor(t, 5*time.Second, "expiry", func() bool { return e.sp.DomainStats(dom).Messages == 0 })
	var expired []string
	waitFor(t, 5*time.Second, "expiry events", func() bool {
		evs, err := e.q.Events(dom, 10)
		if err != nil {
			t.Fatal(err)
		}
		expired = nil
		for _, ev := range evs {
			if ev.Kind == EventExpired {
				expired = append(expired, ev.MsgID)
				if !strings.Contains(ev.Detail, "1 recipients undelivered") {
					t.Errorf("event detail %q", ev.Detail)
				}
			}
		}
		return len(expired) >= 3
	})
	slices.Sort(expired)
	if len(expired) != 3 || expired[0] != ids[0].String() || expired[2] != ids[2].String() {
		t.Fatalf("expired events %v, want %v", expired, ids)
	}
	waitFor(t, 5*time.Second, "expiry alert", func() bool { return slices.Contains(e.alerts.kinds(), AlertExpired) })
	e.alerts.mu.Lock()
	defer e.alerts.mu.Unlock()
	n := 0
	for _, a := range e.alerts.alerts {
		if a.Kind == AlertExpired {
			n++
			if a.Expired != 3 {
				t.Errorf("alert says %d expired", a.Expired)
			}
		}
	}
	if n != 1 {
		t.Errorf("%d expiry alerts", n)
	}
}

// Mail of a domain removed from the registry is still expired (with the
// default retention), not kept forever.
func TestExpiryUnknownDomain(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.DefaultRetentionDays = 1 })
	e.start()
	id := e.send("gone.test", body(1, 100))
	time.Sleep(300 * time.Millisecond)
	if _, ok := e.get(id); !ok {
		t.Fatal("expired early")
	}
	e.clock.Advance(25 * time.Hour)
	waitFor(t, 5*time.Second, "expiry", func() bool { _, ok := e.get(id); return !ok })
}
