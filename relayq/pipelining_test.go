package relayq

import (
	"bufio"
	"bytes"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mxcont/mxcont/spool"
)

// replies scripts a reply per address and per attempt, like script in
// deliver_test.go but for rawServer: replies[addr][n] answers the n-th
// command for addr (the last one repeats; "" accepts).
type replies struct {
	mu   sync.Mutex
	r    map[string][]string
	seen map[string]int
}

func newReplies(r map[string][]string) *replies {
	return &replies{r: r, seen: map[string]int{}}
}

func (s *replies) reply(addr string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.seen[addr]
	s.seen[addr]++
	rs := s.r[addr]
	if len(rs) == 0 {
		return ""
	}
	return rs[min(n, len(rs)-1)]
}

func hasGroup(groups []string, g string) bool { return slices.Contains(groups, g) }

// TestPipelinedRecipients: per-recipient replies are matched to their
// recipients whether the commands are pipelined (one write for MAIL, the
// RCPTs and DATA) or sent one at a time to a server without PIPELINING.
func TestPipelinedRecipients(t *testing.T) {
	for _, c := range []struct {
		name   string
		noPipe bool
		first  string // the group of commands of the first attempt
		retry  string
	}{
		{"pipelining", false, "MAIL RCPT RCPT RCPT RCPT DATA", "MAIL RCPT DATA"},
		{"no pipelining", true, "MAIL", "MAIL"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, nil)
			sc := newReplies(map[string][]string{
				"bad@" + dom:   {"550 5.1.1 no such user here"},
				"later@" + dom: {"451 4.2.1 mailbox busy", ""},
			})
			srv := startRawServer(t, func(s *rawServer) {
				s.noPipelining, s.keepBodies = c.noPipe, true
				s.rcpt = func(to string) string { return sc.reply(to) }
			})
			e.domain(dom, srv.Addr, nil)
			e.start()
			b := body(1, 3000)
			id := e.send(dom, b, "ok@"+dom, "bad@"+dom, "later@"+dom, "ok2@"+dom)
			waitFor(t, 10*time.Second, "message settled", func() bool {
				m, ok := e.get(id)
				return ok && m.State == spool.StateFailed
			})
			m, _ := e.get(id)
			want := []spool.RcptStatus{spool.Delivered, spool.Failed, spool.Delivered, spool.Delivered}
			if !slices.Equal(m.Status, want) {
				t.Fatalf("statuses %v, want %v", m.Status, want)
			}
			if m.Attempts != 2 || m.LastError != "<bad@"+dom+">: RCPT: 550 5.1.1 no such user here" {
				t.Errorf("attempts %d, last error %q", m.Attempts, m.LastError)
			}
			bodies, groups := srv.received()
			if len(bodies) != 2 || !bytes.Equal(bodies[0], b) || !bytes.Equal(bodies[1], b) {
				t.Fatalf("%d bodies received, or not intact", len(bodies))
			}
			if !hasGroup(groups, c.first) || !hasGroup(groups, c.retry) {
				t.Errorf("command groups %q, want %q and %q", groups, c.first, c.retry)
			}
			for _, g := range groups {
				if c.noPipe && strings.Contains(g, " ") {
					t.Errorf("commands %q sent together to a server without PIPELINING", g)
				}
			}
			if st := e.q.Status(dom); st.RelayState != StateUp {
				t.Errorf("state %s after recipient errors", st.RelayState)
			}
		})
	}
}

