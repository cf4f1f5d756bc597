package smtpd

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"
)

// refUnstuff is go-smtp v0.25.1's dataReader state machine (data.go,
// MIT licence, Copyright (c) 2010 The Go Authors, 2014 Gleb Smirnoff,
// 2016 emersion), run one byte at a time as go-smtp does: the reference
// bodyReader must match. It returns the body, the number of input bytes
// up to and including the end-of-data line, and whether that line was
// found.
func refUnstuff(in []byte) (out []byte, used int, eof bool) {
	const (
		stateBeginLine = iota
		stateDot
		stateDotCR
		stateCR
		stateData
		stateEOF
	)
	state := stateBeginLine
	for i, c := range in {
		switch state {
		case stateBeginLine:
			if c == '.' {
				state = stateDot
				continue
			}
			if c == '\r' {
				state = stateCR
				break
			}
			state = stateData
		case stateDot:
			if c == '\r' {
				state = stateDotCR
				continue
			}
			state = stateData
		case stateDotCR:
			if c == '\n' {
				return out, i + 1, true
			}
			state = stateData
		case stateCR:
			if c == '\n' {
				state = stateBeginLine
				break
			}
			state = stateData
		case stateData:
			if c == '\r' {
				state = stateCR
			}
		}
		out = append(out, c)
	}
	return out, len(in), false
}

// refLineLimit is go-smtp's lineLimitReader over the raw bytes of a body
// (the count is 1 after the LF of the DATA command): whether some line
// passes limit.
func refLineLimit(in []byte, limit int) bool {
	cur := 1
	for _, c := range in {
		if c == '\n' {
			cur = 0
		}
		cur++
		if cur > limit {
			return true
		}
	}
	return false
}

// FuzzBodyUnstuff checks bodyReader's bulk dot-unstuffing and line limit
// against go-smtp's byte-at-a-time reader, for the input cut into pieces
// of every size the fuzzer picks.
func FuzzBodyUnstuff(f *testing.F) {
	for _, s := range []string{
		"Subject: x\r\n\r\nbody\r\n.\r\n",
		"..leading dot\r\n.\r\n",
		".\rX quirk: the CR is lost\r\n.\r\n",
		"a\r\r\n.\r\nstill body\r\n.\r\n",
		"bare\n.\nLF\n.\r\nnot the end\r\n.\r\n",
		"\r\n.\r\n",
		".\r\n",
		"no end at all\r\n.",
		"x\r\n.\r\ntrailing",
		strings.Repeat("y", 700) + "\r\n.\r\n",
	} {
		f.Add([]byte(s), uint16(1), uint16(512))
		f.Add([]byte(s), uint16(7), uint16(600))
	}
	f.Fuzz(func(t *testing.T, in []byte, piece, limit uint16) {
		if piece == 0 {
			piece = 1
		}
		wantOut, used, wantEOF := refUnstuff(in)
		in = in[:used] // sconn hands over nothing past the end of data
		lim := int(limit)
		wantLong := lim > 0 && refLineLimit(in, lim)

		b := &bodyReader{state: dBeginLine, lineMax: lim, lineLen: 1}
		var out []byte
		long := false
		for i := 0; i < len(in); i += int(piece) {
			if b.eof {
				t.Fatalf("end of data before the input ended")
			}
			p := bytes.Clone(in[i:min(len(in), i+int(piece))])
			if !long && b.checkLines(p) != nil {
				long = true
			}
			n, k := b.unstuff(p)
			if k != len(p) {
				t.Fatalf("unstuff took %d of %d bytes", k, len(p))
			}
			out = append(out, p[:n]...)
		}
		if !bytes.Equal(out, wantOut) || b.eof != wantEOF {
			t.Fatalf("pieces of %d: got %q eof %v, want %q eof %v", piece, out, b.eof, wantOut, wantEOF)
		}
		if long != wantLong {
			t.Fatalf("pieces of %d, limit %d: line limit passed %v, go-smtp %v", piece, lim, long, wantLong)
		}
	})
}

// equivEnvs are acceptors that differ only in how DATA bodies are read.
type equivEnvs struct {
	name       string
	bulk, orig *env
}

