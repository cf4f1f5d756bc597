package submit

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mxcont/mxcont/internal/testutil"
	"github.com/mxcont/mxcont/outbound"
	"github.com/mxcont/mxcont/spool"
)

const (
	alice   = "alice@local.test"
	alicePW = "correct horse battery staple"
	bob     = "bob@remote.test"
)

// fakeUsers is a user store: address → password.
type fakeUsers struct {
	mu    sync.Mutex
	pw    map[string]string
	calls int
	err   error // returned by every call when set
}

func (u *fakeUsers) Authenticate(_ context.Context, address, password string) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.calls++
	if u.err != nil {
		return u.err
	}
	if p, ok := u.pw[address]; ok && p == password {
		return nil
	}
	return errors.New("mailbox: authentication failed")
}

func (u *fakeUsers) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.calls
}

// env is a running submission server with its (stopped) outbound queue:
// accepted mail stays queued for inspection.
type env struct {
	addr  string
	srv   *Server
	q     *outbound.Queue
	qdir  string
	users *fakeUsers
	logs  *observer.ObservedLogs
}

func startServer(t *testing.T, mod func(*Config)) *env {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	log := zap.New(zapcore.NewTee(zaptest.NewLogger(t).Core(), core))
	e := &env{qdir: t.TempDir(), logs: logs,
		users: &fakeUsers{pw: map[string]string{alice: alicePW, "carol@local.test": "carol-pw"}}}
	var err error
	if e.q, err = outbound.Open(log.Named("outbound"), outbound.Config{Dir: e.qdir, Hostname: "mxcont.test"}, nil); err != nil {
		t.Fatal(err)
	}
	tlsCfg, _ := testutil.RelayTLS(t, "127.0.0.1")
	cfg := Config{Hostname: "mxcont.test", TLSConfig: tlsCfg}
	if mod != nil {
		mod(&cfg)
	}
	if e.srv, err = New(log, cfg, e.users, e.q); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = ln.Addr().String()
	done := make(chan error, 1)
	go func() { done <- e.srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := e.srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		if err := e.q.Stop(ctx); err != nil {
			t.Errorf("queue Stop: %v", err)
		}
	})
	return e
}

// dial connects and says EHLO, in plain text.
func (e *env) dial(t *testing.T) *smtp.Client {
	t.Helper()
	conn, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	c := smtp.NewClient(conn)
	t.Cleanup(func() { _ = c.Close() })
	if err := c.Hello("client.test"); err != nil {
		t.Fatalf("EHLO: %v", err)
	}
	return c
}

// dialTLS connects and does STARTTLS.
func (e *env) dialTLS(t *testing.T) *smtp.Client {
	t.Helper()
	conn, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := smtp.NewClientStartTLS(conn, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("STARTTLS: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if err := c.Hello("client.test"); err != nil {
		t.Fatalf("EHLO: %v", err)
	}
	return c
}

// login is a TLS connection authenticated as alice.
func (e *env) login(t *testing.T) *smtp.Client {
	t.Helper()
	c := e.dialTLS(t)
	if err := c.Auth(sasl.NewPlainClient("", alice, alicePW)); err != nil {
		t.Fatalf("AUTH: %v", err)
	}
	return c
}

// send runs one transaction and returns the final reply text.
func send(c *smtp.Client, from string, rcpts []string, body string) (string, error) {
	if err := c.Mail(from, nil); err != nil {
		return "", err
	}
	for _, r := range rcpts {
		if err := c.Rcpt(r, nil); err != nil {
			return "", err
		}
	}
	w, err := c.Data()
	if err != nil {
		return "", err
	}
	if _, err := io.WriteString(w, body); err != nil {
		return "", err
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		return "", err
	}
	return resp.StatusText, nil
}

// wantCode fails unless err is a reply with code and enhanced code ec.
func wantCode(t *testing.T, what string, err error, want int, ec smtp.EnhancedCode) {
	t.Helper()
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != want || se.EnhancedCode != ec {
		t.Fatalf("%s: got %v, want %d %d.%d.%d", what, err, want, ec[0], ec[1], ec[2])
	}
}

// stored is one queued record with its body.
type stored struct {
	spool.Message
	Body string
}

// queued returns what the outbound queue holds for domain.
func (e *env) queued(t *testing.T, domain string) []stored {
	t.Helper()
	ms, _ := e.q.List(domain, 0, 100)
	out := make([]stored, len(ms))
	for i, m := range ms {
		r, err := e.q.Body(m.ID)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(r)
		_ = r.Close()
		if err != nil {
			t.Fatal(err)
		}
		out[i] = stored{Message: m, Body: string(b)}
	}
	return out
}

// submissions returns the "submission" log lines.
func (e *env) submissions() []observer.LoggedEntry {
	return e.logs.FilterMessage("submission").All()
}

const testBody = "From: Alice <alice@local.test>\r\nTo: bob@remote.test\r\nSubject: re: outage\r\n" +
	"Date: Mon, 02 Jan 2006 15:04:05 -0700\r\nMessage-ID: <rc1@local.test>\r\n\r\nAll fine here.\r\n"

func headerOf(body string) string {
	h, _, _ := strings.Cut(body, "\r\n\r\n")
	return h + "\r\n"
}

func tlsClient(conn net.Conn) net.Conn {
	return tls.Client(conn, &tls.Config{InsecureSkipVerify: true})
}
