package smtpd

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"go.uber.org/zap/zaptest"

	"github.com/mxcont/mxcont/engine/registry"
	"github.com/mxcont/mxcont/spool"
)

func TestConfigErrors(t *testing.T) {
	sp, err := spool.Open(zaptest.NewLogger(t), spool.Config{Dir: t.TempDir(), Shards: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	reg := registry.NewMemory(nil)
	cases := []struct {
		cfg  Config
		want string
	}{
		{Config{Hostname: "bad host"}, `smtpd: invalid Hostname "bad host"`},
		{Config{Hostname: "mx.test\r\nX-Injected: 1"}, "smtpd: invalid Hostname \"mx.test\\r\\nX-Injected: 1\""},
		{Config{Hostname: "mx.test", MaxConnections: -1}, "smtpd: MaxConnections must not be negative"},
		{Config{Hostname: "mx.test", IdleTimeout: -time.Second}, "smtpd: IdleTimeout must not be negative"},
		{Config{Hostname: "mx.test", MaxLineLength: 100}, "smtpd: MaxLineLength 100 is below the RFC 5321 minimum of 512"},
		{Config{Hostname: "mx.test", MaxLineLength: 8192, MaxDataLineLength: 4096}, "smtpd: MaxDataLineLength 4096 is below MaxLineLength 8192"},
		{Config{Hostname: "mx.test", BareNewlines: "strip"}, `smtpd: invalid BareNewlines "strip" (want "normalize" or "reject")`},
		{Config{Hostname: "mx.test", ProxyFrom: []netip.Prefix{{}}}, "smtpd: invalid ProxyFrom[0]"},
	}
	for _, c := range cases {
		_, err := New(nil, c.cfg, reg, sp)
		if err == nil || err.Error() != c.want {
			t.Errorf("New(%+v) = %v, want %q", c.cfg, err, c.want)
		}
	}
	if _, err := New(nil, Config{}, nil, sp); err == nil || err.Error() != "smtpd: no domain registry" {
		t.Errorf("nil registry: %v", err)
	}
	if _, err := New(nil, Config{}, reg, nil); err == nil || err.Error() != "smtpd: no spool" {
		t.Errorf("nil spool: %v", err)
	}
	s, err := New(nil, Config{Hostname: "MX.Test."}, reg, sp)
	if err != nil {
		t.Fatal(err)
	}
	if c := s.cfg; c.Hostname != "mx.test" || c.MaxMessageBytes != DefaultMaxMessageBytes || c.IdleTimeout != DefaultIdleTimeout ||
		c.BareNewlines != BareNewlinesNormalize || c.MaxDataLineLength != DefaultMaxDataLineLength || s.smtp.ReadTimeout != 0 {
		t.Errorf("defaults not applied: %+v", c)
	}
}

func TestSpoolFailure(t *testing.T) {
	for _, size := range []int{100, 3 << 20} { // inline, and chunked while streaming
		e := newEnv(t, nil)
		d := e.session()
		d.cmd("MAIL FROM:<s@remote.test>", 250)
		d.cmd("RCPT TO:<a@example.com>", 250)
		d.cmd("RCPT TO:<b@example.org>", 250)
		if err := e.sp.Close(); err != nil {
			t.Fatal(err)
		}
		code, text := d.transactionData("Subject: x\r\n\r\n" + strings.Repeat(strings.Repeat("y", 98)+"\r\n", size/100))
		if code != 451 || text != "4.3.0 temporary local problem, try again later" {
			t.Fatalf("size %d: %d %s", size, code, text)
		}
		d.cmd("NOOP", 250)
		sp, err := spool.Open(zaptest.NewLogger(t), spool.Config{Dir: e.dir})
		if err != nil {
			t.Fatal(err)
		}
		if n := len(sp.Domains()); n != 0 {
			t.Errorf("size %d: %d domains with mail after a failed commit", size, n)
		}
		sp.Close()
		if n := e.stats.Snapshot().Rejected[ReasonSpool]; n != 1 {
			t.Errorf("spool-error counted %d times", n)
		}
	}
}

func TestFreeSpaceFloor(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MinFreeBytes = 1 << 62 })
	d := e.session()
	if text := d.cmd("MAIL FROM:<s@remote.test>", 452); !strings.HasPrefix(text, "4.3.1") {
		t.Errorf("reply %q", text)
	}
	if n := e.stats.Snapshot().Rejected[ReasonNoSpace]; n != 1 {
		t.Errorf("no-space counted %d times", n)
	}
}

