package smtpd

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// smuggling payloads: each tries to end the message early and inject a
// second transaction (SMTP smuggling, CVE-2023-51764 and friends).
var smuggling = []string{"\n.\n", "\r.\r\n", "\n.\r\n", "\r\n.\n", "\r\n.\r", "\r\r\n.\r\n"}

func smugglingBody(p string) string {
	return "Subject: smuggle\r\n\r\nline1" + p +
		"MAIL FROM:<evil@evil.test>\r\nRCPT TO:<victim@example.org>\r\nDATA\r\nSubject: smuggled\r\n\r\nevil\r\n"
}

func TestSmugglingNormalized(t *testing.T) {
	e := newEnv(t, nil)
	for i, p := range smuggling {
		t.Run(fmt.Sprintf("%q", p), func(t *testing.T) {
			d := e.session()
			d.cmd("MAIL FROM:<s@remote.test>", 250)
			d.cmd("RCPT TO:<a@example.com>", 250)
			d.cmd("DATA", 354)
			d.send(smugglingBody(p) + ".\r\n") // no dot-stuffing: the payload is the attack
			if text := d.expect(250); !strings.Contains(text, "queued as") {
				t.Fatalf("reply %q", text)
			}
			d.cmd("QUIT", 221) // a smuggled command would have answered first
			ms := e.messages("example.com")
			if len(ms) != i+1 {
				t.Fatalf("%d messages stored, want %d", len(ms), i+1)
			}
			checkCRLF(t, ms[i].Body)
			if !strings.Contains(ms[i].Body, "MAIL FROM:<evil@evil.test>") {
				t.Errorf("smuggled text not kept as body: %q", ms[i].Body)
			}
			if n := len(e.messages("example.org")); n != 0 {
				t.Fatalf("smuggled message stored (%d)", n)
			}
		})
	}
}

func TestSmugglingRejected(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.BareNewlines = BareNewlinesReject })
	for _, p := range smuggling {
		if p == "\r\n.\r" {
			continue // go-smtp drops a ".\r" at the start of a line: no bare CR is left to refuse
		}
		t.Run(fmt.Sprintf("%q", p), func(t *testing.T) {
			d := e.session()
			d.cmd("MAIL FROM:<s@remote.test>", 250)
			d.cmd("RCPT TO:<a@example.com>", 250)
			d.cmd("DATA", 354)
			d.send(smugglingBody(p) + ".\r\n")
			if text := d.expect(554); !strings.HasPrefix(text, "5.6.11 ") {
				t.Fatalf("reply %q", text)
			}
			d.cmd("NOOP", 250)
		})
	}
	if n := e.total(); n != 0 {
		t.Fatalf("%d messages stored", n)
	}
	// Clean mail passes in reject mode.
	d := e.session()
	if code, text := d.transaction("s@remote.test", []string{"a@example.com"}, "Subject: ok\r\n\r\nfine\r\n"); code != 250 {
		t.Fatalf("%d %s", code, text)
	}
}

func TestOversize(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxMessageBytes = 10 << 10 })
	d := e.session()
	if text := d.cmd("MAIL FROM:<s@remote.test> SIZE=20000", 552); !strings.HasPrefix(text, "5.3.4") {
		t.Errorf("MAIL SIZE: %q", text)
	}
	d.cmd("MAIL FROM:<s@remote.test> SIZE=2000", 250)
	d.cmd("RCPT TO:<a@example.com>", 250)
	d.cmd("DATA", 354)
	d.send("Subject: big\r\n\r\n" + strings.Repeat("0123456789abcdef\r\n", 2000) + ".\r\n")
	if text := d.expect(552); !strings.HasPrefix(text, "5.3.4") {
		t.Errorf("DATA: %q", text)
	}
	d.cmd("NOOP", 250) // the session goes on
	if n := e.total(); n != 0 {
		t.Fatalf("%d messages stored", n)
	}
	// Just under the limit passes.
	if code, text := d.transaction("s@remote.test", []string{"a@example.com"}, strings.Repeat("x", 10<<10-100)+"\r\n"); code != 250 {
		t.Fatalf("%d %s", code, text)
	}
}

