package relayq

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/bbolt"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/mxcont/mxcont/engine/registry"
	"github.com/mxcont/mxcont/spool"
)

// clock is a test clock: real time plus an adjustable offset.
type clock struct{ off atomic.Int64 }

func (c *clock) Now() time.Time          { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *clock) Advance(d time.Duration) { c.off.Add(int64(d)) }

// recAlerter records alerts instead of sending them.
type recAlerter struct {
	mu     sync.Mutex
	alerts []Alert
}

func (r *recAlerter) Send(_ context.Context, a Alert) error {
	r.mu.Lock()
	r.alerts = append(r.alerts, a)
	r.mu.Unlock()
	return nil
}

func (r *recAlerter) kinds() []AlertKind {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []AlertKind
	for _, a := range r.alerts {
		out = append(out, a.Kind)
	}
	return out
}

// env is one queue over a real spool, bbolt file and memory registry.
type env struct {
	t      testing.TB
	quiet  bool // log warnings only (benchmarks)
	dir    string
	sp     *spool.Spool
	db     *bbolt.DB
	reg    *registry.MemStore
	q      *Queue
	cfg    Config
	clock  *clock
	alerts *recAlerter
}

// testConfig is fast enough for tests and tolerant of a loaded machine.
func testConfig() Config {
	return Config{
		Hostname:       "mx.mxcont.test",
		ProbeInterval:  200 * time.Millisecond,
		ProbeTimeout:   2 * time.Second,
		DialTimeout:    2 * time.Second,
		CommandTimeout: 3 * time.Second,
		DataTimeout:    3 * time.Second,
		PoolSize:       4,
		IdleTimeout:    5 * time.Second,
		RetryBase:      100 * time.Millisecond,
		MaxBackoff:     time.Second,
		AlertGrace:     200 * time.Millisecond,
		EndAlertWait:   3 * time.Second,
		SweepInterval:  100 * time.Millisecond,
	}
}

func newEnv(t testing.TB, mut func(*Config)) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir(), clock: &clock{}, alerts: &recAlerter{}}
	e.cfg = testConfig()
	e.cfg.Now = e.clock.Now
	e.cfg.Alerter = e.alerts
	if mut != nil {
		mut(&e.cfg)
	}
	var err error
	e.sp, err = spool.Open(zaptest.NewLogger(t), spool.Config{Dir: filepath.Join(e.dir, "spool"), Shards: 2, MaintainInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.sp.Close() })
	e.openDB()
	e.reg = registry.NewMemory(zaptest.NewLogger(t))
	return e
}

func (e *env) openDB() {
	db, err := bbolt.Open(filepath.Join(e.dir, "state.db"), 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		e.t.Fatal(err)
	}
	e.db = db
	e.t.Cleanup(func() { _ = db.Close() })
}

// start creates and starts the queue; it is stopped when the test ends.
func (e *env) start() *Queue {
	e.t.Helper()
	log := zaptest.NewLogger(e.t)
	if e.quiet {
		log = zaptest.NewLogger(e.t, zaptest.Level(zap.WarnLevel))
	}
	q, err := New(log, e.cfg, e.sp, e.db, e.reg)
	if err != nil {
		e.t.Fatal(err)
	}
	q.Start()
	e.q = q
	e.t.Cleanup(func() { e.stop() })
	return q
}

func (e *env) stop() {
	if e.q == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.q.Stop(ctx); err != nil {
		e.t.Errorf("stop: %v", err)
	}
}

func (e *env) domain(name, relay string, mut func(*registry.Domain)) {
	e.t.Helper()
	d := registry.Domain{Name: name, RelayHost: relay}
	if mut != nil {
		mut(&d)
	}
	if _, err := e.reg.Put(d); err != nil {
		e.t.Fatal(err)
	}
	if e.q != nil {
		if err := e.q.Refresh(); err != nil {
			e.t.Fatal(err)
		}
	}
}

func (e *env) send(domain string, body []byte, rcpts ...string) spool.ID {
	e.t.Helper()
	if len(rcpts) == 0 {
		rcpts = []string{"user@" + domain}
	}
	id, err := e.sp.Append(spool.Envelope{Domain: domain, From: "sender@example.net", Rcpts: rcpts}, body)
	if err != nil {
		e.t.Fatal(err)
	}
	return id
}

func (e *env) get(id spool.ID) (spool.Message, bool) {
	m, err := e.sp.Get(id)
	return m, err == nil
}

// queued is the number of live messages with a pending recipient.
func (e *env) queued(domain string) int {
	st := e.sp.DomainStats(domain)
	return st.Messages - st.Failed
}

func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// freeAddr returns a loopback address where nothing listens (for now).
func freeAddr(t testing.TB, ip string) string {
	t.Helper()
	l, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

// body returns a CRLF message body of about n bytes with a unique subject
// and lines that need dot-stuffing.
func body(i, n int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "Received: from test\r\nMessage-ID: <%d@test>\r\nSubject: message %d\r\n\r\n", i, i)
	b.WriteString(".leading dot\r\n.\r\n..two dots\r\n")
	for b.Len() < n {
		fmt.Fprintf(&b, "line %d of message %d %s\r\n", b.Len(), i, strings.Repeat("x", 40))
	}
	return b.Bytes()
}
