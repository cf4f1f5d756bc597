package submit

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/mxcont/mxcont/admin/auth"
	"github.com/mxcont/mxcont/spool"
)

func TestAuth(t *testing.T) {
	e := startServer(t, nil)
	cases := []struct {
		name string
		mech sasl.Client
		ok   bool
	}{
		{"PLAIN good", sasl.NewPlainClient("", alice, alicePW), true},
		{"LOGIN good", sasl.NewLoginClient(alice, alicePW), true},
		{"PLAIN domain case", sasl.NewPlainClient("", "alice@LOCAL.test", alicePW), true},
		{"PLAIN bad password", sasl.NewPlainClient("", alice, "wrong"), false},
		{"LOGIN bad password", sasl.NewLoginClient(alice, "wrong"), false},
		{"PLAIN unknown user", sasl.NewPlainClient("", "mallory@local.test", alicePW), false},
		{"PLAIN not an address", sasl.NewPlainClient("", "alice", alicePW), false},
		{"PLAIN other authzid", sasl.NewPlainClient("carol@local.test", alice, alicePW), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cl := e.dialTLS(t)
			err := cl.Auth(c.mech)
			if c.ok {
				if err != nil {
					t.Fatalf("AUTH: %v", err)
				}
				if _, err := send(cl, alice, []string{bob}, testBody); err != nil {
					t.Fatalf("send after AUTH: %v", err)
				}
				return
			}
			wantCode(t, "AUTH", err, 535, smtp.EnhancedCode{5, 7, 8})
		})
	}
	// The LOGIN mechanism without an initial response, as swaks and
	// Outlook do it: "Username:" then "Password:" challenges.
	t.Run("LOGIN without initial response", func(t *testing.T) {
		tc := rawSession(t, e.addr, true)
		expect(t, tc, 334, "AUTH LOGIN")
		expect(t, tc, 334, base64.StdEncoding.EncodeToString([]byte(alice)))
		expect(t, tc, 235, base64.StdEncoding.EncodeToString([]byte(alicePW)))
	})
}

func TestAuthThrottled(t *testing.T) {
	e := startServer(t, func(c *Config) {
		c.UserThrottle = auth.ThrottleConfig{Free: 2, Base: time.Hour}
		c.IPThrottle = auth.ThrottleConfig{Free: 4, Base: time.Hour}
	})
	for i := range 2 {
		err := e.dialTLS(t).Auth(sasl.NewPlainClient("", alice, fmt.Sprintf("guess-%d", i)))
		wantCode(t, "bad password", err, 535, smtp.EnhancedCode{5, 7, 8})
	}
	before := e.users.count()
	// Throttled: even the right password is refused, and not checked.
	err := e.dialTLS(t).Auth(sasl.NewLoginClient(alice, alicePW))
	wantCode(t, "throttled user", err, 454, smtp.EnhancedCode{4, 7, 0})
	if e.users.count() != before {
		t.Fatal("a throttled login reached the user store")
	}
	// Another user is not affected, until the client address has used up
	// its own allowance (4 failures).
	if err := e.dialTLS(t).Auth(sasl.NewPlainClient("", "carol@local.test", "carol-pw")); err != nil {
		t.Fatalf("other user: %v", err)
	}
	for i := range 2 {
		err := e.dialTLS(t).Auth(sasl.NewPlainClient("", "carol@local.test", fmt.Sprintf("guess-%d", i)))
		wantCode(t, "bad password", err, 535, smtp.EnhancedCode{5, 7, 8})
	}
	err = e.dialTLS(t).Auth(sasl.NewPlainClient("", "dave@local.test", "x"))
	wantCode(t, "throttled address", err, 454, smtp.EnhancedCode{4, 7, 0})
}

