package imapd

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"go.uber.org/zap/zaptest"

	"github.com/mxcont/mxcont/admin/auth"
	"github.com/mxcont/mxcont/internal/testutil"
	"github.com/mxcont/mxcont/mailbox"
)

const testPassword = "correct horse battery"

// env is a store and an IMAP server on a loopback port.
type env struct {
	t    testing.TB
	dir  string
	st   *mailbox.Store
	srv  *Server
	addr string
	pool *x509.CertPool
}

// loopbackTrusted is the engine's policy: plaintext login from loopback.
func loopbackTrusted(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

// withTLS gives the server a certificate (STARTTLS) that e.pool trusts.
func withTLS(e *env, c *Config) {
	tc, pool := testutil.RelayTLS(e.t, "127.0.0.1", "localhost")
	c.TLS = tc
	e.pool = pool
}

// newEnv starts a store and a server with the engine's loopback policy,
// changed by mods.
func newEnv(t testing.TB, mods ...func(*env, *Config)) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir()}
	e.openStore()
	cfg := Config{Hostname: "imap.test", InsecureAuth: loopbackTrusted}
	for _, m := range mods {
		m(e, &cfg)
	}
	e.start(cfg, false)
	return e
}

func (e *env) openStore() {
	st, err := mailbox.Open(zaptest.NewLogger(e.t), mailbox.Config{Dir: e.dir, Hash: auth.Params{Memory: 64, Time: 1, Threads: 1}})
	if err != nil {
		e.t.Fatal(err)
	}
	e.st = st
	e.t.Cleanup(func() { _ = st.Close() })
}

// start runs a server on a fresh loopback listener, with implicit TLS
// (ServeTLS) if implicitTLS.
func (e *env) start(cfg Config, implicitTLS bool) {
	srv, err := New(zaptest.NewLogger(e.t), cfg, e.st)
	if err != nil {
		e.t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.t.Fatal(err)
	}
	e.addr = ln.Addr().String()
	serve := srv.Serve
	if implicitTLS {
		serve = srv.ServeTLS
	}
	done := make(chan error, 1)
	go func() { done <- serve(ln) }()
	e.srv = srv
	e.t.Cleanup(func() {
		_ = srv.Close()
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			e.t.Errorf("Serve returned %v", err)
		}
	})
}

func (e *env) user(addr string) {
	e.t.Helper()
	if _, err := e.st.AddUser(context.Background(), addr, testPassword); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) deliver(body string, rcpts ...string) {
	e.t.Helper()
	if n, err := e.st.Deliver(rcpts, bytes.NewReader([]byte(body)), time.Date(2026, 11, 2, 10, 30, 0, 0, time.UTC)); err != nil || n != len(rcpts) {
		e.t.Fatalf("Deliver = %d, %v", n, err)
	}
}

// dial connects without TLS; h (may be nil) receives unilateral data.
func (e *env) dial(h *imapclient.UnilateralDataHandler) *imapclient.Client {
	e.t.Helper()
	c, err := imapclient.DialInsecure(e.addr, &imapclient.Options{UnilateralDataHandler: h})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = c.Close() })
	return c
}

// login dials and logs in as addr.
func (e *env) login(addr string, h *imapclient.UnilateralDataHandler) *imapclient.Client {
	e.t.Helper()
	c := e.dial(h)
	if err := c.Login(addr, testPassword).Wait(); err != nil {
		e.t.Fatalf("login %s: %v", addr, err)
	}
	return c
}

func (e *env) clientTLS() *tls.Config {
	return &tls.Config{RootCAs: e.pool, ServerName: "127.0.0.1"}
}

// imapCode returns the response code of an IMAP error ("" if none).
func imapCode(err error) imap.ResponseCode {
	var ie *imap.Error
	if errors.As(err, &ie) {
		return ie.Code
	}
	return ""
}

// multipart is a message with a text part and an attachment.
const multipart = "From: Carol <carol@sender.example>\r\n" +
	"To: Alice <alice@example.com>\r\n" +
	"Subject: Quarterly report\r\n" +
	"Date: Mon, 02 Nov 2026 10:29:00 +0000\r\n" +
	"Message-ID: <q1@sender.example>\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: multipart/mixed; boundary=\"BOUNDARY\"\r\n" +
	"\r\n" +
	"--BOUNDARY\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"\r\n" +
	"Hello Alice, the numbers are attached.\r\n" +
	"--BOUNDARY\r\n" +
	"Content-Type: application/octet-stream; name=\"data.bin\"\r\n" +
	"Content-Disposition: attachment; filename=\"data.bin\"\r\n" +
	"Content-Transfer-Encoding: base64\r\n" +
	"\r\n" +
	"AAECAwQFBgc=\r\n" +
	"--BOUNDARY--\r\n"

func simple(subject string) string {
	return "From: bob@sender.example\r\nTo: alice@example.com\r\nSubject: " + subject +
		"\r\nDate: Tue, 03 Nov 2026 09:00:00 +0000\r\n\r\nBody of " + subject + "\r\n"
}
