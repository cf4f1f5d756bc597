package imapd

import (
	"crypto/tls"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/mxcont/mxcont/internal/connlimit/connlimittest"
)

const bye = "* BYE too many connections"

// onlyWebmail trusts 127.0.0.1 alone (the engine trusts all of loopback),
// so that 127.0.0.2.. act as ordinary remote clients in these tests.
func onlyWebmail(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.Equal(net.IPv4(127, 0, 0, 1))
}

func limits(total, perIP int) func(*env, *Config) {
	return func(_ *env, c *Config) {
		c.InsecureAuth = onlyWebmail
		c.MaxConnections, c.MaxConnectionsPerIP = total, perIP
	}
}

// greeted dials from local and expects the normal greeting.
func (e *env) greeted(t *testing.T, local string) net.Conn {
	t.Helper()
	c := connlimittest.Dial(t, local, e.addr)
	if g := connlimittest.Greeting(t, c); !strings.HasPrefix(g, "* OK ") {
		t.Fatalf("connection from %s greeted %q", local, g)
	}
	return c
}

func (e *env) refused(t *testing.T, local string) {
	t.Helper()
	connlimittest.Refused(t, connlimittest.Dial(t, local, e.addr), bye)
}

func (e *env) waitOpen(t *testing.T, n int) {
	t.Helper()
	connlimittest.WaitFor(t, "open connections to drop", func() bool { return e.srv.lim.Open() == n })
}

func TestConnLimitPerIP(t *testing.T) {
	e := newEnv(t, limits(100, 2))
	e.greeted(t, "127.0.0.2")
	e.greeted(t, "127.0.0.2")
	e.refused(t, "127.0.0.2")
	e.greeted(t, "127.0.0.3") // another address is still served
	e.greeted(t, "127.0.0.3")
	e.refused(t, "127.0.0.3")
}

func TestConnLimitReleasesSlots(t *testing.T) {
	const perIP = 3
	e := newEnv(t, limits(100, perIP))
	for round := range 20 {
		var cs []net.Conn
		for range perIP {
			cs = append(cs, e.greeted(t, "127.0.0.2"))
		}
		if round%4 == 0 {
			e.refused(t, "127.0.0.2") // a refusal takes no slot either
		}
		for _, c := range cs {
			_ = c.Close()
		}
		e.waitOpen(t, 0)
	}
	if n := e.srv.lim.OpenFrom(mustAddr("127.0.0.2")); n != 0 {
		t.Fatalf("127.0.0.2 still holds %d slots", n)
	}
	for range perIP {
		e.greeted(t, "127.0.0.2") // the full allowance is back
	}
	e.refused(t, "127.0.0.2")
}

func TestConnLimitTotal(t *testing.T) {
	e := newEnv(t, limits(3, 2))
	e.greeted(t, "127.0.0.2")
	e.greeted(t, "127.0.0.3")
	e.greeted(t, "127.0.0.1")
	e.refused(t, "127.0.0.4")
	e.refused(t, "127.0.0.1") // the webmail counts toward the total too
}

// TestConnLimitWebmailExempt: the client InsecureAuth trusts (the engine:
// loopback, where Roundcube runs) is not held to the per-IP limit.
func TestConnLimitWebmailExempt(t *testing.T) {
	e := newEnv(t, limits(100, 2))
	for range 10 {
		e.greeted(t, "127.0.0.1")
	}
	e.greeted(t, "127.0.0.2")
	e.greeted(t, "127.0.0.2")
	e.refused(t, "127.0.0.2")
}

// TestConnLimitImplicitTLS: on the implicit-TLS listener the BYE comes
// over TLS, and the plain and TLS listeners of a server share the limits.
func TestConnLimitImplicitTLS(t *testing.T) {
	e := newEnv(t, withTLS, limits(100, 2))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- e.srv.ServeTLS(ln) }()
	t.Cleanup(func() {
		_ = e.srv.Close()
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("ServeTLS returned %v", err)
		}
	})
	dialTLS := func(local string) net.Conn {
		return connlimittest.DialTLS(t, local, ln.Addr().String(), e.clientTLS())
	}
	e.greeted(t, "127.0.0.2") // plain
	if g := connlimittest.Greeting(t, dialTLS("127.0.0.2")); !strings.HasPrefix(g, "* OK ") {
		t.Fatalf("TLS greeting %q", g)
	}
	connlimittest.Refused(t, dialTLS("127.0.0.2"), bye)
	e.refused(t, "127.0.0.2")
	if g := connlimittest.Greeting(t, dialTLS("127.0.0.3")); !strings.HasPrefix(g, "* OK ") {
		t.Fatalf("TLS greeting %q", g)
	}
}

// TestServeRejectsTLSListener: Serve cannot count beneath a
// tls.NewListener, so it says so instead of mislabelling connections.
func TestServeRejectsTLSListener(t *testing.T) {
	e := newEnv(t, withTLS)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- e.srv.Serve(tls.NewListener(ln, e.srv.cfg.TLS)) }()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := <-done; err == nil || !strings.Contains(err.Error(), "use ServeTLS") {
		t.Fatalf("Serve(tls listener) = %v", err)
	}
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