func TestAuthStoreUnavailable(t *testing.T) {
	e := startServer(t, func(c *Config) { c.UserThrottle = auth.ThrottleConfig{Free: 1, Base: time.Hour} })
	e.users.err = fmt.Errorf("%w: store closed", ErrUnavailable)
	for range 3 { // not counted as failures: never throttled
		err := e.dialTLS(t).Auth(sasl.NewPlainClient("", alice, alicePW))
		wantCode(t, "store down", err, 454, smtp.EnhancedCode{4, 7, 0})
	}
	e.users.mu.Lock()
	e.users.err = nil
	e.users.mu.Unlock()
	if err := e.dialTLS(t).Auth(sasl.NewPlainClient("", alice, alicePW)); err != nil {
		t.Fatalf("AUTH after the store came back: %v", err)
	}
}

func TestMailNeedsAuth(t *testing.T) {
	e := startServer(t, nil)
	for _, tls := range []bool{false, true} {
		c := e.dial(t)
		if tls {
			c = e.dialTLS(t)
		}
		wantCode(t, fmt.Sprintf("MAIL without AUTH (tls=%v)", tls), c.Mail(alice, nil), 530, smtp.EnhancedCode{5, 7, 0})
	}
	if st := e.q.Stats(); st.Messages != 0 {
		t.Fatalf("queued %d messages without AUTH", st.Messages)
	}
}

func TestForeignSender(t *testing.T) {
	e := startServer(t, nil)
	c := e.login(t)
	for _, from := range []string{"carol@local.test", "alice@other.test", "alicia@local.test", "", "alice@local.test.evil.test", "\"alice \"@local.test"} {
		wantCode(t, "MAIL FROM:<"+from+">", c.Mail(from, nil), 553, smtp.EnhancedCode{5, 7, 1})
	}
	if _, err := send(c, "alice@Local.TEST", []string{bob}, testBody); err != nil {
		t.Fatalf("own address, domain in other case: %v", err)
	}
	// The store's user names ignore case, so this is alice too.
	if _, err := send(c, "Alice@local.test", []string{bob}, testBody); err != nil {
		t.Fatalf("own address, local part in other case: %v", err)
	}
	q := e.queued(t, "remote.test")
	if len(q) != 2 || q[0].From != alice || q[1].From != "Alice@local.test" {
		t.Fatalf("queued %+v, want two messages from %s (as typed)", q, alice)
	}
}

func TestPlaintextAuthNeedsTLS(t *testing.T) {
	e := startServer(t, nil) // InsecureAuth nil: never
	c := e.dial(t)
	if ok, _ := c.Extension("AUTH"); ok {
		t.Fatal("AUTH advertised before STARTTLS")
	}
	wantCode(t, "AUTH in plain text", c.Auth(sasl.NewPlainClient("", alice, alicePW)), 538, smtp.EnhancedCode{5, 7, 11})
	if e.users.count() != 0 {
		t.Fatal("a plain-text password reached the user store")
	}
	c = e.dialTLS(t)
	if ok, mechs := c.Extension("AUTH"); !ok || mechs != "PLAIN LOGIN" {
		t.Fatalf("after STARTTLS AUTH is %v %q, want PLAIN LOGIN", ok, mechs)
	}
	if err := c.Auth(sasl.NewPlainClient("", alice, alicePW)); err != nil {
		t.Fatalf("AUTH after STARTTLS: %v", err)
	}

	// A client InsecureAuth allows may log in without TLS.
	e2 := startServer(t, func(c *Config) { c.InsecureAuth = Loopback })
	if err := e2.dial(t).Auth(sasl.NewPlainClient("", alice, alicePW)); err != nil {
		t.Fatalf("loopback AUTH without TLS: %v", err)
	}
}

func TestRateLimit(t *testing.T) {
	e := startServer(t, func(c *Config) { c.MessagesPerHour = 2 })
	c := e.login(t)
	for i := range 2 {
		if _, err := send(c, alice, []string{bob}, testBody); err != nil {
			t.Fatalf("message %d: %v", i+1, err)
		}
	}
	wantCode(t, "third message", c.Mail(alice, nil), 450, smtp.EnhancedCode{4, 7, 1})
	// The limit is the user's, not the connection's.
	wantCode(t, "new connection", e.login(t).Mail(alice, nil), 450, smtp.EnhancedCode{4, 7, 1})
	if n := len(e.queued(t, "remote.test")); n != 2 {
		t.Fatalf("queued %d, want 2", n)
	}
}