// FuzzDataEquivalence sends the same bytes after "354" to an acceptor
// reading DATA with bodyReader and to one reading it with go-smtp's own
// reader, then half-closes: the replies (queue ids aside) and the stored
// bodies must be the same. Each input runs under a tight message size
// limit and under a tight body line limit (one limit at a time, because
// which of the two go-smtp reports first depends on how TCP splits the
// stream).
//
//	go test -run '^$' -fuzz FuzzDataEquivalence -fuzztime 60s ./smtpd/
func FuzzDataEquivalence(f *testing.F) {
	sizeLimited := func(c *Config) { c.MaxMessageBytes = 1500 }
	lineLimited := func(c *Config) { c.MaxLineLength = 512; c.MaxDataLineLength = 512 }
	var pairs []equivEnvs
	for _, l := range []struct {
		name string
		mod  func(*Config)
	}{{"size-limit", sizeLimited}, {"line-limit", lineLimited}} {
		pairs = append(pairs, equivEnvs{
			name: l.name,
			bulk: newEnv(f, l.mod),
			orig: newEnv(f, func(c *Config) { l.mod(c); c.goSMTPData = true }),
		})
	}
	for _, s := range []string{
		"Subject: x\r\n\r\nbody\r\n.\r\n",
		"Subject: dots\r\n\r\n..one\r\n...two\r\n.\r\nQUIT\r\n",
		".\rX\r\n.\r\n",
		"a\r\r\n.\r\nb\r\n.\r\n",
		"line1\n.\nMAIL FROM:<evil@x>\nline2\n.\r\nRCPT TO:<y@example.com>\r\n",
		"Subject: s\r\n\r\nx\r\n.\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@example.com>\r\nDATA\r\nsecond\r\n.\r\nQUIT\r\n",
		"Subject: s\r\n\r\nx\r\n.\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@example.com>\r\nBDAT 3 LAST\r\nabc",
		"Sub\x00ject: nul\r\n\r\n.\r\n",
		strings.Repeat("Received: x\r\n", 31) + "\r\n.\r\n",
		"Subject: big\r\n\r\n" + strings.Repeat("0123456789abcdef\r\n", 100) + ".\r\nNOOP\r\n",
		"Subject: long\r\n\r\n" + strings.Repeat("L", 600) + "\r\n.\r\nNOOP\r\n",
		"Subject: cut\r\n\r\nno end",
		"\r\n.\r\n",
		".\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, p := range pairs {
			gotR, gotB := equivRun(t, p.bulk, data)
			wantR, wantB := equivRun(t, p.orig, data)
			if strings.Join(gotR, "\n") != strings.Join(wantR, "\n") {
				t.Fatalf("%s: %q\nreplies with bodyReader:\n%s\nwith go-smtp's reader:\n%s",
					p.name, data, strings.Join(gotR, "\n"), strings.Join(wantR, "\n"))
			}
			if strings.Join(gotB, "\x00") != strings.Join(wantB, "\x00") {
				t.Fatalf("%s: %q\nbodies with bodyReader: %q\nwith go-smtp's reader: %q", p.name, data, gotB, wantB)
			}
		}
	})
}

// equivRun runs one session of FuzzDataEquivalence: it returns the
// replies after the 354, with queue ids replaced by "<id>", and the
// bodies stored under those ids, without their Received: field.
func equivRun(t *testing.T, e *env, data []byte) (replies, bodies []string) {
	c, err := net.DialTimeout("tcp", e.addr, ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	d := &dialog{t: t, c: c, r: bufio.NewReader(c)}
	d.expect(220)
	d.cmd("EHLO equiv.test", 250)
	d.cmd("MAIL FROM:<s@remote.test>", 250)
	d.cmd("RCPT TO:<a@example.com>", 250)
	d.cmd("DATA", 354)
	_ = c.SetWriteDeadline(time.Now().Add(ioTimeout))
	_, _ = c.Write(data) // the server may hang up first
	_ = c.(*net.TCPConn).CloseWrite()
	lines, closed := d.closed()
	if !closed {
		t.Fatalf("the server did not end the session after EOF; replies %q", lines)
	}
	for _, l := range lines {
		if _, list, ok := strings.Cut(l, "queued as "); ok {
			for _, id := range queued(t, l) {
				r, err := e.sp.OpenBody(id)
				if err != nil {
					t.Fatalf("open %s: %v", id, err)
				}
				b, err := io.ReadAll(r)
				r.Close()
				if err != nil {
					t.Fatal(err)
				}
				_, rest := splitReceived(t, string(b))
				bodies = append(bodies, rest)
			}
			l = strings.Replace(l, list, "<id>", 1)
		}
		replies = append(replies, l)
	}
	return replies, bodies
}

// TestBodyReaderUsed checks that plaintext DATA bodies take the bulk path
// and that BDAT and DATA over TLS keep go-smtp's reader.
func TestBodyReaderUsed(t *testing.T) {
	cert, err := LoadOrCreateCert(t.TempDir(), "mx.test")
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(c *Config) { c.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}} })
	d := e.session()
	if code, text := d.transaction("s@remote.test", []string{"a@example.com"}, "Subject: 1\r\n\r\nx\r\n"); code != 250 {
		t.Fatalf("DATA: %d %s", code, text)
	}
	if n := e.srv.bulkBodies.Load(); n != 1 {
		t.Fatalf("plaintext DATA: %d bodies read in bulk, want 1", n)
	}
	d.cmd("MAIL FROM:<s@remote.test>", 250)
	d.cmd("RCPT TO:<a@example.com>", 250)
	d.send("BDAT 5 LAST\r\nab\r\nc")
	d.expect(250)
	d.cmd("STARTTLS", 220)
	tc := tls.Client(d.c, &tls.Config{InsecureSkipVerify: true})
	td := &dialog{t: t, c: tc, r: bufio.NewReader(tc)}
	td.cmd("EHLO client.test", 250)
	if code, text := td.transaction("s@remote.test", []string{"a@example.com"}, "Subject: 3\r\n\r\nz\r\n"); code != 250 {
		t.Fatalf("DATA over TLS: %d %s", code, text)
	}
	if n := e.srv.bulkBodies.Load(); n != 1 {
		t.Fatalf("after BDAT and TLS: %d bodies read in bulk, want 1", n)
	}
	if m := e.messages("example.com"); len(m) != 3 {
		t.Fatalf("%d messages stored, want 3", len(m))
	}
}

