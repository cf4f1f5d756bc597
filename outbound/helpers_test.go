package outbound

import (
	"context"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"
)

// testConfig is a Config with short delays for tests; dir is required.
func testConfig(dir string) Config {
	return Config{
		Dir:            dir,
		Hostname:       "mxcont.test",
		DialTimeout:    5 * time.Second,
		CommandTimeout: 10 * time.Second,
		DataTimeout:    10 * time.Second,
		RetryMin:       20 * time.Millisecond,
		RetryMax:       100 * time.Millisecond,
		ScanInterval:   10 * time.Millisecond,
	}
}

// testLogger logs to the test and to an observer the test can search.
func testLogger(t *testing.T) (*zap.Logger, *observer.ObservedLogs) {
	core, logs := observer.New(zapcore.DebugLevel)
	return zap.New(zapcore.NewTee(zaptest.NewLogger(t).Core(), core)), logs
}

// openQueue opens a queue that is stopped when the test ends.
func openQueue(t *testing.T, log *zap.Logger, cfg Config, local Local) *Queue {
	t.Helper()
	q, err := Open(log, cfg, local)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := q.Stop(ctx); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return q
}

func start(t *testing.T, q *Queue) {
	t.Helper()
	if err := q.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
}

// waitFor polls cond until it holds; the deadline only bounds a failing
// test, nothing is asserted about timing.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitEmpty waits until the queue holds nothing.
func waitEmpty(t *testing.T, q *Queue) {
	t.Helper()
	waitFor(t, "an empty queue", func() bool { return q.Stats().Messages == 0 })
}

func submit(t *testing.T, q *Queue, from string, rcpts []string, body string) {
	t.Helper()
	if _, err := q.Submit(from, rcpts, strings.NewReader(body)); err != nil {
		t.Fatalf("Submit: %v", err)
	}
}

const testBody = "From: alice@local.test\r\nTo: bob@remote.test\r\nSubject: hello\r\nMessage-ID: <m1@local.test>\r\n\r\nHi Bob.\r\n"

// accepted is one call of fakeLocal.Accept.
type accepted struct {
	From  string
	Rcpts []string
	Body  []byte
}

// fakeLocal is the node as a destination: the domains it protects and
// what Accept was given. fail, if set, decides Accept's error.
type fakeLocal struct {
	domains map[string]bool

	mu    sync.Mutex
	got   []accepted
	calls int
	fail  func(call int, from string, rcpts []string) error
}

func newLocal(domains ...string) *fakeLocal {
	l := &fakeLocal{domains: map[string]bool{}}
	for _, d := range domains {
		l.domains[d] = true
	}
	return l
}

func (l *fakeLocal) IsLocal(domain string) bool { return l.domains[domain] }

func (l *fakeLocal) Accept(from string, rcpts []string, body io.Reader) error {
	b, err := io.ReadAll(body)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls++
	if l.fail != nil {
		if err := l.fail(l.calls, from, rcpts); err != nil {
			return err
		}
	}
	l.got = append(l.got, accepted{From: from, Rcpts: append([]string(nil), rcpts...), Body: b})
	return nil
}

func (l *fakeLocal) accepted() []accepted {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]accepted(nil), l.got...)
}

// bounces returns the messages Accept got from the null sender (DSNs).
func (l *fakeLocal) bounces() []accepted {
	var out []accepted
	for _, a := range l.accepted() {
		if a.From == "" {
			out = append(out, a)
		}
	}
	return out
}

// dnsServer is an authoritative DNS server on 127.0.0.1 for test zones.
// Every address it hands out is 127.0.0.1.
type dnsServer struct {
	addr string
	mu   sync.Mutex
	rrs  map[string][]dns.RR // by lower-case FQDN; present = the name exists
}

// startDNS serves records given as zone-file lines ("remote.test. 60 IN
// MX 10 mx.remote.test.").
func startDNS(t *testing.T, records ...string) *dnsServer {
	t.Helper()
	s := &dnsServer{rrs: map[string][]dns.RR{}}
	for _, r := range records {
		rr, err := dns.NewRR(r)
		if err != nil {
			t.Fatalf("record %q: %v", r, err)
		}
		if a, ok := rr.(*dns.A); ok && !a.A.Equal(net.IPv4(127, 0, 0, 1)) {
			t.Fatalf("record %q: tests hand out 127.0.0.1 only", r)
		}
		n := strings.ToLower(rr.Header().Name)
		s.rrs[n] = append(s.rrs[n], rr)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = pc.LocalAddr().String()
	started := make(chan struct{})
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(s.serve), NotifyStartedFunc: func() { close(started) }}
	go func() { _ = srv.ActivateAndServe() }()
	<-started
	t.Cleanup(func() { _ = srv.Shutdown() })
	return s
}

func (s *dnsServer) serve(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative, m.RecursionAvailable = true, true
	if len(r.Question) == 1 {
		q := r.Question[0]
		s.mu.Lock()
		rrs, ok := s.rrs[strings.ToLower(q.Name)]
		s.mu.Unlock()
		if !ok {
			m.Rcode = dns.RcodeNameError
		}
		for _, rr := range rrs {
			if rr.Header().Rrtype == q.Qtype {
				m.Answer = append(m.Answer, rr)
			}
		}
	}
	_ = w.WriteMsg(m)
}

// resolver returns a Go resolver that asks only this server.
func (s *dnsServer) resolver() *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", s.addr)
	}}
}

func portOf(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// logged reports whether a log line with message msg was written.
func logged(logs *observer.ObservedLogs, msg string) bool {
	return logs.FilterMessage(msg).Len() > 0
}
