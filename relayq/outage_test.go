package relayq

import (
	"bytes"
	"context"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/mxcont/mxcont/engine/registry"
	"github.com/mxcont/mxcont/internal/testutil"
)

// Outage → mail queued → the primary comes back on the same address →
// every message arrives exactly once, soon.
func TestOutageThenRecovery(t *testing.T) {
	var mu sync.Mutex
	var hooked []string
	e := newEnv(t, func(c *Config) {
		c.OnEvent = func(ev Event) {
			mu.Lock()
			hooked = append(hooked, ev.Kind+" "+ev.Domain)
			mu.Unlock()
		}
	})
	addr := freeAddr(t, "127.0.0.1")
	e.domain(dom, addr, nil)
	e.domain("second.test", addr, nil)
	e.start()
	bodies := map[string][]byte{}
	for i := range 30 {
		d := dom
		if i%3 == 0 {
			d = "second.test"
		}
		b := body(i, 1000+i*100)
		e.send(d, b)
		bodies[subject(b)] = b
	}
	waitFor(t, 10*time.Second, "outage", func() bool {
		st := e.q.Status(dom)
		return st.RelayState == StateDown && st.Outage != nil && strings.Contains(st.LastProbeError, "refused")
	})
	if e.queued(dom)+e.queued("second.test") != 30 {
		t.Fatalf("queued %d", e.queued(dom)+e.queued("second.test"))
	}
	st := e.q.Status(dom)
	if st.RelayHost != addr || st.LastProbeAt.IsZero() || !slices.Equal(st.Outage.Domains, []string{dom, "second.test"}) {
		t.Fatalf("status %+v, outage %+v", st, st.Outage)
	}
	// Both domains share one prober and one outage.
	if o2 := e.q.Status("second.test").Outage; o2 == nil || o2.ID != st.Outage.ID {
		t.Fatalf("second domain outage %+v", o2)
	}

	up := time.Now()
	srv := testutil.StartRelayServer(t, addr)
	waitFor(t, 15*time.Second, "redelivery", func() bool { return srv.Count() >= 30 })
	t.Logf("30 messages redelivered %v after the primary came back", time.Since(up))
	time.Sleep(300 * time.Millisecond)
	msgs := srv.Messages()
	if len(msgs) != 30 {
		t.Fatalf("%d deliveries, want 30 (exactly once)", len(msgs))
	}
	seen := map[string]bool{}
	for _, m := range msgs {
		s := subject(m.Body)
		if seen[s] || !bytes.Equal(m.Body, bodies[s]) {
			t.Fatalf("duplicate or wrong body for %q", s)
		}
		seen[s] = true
	}
	if st := e.q.Status(dom); st.RelayState != StateUp || st.Outage != nil || st.LastProbeError != "" {
		t.Fatalf("status after recovery %+v", st)
	}
	os, err := e.q.Outages(dom, 10)
	if err != nil || len(os) != 1 {
		t.Fatalf("outages %+v, %v", os, err)
	}
	o := os[0]
	if o.Ongoing() || o.Duration <= 0 || o.RelayHost != addr || o.EndReason == "" || !o.EndedAt.After(o.StartedAt) {
		t.Fatalf("outage %+v", o)
	}
	evs, _ := e.q.Events(dom, 10)
	if len(evs) != 2 || evs[0].Kind != EventOutageEnded || evs[1].Kind != EventOutageStarted {
		t.Fatalf("events %+v", evs)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{"outage-started " + dom, "outage-started second.test", "outage-ended " + dom, "outage-ended second.test"}
	if !slices.Equal(hooked, want) {
		t.Fatalf("OnEvent got %q, want %q", hooked, want)
	}
}

// The product guide's failover test: a relay host with nothing listening
// keeps mail queued; pointing the domain at the real primary delivers it.
func TestFailoverRelayHostChange(t *testing.T) {
	e := newEnv(t, nil)
	dead := freeAddr(t, "127.0.0.2")
	e.domain(dom, dead, nil)
	e.start()
	id := e.send(dom, body(1, 2000))
	waitFor(t, 10*time.Second, "state down", func() bool { return e.q.Status(dom).RelayState == StateDown })
	time.Sleep(500 * time.Millisecond)
	if m, ok := e.get(id); !ok || m.State != "queued" {
		t.Fatalf("message %+v", m)
	}
	srv := testutil.StartRelayServer(t, "127.0.0.1:0")
	e.domain(dom, srv.Addr, nil) // Put + Refresh
	waitFor(t, 10*time.Second, "delivery", func() bool { return srv.Count() == 1 })
	waitFor(t, 5*time.Second, "retired", func() bool { _, ok := e.get(id); return !ok })
	st := e.q.Status(dom)
	if st.RelayHost != srv.Addr || st.RelayState != StateUp {
		t.Fatalf("status %+v", st)
	}
	// The old host's outage ended because no domain uses it any more.
	waitFor(t, 5*time.Second, "old outage ended", func() bool {
		os, _ := e.q.Outages(dom, 10)
		return len(os) == 1 && !os[0].Ongoing() && os[0].EndReason == "relay host no longer used"
	})
}

// A registry change is picked up through Watch even without Refresh.
func TestWatchRegistry(t *testing.T) {
	e := newEnv(t, nil)
	e.start()
	srv := testutil.StartRelayServer(t, "127.0.0.1:0")
	if _, err := e.reg.Put(registry.Domain{Name: dom, RelayHost: srv.Addr}); err != nil {
		t.Fatal(err)
	}
	e.send(dom, body(1, 100))
	waitFor(t, 10*time.Second, "delivery", func() bool { return srv.Count() == 1 })
}

func TestOutagePersistsAcrossRestart(t *testing.T) {
	e := newEnv(t, nil)
	addr := freeAddr(t, "127.0.0.1")
	e.domain(dom, addr, nil)
	e.start()
	e.send(dom, body(1, 100))
	waitFor(t, 10*time.Second, "outage", func() bool { return e.q.Status(dom).Outage != nil })
	id := e.q.Status(dom).Outage.ID
	e.stop()
	e.q = nil
	if err := e.db.Close(); err != nil {
		t.Fatal(err)
	}
	e.openDB()

	q, err := New(zaptest.NewLogger(t), e.cfg, e.sp, e.db, e.reg)
	if err != nil {
		t.Fatal(err)
	}
	os, _ := q.Outages("", 10)
	if len(os) != 1 || os[0].ID != id || !os[0].Ongoing() {
		t.Fatalf("outages after reopen %+v", os)
	}
	if o := q.Status(dom).Outage; o == nil || o.ID != id {
		t.Fatalf("status outage %+v", o)
	}
	q.Start()
	e.q = q
	t.Cleanup(e.stop)
	time.Sleep(500 * time.Millisecond) // still down: the same outage goes on
	srv := testutil.StartRelayServer(t, addr)
	waitFor(t, 10*time.Second, "delivery", func() bool { return srv.Count() == 1 })
	waitFor(t, 5*time.Second, "outage ended", func() bool {
		os, _ := q.Outages(dom, 10)
		return len(os) == 1 && os[0].ID == id && !os[0].Ongoing()
	})
}

func TestMailLoopRefused(t *testing.T) {
	self := freeAddr(t, "127.0.0.1")
	_, port, _ := strings.Cut(self, ":")
	e := newEnv(t, func(c *Config) { c.OwnAddrs = []string{":" + port} })
	e.domain(dom, "127.0.0.9:"+port, nil) // any loopback address on our port
	e.start()
	e.send(dom, body(1, 100))
	waitFor(t, 10*time.Second, "refused", func() bool {
		st := e.q.Status(dom)
		return st.RelayState == StateDown && st.LastProbeError == "mail loop: relay host is this node"
	})
	if e.queued(dom) != 1 {
		t.Fatal("message not kept")
	}
}

// A listener bound after New (configured with port 0) is added later.
func TestAddOwnAddr(t *testing.T) {
	self := freeAddr(t, "127.0.0.1")
	e := newEnv(t, func(c *Config) { c.OwnAddrs = []string{"127.0.0.1:0"} })
	e.domain(dom, self, nil)
	q := e.start()
	if err := q.AddOwnAddr(self); err != nil {
		t.Fatal(err)
	}
	if err := q.FlushDomain(dom); err != nil { // probe again now
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "refused", func() bool {
		return e.q.Status(dom).LastProbeError == "mail loop: relay host is this node"
	})
}

func TestOwnAddrs(t *testing.T) {
	o, err := newOwnAddrs(context.Background(), []string{":25", "127.0.0.1:2525", "192.0.2.7:587", "[::]:465"})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		addr string
		self bool
	}{
		{"127.0.0.1:25", true}, {"127.0.0.2:25", true}, {"[::1]:25", true}, {"0.0.0.0:25", true},
		{"127.0.0.3:2525", true}, {"[::1]:2525", true}, {"192.0.2.7:587", true}, {"127.0.0.1:465", true},
		{"192.0.2.8:587", false}, {"127.0.0.1:26", false}, {"198.51.100.1:25", false}, {"192.0.2.7:25", false},
	} {
		ap := netip.MustParseAddrPort(c.addr)
		if got := o.isSelf(ap); got != c.self {
			t.Errorf("isSelf(%s) = %v, want %v", c.addr, got, c.self)
		}
	}
}
