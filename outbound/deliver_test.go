package outbound

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"mime"
	"mime/multipart"
	"net"
	"net/mail"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/mxcont/mxcont/internal/testutil"
	"github.com/mxcont/mxcont/spool"
)

func TestSmarthostDelivery(t *testing.T) {
	srv := testutil.StartRelayServer(t, "127.0.0.1:0")
	log, _ := testLogger(t)
	cfg := testConfig(t.TempDir())
	cfg.Smarthost = srv.Addr
	q := openQueue(t, log, cfg, newLocal("local.test"))

	ids, err := q.Submit("alice@local.test", []string{"bob@remote.test", "carol@other.test", "dave@REMOTE.test"},
		strings.NewReader(testBody))
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 2 {
		t.Fatalf("Submit: %d records, want one per recipient domain (2)", len(ids))
	}
	if st := q.Stats(); st.Messages != 2 || st.Domains != 2 || st.Oldest.IsZero() {
		t.Fatalf("Stats before Start = %+v", st)
	}
	start(t, q)
	waitEmpty(t, q)
	msgs := srv.Messages()
	if len(msgs) != 2 {
		t.Fatalf("smarthost got %d messages, want 2", len(msgs))
	}
	got := map[string]bool{}
	for _, m := range msgs {
		if m.From != "alice@local.test" {
			t.Errorf("MAIL FROM %q", m.From)
		}
		if string(m.Body) != testBody {
			t.Errorf("body %q, want %q", m.Body, testBody)
		}
		got[strings.Join(m.Rcpts, ",")] = true
	}
	if !got["bob@remote.test,dave@remote.test"] || !got["carol@other.test"] {
		t.Fatalf("recipients per transaction: %v", got)
	}
}

func TestMXDelivery(t *testing.T) {
	srv := testutil.StartRelayServer(t, "127.0.0.1:0")
	d := startDNS(t,
		"remote.test. 60 IN MX 5 gone.remote.test.", // no address: skipped
		"remote.test. 60 IN MX 10 mx.remote.test.",
		"mx.remote.test. 60 IN A 127.0.0.1",
		"implicit.test. 60 IN A 127.0.0.1", // no MX: the domain itself
	)
	log, _ := testLogger(t)
	cfg := testConfig(t.TempDir())
	cfg.Resolver = d.resolver()
	cfg.Port = portOf(t, srv.Addr)
	q := openQueue(t, log, cfg, newLocal("local.test"))
	submit(t, q, "alice@local.test", []string{"bob@remote.test", "eve@implicit.test"}, testBody)
	start(t, q)
	waitEmpty(t, q)
	if n := srv.Count(); n != 2 {
		t.Fatalf("MX host got %d messages, want 2", n)
	}
}

func TestOpportunisticSTARTTLS(t *testing.T) {
	// A certificate nobody trusts: MX delivery must still use TLS.
	tlsCfg, _ := testutil.RelayTLS(t, "mx.remote.test")
	var tlsSeen atomic.Int32
	srv := testutil.StartRelayServer(t, "127.0.0.1:0", testutil.WithRelayTLS(tlsCfg),
		testutil.WithRelayHooks(func(s *testutil.RelayServer) {
			s.OnData = func(c *smtp.Conn, r io.Reader) ([]byte, error) {
				if _, ok := c.TLSConnectionState(); ok {
					tlsSeen.Add(1)
				}
				return io.ReadAll(r)
			}
		}))
	d := startDNS(t, "remote.test. 60 IN MX 10 mx.remote.test.", "mx.remote.test. 60 IN A 127.0.0.1")
	log, logs := testLogger(t)
	cfg := testConfig(t.TempDir())
	cfg.Resolver = d.resolver()
	cfg.Port = portOf(t, srv.Addr)
	q := openQueue(t, log, cfg, nil)
	submit(t, q, "alice@local.test", []string{"bob@remote.test"}, testBody)
	start(t, q)
	waitEmpty(t, q)
	if srv.Count() != 1 || tlsSeen.Load() != 1 {
		t.Fatalf("delivered %d, over TLS %d; want 1 and 1", srv.Count(), tlsSeen.Load())
	}
	for _, e := range logs.FilterMessage("delivered").All() {
		if e.ContextMap()["tls"] != true {
			t.Errorf("delivered log line without tls=true: %v", e.ContextMap())
		}
	}
}