// recConn records the writes that reach the network.
type recConn struct {
	net.Conn
	writes []string
	in     *strings.Reader
}

func (r *recConn) Write(p []byte) (int, error) {
	r.writes = append(r.writes, string(p))
	return len(p), nil
}
func (r *recConn) Read(p []byte) (int, error)       { return r.in.Read(p) }
func (r *recConn) Close() error                     { return nil }
func (r *recConn) SetReadDeadline(time.Time) error  { return nil }
func (r *recConn) SetWriteDeadline(time.Time) error { return nil }
func (r *recConn) String() string                   { return strings.Join(r.writes, "|") }

// newRecSconn returns an sconn over a recConn that reads in.
func newRecSconn(in string) (*sconn, *recConn) {
	rc := &recConn{in: strings.NewReader(in)}
	s := &Server{cfg: Config{IdleTimeout: time.Minute}, limits: newConnLimits(10, 10), conns: map[*sconn]struct{}{}}
	s.limits.acquireTotal()
	c := &sconn{Conn: rc, srv: s, r: rc}
	c.scan.limit = 512
	return c, rc
}

// TestRepliesCoalesced: replies leave in one write when the server has
// to wait for the client (a read that finds nothing buffered), and on
// Close; not while pipelined input is still buffered.
func TestRepliesCoalesced(t *testing.T) {
	c, rc := newRecSconn("EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n")
	c.Write([]byte("220 greeting\r\n"))
	if len(rc.writes) != 0 {
		t.Fatalf("greeting sent before a read: %v", rc)
	}
	buf := make([]byte, 4096)
	n, _ := c.Read(buf) // must send the greeting first: the client waits for it
	if got := rc.String(); got != "220 greeting\r\n" || string(buf[:n]) != "EHLO x\r\n" {
		t.Fatalf("after the first read: writes %q, read %q", got, buf[:n])
	}
	c.Write([]byte("250-mx.test\r\n"))
	c.Write([]byte("250-PIPELINING\r\n"))
	c.Write([]byte("250 SMTPUTF8\r\n"))
	c.Read(buf) // MAIL, already buffered: no write
	c.Write([]byte("250 2.0.0 ok\r\n"))
	c.Read(buf) // RCPT, already buffered: no write
	c.Write([]byte("250 2.0.0 ok\r\n"))
	if len(rc.writes) != 1 {
		t.Fatalf("replies sent while pipelined input was buffered: %v", rc)
	}
	if _, err := c.Read(buf); err != io.EOF {
		t.Fatalf("read at the end: %v", err)
	}
	want := "250-mx.test\r\n250-PIPELINING\r\n250 SMTPUTF8\r\n250 2.0.0 ok\r\n250 2.0.0 ok\r\n"
	if len(rc.writes) != 2 || rc.writes[1] != want {
		t.Fatalf("writes %q, want the greeting then %q", rc.writes, want)
	}
	c.Write([]byte("221 bye\r\n"))
	c.Close()
	if len(rc.writes) != 3 || rc.writes[2] != "221 bye\r\n" {
		t.Fatalf("Close did not send the last reply: %q", rc.writes)
	}
}

// BenchmarkData sends messages over one pipelining session and reports
// the process's CPU time per message (client and server, spool included;
// the client's share is the same for both readers), for bodyReader and
// for go-smtp's own reader.
//
//	go test -run '^$' -bench Data -benchtime 2000x ./smtpd/
func BenchmarkData(b *testing.B) {
	for _, size := range []int{4 << 10, 64 << 10} {
		for _, reader := range []string{"bulk", "go-smtp"} {
			b.Run(fmt.Sprintf("size=%dKiB/reader=%s", size>>10, reader), func(b *testing.B) {
				e := newEnv(b, func(c *Config) { c.goSMTPData = reader == "go-smtp" })
				d := e.session()
				line := strings.Repeat("The customer's primary is down; mail waits here. ", 2)[:78] + "\r\n"
				body := "Subject: bench\r\n\r\n" + strings.Repeat(line, size/len(line)) + ".\r\n"
				head := "MAIL FROM:<s@remote.test>\r\nRCPT TO:<a@example.com>\r\nDATA\r\n"
				b.SetBytes(int64(len(body)))
				cpu0 := cpuTime()
				b.ResetTimer()
				for b.Loop() {
					d.send(head)
					d.expect(250)
					d.expect(250)
					d.expect(354)
					d.send(body)
					d.expect(250)
				}
				b.StopTimer()
				b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/msg")
			})
		}
	}
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
