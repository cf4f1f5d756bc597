package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestConnectionFlood opens 10,000 connections at once against the real
// binary, twice: from one address (the per-address limit, 50, must refuse
// all but 50 with 421 while other clients are served) and from 40
// addresses (the total limit, 1000, must refuse the rest with 421, and a
// legitimate client too while the node is full). A swaks transaction
// succeeds during the first flood and as soon as the second ends; /healthz
// stays ok; the node's descriptors and goroutines return to where they
// were. Everything targets 127.0.0.0/8.
func TestConnectionFlood(t *testing.T) {
	t.Parallel()
	const (
		flood    = 10_000
		maxTotal = 1000
		maxPerIP = 50
	)
	if lim := raiseNoFile(t, 32768); lim < flood+2000 {
		t.Skipf("open-file limit %d: too low for %d connections (raising it needs root)", lim, flood)
	}
	// The idle timeout outlasts a flood on a slow machine: served flood
	// connections must stay open until they are counted.
	n := startNode(t, t.TempDir(), domainYAML("customer.test", "127.0.0.1:1"),
		fmt.Sprintf("max_connections: %d", maxTotal), fmt.Sprintf("max_connections_per_ip: %d", maxPerIP), "idle_timeout: 2m")
	a := login(t, n.httpAddr)
	before := sampleNode(t, n, a, nil)
	t.Logf("before: %s", before)
	queued := 0

	// 1. One address: all but maxPerIP refused; others still served.
	f1 := openFlood(t, n.smtpAddr, []string{"127.20.0.1"}, flood)
	t.Logf("flood from one address: %s", f1)
	if len(f1.held) != maxPerIP || f1.refused != flood-maxPerIP || len(f1.other) > 0 {
		t.Errorf("want %d served and %d refused with %q, got %s", maxPerIP, flood-maxPerIP, tooMany, f1)
	}
	swaksOK(t, n, "during the flood from one address")
	queued++
	healthy(t, a, "during the flood from one address")
	f1.close()

	// 2. Forty addresses: the total limit; a legitimate client is refused
	// with 421 too while the node is full, and served once the flood ends.
	var srcs []string
	for i := 1; i <= 40; i++ {
		srcs = append(srcs, fmt.Sprintf("127.21.0.%d", i))
	}
	f2 := openFlood(t, n.smtpAddr, srcs, flood)
	t.Logf("flood from %d addresses: %s", len(srcs), f2)
	perIP := map[string]int{}
	for _, c := range f2.held {
		perIP[c.src]++
	}
	for src, k := range perIP {
		if k > maxPerIP {
			t.Errorf("%s holds %d connections, limit %d", src, k, maxPerIP)
		}
	}
	if len(f2.held) > maxTotal || len(f2.held) < maxTotal*9/10 || f2.refused != flood-len(f2.held) || len(f2.other) > 0 {
		t.Errorf("want about %d served and the rest refused with %q, got %s", maxTotal, tooMany, f2)
	}
	out, _ := swaks(t, n.smtpAddr, "--to", "user@customer.test", "--from", "a@sender.example")
	if r := lastReply(out); !strings.HasPrefix(r, "421 4.7.0") {
		t.Errorf("swaks while %d connections fill the node: last reply %q, want 421 4.7.0", len(f2.held), r)
	}
	healthy(t, a, "while the node is full")
	f2.close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := swaks(t, n.smtpAddr, "--to", "user@customer.test", "--from", "a@sender.example")
		if r := lastReply(out); err == nil && strings.HasPrefix(r, "250 2.0.0 queued as ") {
			queued++
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("swaks still refused 30s after the flood ended: %q", lastReply(out))
		}
		time.Sleep(200 * time.Millisecond)
	}
	healthy(t, a, "after the floods")
	a.waitQueued("customer.test", queued, 10*time.Second)

	// Everything the floods opened is gone again.
	var after nodeSample
	for deadline := time.Now().Add(30 * time.Second); ; {
		after = sampleNode(t, n, a, nil)
		if after.fds <= before.fds+fdSlack && after.goroutines <= before.goroutines+goroutineSlack || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("after: %s; %d messages queued (the swaks ones only)", after, queued)
	checkNoGrowth(t, before, after)
}