func TestRetryAfter4xx(t *testing.T) {
	var rcpts atomic.Int32
	srv := testutil.StartRelayServer(t, "127.0.0.1:0", testutil.WithRelayHooks(func(s *testutil.RelayServer) {
		s.OnRcpt = func(string) error {
			if rcpts.Add(1) <= 2 {
				return testutil.Reply(451, "4.3.0 try again later")
			}
			return nil
		}
	}))
	log, logs := testLogger(t)
	cfg := testConfig(t.TempDir())
	cfg.Smarthost = srv.Addr
	q := openQueue(t, log, cfg, newLocal("local.test"))
	submit(t, q, "alice@local.test", []string{"bob@remote.test"}, testBody)
	start(t, q)
	waitEmpty(t, q)
	if n := srv.Count(); n != 1 {
		t.Fatalf("delivered %d times, want once", n)
	}
	if n := rcpts.Load(); n != 3 {
		t.Fatalf("%d RCPTs, want 3 (two refused with 451, then accepted)", n)
	}
	if n := logs.FilterMessage("deferred").Len(); n != 2 {
		t.Fatalf("%d deferred log lines, want 2", n)
	}
}

// TestPermanentFailureDSN: a 5xx for one recipient fails it at once with a
// DSN to the (local) sender; the other recipient is delivered once.
func TestPermanentFailureDSN(t *testing.T) {
	srv := testutil.StartRelayServer(t, "127.0.0.1:0", testutil.WithRelayHooks(func(s *testutil.RelayServer) {
		s.OnRcpt = func(to string) error {
			if strings.HasPrefix(to, "bad@") {
				return testutil.Reply(550, "5.1.1 no such user here")
			}
			return nil
		}
	}))
	log, _ := testLogger(t)
	cfg := testConfig(t.TempDir())
	cfg.Smarthost = srv.Addr
	local := newLocal("local.test")
	q := openQueue(t, log, cfg, local)
	ids, err := q.Submit("alice@local.test", []string{"good@remote.test", "bad@remote.test"}, strings.NewReader(testBody))
	if err != nil {
		t.Fatal(err)
	}
	start(t, q)
	waitFor(t, "a DSN", func() bool { return len(local.bounces()) == 1 })
	waitEmpty(t, q)
	if n := srv.Count(); n != 1 {
		t.Fatalf("remote got %d messages, want 1", n)
	}
	if r := srv.Messages()[0].Rcpts; len(r) != 1 || r[0] != "good@remote.test" {
		t.Fatalf("delivered to %v", r)
	}
	b := local.bounces()[0]
	if len(b.Rcpts) != 1 || b.Rcpts[0] != "alice@local.test" {
		t.Fatalf("DSN to %v, want the sender", b.Rcpts)
	}
	rep := parseDSN(t, b.Body)
	if !strings.Contains(rep.status, "Final-Recipient: rfc822; bad@remote.test") ||
		!strings.Contains(rep.status, "Status: 5.1.1") ||
		!strings.Contains(rep.status, "Diagnostic-Code: smtp; 550 5.1.1 no such user here") ||
		!strings.Contains(rep.status, "X-Mxcont-Queue-ID: "+ids[0].String()) {
		t.Fatalf("delivery-status part:\n%s", rep.status)
	}
	if strings.Contains(rep.status, "good@remote.test") {
		t.Fatalf("DSN mentions the delivered recipient:\n%s", rep.status)
	}
	if !strings.Contains(rep.headers, "Subject: hello") || strings.Contains(rep.headers, "Hi Bob") {
		t.Fatalf("original headers part:\n%s", rep.headers)
	}
}

// TestNoBounceForBounce: a message with a null sender that fails is
// dropped without a DSN.
func TestNoBounceForBounce(t *testing.T) {
	srv := testutil.StartRelayServer(t, "127.0.0.1:0", testutil.WithRelayHooks(func(s *testutil.RelayServer) {
		s.OnRcpt = func(string) error { return testutil.Reply(550, "5.1.1 no such user") }
	}))
	log, logs := testLogger(t)
	cfg := testConfig(t.TempDir())
	cfg.Smarthost = srv.Addr
	local := newLocal("local.test")
	q := openQueue(t, log, cfg, local)
	submit(t, q, "", []string{"bad@remote.test"}, testBody)
	start(t, q)
	waitEmpty(t, q)
	if !logged(logs, "no bounce for a bounce") || len(local.accepted()) != 0 {
		t.Fatalf("want no DSN for a null sender and its log line; local got %d messages", len(local.accepted()))
	}
}

