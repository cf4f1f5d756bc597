package connlimit

import (
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/mxcont/mxcont/internal/connlimit/connlimittest"
)

func TestLimiter(t *testing.T) {
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	web := netip.MustParseAddr("127.0.0.1")
	l := New(Config{MaxTotal: 4, MaxPerIP: 2, Exempt: func(x netip.Addr) bool { return x == web }})
	r1, ok1 := l.Acquire(a)
	_, ok2 := l.Acquire(a)
	if _, ok := l.Acquire(a); !ok1 || !ok2 || ok {
		t.Fatalf("per-IP limit 2: got %v %v %v", ok1, ok2, ok)
	}
	if _, ok := l.Acquire(b); !ok {
		t.Fatal("another address refused")
	}
	if _, ok := l.Acquire(web); !ok {
		t.Fatal("exempt address refused")
	}
	if _, ok := l.Acquire(web); ok {
		t.Fatal("total limit 4 not applied to the exempt address")
	}
	r1()
	r1() // a second release is a no-op
	if l.Open() != 3 || l.OpenFrom(a) != 1 || l.OpenFrom(web) != 0 {
		t.Fatalf("after release: open %d, from a %d, from web %d", l.Open(), l.OpenFrom(a), l.OpenFrom(web))
	}
}

func TestKey(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1":               "192.0.2.1",
		"::ffff:192.0.2.1":        "192.0.2.1",
		"2001:db8:1:2:3:4:5:6":    "2001:db8:1:2::",
		"2001:db8:1:2:ffff::1%e0": "2001:db8:1:2::",
	} {
		if got := Key(netip.MustParseAddr(in)); got.String() != want {
			t.Errorf("Key(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestKeyIPv6Prefix(t *testing.T) {
	l := New(Config{MaxPerIP: 1})
	if _, ok := l.Acquire(netip.MustParseAddr("2001:db8:1:2::1")); !ok {
		t.Fatal("first refused")
	}
	if _, ok := l.Acquire(netip.MustParseAddr("2001:db8:1:2::ffff")); ok {
		t.Fatal("same /64 not limited together")
	}
	if _, ok := l.Acquire(netip.MustParseAddr("2001:db8:1:3::1")); !ok {
		t.Fatal("another /64 refused")
	}
	if _, ok := l.Acquire(netip.MustParseAddr("::ffff:192.0.2.1")); !ok {
		t.Fatal("mapped IPv4 refused")
	}
	if _, ok := l.Acquire(netip.MustParseAddr("192.0.2.1")); ok {
		t.Fatal("mapped and plain IPv4 counted apart")
	}
}

// TestListenerCloseReleasesOnce: closing an accepted connection twice
// frees one slot, not two.
func TestListenerCloseReleasesOnce(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lim := New(Config{MaxPerIP: 1})
	ln := NewListener(raw, lim, RefuseLine("NO\r\n"))
	defer ln.Close()
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	connlimittest.Dial(t, "127.0.0.2", raw.Addr().String())
	c := <-accepted
	connlimittest.Dial(t, "127.0.0.3", raw.Addr().String())
	<-accepted
	connlimittest.Refused(t, connlimittest.Dial(t, "127.0.0.2", raw.Addr().String()), "NO")
	_ = c.Close()
	_ = c.Close()
	if lim.Open() != 1 || lim.OpenFrom(netip.MustParseAddr("127.0.0.3")) != 1 {
		t.Fatalf("after double Close: open %d", lim.Open())
	}
	connlimittest.Dial(t, "127.0.0.2", raw.Addr().String())
	if c := <-accepted; !strings.HasPrefix(c.RemoteAddr().String(), "127.0.0.2:") {
		t.Fatalf("accepted %s", c.RemoteAddr())
	}
	_ = ln.Close()
	ln.Wait()
}