// TestSlowloris fills one address's connection allowance with slow
// senders against the real binary: the 50 it may hold are served and the
// next ones refused with 421; of those served, one that never speaks is
// cut by the idle timeout and one that dribbles a message body a byte a
// second by the DATA timeout, both with 421 4.4.2, and nothing of the
// dribbled message is queued, and one that dribbles commands a byte a
// second by the command line's deadline (a line must be complete within
// the idle timeout of its first byte). Meanwhile swaks from another
// address is served.
func TestSlowloris(t *testing.T) {
	t.Parallel()
	const (
		maxPerIP  = 50
		idle      = 3 * time.Second
		dataLimit = 4 * time.Second
		watch     = 8 * time.Second
	)
	n := startNode(t, t.TempDir(), domainYAML("customer.test", "127.0.0.1:1"),
		fmt.Sprintf("max_connections_per_ip: %d", maxPerIP), fmt.Sprintf("idle_timeout: %s", idle), fmt.Sprintf("data_timeout: %s", dataLimit))
	a := login(t, n.httpAddr)
	f := openFlood(t, n.smtpAddr, []string{"127.22.0.1"}, maxPerIP+10)
	t.Logf("slow senders from one address: %s", f)
	if len(f.held) != maxPerIP || f.refused != 10 || len(f.other) > 0 {
		t.Fatalf("want %d served and 10 refused with %q, got %s", maxPerIP, tooMany, f)
	}
	defer f.close()
	type result struct {
		kind  string
		after time.Duration
		reply string
	}
	results := make(chan result, len(f.held))
	var wg sync.WaitGroup
	for i, c := range f.held {
		kind := [...]string{"silent", "body", "command"}[i%3]
		wg.Add(1)
		go func() {
			defer wg.Done()
			after, reply := slowloris(c.conn, c.r, kind, watch)
			results <- result{kind, after, reply}
		}()
	}
	time.Sleep(time.Second)
	swaksOK(t, n, "while one address holds its connections with slow senders")
	healthy(t, a, "during the slow senders")
	wg.Wait()
	close(results)
	cut := map[string][]time.Duration{}
	for r := range results {
		cut[r.kind] = append(cut[r.kind], r.after.Round(100*time.Millisecond))
		switch {
		case r.after == 0:
			t.Errorf("a %s slow sender was still connected after %v", r.kind, watch)
		case !strings.HasPrefix(r.reply, "421 4.4.2"):
			t.Errorf("%s slow sender cut after %v with %q, want 421 4.4.2", r.kind, r.after, r.reply)
		}
	}
	for _, kind := range []string{"silent", "body", "command"} {
		t.Logf("%s slow senders closed by the node after %v (0: still connected after %v)", kind, cut[kind], watch)
	}
	a.waitQueued("customer.test", 1, 10*time.Second) // swaks' message only
}

func swaksOK(t testing.TB, n *node, when string) {
	t.Helper()
	out, err := swaks(t, n.smtpAddr, "--to", "user@customer.test", "--from", "a@sender.example")
	if r := lastReply(out); err != nil || !strings.HasPrefix(r, "250 2.0.0 queued as ") {
		t.Fatalf("swaks %s: %v, last reply %q", when, err, r)
	}
}

func healthy(t testing.TB, a *api, when string) {
	t.Helper()
	if code, body := a.text("/healthz"); code != 200 {
		t.Errorf("/healthz %s: %d %s", when, code, body)
	}
}

const tooMany = "421 4.7.0 too many connections"

// floodConn is a flood connection the node served.
type floodConn struct {
	conn net.Conn
	r    *bufio.Reader
	src  string
}