func TestNullMXAndUnknownDomain(t *testing.T) {
	d := startDNS(t, "nullmx.test. 60 IN MX 0 .")
	log, _ := testLogger(t)
	cfg := testConfig(t.TempDir())
	cfg.Resolver = d.resolver()
	cfg.Port = 1 // never dialled
	local := newLocal("local.test")
	q := openQueue(t, log, cfg, local)
	submit(t, q, "alice@local.test", []string{"x@nullmx.test"}, testBody)
	submit(t, q, "alice@local.test", []string{"y@nowhere.test"}, testBody)
	start(t, q)
	waitFor(t, "two DSNs", func() bool { return len(local.bounces()) == 2 })
	waitEmpty(t, q)
	var all string
	for _, b := range local.bounces() {
		all += parseDSN(t, b.Body).status
	}
	for _, want := range []string{"Final-Recipient: rfc822; x@nullmx.test", "Status: 5.1.10",
		"Final-Recipient: rfc822; y@nowhere.test", "Status: 5.1.2"} {
		if !strings.Contains(all, want) {
			t.Errorf("DSNs lack %q:\n%s", want, all)
		}
	}
}

func TestExpiryBounces(t *testing.T) {
	srv := testutil.StartRelayServer(t, "127.0.0.1:0", testutil.WithRelayHooks(func(s *testutil.RelayServer) {
		s.OnRcpt = func(string) error { return testutil.Reply(451, "4.2.0 mailbox busy") }
	}))
	log, _ := testLogger(t)
	cfg := testConfig(t.TempDir())
	cfg.Smarthost = srv.Addr
	cfg.MaxAge = 1 // every message is too old after its first attempt
	local := newLocal("local.test")
	q := openQueue(t, log, cfg, local)
	submit(t, q, "alice@local.test", []string{"bob@remote.test"}, testBody)
	start(t, q)
	waitFor(t, "a DSN", func() bool { return len(local.bounces()) == 1 })
	waitEmpty(t, q)
	rep := parseDSN(t, local.bounces()[0].Body)
	if !strings.Contains(rep.status, "Status: 4.4.7") || !strings.Contains(rep.status, "4.2.0 mailbox busy") {
		t.Fatalf("expiry DSN:\n%s", rep.status)
	}
}

func TestLocalRecipients(t *testing.T) {
	srv := testutil.StartRelayServer(t, "127.0.0.1:0")
	log, _ := testLogger(t)
	cfg := testConfig(t.TempDir())
	cfg.Smarthost = srv.Addr
	local := newLocal("local.test", "sister.test")
	local.fail = func(call int, _ string, _ []string) error {
		if call == 1 {
			return errors.New("relay spool busy") // temporary: retried
		}
		return nil
	}
	q := openQueue(t, log, cfg, local)
	submit(t, q, "alice@local.test", []string{"bob@local.test", "carol@sister.test", "dan@local.test"}, testBody)
	start(t, q)
	waitEmpty(t, q)
	got := local.accepted()
	if len(got) != 2 {
		t.Fatalf("Local.Accept took %d messages, want 2: %+v", len(got), got)
	}
	seen := map[string]bool{}
	for _, a := range got {
		if a.From != "alice@local.test" || string(a.Body) != testBody {
			t.Errorf("Accept(%q, %v, %q)", a.From, a.Rcpts, a.Body)
		}
		seen[strings.Join(a.Rcpts, ",")] = true
	}
	if !seen["bob@local.test,dan@local.test"] || !seen["carol@sister.test"] {
		t.Fatalf("local recipients: %v", seen)
	}
	if srv.Count() != 0 {
		t.Fatalf("local mail went out to the smarthost")
	}
}