func TestTooManyRecipients(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxRecipients = 3; c.MaxDomains = 2 })
	d := e.session()
	d.cmd("MAIL FROM:<s@remote.test>", 250)
	d.cmd("RCPT TO:<a@example.com>", 250)
	d.cmd("RCPT TO:<b@example.org>", 250)
	if text := d.cmd("RCPT TO:<c@local.example>", 452); !strings.HasPrefix(text, "4.5.3") {
		t.Errorf("third domain: %q", text)
	}
	d.cmd("RCPT TO:<c@example.com>", 250)
	if text := d.cmd("RCPT TO:<d@example.com>", 452); !strings.HasPrefix(text, "4.5.3") {
		t.Errorf("fourth recipient: %q", text)
	}
	if code, text := d.transactionData("Subject: x\r\n\r\nx\r\n"); code != 250 {
		t.Fatalf("%d %s", code, text)
	}
	if m := e.messages("example.com"); len(m) != 1 || len(m[0].Rcpts) != 2 {
		t.Errorf("example.com: %+v", m)
	}
}

func TestTooManyReceived(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxReceivedHeaders = 5 })
	hops := func(n int) string {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "Received: from hop%d.test\r\n\tby hop%d.test; Mon, 1 Jan 2024 00:00:00 +0000\r\n", i, i+1)
		}
		return b.String()
	}
	d := e.session()
	body := "X-Other: 1\r\n" + hops(5) + "received : obsolete form\r\nSubject: loop\r\n\r\nx\r\n"
	if code, text := d.transaction("s@remote.test", []string{"a@example.com"}, body); code != 554 || !strings.HasPrefix(text, "5.4.6") {
		t.Fatalf("6 hops: %d %s", code, text)
	}
	// Exactly at the limit; Received: lines in the body do not count.
	body = hops(5) + "Subject: ok\r\n\r\n" + hops(10)
	if code, text := d.transaction("s@remote.test", []string{"a@example.com"}, body); code != 250 {
		t.Fatalf("5 hops: %d %s", code, text)
	}
	if n := e.total(); n != 1 {
		t.Fatalf("%d messages stored", n)
	}
}

func TestHeaderNUL(t *testing.T) {
	e := newEnv(t, nil)
	d := e.session()
	if code, text := d.transaction("s@remote.test", []string{"a@example.com"}, "Subject: a\x00b\r\n\r\nx\r\n"); code != 554 || !strings.HasPrefix(text, "5.6.0") {
		t.Fatalf("NUL in header: %d %s", code, text)
	}
	// NUL in the body, odd header lines: accepted.
	body := "Subject: ok\r\nnot a header line\r\n\x00binary\r\n"
	if code, text := d.transaction("s@remote.test", []string{"a@example.com"}, body); code != 250 {
		t.Fatalf("NUL in body: %d %s", code, text)
	}
	if m := e.messages("example.com"); len(m) != 1 {
		t.Fatalf("%d messages", len(m))
	} else if _, rest := splitReceived(t, m[0].Body); rest != body {
		t.Errorf("body %q", rest)
	}
}