// floodResult is what a flood's connections got as first reply.
type floodResult struct {
	held    []floodConn // greeted with 220, still open
	refused int         // "421 4.7.0 too many connections"
	other   []string    // anything else (no reply, reset, another code)
	took    time.Duration
}

func (f *floodResult) String() string {
	o := ""
	if len(f.other) > 0 {
		o = fmt.Sprintf(", e.g. %q", f.other[0])
	}
	return fmt.Sprintf("%d served, %d refused with 421 4.7.0, %d other%s, in %.1fs", len(f.held), f.refused, len(f.other), o, f.took.Seconds())
}

// openFlood opens n connections to addr, spread over the source
// addresses, all before reading any reply, then reads each one's first
// reply. Refused connections are closed; served ones are kept.
func openFlood(t testing.TB, addr string, sources []string, n int) *floodResult {
	t.Helper()
	start := time.Now()
	conns := make([]net.Conn, n)
	errs := make([]error, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	workers := 256 // the race detector allows 8128 live goroutines
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				d := net.Dialer{Timeout: 60 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(sources[i%len(sources)])}}
				conns[i], errs[i] = d.Dial("tcp", addr)
			}
		}()
	}
	wg.Wait()
	res := &floodResult{}
	var mu sync.Mutex
	next.Store(0)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				var line string
				err := errs[i]
				var r *bufio.Reader
				if err == nil {
					_ = conns[i].SetReadDeadline(time.Now().Add(60 * time.Second))
					r = bufio.NewReader(conns[i])
					line, err = r.ReadString('\n')
					line = strings.TrimRight(line, "\r\n")
				}
				mu.Lock()
				switch {
				case err == nil && strings.HasPrefix(line, "220 "):
					res.held = append(res.held, floodConn{conns[i], r, sources[i%len(sources)]})
				case line == tooMany:
					res.refused++
				default:
					res.other = append(res.other, fmt.Sprintf("%q %v", line, err))
				}
				mu.Unlock()
				if conns[i] != nil && !(err == nil && strings.HasPrefix(line, "220 ")) {
					conns[i].Close()
				}
			}
		}()
	}
	wg.Wait()
	res.took = time.Since(start)
	return res
}

func (f *floodResult) close() {
	for _, c := range f.held {
		c.conn.Close()
	}
}

// slowloris plays one slow sender on a greeted connection for at most
// limit: "silent" says nothing more, "body" starts a message and sends its
// body a byte a second, "command" sends NOOP commands a byte a second. It
// returns when the node closed the connection (after how long, and the
// node's last reply) or 0 if it was still open at the limit.
func slowloris(c net.Conn, r *bufio.Reader, kind string, limit time.Duration) (time.Duration, string) {
	start := time.Now()
	var last atomic.Value
	last.Store("")
	closed := make(chan struct{})
	go func() { // the node's replies, until it closes the connection
		defer close(closed)
		_ = c.SetReadDeadline(time.Now().Add(limit + 10*time.Second))
		for {
			l, err := r.ReadString('\n')
			if l != "" {
				last.Store(strings.TrimRight(l, "\r\n"))
			}
			if err != nil {
				return
			}
		}
	}()
	var script string
	switch kind {
	case "body":
		_, _ = io.WriteString(c, "EHLO slow.e2e.test\r\nMAIL FROM:<a@sender.example>\r\nRCPT TO:<user@customer.test>\r\nDATA\r\n")
		script = "Subject: slow\r\n\r\n" + strings.Repeat("slow body line\r\n", 100)
	case "command":
		script = strings.Repeat("NOOP\r\n", 100)
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	deadline := time.After(limit)
	for i := 0; ; i++ {
		select {
		case <-closed:
			return time.Since(start), last.Load().(string)
		case <-deadline:
			c.Close()
			<-closed
			return 0, last.Load().(string)
		case <-tick.C:
			if i < len(script) {
				_ = c.SetWriteDeadline(time.Now().Add(time.Second))
				_, _ = io.WriteString(c, script[i:i+1])
			}
		}
	}
}