func TestLocalPermanentFailure(t *testing.T) {
	log, _ := testLogger(t)
	local := newLocal("local.test")
	local.fail = func(_ int, from string, _ []string) error {
		if from != "" {
			return fmt.Errorf("%w: mailbox disabled", ErrPermanent)
		}
		return nil
	}
	q := openQueue(t, log, testConfig(t.TempDir()), local)
	submit(t, q, "alice@local.test", []string{"bob@local.test"}, testBody)
	start(t, q)
	waitFor(t, "a DSN", func() bool { return len(local.bounces()) == 1 })
	waitEmpty(t, q)
	if rep := parseDSN(t, local.bounces()[0].Body); !strings.Contains(rep.status, "mailbox disabled") {
		t.Fatalf("DSN:\n%s", rep.status)
	}
}

// TestRestartWithQueuedMail: mail queued before a stop is delivered once
// after the queue is reopened, and is gone for good afterwards.
func TestRestartWithQueuedMail(t *testing.T) {
	srv := testutil.StartRelayServer(t, "127.0.0.1:0")
	log, _ := testLogger(t)
	cfg := testConfig(t.TempDir())
	cfg.Smarthost = srv.Addr

	q1, err := Open(log, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	submit(t, q1, "alice@local.test", []string{"bob@remote.test"}, testBody)
	if err := q1.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	if srv.Count() != 0 {
		t.Fatal("delivered before Start")
	}

	q2, err := Open(log, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st := q2.Stats(); st.Messages != 1 {
		t.Fatalf("after reopen: %+v, want 1 message", st)
	}
	start(t, q2)
	waitEmpty(t, q2)
	if err := q2.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}

	q3 := openQueue(t, log, cfg, nil)
	if st := q3.Stats(); st.Messages != 0 {
		t.Fatalf("after the second reopen: %+v, want an empty queue", st)
	}
	if n := srv.Count(); n != 1 {
		t.Fatalf("delivered %d times, want once", n)
	}
}

func TestRouteOverride(t *testing.T) {
	node := testutil.StartRelayServer(t, "127.0.0.1:0")
	own := testutil.StartRelayServer(t, "127.0.0.1:0")
	log, _ := testLogger(t)
	cfg := testConfig(t.TempDir())
	cfg.Smarthost = node.Addr
	cfg.Route = func(d string) string {
		if d == "special.test" {
			return own.Addr
		}
		return ""
	}
	q := openQueue(t, log, cfg, nil)
	submit(t, q, "alice@local.test", []string{"bob@remote.test"}, testBody)
	submit(t, q, "sam@Special.TEST", []string{"bob@remote.test"}, testBody)
	start(t, q)
	waitEmpty(t, q)
	if node.Count() != 1 || own.Count() != 1 {
		t.Fatalf("node smarthost got %d, domain smarthost %d; want 1 and 1", node.Count(), own.Count())
	}
	if f := own.Messages()[0].From; f != "sam@Special.TEST" {
		t.Fatalf("domain smarthost got mail from %q", f)
	}
}

// authServer is a smarthost that requires AUTH PLAIN over STARTTLS.
type authServer struct {
	addr  string
	mu    sync.Mutex
	users []string // authenticated users of accepted messages
}

func startAuthServer(t *testing.T, tlsCfg *tls.Config, user, pass string) *authServer {
	t.Helper()
	a := &authServer{}
	s := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &authSession{srv: a, user: user, pass: pass}, nil
	}))
	s.Domain = "smarthost.test"
	s.TLSConfig = tlsCfg
	s.ErrorLog = stdlog.New(io.Discard, "", 0)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a.addr = ln.Addr().String()
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(func() { _ = s.Close() })
	return a
}

type authSession struct {
	srv        *authServer
	user, pass string
	authed     string
}

func (s *authSession) AuthMechanisms() []string { return []string{"PLAIN"} }

func (s *authSession) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, u, p string) error {
		if u != s.user || p != s.pass {
			return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "bad credentials"}
		}
		s.authed = u
		return nil
	}), nil
}

func (s *authSession) Mail(string, *smtp.MailOptions) error {
	if s.authed == "" {
		return &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "authentication required"}
	}
	return nil
}
func (s *authSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s *authSession) Data(r io.Reader) error {
	if _, err := io.ReadAll(r); err != nil {
		return err
	}
	s.srv.mu.Lock()
	s.srv.users = append(s.srv.users, s.authed)
	s.srv.mu.Unlock()
	return nil
}
func (s *authSession) Reset()        {}
func (s *authSession) Logout() error { return nil }

