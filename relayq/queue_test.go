package relayq

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"

	"github.com/mxcont/mxcont/engine/registry"
	"github.com/mxcont/mxcont/internal/testutil"
	"github.com/mxcont/mxcont/spool"
)

func TestRequireTLS(t *testing.T) {
	srvTLS, roots := testutil.RelayTLS(t, "127.0.0.1")
	_, otherRoots := testutil.RelayTLS(t, "127.0.0.1")
	tlsServer := func(t *testing.T, sawTLS *atomic.Int32) *testutil.RelayServer {
		return testutil.StartRelayServer(t, "127.0.0.1:0", testutil.WithRelayTLS(srvTLS), testutil.WithRelayHooks(func(s *testutil.RelayServer) {
			s.OnData = func(c *smtp.Conn, r io.Reader) ([]byte, error) {
				if _, ok := c.TLSConnectionState(); ok {
					sawTLS.Add(1)
				}
				return io.ReadAll(r)
			}
		}))
	}
	requireTLS := func(d *registry.Domain) { d.RequireTLS = true }

	t.Run("verified", func(t *testing.T) {
		e := newEnv(t, func(c *Config) { c.TLSRootCAs = roots })
		var n atomic.Int32
		srv := tlsServer(t, &n)
		e.domain(dom, srv.Addr, requireTLS)
		e.start()
		e.send(dom, body(1, 100))
		waitFor(t, 10*time.Second, "delivery", func() bool { return srv.Count() == 1 })
		if n.Load() != 1 {
			t.Fatal("not delivered over TLS")
		}
	})
	t.Run("opportunistic", func(t *testing.T) {
		e := newEnv(t, nil) // system roots: the certificate does not verify
		var n atomic.Int32
		srv := tlsServer(t, &n)
		e.domain(dom, srv.Addr, nil)
		e.start()
		e.send(dom, body(1, 100))
		waitFor(t, 10*time.Second, "delivery", func() bool { return srv.Count() == 1 })
		if n.Load() != 1 {
			t.Fatal("STARTTLS not used although offered")
		}
	})
	t.Run("unverified", func(t *testing.T) {
		e := newEnv(t, func(c *Config) { c.TLSRootCAs = otherRoots })
		var n atomic.Int32
		srv := tlsServer(t, &n)
		e.domain(dom, srv.Addr, requireTLS)
		e.start()
		id := e.send(dom, body(1, 100))
		waitFor(t, 10*time.Second, "refusal", func() bool {
			m, _ := e.get(id)
			return strings.Contains(m.LastError, "TLS required: certificate not verified")
		})
		if srv.Count() != 0 || e.q.Status(dom).RelayState != StateUp {
			t.Fatalf("delivered %d, state %s", srv.Count(), e.q.Status(dom).RelayState)
		}
	})
	t.Run("not offered", func(t *testing.T) {
		e := newEnv(t, func(c *Config) { c.TLSRootCAs = roots })
		srv := testutil.StartRelayServer(t, "127.0.0.1:0")
		e.domain(dom, srv.Addr, requireTLS)
		e.start()
		id := e.send(dom, body(1, 100))
		waitFor(t, 10*time.Second, "refusal", func() bool {
			m, _ := e.get(id)
			return strings.Contains(m.LastError, "does not offer STARTTLS")
		})
		if srv.Count() != 0 || srv.Transactions() != 0 {
			t.Fatal("mail sent without TLS")
		}
	})
}

func TestFlushDomain(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.RetryBase = time.Hour; c.MaxBackoff = time.Hour })
	sc := newScript(map[string][]string{"u@" + dom: {"451 4.3.0 try later", ""}})
	srv := testutil.StartRelayServer(t, "127.0.0.1:0", testutil.WithRelayHooks(func(s *testutil.RelayServer) { s.OnRcpt = sc.rcpt }))
	e.domain(dom, srv.Addr, nil)
	e.start()
	id := e.send(dom, body(1, 100), "u@"+dom)
	waitFor(t, 10*time.Second, "deferral", func() bool { m, _ := e.get(id); return m.Attempts == 1 })
	time.Sleep(500 * time.Millisecond)
	if srv.Count() != 0 {
		t.Fatal("retried before its time")
	}
	if err := e.q.FlushDomain(dom); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "flushed delivery", func() bool { return srv.Count() == 1 })
	if err := e.q.FlushDomain("nope.test"); !errors.Is(err, ErrUnknownDomain) {
		t.Fatalf("flush unknown: %v", err)
	}
	if st := e.q.Status("nope.test"); st.RelayState != StateUnknown || st.Outage != nil {
		t.Fatalf("status of unknown domain %+v", st)
	}
}

