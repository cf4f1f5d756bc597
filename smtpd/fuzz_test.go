package smtpd

import (
	"bufio"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

// FuzzSession drives a live session over a socket: after EHLO the client
// sends arbitrary bytes (commands, DATA and BDAT bodies, PROXY headers,
// STARTTLS, garbage), then half-closes. The server must end the session
// by itself, never panic, and serve the next, well-formed session.
//
//	go test -run '^$' -fuzz FuzzSession -fuzztime 60s ./smtpd/
func FuzzSession(f *testing.F) {
	cert, err := LoadOrCreateCert(f.TempDir(), "mx.test")
	if err != nil {
		f.Fatal(err)
	}
	e := newEnv(f, func(c *Config) {
		c.MaxLineLength = 1024
		c.MaxMessageBytes = 1 << 20
		c.MaxRecipients = 20
		c.IdleTimeout = 10 * time.Second
		c.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
	})
	for _, s := range []string{
		"MAIL FROM:<a@b.test>\r\nRCPT TO:<x@example.com>\r\nDATA\r\nSubject: s\r\n\r\nline1\n.\nMAIL FROM:<e@v.test>\r\n.\r\nQUIT\r\n",
		"MAIL FROM:<a@b.test>\r\nRCPT TO:<x@example.com>\r\nBDAT 5\r\nab\r\ncBDAT 3 LAST\r\nxyz",
		"RCPT TO:<@r.test:x@example.com>\r\nNOOP\r\nRSET\r\n",
		"STARTTLS\r\n\x16\x03\x01garbage\r\nNOOP\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
		"MAIL FROM:<a@b.test>\r\n" + strings.Repeat("RCPT TO:<x@example.org>\r\n", 25) + "DATA\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := net.DialTimeout("tcp", e.addr, ioTimeout)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		d := &dialog{t: t, c: c, r: bufio.NewReader(c)}
		d.expect(220)
		d.cmd("EHLO fuzz.test", 250)
		_ = c.SetWriteDeadline(time.Now().Add(ioTimeout))
		_, _ = c.Write(data) // the server may hang up before it has read it all
		_ = c.(*net.TCPConn).CloseWrite()
		_ = c.SetReadDeadline(time.Now().Add(ioTimeout))
		if _, err := d.r.WriteTo(discard{}); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("the server did not end the session after EOF")
			}
		}

		next := &dialog{t: t, r: nil}
		next.c, err = net.DialTimeout("tcp", e.addr, ioTimeout)
		if err != nil {
			t.Fatal(err)
		}
		defer next.c.Close()
		next.r = bufio.NewReader(next.c)
		next.expect(220)
		next.cmd("EHLO client.test", 250)
		if code, text := next.transaction("s@remote.test", []string{"a@example.com"}, "Subject: after\r\n\r\nok\r\n"); code != 250 {
			t.Fatalf("well-formed session after %q: %d %s", data, code, text)
		}
		next.cmd("QUIT", 221)
		if n := e.srv.panics.Load(); n != 0 {
			t.Fatalf("%d session panics", n)
		}
	})
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
