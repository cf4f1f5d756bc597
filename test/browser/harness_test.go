// Package browser drives the admin portal in a real headless Chromium
// (Debian's /usr/bin/chromium, installed by scripts/ci-setup.sh) against an
// in-process node, as an administrator would: log in, add a domain, watch
// mail queue during an outage and leave when the customer's server is back.
//
// Screenshots of every step are written as PNG files to $MXCONT_SCREENSHOTS
// (default: a temporary directory). With MXCONT_UPDATE_SCREENSHOTS=1 they
// are also copied to testdata/screenshots/ to be committed.
//
// Under CI (CI non-empty) a missing Chromium fails the test; elsewhere the
// test skips. MXCONT_CHROMIUM names another browser binary.
package browser

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/emersion/go-smtp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/mxcont/mxcont/admin"
	"github.com/mxcont/mxcont/engine"
	"github.com/mxcont/mxcont/relayq"
	"github.com/mxcont/mxcont/smtpd"
)

const chromiumPath = "/usr/bin/chromium"

// needChromium returns the browser's path: a missing browser fails the
// test under CI and skips it elsewhere.
func needChromium(t *testing.T) string {
	t.Helper()
	p := chromiumPath
	if env := os.Getenv("MXCONT_CHROMIUM"); env != "" {
		p = env
	}
	if _, err := os.Stat(p); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s not installed (scripts/ci-setup.sh installs it): %v", p, err)
		}
		t.Skipf("%s not installed", p)
	}
	return p
}

// freeAddr returns a loopback address whose port was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) Sync() error { return nil }

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// startNode starts an in-process node on loopback: SMTP and HTTP on free
// ports, fast probes, and the operator "admin" with the given password.
func startNode(t *testing.T, password string) *engine.Node {
	t.Helper()
	return startNodeWith(t, password, nil)
}

// startNodeWith is startNode with a hook to change the configuration.
func startNodeWith(t *testing.T, password string, mod func(*engine.Config)) *engine.Node {
	t.Helper()
	t.Setenv(admin.EnvAdminPassword, password)
	logs := &syncBuffer{}
	log := zap.New(zapcore.NewCore(zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig()), logs, zap.InfoLevel))
	cfg := engine.Config{
		DataDir:  t.TempDir(),
		Hostname: "mx.browser.test",
		SMTPAddr: freeAddr(t),
		HTTPAddr: freeAddr(t),
		SMTP:     smtpd.Config{MinFreeBytes: 1 << 20},
		Relay: relayq.Config{
			ProbeInterval: 300 * time.Millisecond,
			ProbeTimeout:  5 * time.Second,
			RetryBase:     time.Second,
			MaxBackoff:    5 * time.Second,
		},
		// Sample the queue depth every second, so that the dashboard's chart
		// has a shape within the test's few seconds.
		Admin: admin.Config{HistoryInterval: time.Second},
	}
	if mod != nil {
		mod(&cfg)
	}
	node, err := engine.New(log, cfg)
	if err != nil {
		t.Fatalf("engine.New: %v", err)
	}
	if err := node.Start(); err != nil {
		_ = node.Shutdown(context.Background())
		t.Fatalf("node start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := node.Shutdown(ctx); err != nil {
			t.Errorf("node shutdown: %v", err)
		}
		if t.Failed() {
			t.Logf("node log (tail):\n%s", tail(logs.String(), 60))
		}
	})
	return node
}

// message is one message received by the sink.
type message struct {
	From string
	To   []string
	Data []byte
}

// sink is a fake customer primary: an SMTP server that accepts every
// message and records it.
type sink struct {
	addr     string
	srv      *smtp.Server
	mu       sync.Mutex
	msgs     []message
	received chan struct{} // gets a value per message (buffered)
}

func newSink(addr string) *sink {
	s := &sink{addr: addr, received: make(chan struct{}, 100)}
	s.srv = smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &sinkSession{s: s}, nil }))
	s.srv.Addr = addr
	s.srv.Domain = "primary.customer.test"
	s.srv.ReadTimeout = 30 * time.Second
	s.srv.WriteTimeout = 30 * time.Second
	return s
}

// start listens on the sink's address (the relay host comes up).
func (s *sink) start(t *testing.T) {
	t.Helper()
	var ln net.Listener
	var err error
	// The port was free when it was chosen; a moment of TIME_WAIT or a
	// slow machine may need a retry.
	for deadline := time.Now().Add(10 * time.Second); ; {
		if ln, err = net.Listen("tcp", s.addr); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("sink listen on %s: %v", s.addr, err)
	}
	go func() { _ = s.srv.Serve(ln) }()
	t.Cleanup(func() { _ = s.srv.Close() })
}