// Stop abandons a hung delivery when its context ends; the message is
// not marked attempted and is delivered after a restart.
func TestStopAbandonsAndRedelivers(t *testing.T) {
	e := newEnv(t, nil)
	entered := make(chan struct{}, 1)
	var n atomic.Int32
	srv := testutil.StartRelayServer(t, "127.0.0.1:0", testutil.WithRelayHooks(func(s *testutil.RelayServer) {
		s.OnData = func(c *smtp.Conn, r io.Reader) ([]byte, error) {
			if n.Add(1) == 1 {
				entered <- struct{}{}
				_, _ = io.ReadAll(r)
				<-s.Done() // never answer the final dot
				return nil, errors.New("closed")
			}
			return io.ReadAll(r)
		}
	}))
	e.domain(dom, srv.Addr, nil)
	q := e.start()
	id := e.send(dom, body(1, 100))
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := q.Stop(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("stop: %v", err)
	}
	if time.Since(start) > 3*time.Second {
		t.Fatalf("stop took %v", time.Since(start))
	}
	m, ok := e.get(id)
	if !ok || m.Attempts != 0 || m.State != spool.StateQueued {
		t.Fatalf("after abandon: %+v", m)
	}
	e.start()
	waitFor(t, 10*time.Second, "redelivery", func() bool { return srv.Count() == 1 })
}

func TestNoGoroutineLeak(t *testing.T) {
	base := goleak.IgnoreCurrent()
	e := newEnv(t, func(c *Config) { c.ProbeInterval = 20 * time.Millisecond; c.IdleTimeout = time.Minute })
	srv, err := testutil.NewRelayServer("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.domain(dom, freeAddr(t, "127.0.0.1"), nil)
	e.domain("hangs.test", freeAddr(t, "127.0.0.2"), nil)
	e.domain("live.test", srv.Addr, nil)
	e.start()
	e.send(dom, body(1, 100))
	e.send("live.test", body(2, 100))
	waitFor(t, 10*time.Second, "delivery", func() bool { return srv.Count() == 1 })
	time.Sleep(time.Second) // ~100 failed probes per dead host; an idle pooled connection
	e.stop()
	e.q = nil
	srv.Close()
	if err := e.sp.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.db.Close(); err != nil {
		t.Fatal(err)
	}
	goleak.VerifyNone(t, base)
}

func TestConfigErrors(t *testing.T) {
	e := newEnv(t, nil)
	for _, c := range []struct {
		mut  func(*Config)
		want string
	}{
		{func(c *Config) { c.PoolSize = -1 }, "relayq: pool size -1, want 1..1000"},
		{func(c *Config) { c.ProbeInterval = -time.Second }, "relayq: negative probe interval -1s"},
		{func(c *Config) { c.AlertAges = []time.Duration{0} }, "relayq: alert age 0s, want > 0"},
		{func(c *Config) { c.AlertSmarthost = "nohost" }, `relayq: alert smarthost "nohost": address nohost: missing port in address`},
		{func(c *Config) { c.AlertSmarthost = "mail:99999" }, `relayq: alert smarthost "mail:99999": invalid port "99999"`},
		{func(c *Config) { c.AlertWebhook = "ftp://x" }, `relayq: alert webhook "ftp://x": want an http or https URL`},
		{func(c *Config) { c.OwnAddrs = []string{"127.0.0.1"} }, `relayq: own address "127.0.0.1": address 127.0.0.1: missing port in address`},
		{func(c *Config) { c.OwnAddrs = []string{":smtp"} }, `relayq: own address ":smtp": invalid port`},
	} {
		cfg := testConfig()
		c.mut(&cfg)
		_, err := New(zaptest.NewLogger(t), cfg, e.sp, e.db, e.reg)
		if err == nil || err.Error() != c.want {
			t.Errorf("got %v, want %q", err, c.want)
		}
	}
	if _, err := New(nil, testConfig(), nil, e.db, e.reg); err == nil {
		t.Error("nil spool accepted")
	}
}
