package submit

import (
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/mxcont/mxcont/internal/connlimit/connlimittest"
)

const refusal = "421 4.7.0 too many connections"

// onlyWebmail allows 127.0.0.1 alone (the engine allows all of loopback),
// so that 127.0.0.2.. act as ordinary remote clients in these tests.
func onlyWebmail(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.Equal(net.IPv4(127, 0, 0, 1))
}

func limits(total, perIP int) func(*Config) {
	return func(c *Config) {
		c.InsecureAuth = onlyWebmail
		c.MaxConns, c.MaxConnsPerIP = total, perIP
	}
}

// greeted dials from local and expects the 220 banner.
func (e *env) greeted(t *testing.T, local string) net.Conn {
	t.Helper()
	c := connlimittest.Dial(t, local, e.addr)
	if g := connlimittest.Greeting(t, c); !strings.HasPrefix(g, "220 ") {
		t.Fatalf("connection from %s greeted %q", local, g)
	}
	return c
}

func (e *env) refused(t *testing.T, local string) {
	t.Helper()
	connlimittest.Refused(t, connlimittest.Dial(t, local, e.addr), refusal)
}

func (e *env) waitOpen(t *testing.T, n int) {
	t.Helper()
	connlimittest.WaitFor(t, "open connections to drop", func() bool { return e.srv.lim.Open() == n })
}

func TestConnLimitPerIP(t *testing.T) {
	e := startServer(t, limits(100, 2))
	e.greeted(t, "127.0.0.2")
	e.greeted(t, "127.0.0.2")
	e.refused(t, "127.0.0.2")
	e.greeted(t, "127.0.0.3") // another address is still served
	e.greeted(t, "127.0.0.3")
	e.refused(t, "127.0.0.3")
}

func TestConnLimitReleasesSlots(t *testing.T) {
	const perIP = 3
	e := startServer(t, limits(100, perIP))
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
	// A session that went through STARTTLS and QUIT releases its slot.
	c := e.dialTLS(t)
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
	e.waitOpen(t, 0)
	if n := e.srv.lim.OpenFrom(netip.MustParseAddr("127.0.0.2")); n != 0 {
		t.Fatalf("127.0.0.2 still holds %d slots", n)
	}
	for range perIP {
		e.greeted(t, "127.0.0.2") // the full allowance is back
	}
	e.refused(t, "127.0.0.2")
}

func TestConnLimitTotal(t *testing.T) {
	e := startServer(t, limits(3, 2))
	e.greeted(t, "127.0.0.2")
	e.greeted(t, "127.0.0.3")
	e.greeted(t, "127.0.0.1")
	e.refused(t, "127.0.0.4")
	e.refused(t, "127.0.0.1") // the webmail counts toward the total too
}

// TestConnLimitWebmailExempt: the client InsecureAuth allows (the engine:
// loopback, where the webmail runs) is not held to the per-IP limit.
func TestConnLimitWebmailExempt(t *testing.T) {
	e := startServer(t, limits(100, 2))
	for range 10 {
		e.greeted(t, "127.0.0.1")
	}
	e.greeted(t, "127.0.0.2")
	e.greeted(t, "127.0.0.2")
	e.refused(t, "127.0.0.2")
}