func TestSizeLimit(t *testing.T) {
	e := startServer(t, func(c *Config) { c.MaxMessageBytes = 1000 })
	c := e.login(t)
	big := testBody + strings.Repeat("0123456789abcdef\r\n", 100)
	_, err := send(c, alice, []string{bob}, big)
	wantCode(t, "oversized body", err, 552, smtp.EnhancedCode{5, 3, 4})
	wantCode(t, "MAIL SIZE=2000", c.Mail(alice, &smtp.MailOptions{Size: 2000}), 552, smtp.EnhancedCode{5, 3, 4})
	if _, err := send(c, alice, []string{bob}, testBody); err != nil {
		t.Fatalf("small message after a large one: %v", err)
	}
	if n := len(e.queued(t, "remote.test")); n != 1 {
		t.Fatalf("queued %d, want 1", n)
	}
}

func TestMaxRecipients(t *testing.T) {
	e := startServer(t, func(c *Config) { c.MaxRecipients = 2 })
	c := e.login(t)
	if err := c.Mail(alice, nil); err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{"bob@-bad-.test", "bob@[127.0.0.1]", "b\u00f6b@remote.test"} {
		wantCode(t, "bad recipient "+r, c.Rcpt(r, nil), 553, smtp.EnhancedCode{5, 1, 3})
	}
	for _, r := range []string{"a@remote.test", "b@remote.test"} {
		if err := c.Rcpt(r, nil); err != nil {
			t.Fatal(err)
		}
	}
	wantCode(t, "third RCPT", c.Rcpt("c@remote.test", nil), 452, smtp.EnhancedCode{4, 5, 3})
}

// TestDurableBefore250: the moment the client reads 250, the message is
// in the spool's files: a copy of the directory taken then, opened as a
// spool, holds it.
func TestDurableBefore250(t *testing.T) {
	e := startServer(t, nil)
	c := e.login(t)
	reply, err := send(c, alice, []string{bob, "carol@other.test"}, testBody)
	if err != nil {
		t.Fatal(err)
	}
	copyDir := filepath.Join(t.TempDir(), "copy")
	if err := os.CopyFS(copyDir, os.DirFS(e.qdir)); err != nil {
		t.Fatal(err)
	}
	_, list, _ := strings.Cut(reply, "OK queued as ")
	ids := strings.Split(list, ",")
	if len(ids) != 2 {
		t.Fatalf("reply %q: want two queue ids (one per recipient domain)", reply)
	}
	sp, err := spool.Open(nil, spool.Config{Dir: copyDir})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	for _, s := range ids {
		id, err := spool.ParseID(s)
		if err != nil {
			t.Fatal(err)
		}
		m, err := sp.Get(id)
		if err != nil {
			t.Fatalf("%s not in the copy: %v", s, err)
		}
		body, err := sp.ReadBody(id)
		if err != nil {
			t.Fatal(err)
		}
		if m.From != alice || !strings.HasSuffix(string(body), testBody) {
			t.Fatalf("copy holds %+v with body %q", m, body)
		}
	}
}

