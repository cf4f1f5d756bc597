package smtpd

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mxcont/mxcont/engine/registry"
	"github.com/mxcont/mxcont/spool"
)

// ioTimeout bounds every network step of a test. It is generous: tests
// must not fail on a loaded machine because of it.
const ioTimeout = 30 * time.Second

// env is a running acceptor on 127.0.0.1 with a real spool and registry.
type env struct {
	t      testing.TB
	srv    *Server
	sp     *spool.Spool
	dir    string
	reg    *registry.MemStore
	stats  *Stats
	logs   *observer.ObservedLogs // the mail log
	ops    *observer.ObservedLogs // the operations log, debug level
	addr   string
	served chan error
}

// testDomains are registered in every env.
var testDomains = []registry.Domain{
	{Name: "example.com", RelayHost: "mail.example.com"},
	{Name: "example.org", RelayHost: "mail.example.org"},
	{Name: "bücher.example", RelayHost: "mail.xn--bcher-kva.example"},
	{Name: "restricted.example", RelayHost: "mail.restricted.example", AllowedSources: []string{"192.0.2.0/24"}},
	{Name: "local.example", RelayHost: "mail.local.example", AllowedSources: []string{"127.0.0.0/8", "::1"}},
}

// newEnv starts an acceptor; mod may change the test Config.
func newEnv(t testing.TB, mod func(*Config)) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir(), stats: &Stats{}, served: make(chan error, 1)}
	sp, err := spool.Open(testLogger(t, zapcore.InfoLevel).Named("spool"), spool.Config{Dir: e.dir, Shards: 4})
	if err != nil {
		t.Fatalf("spool: %v", err)
	}
	e.sp = sp
	e.reg = registry.NewMemory(nil)
	for _, d := range testDomains {
		if _, err := e.reg.Put(d); err != nil {
			t.Fatalf("registry: %v", err)
		}
	}
	core, logs := observer.New(zapcore.InfoLevel)
	e.logs = logs
	cfg := Config{
		Hostname:     "mx.test",
		MinFreeBytes: 1 << 20,
		Metrics:      e.stats,
		Logger:       zap.New(zapcore.NewTee(testLogger(t, zapcore.InfoLevel).Core(), core)).Named("mail"),
	}
	if mod != nil {
		mod(&cfg)
	}
	opsCore, ops := observer.New(zapcore.DebugLevel)
	e.ops = ops
	srv, err := New(zap.New(zapcore.NewTee(testLogger(t, zapcore.DebugLevel).Core(), opsCore)), cfg, e.reg, sp)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	e.srv = srv
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	e.addr = ln.Addr().String()
	go func() { e.served <- srv.Serve(ln) }()
	t.Cleanup(e.close)
	return e
}

// testLogger logs through t, except for a fuzz target, which must not
// log through its *testing.F from inside the fuzz function, and for a
// benchmark, which would measure the test log.
func testLogger(t testing.TB, lvl zapcore.Level) *zap.Logger {
	switch t.(type) {
	case *testing.F, *testing.B:
		return zap.NewNop()
	}
	return zaptest.NewLogger(t, zaptest.Level(lvl))
}

