package relayq

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mxcont/mxcont/engine/registry"
	"github.com/mxcont/mxcont/internal/testutil"
)

func monitored(emails ...string) func(*registry.Domain) {
	return func(d *registry.Domain) {
		d.Monitoring = true
		d.AlertEmails = emails
	}
}

// A flapping primary: one long outage, then short ones under the grace
// period. The smarthost gets exactly one start and one end alert.
func TestAlertsFlapping(t *testing.T) {
	smarthost := testutil.StartRelayServer(t, "127.0.0.1:0")
	e := newEnv(t, func(c *Config) {
		c.ProbeInterval = 100 * time.Millisecond
		c.AlertGrace = time.Second
		c.Alerter = nil
		c.AlertSmarthost = smarthost.Addr
	})
	primary := testutil.StartRelayServer(t, "127.0.0.1:0")
	primary.SetDown(true)
	e.domain(dom, primary.Addr, monitored("noc@provider.test"))
	e.start()
	e.send(dom, body(1, 100))
	e.send(dom, body(2, 100))
	waitFor(t, 10*time.Second, "start alert", func() bool { return smarthost.Count() == 1 })
	primary.SetDown(false)
	waitFor(t, 10*time.Second, "end alert", func() bool { return smarthost.Count() == 2 })
	if primary.Count() != 2 {
		t.Fatalf("%d redelivered", primary.Count())
	}
	for range 3 {
		primary.SetDown(true)
		time.Sleep(250 * time.Millisecond)
		primary.SetDown(false)
		time.Sleep(250 * time.Millisecond)
	}
	time.Sleep(1500 * time.Millisecond)
	mails := smarthost.Messages()
	if len(mails) != 2 {
		t.Fatalf("%d alert mails, want 2", len(mails))
	}
	start, end := string(mails[0].Body), string(mails[1].Body)
	if !strings.Contains(start, "Subject: [mxcont] outage: "+dom) || !strings.Contains(start, "2 messages are queued") {
		t.Errorf("start alert:\n%s", start)
	}
	if !strings.Contains(end, "Subject: [mxcont] resolved: "+dom) || !strings.Contains(end, "2 messages were redelivered") {
		t.Errorf("end alert:\n%s", end)
	}
	for _, m := range mails {
		if !slices.Equal(m.Rcpts, []string{"noc@provider.test"}) || m.From != "mxcont@mx.mxcont.test" {
			t.Errorf("alert envelope %q → %v", m.From, m.Rcpts)
		}
	}
	os, _ := e.q.Outages(dom, 100)
	alerted := 0
	for _, o := range os {
		if len(o.Alerted) > 0 {
			alerted++
			if o.Redelivered != 2 {
				t.Errorf("outage %d redelivered %d", o.ID, o.Redelivered)
			}
		}
	}
	if alerted != 1 {
		t.Errorf("%d outages alerted (of %d)", alerted, len(os))
	}
}

func TestNoAlertWithoutMonitoring(t *testing.T) {
	e := newEnv(t, nil)
	e.domain(dom, freeAddr(t, "127.0.0.1"), nil)
	e.start()
	e.send(dom, body(1, 100))
	waitFor(t, 10*time.Second, "outage", func() bool { return e.q.Status(dom).Outage != nil })
	time.Sleep(600 * time.Millisecond) // past AlertGrace
	if k := e.alerts.kinds(); len(k) != 0 {
		t.Fatalf("alerts %v", k)
	}
}

func TestQueueAgeAlerts(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.AlertGrace = 1000 * time.Hour })
	e.domain(dom, freeAddr(t, "127.0.0.1"), monitored("noc@provider.test"))
	e.start()
	e.send(dom, body(1, 100))
	time.Sleep(300 * time.Millisecond)
	if k := e.alerts.kinds(); len(k) != 0 {
		t.Fatalf("alerts %v", k)
	}
	e.clock.Advance(90 * time.Minute)
	waitFor(t, 5*time.Second, "1h alert", func() bool { return slices.Equal(e.alerts.kinds(), []AlertKind{AlertQueueAge}) })
	time.Sleep(300 * time.Millisecond) // several sweeps: no repeat
	e.clock.Advance(23 * time.Hour)
	waitFor(t, 5*time.Second, "24h alert", func() bool { return len(e.alerts.kinds()) == 2 })
	time.Sleep(300 * time.Millisecond)
	e.alerts.mu.Lock()
	defer e.alerts.mu.Unlock()
	if len(e.alerts.alerts) != 2 {
		t.Fatalf("%d alerts", len(e.alerts.alerts))
	}
	a := e.alerts.alerts[1]
	if !strings.Contains(a.Subject, "over 24h") || a.Queued != 1 || !slices.Equal(a.To, []string{"noc@provider.test"}) {
		t.Fatalf("alert %+v", a)
	}
}

func TestWebhookAlert(t *testing.T) {
	var mu sync.Mutex
	var got []Alert
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var a Alert
		b, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(b, &a); err != nil || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "bad", http.StatusBadRequest)
			return
		}
		mu.Lock()
		got = append(got, a)
		mu.Unlock()
	}))
	defer hook.Close()
	e := newEnv(t, func(c *Config) { c.Alerter = nil; c.AlertWebhook = hook.URL })
	addr := freeAddr(t, "127.0.0.1")
	e.domain(dom, addr, monitored())
	e.start()
	waitFor(t, 10*time.Second, "webhook start alert", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == 1
	})
	mu.Lock()
	a := got[0]
	mu.Unlock()
	if a.Kind != AlertOutageStarted || a.Domain != dom || a.RelayHost != addr || a.OutageID == 0 || a.StartedAt.IsZero() {
		t.Fatalf("webhook alert %+v", a)
	}
}
