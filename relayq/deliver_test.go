package relayq

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mxcont/mxcont/internal/testutil"
	"github.com/mxcont/mxcont/spool"
)

const dom = "customer.test"

func TestDeliverExactBytes(t *testing.T) {
	e := newEnv(t, nil)
	srv := testutil.StartRelayServer(t, "127.0.0.1:0")
	e.domain(dom, srv.Addr, nil)
	e.start()
	bodies := map[string][]byte{}
	for i := range 20 {
		b := body(i, 500+i*700)
		id := e.send(dom, b, "a@"+dom, "b@"+dom)
		bodies[id.String()] = b
	}
	waitFor(t, 15*time.Second, "20 messages", func() bool { return srv.Count() == 20 && e.queued(dom) == 0 })
	for _, m := range srv.Messages() {
		subj := subject(m.Body)
		var want []byte
		for _, b := range bodies {
			if subject(b) == subj {
				want = b
			}
		}
		if !bytes.Equal(m.Body, want) {
			t.Fatalf("body of %q differs: got %d bytes, want %d", subj, len(m.Body), len(want))
		}
		if strings.Join(m.Rcpts, ",") != "a@"+dom+",b@"+dom || m.From != "sender@example.net" {
			t.Fatalf("envelope %v from %q", m.Rcpts, m.From)
		}
	}
	if st := e.q.Status(dom); st.RelayState != StateUp || st.Outage != nil {
		t.Fatalf("status %+v", st)
	}
	if n := e.sp.DomainStats(dom).Messages; n != 0 {
		t.Fatalf("%d messages left in the spool", n)
	}
}

func subject(b []byte) string {
	for _, l := range strings.Split(string(b), "\r\n") {
		if s, ok := strings.CutPrefix(l, "Subject: "); ok {
			return s
		}
	}
	return ""
}

func TestPoolBoundAndReuse(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.PoolSize = 3
		c.MaxMessagesPerConn = 1000
		c.ProbeInterval = 5 * time.Second // few probe connections
	})
	srv := testutil.StartRelayServer(t, "127.0.0.1:0", testutil.WithRelayHooks(func(s *testutil.RelayServer) {
		s.OnData = func(_ *smtp.Conn, r io.Reader) ([]byte, error) {
			time.Sleep(2 * time.Millisecond) // keep connections busy
			return io.ReadAll(r)
		}
	}))
	e.domain(dom, srv.Addr, nil)
	e.domain("other.test", srv.Addr, nil) // a second domain on the same host
	for i := range 150 {
		e.send(dom, body(i, 2000))
		e.send("other.test", body(1000+i, 2000))
	}
	e.start()
	waitFor(t, 30*time.Second, "300 messages", func() bool { return srv.Count() == 300 })
	_, maxConns, total := srv.Conns()
	if maxConns > 3 {
		t.Errorf("%d connections at once, pool size 3", maxConns)
	}
	// Deliveries reuse connections: a handful of connections (plus the
	// probes) carry all 300 messages.
	if total > 12 {
		t.Errorf("%d connections for 300 messages: not reused", total)
	}
	perConn := map[int]int{}
	for _, m := range srv.Messages() {
		perConn[m.Conn]++
	}
	busiest := 0
	for _, n := range perConn {
		busiest = max(busiest, n)
	}
	if busiest < 50 {
		t.Errorf("busiest connection carried %d messages (%v)", busiest, perConn)
	}
	t.Logf("max %d connections at once, %d in all, messages per connection %v", maxConns, total, perConn)
}

func TestIdleConnectionsClosed(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.IdleTimeout = 300 * time.Millisecond
		c.ProbeInterval = 5 * time.Second
	})
	srv := testutil.StartRelayServer(t, "127.0.0.1:0")
	e.domain(dom, srv.Addr, nil)
	e.start()
	e.send(dom, body(1, 100))
	waitFor(t, 10*time.Second, "delivery", func() bool { return srv.Count() == 1 })
	waitFor(t, 10*time.Second, "idle connection closed", func() bool { cur, _, _ := srv.Conns(); return cur == 0 })
	// A new message opens a new connection.
	e.send(dom, body(2, 100))
	waitFor(t, 10*time.Second, "second delivery", func() bool { return srv.Count() == 2 })
}

