// Package testutil holds helpers shared by mxcont's tests.
package testutil

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// RelayServer is an in-process SMTP server standing in for a customer's
// primary mail server, scriptable per connection, per transaction and per
// recipient. It counts connections (current, maximum, total) so that tests
// can check pool limits and connection reuse.
//
// Hooks are called concurrently from the server's connection goroutines;
// a hook that blocks should also select on Done().
type RelayServer struct {
	// Addr is the listening address ("127.0.0.1:port").
	Addr string

	// OnSession runs at EHLO (before the reply); an error is returned to
	// the client as the EHLO reply. It may block to simulate a server that
	// hangs after its banner.
	OnSession func(c *smtp.Conn) error
	// OnMail decides the reply to MAIL FROM (nil: accept).
	OnMail func(from string) error
	// OnRcpt decides the reply to one RCPT TO (nil: accept). Return an
	// *smtp.SMTPError to refuse with that code.
	OnRcpt func(rcpt string) error
	// OnData consumes the body and decides the final reply (nil: read it
	// all and accept). It returns the bytes to record as received.
	OnData func(c *smtp.Conn, r io.Reader) ([]byte, error)

	srv    *smtp.Server
	ln     net.Listener
	done   chan struct{}
	closed atomic.Bool
	down   atomic.Bool

	mu       sync.Mutex
	msgs     []RelayMessage
	cur, max int
	total    int
	txs      int
}

// RelayMessage is one message the server accepted.
type RelayMessage struct {
	From  string
	Rcpts []string
	Body  []byte
	Conn  int // connection number (1-based, in accept order)
}

// RelayOption configures a RelayServer before it starts.
type RelayOption func(*RelayServer)

// WithRelayTLS makes the server offer STARTTLS with cfg.
func WithRelayTLS(cfg *tls.Config) RelayOption {
	return func(s *RelayServer) { s.srv.TLSConfig = cfg }
}

// WithRelayHooks lets the caller set hooks before the server starts.
func WithRelayHooks(f func(s *RelayServer)) RelayOption { return f }

// StartRelayServer listens on addr ("127.0.0.1:0" for any port) and serves
// until the test ends.
func StartRelayServer(t testing.TB, addr string, opts ...RelayOption) *RelayServer {
	t.Helper()
	s, err := NewRelayServer(addr, opts...)
	if err != nil {
		t.Fatalf("relay server: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// NewRelayServer listens on addr and serves; Close it.
func NewRelayServer(addr string, opts ...RelayOption) (*RelayServer, error) {
	s := &RelayServer{done: make(chan struct{})}
	s.srv = smtp.NewServer(smtp.BackendFunc(s.newSession))
	s.srv.Domain = "primary.test"
	s.srv.ErrorLog = log.New(io.Discard, "", 0)
	s.srv.AllowInsecureAuth = true
	for _, o := range opts {
		o(s)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s.ln = &countingListener{Listener: ln, s: s}
	s.Addr = ln.Addr().String()
	go func() { _ = s.srv.Serve(s.ln) }()
	return s, nil
}

// Close stops the server and closes every connection.
func (s *RelayServer) Close() {
	if s.closed.Swap(true) {
		return
	}
	close(s.done)
	_ = s.srv.Close()
}

// Done is closed when the server closes; blocking hooks select on it.
func (s *RelayServer) Done() <-chan struct{} { return s.done }

// SetDown makes the server accept and at once close new connections (a
// primary that is down but whose port is open), or serve normally again.
func (s *RelayServer) SetDown(down bool) { s.down.Store(down) }

// Messages returns a copy of the accepted messages, in order.
func (s *RelayServer) Messages() []RelayMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]RelayMessage(nil), s.msgs...)
}

// Count returns the number of accepted messages.
func (s *RelayServer) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.msgs)
}

// Conns returns the connections open now, the most open at once, and the
// total accepted (refused ones while down excluded).
func (s *RelayServer) Conns() (cur, max, total int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur, s.max, s.total
}