func (s *sink) messages() []message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]message(nil), s.msgs...)
}

type sinkSession struct {
	s    *sink
	from string
	to   []string
}

func (ss *sinkSession) Mail(from string, _ *smtp.MailOptions) error {
	ss.from = from
	return nil
}

func (ss *sinkSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.to = append(ss.to, to)
	return nil
}

func (ss *sinkSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	ss.s.mu.Lock()
	ss.s.msgs = append(ss.s.msgs, message{From: ss.from, To: ss.to, Data: b})
	ss.s.mu.Unlock()
	select {
	case ss.s.received <- struct{}{}:
	default:
	}
	return nil
}

func (ss *sinkSession) Reset() { ss.from, ss.to = "", nil }

func (ss *sinkSession) Logout() error { return nil }

var queuedAs = regexp.MustCompile(`queued as ([A-Za-z0-9._-]+)`)

// sendMail sends one message over SMTP and returns the queue id from the
// "250 2.0.0 queued as <id>" reply.
func sendMail(t *testing.T, addr, from, to, subject, body string) string {
	t.Helper()
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatalf("smtp dial %s: %v", addr, err)
	}
	defer c.Close()
	if err := c.Hello("filter.provider.test"); err != nil {
		t.Fatalf("EHLO: %v", err)
	}
	if err := c.Mail(from, nil); err != nil {
		t.Fatalf("MAIL FROM: %v", err)
	}
	if err := c.Rcpt(to, nil); err != nil {
		t.Fatalf("RCPT TO: %v", err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatalf("DATA: %v", err)
	}
	msg := fmt.Sprintf("From: Alice Sender <%s>\r\nTo: <%s>\r\nSubject: %s\r\nDate: %s\r\nMessage-ID: <%d@sender.test>\r\n\r\n%s\r\n",
		from, to, subject, time.Now().Format(time.RFC1123Z), time.Now().UnixNano(), body)
	if _, err := io.WriteString(w, msg); err != nil {
		t.Fatalf("DATA body: %v", err)
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		t.Fatalf("end of DATA: %v", err)
	}
	_ = c.Quit()
	m := queuedAs.FindStringSubmatch(resp.StatusText)
	if m == nil {
		t.Fatalf("reply to DATA %q has no queue id", resp.StatusText)
	}
	t.Logf("SMTP: 250 %s", resp.StatusText)
	return m[1]
}

// shots saves screenshots.
type shots struct {
	t     *testing.T
	dir   string
	saved []string
}

func newShots(t *testing.T) *shots {
	dir := os.Getenv("MXCONT_SCREENSHOTS")
	if dir == "" {
		dir = t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	s := &shots{t: t, dir: dir}
	t.Cleanup(s.publish)
	return s
}

func (s *shots) save(name string, png []byte) {
	s.t.Helper()
	p := filepath.Join(s.dir, name)
	if err := os.WriteFile(p, png, 0o644); err != nil {
		s.t.Fatal(err)
	}
	s.saved = append(s.saved, name)
	s.t.Logf("screenshot %s", p)
}

// publish copies the screenshots to testdata/screenshots when
// MXCONT_UPDATE_SCREENSHOTS=1 and the test passed.
func (s *shots) publish() {
	if os.Getenv("MXCONT_UPDATE_SCREENSHOTS") != "1" || s.t.Failed() {
		return
	}
	dst := filepath.Join("testdata", "screenshots")
	if err := os.MkdirAll(dst, 0o755); err != nil {
		s.t.Error(err)
		return
	}
	for _, name := range s.saved {
		b, err := os.ReadFile(filepath.Join(s.dir, name))
		if err == nil {
			err = os.WriteFile(filepath.Join(dst, name), b, 0o644)
		}
		if err != nil {
			s.t.Error(err)
		}
	}
	s.t.Logf("copied %d screenshots to %s", len(s.saved), dst)
}

// withoutDBus drops Chromium's complaints about the missing D-Bus.
func withoutDBus(s string) string {
	var keep []string
	for _, l := range strings.Split(s, "\n") {
		if !strings.Contains(l, "dbus/") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

// browser is one Chromium tab on the portal.
type browser struct {
	t      *testing.T
	ctx    context.Context // the tab; no deadline
	base   string          // http://host:port
	shots  *shots
	mu     sync.Mutex
	errors []string // console errors and uncaught exceptions
}

// startBrowser starts a headless Chromium with a fresh profile and opens
// one tab. It stops with the test.
func startBrowser(t *testing.T, base string, sh *shots) *browser {
	t.Helper()
	out := &syncBuffer{}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(needChromium(t)),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Headless,
		chromedp.NoSandbox, // root in CI
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-domain-reliability", true),
		chromedp.Flag("no-pings", true),
		chromedp.Flag("no-proxy-server", true),
		chromedp.Flag("metrics-recording-only", true),
		chromedp.Flag("safebrowsing-disable-auto-update", true),
		// The portal is on 127.0.0.1: no name needs resolving, so none is.
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"),
		chromedp.Flag("lang", "en-US"),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.WindowSize(1280, 900),
		chromedp.CombinedOutput(out),
		chromedp.Env("TZ=UTC"),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(allocCtx)
	b := &browser{t: t, ctx: ctx, base: base, shots: sh}
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc()
		if t.Failed() {
			t.Logf("chromium output (tail, without D-Bus noise):\n%s", tail(withoutDBus(out.String()), 30))
		}
	})
	// The first Run starts the browser; it must not have a deadline (that
	// would end the browser with it), so a watchdog bounds it instead.
	started := make(chan error, 1)
	go func() { started <- chromedp.Do(ctx) }()
	select {
	case err := <-started:
		if err != nil {
			t.Fatalf("start chromium: %v\n%s", err, tail(withoutDBus(out.String()), 30))
		}
	case <-time.After(60 * time.Second):
		cancelTab()
		t.Fatalf("chromium did not start within 60s\n%s", tail(withoutDBus(out.String()), 30))
	}
	console := chromedp.Console(ctx)
	go func() {
		for m, err := range console {
			if err != nil {
				return
			}
			// Expected 401s (the session check before login, the wrong
			// password) are network entries of the browser log; what
			// counts is the page's own errors.
			if m.IsException() || (m.Type == chromedp.ConsoleError && m.Source == "") {
				b.mu.Lock()
				b.errors = append(b.errors, fmt.Sprintf("%s: %s (%s:%d)", m.Type, m.Text, m.URL, m.Line))
				b.mu.Unlock()
			}
		}
	}()
	return b
}

// consoleErrors returns the errors the page logged so far.
func (b *browser) consoleErrors() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.errors...)
}

