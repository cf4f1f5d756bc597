// Package connlimittest helps test connection limits over real loopback
// sockets: dialing from a chosen 127.0.0.x address makes distinct clients
// on one host (Linux routes all of 127.0.0.0/8 to lo).
package connlimittest

import (
	"bufio"
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"
)

// Timeout bounds each dial and read of these helpers.
const Timeout = 10 * time.Second

// Dial connects to addr from local (an IP such as "127.0.0.2", any port).
// The connection is closed at the end of the test.
func Dial(t testing.TB, local, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: Timeout}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, local, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// DialTLS is Dial with implicit TLS (handshake included).
func DialTLS(t testing.TB, local, addr string, cfg *tls.Config) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: Timeout}
	c, err := tls.DialWithDialer(&d, "tcp", addr, cfg)
	if err != nil {
		t.Fatalf("TLS dial %s from %s: %v", addr, local, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Greeting returns the first line c receives, without CRLF.
func Greeting(t testing.TB, c net.Conn) string {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(Timeout))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("reading greeting from %s: %q, %v", c.RemoteAddr(), line, err)
	}
	return strings.TrimRight(line, "\r\n")
}

// Refused reads the greeting of c, expects want, and then the end of the
// connection (the server closes a refused connection).
func Refused(t testing.TB, c net.Conn, want string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(Timeout))
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil || strings.TrimRight(line, "\r\n") != want {
		t.Fatalf("connection from %s greeted %q (%v), want %q", c.LocalAddr(), line, err, want)
	}
	if rest, err := r.ReadString('\n'); err == nil || rest != "" {
		t.Fatalf("refused connection not closed: read %q, %v", rest, err)
	}
}

// WaitFor polls cond until it holds, failing the test after Timeout.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(Timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