// TestQueueFailure451: when the queue cannot store the message, the
// client gets a plain 451 4.3.0 that says nothing about why.
func TestQueueFailure451(t *testing.T) {
	e := startServer(t, nil)
	c := e.login(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.q.Stop(ctx); err != nil { // closes the spool
		t.Fatal(err)
	}
	_, err := send(c, alice, []string{bob}, testBody)
	wantCode(t, "DATA with a closed spool", err, 451, smtp.EnhancedCode{4, 3, 0})
	if msg := err.(*smtp.SMTPError).Message; msg != errTempLocal.Message {
		t.Fatalf("451 text %q leaks detail", msg)
	}
	// The transaction's log line has the detail.
	lines := e.submissions()
	if len(lines) != 1 || !strings.Contains(fmt.Sprint(lines[0].ContextMap()["error"]), "closed") {
		t.Fatalf("log lines %v", lines)
	}
}

// TestMessageFixes: bare LF and CR become CRLF; Received: is prepended;
// Date: and Message-ID: are added only when missing.
func TestMessageFixes(t *testing.T) {
	e := startServer(t, func(c *Config) { c.InsecureAuth = Loopback })
	tc := rawSession(t, e.addr, false)
	expect(t, tc, 235, "AUTH PLAIN "+base64.StdEncoding.EncodeToString([]byte("\x00"+alice+"\x00"+alicePW)))
	expect(t, tc, 250, "MAIL FROM:<alice@local.test>")
	expect(t, tc, 250, "RCPT TO:<bob@remote.test>")
	expect(t, tc, 354, "DATA")
	raw := "From: alice@local.test\nSubject: bare\rX-Long: " + strings.Repeat("y", 5000) + "\r\n\r\nline1\nline2\rline3\r\n.\r\n"
	if _, err := tc.W.WriteString(raw); err != nil {
		t.Fatal(err)
	}
	if err := tc.W.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := tc.ReadResponse(250); err != nil {
		t.Fatal(err)
	}
	q := e.queued(t, "remote.test")
	if len(q) != 1 {
		t.Fatalf("queued %d", len(q))
	}
	body := q[0].Body
	if strings.Count(body, "\n") != strings.Count(body, "\r\n") || strings.Count(body, "\r") != strings.Count(body, "\r\n") {
		t.Fatalf("bare CR or LF left in %q", body)
	}
	if !strings.HasPrefix(body, "Received: from client.test ([127.0.0.1])\r\n\tby mxcont.test (mxcont) with ESMTPA id ") {
		t.Fatalf("body starts %q", body[:min(len(body), 120)])
	}
	h := headerOf(body)
	if strings.Count(h, "\r\nDate: ") != 1 || strings.Count(h, "\r\nMessage-ID: <") != 1 {
		t.Fatalf("Date/Message-ID not added once:\n%s", h)
	}
	if !strings.HasSuffix(body, "\r\n\r\nline1\r\nline2\r\nline3\r\n") || !strings.Contains(h, "Subject: bare\r\nX-Long: yyy") {
		t.Fatalf("body %q", body)
	}

	// Roundcube's message has both: nothing added.
	c := e.login(t)
	if _, err := send(c, alice, []string{"x@other.test"}, testBody); err != nil {
		t.Fatal(err)
	}
	got := e.queued(t, "other.test")[0].Body
	received, rest, _ := strings.Cut(got, "\r\n\tby mxcont.test (mxcont) with ESMTPSA (TLS 1.3 ")
	if !strings.HasPrefix(received, "Received: from client.test ([127.0.0.1])") || !strings.HasSuffix(rest, "\r\n"+testBody) {
		t.Fatalf("message with Date and Message-ID changed: %q", got)
	}
	if strings.Count(got, "Message-ID:") != 1 || strings.Count(got, "Date:") != 1 {
		t.Fatalf("fields added to a complete message: %q", got)
	}
}

func TestKeepHeaders(t *testing.T) {
	e := startServer(t, func(c *Config) { c.KeepHeaders = true })
	c := e.login(t)
	if _, err := send(c, alice, []string{bob}, "Subject: x\r\n\r\nbody\r\n"); err != nil {
		t.Fatal(err)
	}
	if h := headerOf(e.queued(t, "remote.test")[0].Body); strings.Contains(h, "Message-ID") || strings.Contains(h, "\nDate:") {
		t.Fatalf("KeepHeaders, yet fields were added:\n%s", h)
	}
}

// TestTransactionLog: one log line per transaction with the envelope
// facts, and never a password.
func TestTransactionLog(t *testing.T) {
	e := startServer(t, nil)
	_ = e.dialTLS(t).Auth(sasl.NewPlainClient("", alice, "hunter2-wrong"))
	c := e.login(t)
	reply, err := send(c, alice, []string{bob, "b2@remote.test"}, testBody)
	if err != nil {
		t.Fatal(err)
	}
	wantCode(t, "foreign", c.Mail("carol@local.test", nil), 553, smtp.EnhancedCode{5, 7, 1})
	lines := e.submissions()
	if len(lines) != 2 {
		t.Fatalf("%d submission lines, want 2 (one queued, one refused)", len(lines))
	}
	f := lines[0].ContextMap()
	ids := f["queue-ids"].([]any)
	if f["result"] != "queued" || f["user"] != alice || f["client-ip"] != "127.0.0.1" || f["from"] != alice ||
		f["rcpts"] != int64(2) || f["size"] != int64(len(testBody)) || f["code"] != int64(250) ||
		len(ids) != 1 || !strings.HasSuffix(reply, ids[0].(string)) {
		t.Fatalf("queued line %v (reply %q)", f, reply)
	}
	if f := lines[1].ContextMap(); f["result"] != "refused" || f["code"] != int64(553) {
		t.Fatalf("refused line %v", f)
	}
	for _, l := range e.logs.All() {
		s := fmt.Sprint(l.Message, l.ContextMap())
		if strings.Contains(s, alicePW) || strings.Contains(s, "hunter2") || strings.Contains(s, "All fine here") {
			t.Fatalf("a password or content was logged: %s", s)
		}
	}
}

func TestConnectionLimit(t *testing.T) {
	e := startServer(t, func(c *Config) { c.MaxConnsPerIP = 1 })
	_ = e.dial(t) // holds the one slot
	conn, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "421 4.7.0 ") {
		t.Fatalf("second connection got %q, %v", line, err)
	}
}