// script answers RCPT per recipient and per attempt: replies[rcpt][n] is
// the reply to the n-th RCPT for rcpt (the last one repeats; "" accepts).
type script struct {
	mu      sync.Mutex
	replies map[string][]string
	seen    map[string]int
	times   map[string][]time.Time
}

func newScript(r map[string][]string) *script {
	return &script{replies: r, seen: map[string]int{}, times: map[string][]time.Time{}}
}

func (s *script) rcpt(to string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.seen[to]
	s.seen[to]++
	s.times[to] = append(s.times[to], time.Now())
	rs := s.replies[to]
	if len(rs) == 0 {
		return nil
	}
	r := rs[min(n, len(rs)-1)]
	if r == "" {
		return nil
	}
	code := int(r[0]-'0')*100 + int(r[1]-'0')*10 + int(r[2]-'0')
	return testutil.Reply(code, r[4:])
}

func (s *script) count(to string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seen[to]
}

func TestMixedRecipients(t *testing.T) {
	e := newEnv(t, nil)
	sc := newScript(map[string][]string{
		"bad@" + dom:   {"550 5.1.1 no such user here"},
		"later@" + dom: {"451 4.2.1 mailbox busy", ""},
	})
	srv := testutil.StartRelayServer(t, "127.0.0.1:0", testutil.WithRelayHooks(func(s *testutil.RelayServer) { s.OnRcpt = sc.rcpt }))
	e.domain(dom, srv.Addr, nil)
	e.start()
	id := e.send(dom, body(1, 300), "ok@"+dom, "bad@"+dom, "later@"+dom)
	other := e.send(dom, body(2, 300), "ok2@"+dom) // not held up by the first
	waitFor(t, 10*time.Second, "both accepted parts", func() bool { return srv.Count() >= 3 })
	waitFor(t, 10*time.Second, "message settled", func() bool {
		m, ok := e.get(id)
		return ok && m.State == spool.StateFailed
	})
	m, _ := e.get(id)
	want := []spool.RcptStatus{spool.Delivered, spool.Failed, spool.Delivered}
	for i, st := range m.Status {
		if st != want[i] {
			t.Fatalf("recipient %d %s: %v, want %v", i, m.Rcpts[i], st, want[i])
		}
	}
	if m.Attempts != 2 {
		t.Errorf("attempts %d, want 2", m.Attempts)
	}
	// The permanent failure is kept with the server's reply, also after
	// the second attempt (which only concerned "later").
	if m.LastError != "<bad@"+dom+">: RCPT: 550 5.1.1 no such user here" {
		t.Errorf("last error %q", m.LastError)
	}
	if _, ok := e.get(other); ok {
		t.Errorf("other message still in the spool")
	}
	var got []string
	for _, x := range srv.Messages() {
		got = append(got, strings.Join(x.Rcpts, ","))
	}
	if strings.Join(got, " ") != "ok@"+dom+" ok2@"+dom+" later@"+dom && strings.Join(got, " ") != "ok2@"+dom+" ok@"+dom+" later@"+dom {
		t.Errorf("deliveries %v", got)
	}
	if sc.count("bad@"+dom) != 1 {
		t.Errorf("the 5xx recipient was tried %d times", sc.count("bad@"+dom))
	}
	if st := e.q.Status(dom); st.RelayState != StateUp {
		t.Errorf("state %s after recipient errors", st.RelayState)
	}
}

func TestFailedReplyKept(t *testing.T) {
	e := newEnv(t, nil)
	sc := newScript(map[string][]string{"gone@" + dom: {"550 5.1.1 user gone"}})
	srv := testutil.StartRelayServer(t, "127.0.0.1:0", testutil.WithRelayHooks(func(s *testutil.RelayServer) { s.OnRcpt = sc.rcpt }))
	e.domain(dom, srv.Addr, nil)
	e.start()
	id := e.send(dom, body(1, 300), "gone@"+dom)
	waitFor(t, 10*time.Second, "failure", func() bool { m, ok := e.get(id); return ok && m.State == spool.StateFailed })
	m, _ := e.get(id)
	if !strings.Contains(m.LastError, "550 5.1.1 user gone") || !strings.Contains(m.LastError, "gone@"+dom) {
		t.Fatalf("last error %q", m.LastError)
	}
	if st := e.sp.DomainStats(dom); st.Messages != 1 || st.Failed != 1 {
		t.Fatalf("stats %+v: the failed message must be kept", st)
	}
	// FlushMessage retries a failed message (the admin fixed the mailbox).
	sc.mu.Lock()
	sc.replies["gone@"+dom] = nil
	sc.mu.Unlock()
	if err := e.q.FlushMessage(id, "admin@test"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "retried delivery", func() bool { return srv.Count() == 1 })
	waitFor(t, 5*time.Second, "message retired", func() bool { _, ok := e.get(id); return !ok })
}

