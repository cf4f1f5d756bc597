package smtpd

import (
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/pires/go-proxyproto"

	"github.com/mxcont/mxcont/engine/registry"
)

func TestHappyPath(t *testing.T) {
	e := newEnv(t, nil)
	c, err := smtp.Dial(e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	for _, ext := range []string{"PIPELINING", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES", "SIZE"} {
		if ok, _ := c.Extension(ext); !ok {
			t.Errorf("extension %s not advertised", ext)
		}
	}
	if _, v := c.Extension("SIZE"); v != "52428800" {
		t.Errorf("SIZE %q, want 52428800", v)
	}
	if ok, _ := c.Extension("STARTTLS"); ok {
		t.Errorf("STARTTLS advertised without a TLS config")
	}
	if err := c.Mail("sender@remote.test", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("alice@example.com", nil); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	body := "From: sender@remote.test\r\nTo: alice@example.com\r\nSubject: hi\r\n\r\nhello\r\n.leading dot\r\n"
	if _, err := w.Write([]byte(body)); err != nil {
		t.Fatal(err)
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		t.Fatal(err)
	}
	ids := queued(t, resp.StatusText)
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}

	ms := e.messages("example.com")
	if len(ms) != 1 {
		t.Fatalf("%d messages stored, want 1", len(ms))
	}
	m := ms[0]
	if len(ids) != 1 || ids[0] != m.ID {
		t.Errorf("reply ids %v, stored %s", ids, m.ID)
	}
	if m.From != "sender@remote.test" || !slices.Equal(m.Rcpts, []string{"alice@example.com"}) {
		t.Errorf("envelope %q → %q", m.From, m.Rcpts)
	}
	rcv, rest := splitReceived(t, m.Body)
	if rest != body {
		t.Errorf("stored body %q, want %q", rest, body)
	}
	for _, want := range []string{"Received: from client.test ([127.0.0.1])", "by mx.test (mxcont) with ESMTP id ", "for <alice@example.com>;"} {
		if !strings.Contains(rcv, want) {
			t.Errorf("Received: field %q lacks %q", rcv, want)
		}
	}

	logs := e.logs.FilterMessage("smtp transaction").All()
	if len(logs) != 1 {
		t.Fatalf("%d transaction log lines, want 1", len(logs))
	}
	f := logs[0].ContextMap()
	for _, k := range []string{"txn-id", "queue-ids", "client-ip", "helo", "from", "rcpts", "rcpt-count", "size", "result", "outcome", "duration-ms"} {
		if _, ok := f[k]; !ok {
			t.Errorf("log line lacks %q: %v", k, f)
		}
	}
	if f["result"] != int64(250) || f["client-ip"] != "127.0.0.1" || f["outcome"] != "queued" || f["helo"] != "client.test" {
		t.Errorf("log line %v", f)
	}
	if s := e.stats.Snapshot(); s.Accepted != 1 || s.Bytes != uint64(len(body)) {
		t.Errorf("stats %+v", s)
	}
}

func TestMultiDomainSplit(t *testing.T) {
	e := newEnv(t, nil)
	d := e.session()
	body := "Subject: split\r\n\r\nfor everyone\r\n"
	code, text := d.transaction("", []string{"alice@example.com", "bob@example.org", "carol@EXAMPLE.COM.", "alice@example.com"}, body)
	if code != 250 {
		t.Fatalf("DATA: %d %s", code, text)
	}
	ids := queued(t, text)
	if len(ids) != 2 {
		t.Fatalf("ids %v, want two", ids)
	}
	com, org := e.messages("example.com"), e.messages("example.org")
	if len(com) != 1 || len(org) != 1 {
		t.Fatalf("stored %d for example.com, %d for example.org", len(com), len(org))
	}
	if !slices.Equal(com[0].Rcpts, []string{"alice@example.com", "carol@example.com"}) {
		t.Errorf("example.com rcpts %q", com[0].Rcpts)
	}
	if !slices.Equal(org[0].Rcpts, []string{"bob@example.org"}) {
		t.Errorf("example.org rcpts %q", org[0].Rcpts)
	}
	if com[0].From != "" || org[0].From != "" {
		t.Errorf("null sender stored as %q, %q", com[0].From, org[0].From)
	}
	for _, m := range []stored{com[0], org[0]} {
		if !slices.Contains(ids, m.ID) {
			t.Errorf("stored %s not in reply %v", m.ID, ids)
		}
		if _, rest := splitReceived(t, m.Body); rest != body {
			t.Errorf("body %q", rest)
		}
	}
	if rcv, _ := splitReceived(t, com[0].Body); strings.Contains(rcv, " for <") {
		t.Errorf("Received: of a two-recipient record names one: %q", rcv)
	}
	if rcv, _ := splitReceived(t, org[0].Body); !strings.Contains(rcv, "for <bob@example.org>") {
		t.Errorf("Received: %q", rcv)
	}
}

func TestRelayPolicy(t *testing.T) {
	e := newEnv(t, nil)
	d := e.session()
	d.cmd("MAIL FROM:<sender@remote.test> SMTPUTF8", 250)
	cases := []struct {
		rcpt string
		want int
	}{
		{"<user@example.com>", 250},
		{"<user@EXAMPLE.COM>", 250},
		{"<user@example.com.>", 250},
		{"<user@Example.Com.>", 250},
		{"<postmaster@example.org>", 250},
		{"<user@bücher.example>", 250},
		{"<user@BÜCHER.example>", 250},
		{"<user@xn--bcher-kva.example>", 250},
		{"<user@bücher.example.>", 250},
		{`<"john doe"@example.com>`, 250},
		{"<user@unknown.test>", 550},
		{"<user@example.net>", 550},
		{"<user@sub.example.com>", 550},
		{"<user@example.com.evil.test>", 550},
		{"<user@bucher.example>", 550},
		{"<user@xn--bcher-kva.example.evil.test>", 550},
		{"<user@bücher.example.evil.test>", 550},
		{"<user%evil.test@example.com>", 550},
		{"<evil.test!user@example.com>", 550},
		{"<@relay.test:user@example.com>", 550},
		{"<@a.test,@b.test:user@evil.test>", 550},
		{"@relay.test:user@example.com", 550},
		{`<"user@evil.test"@example.com>`, 550},
		{"<user@evil.test@example.com>", 550},
		{"<user@[127.0.0.1]>", 550},
		{"<user@[IPv6:::1]>", 550},
		{"<user@[192.0.2.1]>", 550},
		{"<user@restricted.example>", 550}, // allowed sources exclude 127.0.0.1
		{"<user@local.example>", 250},
	}
	for _, c := range cases {
		text := d.cmd("RCPT TO:"+c.rcpt, c.want)
		if c.want == 550 && !strings.HasPrefix(text, "5.7.1 ") {
			t.Errorf("RCPT %s: %q, want 5.7.1", c.rcpt, text)
		}
	}
	code, text := d.transactionData("Subject: x\r\n\r\nx\r\n")
	if code != 250 {
		t.Fatalf("DATA %d %s", code, text)
	}
	com := e.messages("example.com")
	if len(com) != 1 {
		t.Fatalf("%d example.com messages", len(com))
	}
	if want := []string{"user@example.com", `"john doe"@example.com`}; !slices.Equal(com[0].Rcpts, want) {
		t.Errorf("rcpts %q, want %q", com[0].Rcpts, want)
	}
	if b := e.messages("xn--bcher-kva.example"); len(b) != 1 || !slices.Equal(b[0].Rcpts, []string{"user@xn--bcher-kva.example"}) {
		t.Errorf("IDN domain messages %+v", b)
	}
	for _, dom := range []string{"unknown.test", "evil.test", "restricted.example", "example.net"} {
		if n := len(e.messages(dom)); n != 0 {
			t.Errorf("%d messages stored for %s", n, dom)
		}
	}
	if r := e.stats.Snapshot().Rejected; r[ReasonRelayDenied] == 0 || r[ReasonRouting] == 0 || r[ReasonSourceDenied] != 1 {
		t.Errorf("rejections %v", r)
	}
}

// transactionData sends DATA and body after MAIL and RCPT were given.
func (d *dialog) transactionData(body string) (int, string) {
	d.t.Helper()
	d.cmd("DATA", 354)
	d.send(dotStuff(body) + ".\r\n")
	code, text, err := d.reply()
	if err != nil {
		d.t.Fatal(err)
	}
	return code, text
}

func TestAddressSyntax(t *testing.T) {
	e := newEnv(t, nil)
	d := e.session()
	d.cmd("MAIL FROM:<a\x01b@remote.test>", 501)
	d.cmd(`MAIL FROM:<"odd sender"@remote.test>`, 250)
	d.cmd("MAIL FROM:<again@remote.test>", 503)
	d.cmd("RCPT TO:<a\x7fb@example.com>", 501)
	d.cmd("RCPT TO:<ok@example.com>", 250)
	if code, text := d.transactionData("\r\n"); code != 250 {
		t.Fatalf("DATA %d %s", code, text)
	}
	if m := e.messages("example.com"); len(m) != 1 || m[0].From != `"odd sender"@remote.test` {
		t.Errorf("stored %+v", m)
	}
	d.cmd("EHLO "+strings.Repeat("h", 300), 250) // a second EHLO resets, go-smtp does not ask us
	d2 := e.dial()
	d2.expect(220)
	d2.cmd("EHLO "+strings.Repeat("h", 300), 501)
}

func TestAllowedSources(t *testing.T) {
	e := newEnv(t, nil)
	d := e.session()
	d.cmd("MAIL FROM:<s@remote.test>", 250)
	if text := d.cmd("RCPT TO:<a@restricted.example>", 550); !strings.HasPrefix(text, "5.7.1") {
		t.Errorf("reply %q", text)
	}
	d.cmd("RCPT TO:<a@local.example>", 250)
	// The registry is live: widening the allowed sources applies at once.
	if _, err := e.reg.Put(withSources(testDomains[3], "192.0.2.0/24", "127.0.0.1")); err != nil {
		t.Fatal(err)
	}
	d.cmd("RCPT TO:<a@restricted.example>", 250)
}

func withSources(d registry.Domain, src ...string) registry.Domain {
	d.AllowedSources = src
	return d
}

func TestProxyProtocol(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.ProxyFrom = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
		c.ProxyHeaderTimeout = 300 * time.Millisecond
	})
	body := "Subject: via proxy\r\n\r\nx\r\n"

	// v1 from a trusted proxy: the client address is the header's.
	d := e.dial()
	d.send("PROXY TCP4 192.0.2.10 192.0.2.1 56324 25\r\n")
	d.expect(220)
	d.cmd("EHLO client.test", 250)
	if code, text := d.transaction("s@remote.test", []string{"a@restricted.example"}, body); code != 250 {
		t.Fatalf("v1: %d %s", code, text)
	}

	// v2.
	h := proxyproto.HeaderProxyFromAddrs(2, &net.TCPAddr{IP: net.ParseIP("192.0.2.11"), Port: 40000}, &net.TCPAddr{IP: net.ParseIP("192.0.2.1"), Port: 25})
	raw, err := h.Format()
	if err != nil {
		t.Fatal(err)
	}
	d = e.dial()
	d.send(string(raw))
	d.expect(220)
	d.cmd("EHLO client.test", 250)
	if code, text := d.transaction("s@remote.test", []string{"b@restricted.example"}, body); code != 250 {
		t.Fatalf("v2: %d %s", code, text)
	}

	ms := e.messages("restricted.example")
	if len(ms) != 2 {
		t.Fatalf("%d messages", len(ms))
	}
	for i, ip := range []string{"[192.0.2.10]", "[192.0.2.11]"} {
		if rcv, _ := splitReceived(t, ms[i].Body); !strings.Contains(rcv, "("+ip+")") {
			t.Errorf("Received: %q lacks %s", rcv, ip)
		}
	}
	for _, l := range e.logs.FilterMessage("smtp transaction").All() {
		if f := l.ContextMap(); f["proxied"] != true || !strings.HasPrefix(f["client-ip"].(string), "192.0.2.1") {
			t.Errorf("log %v", f)
		}
	}

	// A trusted peer that sends no header is served as itself.
	d = e.dial()
	d.expect(220)
	d.cmd("EHLO client.test", 250)
	d.cmd("MAIL FROM:<s@remote.test>", 250)
	d.cmd("RCPT TO:<c@restricted.example>", 550)

	// A malformed header from a trusted peer closes the connection.
	d = e.dial()
	d.send("PROXY TCP4 not-an-address 192.0.2.1 1 25\r\n")
	if lines, closed := d.closed(); !closed || len(lines) != 0 {
		t.Errorf("malformed header: closed %v after %q", closed, lines)
	}
}