// do runs actions with a timeout; what names the step in failures.
func (b *browser) do(what string, timeout time.Duration, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, timeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.fail(what, err)
	}
}

// eval evaluates a JavaScript expression and decodes its value.
func eval[T any](b *browser, what, expr string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.fail(what, err)
	}
	return v
}

// waitJS waits until the JavaScript expression is truthy.
func (b *browser) waitJS(what, expr string, timeout time.Duration) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, timeout+5*time.Second)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr,
		chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(timeout)))
	if err != nil {
		b.fail(what, err)
	}
}

// until repeats act and then check (a JavaScript expression) until the
// check is truthy, for pages that must be refreshed to see a change.
func (b *browser) until(what string, timeout time.Duration, act chromedp.Action[chromedp.Void], check string) {
	b.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		b.do(what, 20*time.Second, act)
		ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
		_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](check,
			chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(time.Second)))
		cancel()
		if err == nil {
			return
		}
		if b.ctx.Err() != nil {
			b.fail(what, err)
		}
		if time.Now().After(deadline) {
			b.fail(what, fmt.Errorf("not true after %v: %s", timeout, check))
		}
		time.Sleep(200 * time.Millisecond) // polling period, not an assertion
	}
}

// shot saves a screenshot of the whole page.
func (b *browser) shot(name string) {
	b.t.Helper()
	// A full-page capture shows the page from the top, with the sticky top
	// bar at the top: scroll there. A smooth scroll still running (the
	// message view scrolls itself into view) can move the page again, so
	// scroll, wait two frames and check, until it stays there.
	b.waitJS("page settled before "+name, `(window.scrollTo({top: 0, left: 0, behavior: 'instant'}),
		new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(() => r(window.scrollY === 0)))))`, wait)
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.fail("screenshot "+name, err)
	}
	b.shots.save(name, png)
}

// fail stops the test with a screenshot and the page's visible text.
func (b *browser) fail(what string, err error) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	if png, e := chromedp.Run(ctx, chromedp.CaptureScreenshot()); e == nil {
		name := "FAILED-" + strings.NewReplacer(" ", "-", "/", "-", "#", "", ".png", "").Replace(what) + ".png"
		_ = os.WriteFile(filepath.Join(b.shots.dir, name), png, 0o644)
		b.t.Logf("screenshot of the failure: %s", filepath.Join(b.shots.dir, name))
	}
	if text, e := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`)); e == nil {
		b.t.Logf("page text:\n%s", text)
	}
	if errs := b.consoleErrors(); len(errs) > 0 {
		b.t.Logf("console errors:\n%s", strings.Join(errs, "\n"))
	}
	b.t.Fatalf("%s: %v", what, err)
}