func TestLongLines(t *testing.T) {
	e := newEnv(t, nil)
	d := e.session()
	body := "Subject: long\r\n\r\n" + strings.Repeat("x", 3000) + "\r\n" + strings.Repeat("y", 200<<10) + "\r\n"
	if code, text := d.transaction("s@remote.test", []string{"a@example.com"}, body); code != 250 {
		t.Fatalf("long body lines: %d %s", code, text)
	}
	if m := e.messages("example.com"); len(m) != 1 {
		t.Fatalf("%d messages", len(m))
	} else if _, rest := splitReceived(t, m[0].Body); rest != body {
		t.Errorf("body differs")
	}

	for _, line := range []string{"NOOP " + strings.Repeat("n", 10<<10), "MAIL FROM:<" + strings.Repeat("m", 10<<10) + "@remote.test>"} {
		d := e.session()
		d.send(line + "\r\n")
		lines, closed := d.closed()
		if !closed || len(lines) != 1 || !strings.HasPrefix(lines[0], "500 5.4.0") {
			t.Errorf("10 KiB command: closed %v, replies %q", closed, lines)
		}
	}
	// A long line in a BDAT chunk is data, not a command.
	d = e.session()
	d.cmd("MAIL FROM:<s@remote.test>", 250)
	d.cmd("RCPT TO:<b@example.com>", 250)
	chunk := "Subject: bdat\r\n\r\n" + strings.Repeat("z", 8000) + "\r\n"
	d.send(fmt.Sprintf("BDAT %d\r\n%s", 8, chunk[:8]))
	d.expect(250)
	d.send(fmt.Sprintf("BDAT %d LAST\r\n%s", len(chunk)-8, chunk[8:]))
	if text := d.expect(250); !strings.Contains(text, "queued as") {
		t.Fatalf("BDAT: %q", text)
	}
	d.cmd("NOOP", 250)
}

func TestPipelining(t *testing.T) {
	e := newEnv(t, nil)
	d := e.dial()
	d.expect(220)
	d.send("EHLO client.test\r\nMAIL FROM:<s@remote.test>\r\nRCPT TO:<a@example.com>\r\nRCPT TO:<x@unknown.test>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n")
	for _, code := range []int{250, 250, 250, 550, 250, 354} {
		d.expect(code)
	}
	d.send("Subject: p\r\n\r\nbody\r\n.\r\nQUIT\r\n")
	if text := d.expect(250); len(queued(t, text)) != 2 {
		t.Errorf("reply %q", text)
	}
	d.expect(221)
}

// TestPipelinedAfterQuit: go-smtp would run commands it had buffered
// after QUIT closed the session (and dereference the nil session); sconn
// hands it one command at a time, so nothing is left to run.
func TestPipelinedAfterQuit(t *testing.T) {
	e := newEnv(t, nil)
	d := e.session()
	d.send("QUIT\r\nMAIL FROM:<a@remote.test>\r\nRCPT TO:<x@example.com>\r\nDATA\r\n")
	lines, closed := d.closed()
	if !closed || len(lines) != 1 || !strings.HasPrefix(lines[0], "221") {
		t.Errorf("closed %v, replies %q", closed, lines)
	}
	d = e.session()
	d.send("MAIL FROM:<a@remote.test>\r\nBOGUS\r\nBOGUS\r\nBOGUS\r\nBOGUS\r\nRCPT TO:<x@example.com>\r\nRCPT TO:<y@example.com>\r\n")
	lines, closed = d.closed()
	if !closed || len(lines) != 6 || !strings.HasPrefix(lines[5], "500 5.5.1 Too many errors") {
		t.Errorf("closed %v, replies %q", closed, lines)
	}
	waitFor(t, "connections to close", func() bool { return e.srv.Connections() == 0 })
	if n := e.ops.FilterMessage("go-smtp used a closed session").Len(); n != 0 {
		t.Errorf("go-smtp ran %d commands on a closed session", n)
	}
}

// TestSlowData sends a body steadily but slowly: every read resets the
// idle deadline, so the message is accepted although the whole body takes
// several idle timeouts (go-smtp's ReadTimeout would have cut it).
func TestSlowData(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.IdleTimeout = time.Second })
	d := e.session()
	d.cmd("MAIL FROM:<s@remote.test>", 250)
	d.cmd("RCPT TO:<a@example.com>", 250)
	d.cmd("DATA", 354)
	start := time.Now()
	d.send("Subject: slow\r\n\r\n")
	for i := 0; time.Since(start) < 4*time.Second; i++ {
		time.Sleep(200 * time.Millisecond)
		d.send(fmt.Sprintf("line %d\r\n", i))
	}
	d.send(".\r\n")
	if text := d.expect(250); !strings.Contains(text, "queued as") {
		t.Fatalf("reply %q", text)
	}
}