func TestBackoffGrows(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.RetryBase = 100 * time.Millisecond
		c.MaxBackoff = 800 * time.Millisecond
	})
	sc := newScript(map[string][]string{"busy@" + dom: {"452 4.2.2 over quota"}})
	srv := testutil.StartRelayServer(t, "127.0.0.1:0", testutil.WithRelayHooks(func(s *testutil.RelayServer) { s.OnRcpt = sc.rcpt }))
	e.domain(dom, srv.Addr, nil)
	e.start()
	id := e.send(dom, body(1, 300), "busy@"+dom)
	time.Sleep(3 * time.Second)
	n := sc.count("busy@" + dom)
	// 100+200+400+800+800... ms: about 6 tries in 3 s; without backoff it
	// would be hundreds.
	if n < 3 || n > 9 {
		t.Fatalf("%d tries in 3s", n)
	}
	sc.mu.Lock()
	ts := append([]time.Time(nil), sc.times["busy@"+dom]...)
	sc.mu.Unlock()
	first, last := ts[1].Sub(ts[0]), ts[len(ts)-1].Sub(ts[len(ts)-2])
	if last < 2*first {
		t.Errorf("gaps did not grow: first %v, last %v", first, last)
	}
	m, _ := e.get(id)
	if m.State != spool.StateQueued || !strings.Contains(m.LastError, "452 4.2.2 over quota") || !m.NextAttempt.After(e.clock.Now().Add(-time.Second)) {
		t.Fatalf("message %+v", m)
	}
	t.Logf("%d tries, first gap %v, last gap %v", n, first, last)
}

func TestBackoffBounds(t *testing.T) {
	c := Config{RetryBase: 30 * time.Second, MaxBackoff: 15 * time.Minute}
	for n, want := range []time.Duration{30 * time.Second, time.Minute, 2 * time.Minute, 4 * time.Minute, 8 * time.Minute, 15 * time.Minute, 15 * time.Minute} {
		for range 50 {
			d := c.backoff(n)
			if d < want*9/10 || d > want*11/10 {
				t.Fatalf("backoff(%d) = %v, want %v ±10%%", n, d, want)
			}
		}
	}
	if d := c.backoff(1000); d > 15*time.Minute*11/10 {
		t.Fatalf("backoff(1000) = %v", d)
	}
	p := Config{ProbeInterval: 200 * time.Millisecond}
	if d := p.probeEvery(true); d != 200*time.Millisecond {
		t.Fatalf("fast probe %v", d)
	}
	p.ProbeInterval = 2 * time.Second
	if d := p.probeEvery(true); d != 250*time.Millisecond {
		t.Fatalf("fast probe %v", d)
	}
	p.ProbeInterval = 10 * time.Second
	if d := p.probeEvery(true); d != 500*time.Millisecond {
		t.Fatalf("fast probe %v", d)
	}
}

func Test421PausesHost(t *testing.T) {
	e := newEnv(t, nil)
	var n atomic.Int32
	srv := testutil.StartRelayServer(t, "127.0.0.1:0", testutil.WithRelayHooks(func(s *testutil.RelayServer) {
		s.OnMail = func(string) error {
			if n.Add(1) <= 2 {
				return testutil.Reply(421, "4.3.2 shutting down")
			}
			return nil
		}
	}))
	e.domain(dom, srv.Addr, nil)
	e.start()
	for i := range 5 {
		e.send(dom, body(i, 300))
	}
	waitFor(t, 15*time.Second, "all delivered", func() bool { return srv.Count() == 5 && e.queued(dom) == 0 })
	if n.Load() < 7 {
		t.Errorf("%d MAIL commands", n.Load())
	}
}

