package smtpd

import (
	"net/netip"
	"strings"
	"testing"
)

func TestConnectionLimit(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxConnections = 5 })
	var open []*dialog
	for range 5 {
		d := e.dial()
		d.expect(220)
		open = append(open, d)
	}
	d := e.dial()
	lines, closed := d.closed()
	if !closed || len(lines) != 1 || lines[0] != "421 4.7.0 too many connections" {
		t.Fatalf("sixth connection: closed %v, replies %q", closed, lines)
	}
	open[0].cmd("QUIT", 221)
	// The slot is freed once the server has closed its side; poll.
	var served *dialog
	waitFor(t, "a free connection slot", func() bool {
		d := e.dial()
		code, _, err := d.reply()
		if err == nil && code == 220 {
			served = d
			return true
		}
		d.c.Close()
		return false
	})
	served.cmd("EHLO client.test", 250)
	if code, text := served.transaction("s@remote.test", []string{"a@example.com"}, "Subject: x\r\n\r\nx\r\n"); code != 250 {
		t.Fatalf("%d %s", code, text)
	}
	if n := e.stats.Snapshot().Rejected[ReasonConnLimit]; n == 0 {
		t.Errorf("conn-limit not counted")
	}
	for _, d := range open[1:] {
		d.cmd("NOOP", 250) // the others were never disturbed
	}
}

func TestConnectionLimitPerIP(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.MaxConnectionsPerIP = 2
		c.ProxyFrom = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	})
	proxied := func(ip string) *dialog {
		d := e.dial()
		d.send("PROXY TCP4 " + ip + " 192.0.2.1 40000 25\r\n")
		return d
	}
	a1, a2 := proxied("192.0.2.10"), proxied("192.0.2.10")
	a1.expect(220)
	a2.expect(220)
	lines, closed := proxied("192.0.2.10").closed()
	if !closed || len(lines) != 1 || !strings.HasPrefix(lines[0], "421 4.7.0") {
		t.Fatalf("third from one address: closed %v, replies %q", closed, lines)
	}
	b := proxied("192.0.2.11") // another client behind the same proxy
	b.expect(220)
	b.cmd("EHLO client.test", 250)
	if n := e.stats.Snapshot().Rejected[ReasonConnPerIP]; n != 1 {
		t.Errorf("conn-per-ip counted %d times", n)
	}
}