func TestSTARTTLS(t *testing.T) {
	cert, err := LoadOrCreateCert(t.TempDir(), "mx.test")
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(c *Config) { c.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}} })
	d := e.session()
	d.send("EHLO again.test\r\n")
	var caps []string
	for {
		line, err := d.r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		caps = append(caps, strings.TrimSpace(line[4:]))
		if line[3] == ' ' {
			break
		}
	}
	if !strings.Contains(strings.Join(caps, " "), "STARTTLS") {
		t.Errorf("STARTTLS not advertised: %q", caps)
	}
	d.cmd("QUIT", 221)

	c, err := smtp.DialStartTLS(e.addr, &tls.Config{InsecureSkipVerify: true, ServerName: "mx.test"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	// Over TLS the stream is not scanned; addresses are still bounded.
	if err := c.Mail(strings.Repeat("m", 5000)+"@remote.test", nil); err == nil || !strings.Contains(err.Error(), "501") {
		t.Errorf("5000-byte sender over TLS: %v", err)
	}
	if err := c.Mail("s@remote.test", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("a@example.com", nil); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	body := "Subject: tls\r\n\r\n" + strings.Repeat("t", 5000) + "\r\n"
	if _, err := w.Write([]byte(body)); err != nil {
		t.Fatal(err)
	}
	if _, err := w.CloseWithResponse(); err != nil {
		t.Fatal(err)
	}
	ms := e.messages("example.com")
	if len(ms) != 1 {
		t.Fatalf("%d messages", len(ms))
	}
	rcv, rest := splitReceived(t, ms[0].Body)
	if !strings.Contains(rcv, "with ESMTPS (TLS1.") || rest != body {
		t.Errorf("Received: %q", rcv)
	}
}

func TestLoadOrCreateCert(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	c1, err := LoadOrCreateCert(dir, "mx.test")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{CertFile, KeyFile} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v", f, st.Mode().Perm())
		}
	}
	if c1.Leaf == nil || c1.Leaf.DNSNames[0] != "mx.test" {
		t.Errorf("leaf %+v", c1.Leaf)
	}
	c2, err := LoadOrCreateCert(dir, "other.test")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(c1.Certificate[0], c2.Certificate[0]) {
		t.Errorf("second start generated a new certificate")
	}
	if err := os.Remove(filepath.Join(dir, CertFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateCert(dir, "mx.test"); err == nil || !strings.Contains(err.Error(), "only one of") {
		t.Errorf("key without cert: %v", err)
	}
}

func TestShutdown(t *testing.T) {
	e := newEnv(t, nil)
	idle := e.session()
	busy := e.session()
	busy.cmd("MAIL FROM:<s@remote.test>", 250)
	busy.cmd("RCPT TO:<a@example.com>", 250)
	busy.cmd("DATA", 354)
	busy.send("Subject: in flight\r\n\r\nfirst half\r\n")

	done := make(chan error, 1)
	go func() { done <- e.srv.Shutdown(context.Background()) }()

	lines, closed := idle.closed()
	if !closed || len(lines) != 1 || !strings.HasPrefix(lines[0], "421 ") {
		t.Errorf("idle connection: closed %v, replies %q", closed, lines)
	}
	waitFor(t, "the listener to close", func() bool {
		c, err := net.DialTimeout("tcp", e.addr, time.Second)
		if err != nil {
			return true
		}
		c.Close()
		return false
	})
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned %v with a transaction in flight", err)
	default:
	}
	busy.send("second half\r\n.\r\n")
	if text := busy.expect(250); !strings.Contains(text, "queued as") {
		t.Errorf("in-flight message: %q", text)
	}
	lines, closed = busy.closed()
	if !closed || len(lines) != 1 || !strings.HasPrefix(lines[0], "421 ") {
		t.Errorf("after the transaction: closed %v, replies %q", closed, lines)
	}
	if err := <-done; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if n := len(e.messages("example.com")); n != 1 {
		t.Errorf("%d messages stored", n)
	}
	if n := e.srv.Connections(); n != 0 {
		t.Errorf("%d connections still counted", n)
	}
}

func TestShutdownDeadline(t *testing.T) {
	e := newEnv(t, nil)
	d := e.session()
	d.cmd("MAIL FROM:<s@remote.test>", 250) // then stay silent
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := e.srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown: %v, want deadline exceeded", err)
	}
	if _, closed := d.closed(); !closed {
		t.Errorf("connection left open")
	}
	if err := e.srv.Serve(mustListen(t)); !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve after Shutdown: %v", err)
	}
}

func mustListen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}