func (a *authServer) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.users)
}

func TestSmarthostAuthAndVerifiedTLS(t *testing.T) {
	tlsCfg, pool := testutil.RelayTLS(t, "127.0.0.1")
	a := startAuthServer(t, tlsCfg, "relay-user", "s3cret")

	t.Run("trusted", func(t *testing.T) {
		log, _ := testLogger(t)
		cfg := testConfig(t.TempDir())
		cfg.Smarthost, cfg.RootCAs = a.addr, pool
		cfg.SmarthostUser, cfg.SmarthostPassword = "relay-user", "s3cret"
		q := openQueue(t, log, cfg, nil)
		submit(t, q, "alice@local.test", []string{"bob@remote.test"}, testBody)
		start(t, q)
		waitEmpty(t, q)
		if a.count() != 1 || a.users[0] != "relay-user" {
			t.Fatalf("smarthost took %v", a.users)
		}
	})

	// An unverifiable certificate: nothing is sent, the mail waits.
	for _, insecure := range []bool{false, true} {
		t.Run(fmt.Sprintf("untrusted/insecure=%v", insecure), func(t *testing.T) {
			log, logs := testLogger(t)
			cfg := testConfig(t.TempDir())
			cfg.Smarthost = a.addr // RootCAs nil: the system roots, which do not know the test CA
			cfg.SmarthostUser, cfg.SmarthostPassword = "relay-user", "s3cret"
			cfg.SmarthostInsecureTLS = insecure
			q := openQueue(t, log, cfg, nil)
			before := a.count()
			submit(t, q, "alice@local.test", []string{"bob@remote.test"}, testBody)
			start(t, q)
			if insecure {
				waitEmpty(t, q)
				if a.count() != before+1 {
					t.Fatal("not delivered with SmarthostInsecureTLS")
				}
				return
			}
			waitFor(t, "a deferral", func() bool { return logged(logs, "deferred") })
			if a.count() != before {
				t.Fatal("delivered to a smarthost whose certificate did not verify")
			}
			ms, _ := q.List("remote.test", 0, 10)
			if len(ms) != 1 || !strings.Contains(ms[0].LastError, "certificate") {
				t.Fatalf("queued %+v, want one message with a certificate error", ms)
			}
		})
	}
}

func TestSmarthostCredentialsNeedTLS(t *testing.T) {
	srv := testutil.StartRelayServer(t, "127.0.0.1:0") // no STARTTLS
	log, logs := testLogger(t)
	cfg := testConfig(t.TempDir())
	cfg.Smarthost = srv.Addr
	cfg.SmarthostUser, cfg.SmarthostPassword = "relay-user", "s3cret"
	q := openQueue(t, log, cfg, nil)
	submit(t, q, "alice@local.test", []string{"bob@remote.test"}, testBody)
	start(t, q)
	waitFor(t, "a deferral", func() bool { return logged(logs, "deferred") })
	if srv.Count() != 0 {
		t.Fatal("sent through a smarthost without TLS although credentials are configured")
	}
	ms, _ := q.List("remote.test", 0, 10)
	if len(ms) != 1 || !strings.Contains(ms[0].LastError, "plain text") {
		t.Fatalf("queued %+v", ms)
	}
}