func TestProxyFromUntrusted(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.ProxyFrom = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")} })
	h := proxyproto.HeaderProxyFromAddrs(2, &net.TCPAddr{IP: net.ParseIP("192.0.2.10"), Port: 1}, &net.TCPAddr{IP: net.ParseIP("192.0.2.1"), Port: 25})
	v2, err := h.Format()
	if err != nil {
		t.Fatal(err)
	}
	for name, hdr := range map[string]string{
		"v1":       "PROXY TCP4 192.0.2.10 192.0.2.1 56324 25\r\n",
		"v2":       string(v2),
		"v1-split": "PRO",
	} {
		t.Run(name, func(t *testing.T) {
			d := e.dial()
			d.expect(220)
			d.send(hdr)
			if name == "v1-split" {
				d.send("XY TCP4 192.0.2.10 192.0.2.1 56324 25\r\nEHLO x\r\n")
			}
			lines, closed := d.closed()
			if !closed {
				t.Fatalf("connection not closed")
			}
			for _, l := range lines {
				if strings.HasPrefix(l, "250") {
					t.Errorf("PROXY header answered %q", l)
				}
			}
		})
	}
	if n := e.stats.Snapshot().Rejected[ReasonProxyRefused]; n != 3 {
		t.Errorf("%d proxy refusals counted, want 3", n)
	}
	// An ordinary client is unaffected.
	d := e.session()
	d.cmd("QUIT", 221)
}