func TestIdleTimeout(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.IdleTimeout = time.Second })
	t.Run("command", func(t *testing.T) {
		d := e.session()
		lines, closed := d.closed()
		if !closed || len(lines) != 1 || !strings.HasPrefix(lines[0], "421 4.4.2") {
			t.Fatalf("closed %v, replies %q", closed, lines)
		}
	})
	t.Run("data", func(t *testing.T) {
		d := e.session()
		d.cmd("MAIL FROM:<s@remote.test>", 250)
		d.cmd("RCPT TO:<a@example.com>", 250)
		d.cmd("DATA", 354)
		d.send("Subject: stalled\r\n\r\nhalf a bo")
		lines, closed := d.closed()
		if !closed || len(lines) == 0 || !strings.HasPrefix(lines[0], "421 4.4.2") {
			t.Fatalf("closed %v, replies %q", closed, lines)
		}
	})
	// A command without its line end is not run when the timeout cuts
	// it: go-smtp's line reader hands the partial line over as a line.
	t.Run("partial command", func(t *testing.T) {
		d := e.session()
		d.send("MAIL FROM:<s@remote.test>")
		lines, closed := d.closed()
		if !closed || len(lines) != 1 || !strings.HasPrefix(lines[0], "421 4.4.2") {
			t.Fatalf("closed %v, replies %q; want only 421 4.4.2", closed, lines)
		}
	})
	if n := e.total(); n != 0 {
		t.Errorf("%d messages stored", n)
	}
}

// TestCommandDribbleCut: a client that sends a command line a byte at a
// time, each byte well within the idle timeout, is cut once the line has
// taken longer than the idle timeout, instead of holding the connection
// for as long as it dribbles (here 8 s; the line deadline is 1 s).
func TestCommandDribbleCut(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.IdleTimeout = time.Second })
	d := e.session()
	const dribble = 8 * time.Second
	start := time.Now()
	stopped := make(chan time.Duration, 1)
	go func() {
		line := "MAIL FROM:<slow-sender@remote.test>"
		for i := 0; time.Since(start) < dribble; i = (i + 1) % len(line) {
			if _, err := d.c.Write([]byte{line[i]}); err != nil {
				break
			}
			time.Sleep(250 * time.Millisecond)
		}
		stopped <- time.Since(start)
	}()
	_ = d.c.SetReadDeadline(time.Now().Add(dribble + ioTimeout))
	reply, err := d.r.ReadString('\n')
	cut := time.Since(start)
	if err != nil || !strings.HasPrefix(reply, "421 4.4.2") {
		t.Fatalf("after %v: reply %q, %v; want 421 4.4.2", cut, reply, err)
	}
	if cut >= dribble {
		t.Fatalf("the dribbling client was cut only after %v, when it had stopped sending", cut)
	}
	t.Logf("cut after %v of dribbling; the dribbler's next write failed after %v", cut, <-stopped)
}

func TestDataTimeout(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.IdleTimeout = 10 * time.Second; c.DataTimeout = time.Second })
	d := e.session()
	d.cmd("MAIL FROM:<s@remote.test>", 250)
	d.cmd("RCPT TO:<a@example.com>", 250)
	d.cmd("DATA", 354)
	stop := make(chan struct{})
	defer close(stop)
	go func() { // trickle until the server hangs up
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			if _, err := fmt.Fprintf(d.c, "line %d\r\n", i); err != nil {
				return
			}
		}
	}()
	lines, closed := d.closed()
	if !closed || len(lines) == 0 || !strings.HasPrefix(lines[0], "421 4.4.2") {
		t.Fatalf("closed %v, replies %q", closed, lines)
	}
	if n := e.total(); n != 0 {
		t.Errorf("%d messages stored", n)
	}
}