func TestHangAfterBanner(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.ProbeTimeout = 300 * time.Millisecond; c.CommandTimeout = 300 * time.Millisecond })
	var hang atomic.Bool
	hang.Store(true)
	srv := testutil.StartRelayServer(t, "127.0.0.1:0", testutil.WithRelayHooks(func(s *testutil.RelayServer) {
		s.OnSession = func(*smtp.Conn) error {
			for hang.Load() {
				select {
				case <-s.Done():
					return errors.New("closed")
				case <-time.After(10 * time.Millisecond):
				}
			}
			return nil
		}
	}))
	e.domain(dom, srv.Addr, nil)
	e.start()
	e.send(dom, body(1, 300))
	waitFor(t, 10*time.Second, "host down", func() bool {
		st := e.q.Status(dom)
		return st.RelayState == StateDown && strings.Contains(st.LastProbeError, "timeout") && st.Outage != nil
	})
	if srv.Count() != 0 || e.queued(dom) != 1 {
		t.Fatalf("delivered %d, queued %d", srv.Count(), e.queued(dom))
	}
	hang.Store(false)
	waitFor(t, 10*time.Second, "delivery", func() bool { return srv.Count() == 1 && e.queued(dom) == 0 })
}

func TestCloseMidData(t *testing.T) {
	e := newEnv(t, nil)
	var n atomic.Int32
	srv := testutil.StartRelayServer(t, "127.0.0.1:0", testutil.WithRelayHooks(func(s *testutil.RelayServer) {
		s.OnData = func(c *smtp.Conn, r io.Reader) ([]byte, error) {
			if n.Add(1) == 1 {
				_, _ = io.CopyN(io.Discard, r, 10000)
				_ = c.Conn().Close()
				return nil, errors.New("dropped")
			}
			return io.ReadAll(r)
		}
	}))
	e.domain(dom, srv.Addr, nil)
	e.start()
	b := body(1, 200_000)
	id := e.send(dom, b)
	waitFor(t, 15*time.Second, "delivery", func() bool { return srv.Count() == 1 })
	if got := srv.Messages()[0].Body; !bytes.Equal(got, b) {
		t.Fatalf("body: %d bytes, want %d", len(got), len(b))
	}
	waitFor(t, 5*time.Second, "retired", func() bool { _, ok := e.get(id); return !ok })
	time.Sleep(300 * time.Millisecond)
	if srv.Count() != 1 {
		t.Fatalf("delivered %d times", srv.Count())
	}
}

func TestBodyWriteDeadline(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.CommandTimeout = 2 * time.Second; c.DataTimeout = time.Minute })
	var n atomic.Int32
	srv := testutil.StartRelayServer(t, "127.0.0.1:0", testutil.WithRelayHooks(func(s *testutil.RelayServer) {
		s.OnData = func(c *smtp.Conn, r io.Reader) ([]byte, error) {
			if n.Add(1) == 1 {
				<-s.Done() // stop reading: our writes block once buffers fill
				return nil, errors.New("closed")
			}
			// Slow but steady reads pass: the deadline is per write.
			return testutil.SlowReader(r, 256<<10, 5*time.Millisecond, s.Done())
		}
	}))
	e.domain(dom, srv.Addr, nil)
	e.start()
	b := body(1, 6<<20) // more than the socket buffers hold
	id := e.send(dom, b)
	waitFor(t, 20*time.Second, "first attempt timed out", func() bool {
		m, _ := e.get(id)
		return m.Attempts >= 1
	})
	m, _ := e.get(id)
	if !strings.Contains(m.LastError, "write") || !strings.Contains(m.LastError, "timeout") {
		t.Fatalf("last error %q", m.LastError)
	}
	waitFor(t, 60*time.Second, "delivery", func() bool { return srv.Count() == 1 })
	if !bytes.Equal(srv.Messages()[0].Body, b) {
		t.Fatal("body differs")
	}
	waitFor(t, 30*time.Second, "retired", func() bool { _, ok := e.get(id); return !ok })
}