func TestSubmitErrors(t *testing.T) {
	log, _ := testLogger(t)
	cfg := testConfig(t.TempDir())
	cfg.MaxMessageBytes = 1000
	q := openQueue(t, log, cfg, nil)
	cases := []struct {
		name  string
		rcpts []string
		body  string
		want  error
	}{
		{"no recipients", nil, testBody, ErrInvalid},
		{"no domain", []string{"bob"}, testBody, ErrInvalid},
		{"bad domain", []string{"bob@-x-.test"}, testBody, ErrInvalid},
		{"too large", []string{"bob@remote.test"}, strings.Repeat("x", 1001), ErrTooLarge},
	}
	for _, c := range cases {
		if _, err := q.Submit("alice@local.test", c.rcpts, strings.NewReader(c.body)); !errors.Is(err, c.want) {
			t.Errorf("%s: Submit error %v, want %v", c.name, err, c.want)
		}
	}
	if st := q.Stats(); st.Messages != 0 {
		t.Fatalf("failed submissions left %d messages", st.Messages)
	}
	// After Stop, Submit fails and stores nothing.
	if err := q.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Submit("alice@local.test", []string{"bob@remote.test"}, strings.NewReader(testBody)); err == nil {
		t.Fatal("Submit after Stop succeeded")
	}
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no dir", Config{}, "outbound: no directory"},
		{"bad smarthost", Config{Dir: dir, Smarthost: "host:0"}, `outbound: smarthost: relay_host: invalid port "0"`},
		{"user without password", Config{Dir: dir, Smarthost: "h.test", SmarthostUser: "u"},
			"outbound: smarthost user and password go together"},
		{"credentials without smarthost", Config{Dir: dir, SmarthostUser: "u", SmarthostPassword: "p"},
			"outbound: smarthost credentials without a smarthost"},
		{"bad hostname", Config{Dir: dir, Hostname: "a b"}, "outbound: hostname: invalid host name"},
	}
	for _, c := range cases {
		_, err := Open(nil, c.cfg, nil)
		if err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.name, err, c.want)
		}
	}
}

// dsnParts is a parsed DSN: its delivery-status and header parts.
type dsnParts struct {
	status, headers string
}

// parseDSN checks the RFC 3464 structure of b and returns its parts.
func parseDSN(t *testing.T, b []byte) dsnParts {
	t.Helper()
	msg, err := mail.ReadMessage(strings.NewReader(string(b)))
	if err != nil {
		t.Fatalf("DSN: %v\n%s", err, b)
	}
	if msg.Header.Get("Auto-Submitted") != "auto-replied" || !strings.HasPrefix(msg.Header.Get("From"), "Mail Delivery System") {
		t.Fatalf("DSN header: %v", msg.Header)
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/report" || params["report-type"] != "delivery-status" {
		t.Fatalf("DSN content type %q (%v)", msg.Header.Get("Content-Type"), err)
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	var types []string
	var out dsnParts
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("DSN part: %v", err)
		}
		body, _ := io.ReadAll(p)
		ct := p.Header.Get("Content-Type")
		types = append(types, strings.Split(ct, ";")[0])
		switch {
		case ct == "message/delivery-status":
			out.status = string(body)
		case ct == "text/rfc822-headers":
			out.headers = string(body)
		}
	}
	if strings.Join(types, ",") != "text/plain,message/delivery-status,text/rfc822-headers" {
		t.Fatalf("DSN parts %v", types)
	}
	return out
}

// failingStore refuses to record outcomes, like a spool with a sticky
// write error (reads still work).
type failingStore struct {
	store
}

func (failingStore) Delete(spool.ID, string) error { return errors.New("injected: disk full") }
func (failingStore) RecordAttempt(spool.ID, spool.Attempt) error {
	return errors.New("injected: disk full")
}

// TestUnrecordedOutcomeNotRetried: when the spool cannot record that a
// message was delivered, the message must not be sent again at the next
// scan (it would be, every ScanInterval, while the disk is full).
func TestUnrecordedOutcomeNotRetried(t *testing.T) {
	srv := testutil.StartRelayServer(t, "127.0.0.1:0")
	log, logs := testLogger(t)
	cfg := testConfig(t.TempDir())
	cfg.Smarthost = srv.Addr
	cfg.RetryMax = time.Hour // the hold after a failed record
	q := openQueue(t, log, cfg, nil)
	submit(t, q, "alice@local.test", []string{"bob@remote.test"}, testBody)
	q.sp = failingStore{q.sp}
	start(t, q)
	waitFor(t, "the failed delete", func() bool { return logged(logs, "delete finished message") })
	idle := func() bool { q.mu.Lock(); defer q.mu.Unlock(); return q.running == 0 }
	waitFor(t, "an idle queue", idle)
	for range 3 {
		q.dispatch()
	}
	waitFor(t, "an idle queue", idle)
	if n := srv.Count(); n != 1 {
		t.Fatalf("delivered %d times, want once", n)
	}
}

func TestStartAfterStop(t *testing.T) {
	q, err := Open(nil, testConfig(t.TempDir()), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := q.Start(); !errors.Is(err, ErrStopped) {
		t.Fatalf("Start after Stop: %v, want ErrStopped", err)
	}
}