// Transactions returns the number of MAIL commands seen.
func (s *RelayServer) Transactions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.txs
}

type countingListener struct {
	net.Listener
	s *RelayServer
}

func (l *countingListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.s.down.Load() {
			_ = c.Close()
			continue
		}
		l.s.mu.Lock()
		l.s.cur++
		l.s.total++
		l.s.max = max(l.s.max, l.s.cur)
		n := l.s.total
		l.s.mu.Unlock()
		return &countedConn{Conn: c, s: l.s, n: n}, nil
	}
}

type countedConn struct {
	net.Conn
	s    *RelayServer
	n    int
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() {
		c.s.mu.Lock()
		c.s.cur--
		c.s.mu.Unlock()
	})
	return c.Conn.Close()
}

func connNumber(c *smtp.Conn) int {
	nc := c.Conn()
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	if cc, ok := nc.(*countedConn); ok {
		return cc.n
	}
	return 0
}

func (s *RelayServer) newSession(c *smtp.Conn) (smtp.Session, error) {
	if s.OnSession != nil {
		if err := s.OnSession(c); err != nil {
			return nil, err
		}
	}
	return &relaySession{s: s, c: c}, nil
}

type relaySession struct {
	s     *RelayServer
	c     *smtp.Conn
	from  string
	rcpts []string
}

func (x *relaySession) Reset()        { x.from, x.rcpts = "", nil }
func (x *relaySession) Logout() error { return nil }

func (x *relaySession) Mail(from string, _ *smtp.MailOptions) error {
	x.s.mu.Lock()
	x.s.txs++
	x.s.mu.Unlock()
	if x.s.OnMail != nil {
		if err := x.s.OnMail(from); err != nil {
			return err
		}
	}
	x.from, x.rcpts = from, nil
	return nil
}

func (x *relaySession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if x.s.OnRcpt != nil {
		if err := x.s.OnRcpt(to); err != nil {
			return err
		}
	}
	x.rcpts = append(x.rcpts, to)
	return nil
}

func (x *relaySession) Data(r io.Reader) error {
	var body []byte
	var err error
	if x.s.OnData != nil {
		body, err = x.s.OnData(x.c, r)
	} else {
		body, err = io.ReadAll(r)
	}
	if err != nil {
		return err
	}
	x.s.mu.Lock()
	x.s.msgs = append(x.s.msgs, RelayMessage{From: x.from, Rcpts: append([]string(nil), x.rcpts...), Body: body, Conn: connNumber(x.c)})
	x.s.mu.Unlock()
	return nil
}

// Reply returns an *smtp.SMTPError for a scripted refusal, e.g.
// Reply(550, "5.1.1 no such user").
func Reply(code int, text string) *smtp.SMTPError {
	e := &smtp.SMTPError{Code: code, Message: text, EnhancedCode: smtp.NoEnhancedCode}
	var a, b, c int
	if first, rest, ok := strings.Cut(text, " "); ok {
		if n, err := fmt.Sscanf(first, "%d.%d.%d", &a, &b, &c); err == nil && n == 3 {
			e.EnhancedCode, e.Message = smtp.EnhancedCode{a, b, c}, rest
		}
	}
	return e
}

// SlowReader reads all of r, pausing for pause after every n bytes: a
// primary that reads the body slowly but steadily.
func SlowReader(r io.Reader, n int, pause time.Duration, done <-chan struct{}) ([]byte, error) {
	var out bytes.Buffer
	buf := make([]byte, 4096)
	next := n
	for {
		k, err := r.Read(buf)
		out.Write(buf[:k])
		if err == io.EOF {
			return out.Bytes(), nil
		}
		if err != nil {
			return out.Bytes(), err
		}
		if out.Len() >= next {
			next += n
			select {
			case <-time.After(pause):
			case <-done:
				return out.Bytes(), errors.New("server closed")
			}
		}
	}
}