// TestPipelinedRefusals: what a pipelined group does when MAIL, every
// RCPT, DATA or the end of data is refused. The replies are matched to
// their commands, and the transaction is reset and the connection kept
// for the next message, except when a server answers DATA with 354
// although no recipient was accepted: it then gets an empty message (no
// body of ours) and the connection is dropped.
func TestPipelinedRefusals(t *testing.T) {
	for _, c := range []struct {
		name      string
		srv       func(s *rawServer, r *replies)
		state     string
		lastError string
		groups    []string // expected among the command groups
		empty     int      // empty messages the server saw
		dropped   bool     // the connection is not reused
	}{
		{
			name:      "MAIL refused",
			srv:       func(s *rawServer, r *replies) { s.mail = func(string) string { return r.reply("mail") } },
			state:     spool.StateQueued,
			lastError: "MAIL: 452 4.3.1 insufficient storage",
			groups:    []string{"MAIL RCPT DATA"},
		},
		{
			name:      "every recipient refused",
			srv:       func(s *rawServer, r *replies) { s.rcpt = func(to string) string { return r.reply("rcpt") } },
			state:     spool.StateFailed,
			lastError: "<u@customer.test>: RCPT: 550 5.1.1 unknown user",
			groups:    []string{"MAIL RCPT DATA", "RSET"},
		},
		{
			name: "354 without a recipient",
			srv: func(s *rawServer, r *replies) {
				s.rcpt = func(to string) string { return r.reply("rcpt") }
				s.data = func() string { return "354 send it anyway" }
			},
			state:     spool.StateFailed,
			lastError: "<u@customer.test>: RCPT: 550 5.1.1 unknown user",
			groups:    []string{"MAIL RCPT DATA", "."},
			empty:     1,
			dropped:   true,
		},
		{
			name:      "DATA refused",
			srv:       func(s *rawServer, r *replies) { s.data = func() string { return r.reply("data") } },
			state:     spool.StateQueued,
			lastError: "DATA: 451 4.3.0 not now",
			groups:    []string{"MAIL RCPT DATA", "RSET"},
		},
		{
			name:      "end of data refused",
			srv:       func(s *rawServer, r *replies) { s.end = func() string { return r.reply("end") } },
			state:     spool.StateFailed,
			lastError: "end of DATA: 554 5.6.0 content rejected",
			groups:    []string{"MAIL RCPT DATA", "."},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, func(c *Config) { c.RetryBase = time.Hour; c.MaxBackoff = time.Hour })
			// Only the first transaction is refused; the second message,
			// for another recipient, goes through.
			r := newReplies(map[string][]string{
				"mail": {"452 4.3.1 insufficient storage", ""},
				"rcpt": {"550 5.1.1 unknown user", ""},
				"data": {"451 4.3.0 not now", ""},
				"end":  {"554 5.6.0 content rejected", ""},
			})
			srv := startRawServer(t, func(s *rawServer) {
				s.keepBodies = true
				c.srv(s, r)
			})
			e.domain(dom, srv.Addr, nil)
			e.start()
			id := e.send(dom, body(1, 500), "u@"+dom)
			waitFor(t, 10*time.Second, "attempt", func() bool { m, _ := e.get(id); return m.Attempts == 1 })
			m, _ := e.get(id)
			if m.State != c.state || m.LastError != c.lastError {
				t.Errorf("state %v, last error %q; want %v, %q", m.State, m.LastError, c.state, c.lastError)
			}
			b2 := body(2, 700)
			e.send(dom, b2, "ok@"+dom)
			waitFor(t, 10*time.Second, "second message", func() bool { return srv.count() == c.empty+1 })
			bodies, groups := srv.received()
			for _, g := range c.groups {
				if !hasGroup(groups, g) {
					t.Errorf("no command group %q in %q", g, groups)
				}
			}
			if !bytes.Equal(bodies[len(bodies)-1], b2) {
				t.Errorf("second message: body differs")
			}
			empty := 0
			for _, b := range bodies[:len(bodies)-1] {
				if len(b) != 0 {
					t.Errorf("a body of %d bytes was received", len(b))
				}
				empty++
			}
			if empty != c.empty {
				t.Errorf("%d empty messages received, want %d", empty, c.empty)
			}
			if mc := srv.mailConns(); len(mc) != 2 || (mc[0] != mc[1]) != c.dropped {
				t.Errorf("MAIL commands on connections %v; dropped after the first: %v", mc, c.dropped)
			}
			if st := e.q.Status(dom); st.RelayState != StateUp || st.LastProbeError != "" {
				t.Errorf("status %+v", st)
			}
		})
	}
}