// TestShutdown: an idle session is ended, and a transaction in progress
// may finish before Shutdown returns.
func TestShutdown(t *testing.T) {
	e := startServer(t, nil)
	idle := e.login(t)
	busy := e.login(t)
	if err := busy.Mail(alice, nil); err != nil {
		t.Fatal(err)
	}
	if err := busy.Rcpt(bob, nil); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		done <- e.srv.Shutdown(ctx)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for idle.Noop() == nil { // ended once Shutdown has begun
		if time.Now().After(deadline) {
			t.Fatal("idle session still open during shutdown")
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned (%v) while a transaction was open", err)
	default:
	}
	w, err := busy.Data()
	if err != nil {
		t.Fatalf("DATA during shutdown: %v", err)
	}
	if _, err := w.Write([]byte(testBody)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("end of DATA during shutdown: %v", err)
	}
	_ = busy.Quit()
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if n := len(e.queued(t, "remote.test")); n != 1 {
		t.Fatalf("queued %d, want the message finished during shutdown", n)
	}
}

func TestConfigErrors(t *testing.T) {
	e := startServer(t, nil)
	if _, err := New(nil, Config{}, nil, e.q); err == nil || err.Error() != "submit: users and queue are required" {
		t.Errorf("no users: %v", err)
	}
	if _, err := New(nil, Config{Hostname: "bad host"}, e.users, e.q); err == nil ||
		!strings.HasPrefix(err.Error(), "submit: hostname: invalid host name") {
		t.Errorf("bad hostname: %v", err)
	}
}

// rawSession opens a connection and says EHLO (after STARTTLS if useTLS
// is false the caller's InsecureAuth must allow AUTH).
func rawSession(t *testing.T, addr string, useTLS bool) *textproto.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	tc := textproto.NewConn(conn)
	t.Cleanup(func() { _ = tc.Close() })
	if _, _, err := tc.ReadResponse(220); err != nil {
		t.Fatal(err)
	}
	expect(t, tc, 250, "EHLO client.test")
	if useTLS {
		expect(t, tc, 220, "STARTTLS")
		tlsConn := tlsClient(conn)
		tc = textproto.NewConn(tlsConn)
		t.Cleanup(func() { _ = tc.Close() })
		expect(t, tc, 250, "EHLO client.test")
	}
	return tc
}

// expect sends a command line and checks the reply code.
func expect(t *testing.T, tc *textproto.Conn, code int, cmd string) string {
	t.Helper()
	if err := tc.PrintfLine("%s", cmd); err != nil {
		t.Fatal(err)
	}
	_, msg, err := tc.ReadResponse(code)
	if err != nil {
		t.Fatalf("%s: %v", strings.Fields(cmd)[0], err)
	}
	return msg
}