func (e *env) close() {
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	if err := e.srv.Shutdown(ctx); err != nil {
		e.t.Errorf("Shutdown: %v", err)
	}
	select {
	case err := <-e.served:
		if !errors.Is(err, ErrServerClosed) {
			e.t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	case <-time.After(ioTimeout):
		e.t.Errorf("Serve did not return after Shutdown")
	}
	if n := e.srv.panics.Load(); n != 0 {
		e.t.Errorf("%d session panics", n)
	}
	if _, fuzzing := e.t.(*testing.F); !fuzzing {
		if n := e.ops.FilterMessage("go-smtp panicked").Len(); n != 0 {
			e.t.Errorf("go-smtp panicked %d times", n)
		}
	}
	if err := e.sp.Close(); err != nil {
		e.t.Errorf("spool close: %v", err)
	}
}

// stored is one spooled message with its body.
type stored struct {
	spool.Message
	Body string
}

// messages returns every message spooled for domain.
func (e *env) messages(domain string) []stored {
	e.t.Helper()
	ms, _ := e.sp.List(domain, 0, 1000)
	out := make([]stored, 0, len(ms))
	for _, m := range ms {
		r, err := e.sp.OpenBody(m.ID)
		if err != nil {
			e.t.Fatalf("open body %s: %v", m.ID, err)
		}
		b, err := io.ReadAll(r)
		r.Close()
		if err != nil {
			e.t.Fatalf("read body %s: %v", m.ID, err)
		}
		out = append(out, stored{Message: m, Body: string(b)})
	}
	return out
}

// total returns the number of live messages in the spool.
func (e *env) total() int {
	n := 0
	for _, d := range e.sp.Domains() {
		n += d.Messages
	}
	return n
}

// splitReceived cuts the leading Received: field off a stored body.
func splitReceived(t testing.TB, body string) (received, rest string) {
	t.Helper()
	if !strings.HasPrefix(body, "Received: ") {
		t.Fatalf("body does not start with a Received: field: %.80q", body)
	}
	i := 0
	for {
		j := strings.Index(body[i:], "\r\n")
		if j < 0 {
			t.Fatalf("unterminated Received: field")
		}
		i += j + 2
		if i >= len(body) || (body[i] != '\t' && body[i] != ' ') {
			return body[:i], body[i:]
		}
	}
}

// dialog is a raw SMTP client connection.
type dialog struct {
	t testing.TB
	c net.Conn
	r *bufio.Reader
}

// dial connects and returns the dialog without reading the greeting.
func (e *env) dial() *dialog {
	e.t.Helper()
	c, err := net.DialTimeout("tcp", e.addr, ioTimeout)
	if err != nil {
		e.t.Fatalf("dial: %v", err)
	}
	e.t.Cleanup(func() { c.Close() })
	return &dialog{t: e.t, c: c, r: bufio.NewReader(c)}
}

// session connects, reads the greeting and says EHLO.
func (e *env) session() *dialog {
	e.t.Helper()
	d := e.dial()
	d.expect(220)
	d.cmd("EHLO client.test", 250)
	return d
}

// send writes raw bytes.
func (d *dialog) send(s string) {
	d.t.Helper()
	_ = d.c.SetWriteDeadline(time.Now().Add(ioTimeout))
	if _, err := io.WriteString(d.c, s); err != nil {
		d.t.Fatalf("write: %v", err)
	}
}

// reply reads one (possibly multi-line) reply: its code and its last line
// without the code.
func (d *dialog) reply() (int, string, error) {
	_ = d.c.SetReadDeadline(time.Now().Add(ioTimeout))
	for {
		line, err := d.r.ReadString('\n')
		if err != nil {
			return 0, line, err
		}
		line = strings.TrimRight(line, "\r\n")
		if len(line) < 4 {
			return 0, line, fmt.Errorf("short reply %q", line)
		}
		code, err := strconv.Atoi(line[:3])
		if err != nil {
			return 0, line, fmt.Errorf("bad reply %q", line)
		}
		if line[3] == ' ' {
			return code, line[4:], nil
		}
	}
}

// expect reads a reply and checks its code; it returns the text.
func (d *dialog) expect(code int) string {
	d.t.Helper()
	got, text, err := d.reply()
	if err != nil {
		d.t.Fatalf("reading reply (want %d): %v", code, err)
	}
	if got != code {
		d.t.Fatalf("reply %d %s, want %d", got, text, code)
	}
	return text
}

// cmd sends a command line and checks the reply code.
func (d *dialog) cmd(line string, code int) string {
	d.t.Helper()
	d.send(line + "\r\n")
	return d.expect(code)
}

// closed reports whether the server closes the connection, reading and
// discarding replies until EOF. It returns the replies seen.
func (d *dialog) closed() ([]string, bool) {
	var lines []string
	_ = d.c.SetReadDeadline(time.Now().Add(ioTimeout))
	for {
		line, err := d.r.ReadString('\n')
		if line != "" {
			lines = append(lines, strings.TrimRight(line, "\r\n"))
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return lines, false
			}
			return lines, true
		}
	}
}

// transaction runs MAIL, RCPTs and DATA with body (which must end in
// CRLF) and returns the final reply.
func (d *dialog) transaction(from string, rcpts []string, body string) (int, string) {
	d.t.Helper()
	d.cmd("MAIL FROM:<"+from+">", 250)
	for _, r := range rcpts {
		d.cmd("RCPT TO:<"+r+">", 250)
	}
	d.cmd("DATA", 354)
	d.send(dotStuff(body) + ".\r\n")
	code, text, err := d.reply()
	if err != nil {
		d.t.Fatalf("reading DATA reply: %v", err)
	}
	return code, text
}

// dotStuff doubles leading dots, as a client must.
func dotStuff(body string) string {
	lines := strings.SplitAfter(body, "\r\n")
	for i, l := range lines {
		if strings.HasPrefix(l, ".") {
			lines[i] = "." + l
		}
	}
	return strings.Join(lines, "")
}

// checkCRLF fails if s has a CR not followed by LF or an LF not preceded
// by CR.
func checkCRLF(t testing.TB, s string) {
	t.Helper()
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\r' && (i+1 == len(s) || s[i+1] != '\n'):
			t.Fatalf("bare CR at %d in %q", i, s)
		case s[i] == '\n' && (i == 0 || s[i-1] != '\r'):
			t.Fatalf("bare LF at %d in %q", i, s)
		}
	}
}

// queued extracts the ids from a "queued as a,b" reply text.
func queued(t testing.TB, text string) []spool.ID {
	t.Helper()
	_, list, ok := strings.Cut(text, "queued as ")
	if !ok {
		t.Fatalf("reply %q has no queue id", text)
	}
	var ids []spool.ID
	for _, s := range strings.Split(list, ",") {
		id, err := spool.ParseID(s)
		if err != nil {
			t.Fatalf("reply %q: %v", text, err)
		}
		ids = append(ids, id)
	}
	return ids
}

// waitFor polls cond until it holds or ioTimeout passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(ioTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