func TestReadReply(t *testing.T) {
	for _, c := range []struct {
		in   string
		code int
		text string
		err  string
	}{
		{in: "250 OK\r\n", code: 250, text: "OK"},
		{in: "250\r\n", code: 250},
		{in: "250 OK\n", code: 250, text: "OK"},
		{in: "250-mx.test\r\n250-PIPELINING\r\n250 SIZE 100\r\n", code: 250, text: "mx.test\nPIPELINING\nSIZE 100"},
		{in: "550-5.1.1 no such\r\n550 5.1.1 user\r\n", code: 550, text: "5.1.1 no such\nuser"},
		{in: "550-5.1.1 a\r\n550 b\r\n", code: 550, text: "5.1.1 a\nb"},
		{in: "250-a\r\n251 b\r\n", err: "malformed reply"},
		{in: "25O OK\r\n", err: "malformed reply"},
		{in: "250OK\r\n", err: "malformed reply"},
		{in: "12\r\n", err: "malformed reply"},
		{in: "150 what\r\n", err: "malformed reply"},
		{in: "250-a\r\n", err: "unexpected EOF"},
		{in: "", err: "EOF"},
		{in: "250 " + strings.Repeat("x", 5000) + "\r\n", err: "reply too long"},
		{in: strings.Repeat("250-x\r\n", 200) + "250 x\r\n", err: "reply too long"},
	} {
		cl := &client{br: bufio.NewReaderSize(strings.NewReader(c.in), 4096)}
		code, text, err := cl.readReply(true)
		switch {
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%q: error %v, want %q", c.in, err, c.err)
		case c.err == "" && (err != nil || code != c.code || text != c.text):
			t.Errorf("%q: %d %q %v, want %d %q", c.in, code, text, err, c.code, c.text)
		}
	}
	// The reply text of a refusal is one line, as kept in the history.
	cl := &client{br: bufio.NewReader(strings.NewReader("452-4.2.2 mailbox\r\n452 4.2.2 full\r\n"))}
	err := cl.reply(2)
	if err == nil || err.Error() != "452 4.2.2 mailbox full" {
		t.Fatalf("reply: %v", err)
	}
}

// TestPipelinedBatches: a backlog goes out in batches, each message's
// envelope in the same write as the previous message's final dot. The
// replies stay matched to their messages when the server refuses a
// message, says 421 and closes, or closes after some messages without a
// word; every message arrives exactly once, and only the refused ones
// count a failed attempt.
func TestPipelinedBatches(t *testing.T) {
	const n = 30
	for _, c := range []struct {
		name     string
		srv      func(s *rawServer)
		group    string // expected among the command groups ("": none)
		deferred int    // recipients deferred on the way
	}{
		{name: "back to back", srv: func(*rawServer) {}, group: ". MAIL RCPT DATA"},
		{name: "no pipelining", srv: func(s *rawServer) { s.noPipelining = true }},
		{name: "server closes after 4 messages", srv: func(s *rawServer) { s.closeAfter = 4 }, group: ". MAIL RCPT DATA"},
		{name: "421 at an end of data", deferred: 1, group: ". MAIL RCPT DATA", srv: func(s *rawServer) {
			r := newReplies(map[string][]string{"end": {"", "", "421 4.3.2 shutting down", ""}})
			s.end = func() string { return r.reply("end") }
		}},
		{name: "451 at an end of data", deferred: 1, group: ". MAIL RCPT DATA", srv: func(s *rawServer) {
			r := newReplies(map[string][]string{"end": {"", "451 4.3.0 try again", ""}})
			s.end = func() string { return r.reply("end") }
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			met := &countMetrics{}
			e := newEnv(t, func(c *Config) { c.Metrics = met })
			srv := startRawServer(t, func(s *rawServer) {
				s.keepBodies = true
				c.srv(s)
			})
			e.domain(dom, srv.Addr, nil)
			want := map[string][]byte{}
			for i := range n {
				b := body(i, 1000+i*97)
				want[subject(b)] = b
				e.send(dom, b)
			}
			e.start()
			waitFor(t, 20*time.Second, "every message", func() bool { return srv.count() >= n && e.queued(dom) == 0 })
			time.Sleep(100 * time.Millisecond) // a duplicate would show now
			bodies, groups := srv.received()
			seen := map[string]int{}
			for _, b := range bodies {
				s := subject(b)
				if seen[s]++; !bytes.Equal(b, want[s]) {
					t.Errorf("message %q: body differs", s)
				}
			}
			if len(bodies) != n || len(seen) != n {
				t.Errorf("%d deliveries of %d distinct messages, want %d", len(bodies), len(seen), n)
			}
			if got := met.get("deferred"); got != c.deferred {
				t.Errorf("%d recipients deferred, want %d", got, c.deferred)
			}
			if c.group != "" && !hasGroup(groups, c.group) {
				t.Errorf("no command group %q in %q", c.group, groups)
			}
			for _, g := range groups {
				if c.group == "" && strings.Contains(g, " ") {
					t.Errorf("commands %q sent together to a server without PIPELINING", g)
				}
			}
		})
	}
}
