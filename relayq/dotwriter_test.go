package relayq

import (
	"bufio"
	"bytes"
	"io"
	"net/textproto"
	"strings"
	"testing"
	"time"
)

// refDot is the reference for dotWriter: byte by byte, a bare CR or LF
// becomes CRLF, a dot starting a line is doubled, and the data ends with
// a line break and ".\r\n".
func refDot(body []byte) []byte {
	var out []byte
	bol := true
	for i := 0; i < len(body); i++ {
		c := body[i]
		if bol && c == '.' {
			out = append(out, '.')
		}
		bol = false
		switch c {
		case '\r':
			out = append(out, '\r', '\n')
			bol = true
			if i+1 < len(body) && body[i+1] == '\n' {
				i++
			}
		case '\n':
			out = append(out, '\r', '\n')
			bol = true
		default:
			out = append(out, c)
		}
	}
	if !bol {
		out = append(out, '\r', '\n')
	}
	return append(out, ".\r\n"...)
}

// dotData runs body through a dotWriter, cut into Writes at cuts.
func dotData(t testing.TB, body []byte, cuts []int) []byte {
	var out bytes.Buffer
	bw := bufio.NewWriterSize(&out, 16) // small: flushes mid-line too
	var d dotWriter
	d.reset(bw)
	prev := 0
	for _, c := range append(cuts, len(body)) {
		c = min(max(c, prev), len(body))
		if n, err := d.Write(body[prev:c]); err != nil || n != c-prev {
			t.Fatalf("Write: %d, %v", n, err)
		}
		prev = c
	}
	if err := d.close(); err != nil {
		t.Fatal(err)
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// checkWire checks what the relay host sees: CRLF line endings only, and
// no line that is a lone dot before the end.
func checkWire(t testing.TB, wire []byte) {
	t.Helper()
	if !bytes.HasSuffix(wire, []byte("\r\n.\r\n")) && !bytes.Equal(wire, []byte(".\r\n")) {
		t.Fatalf("data does not end with CRLF.CRLF: %q", wire)
	}
	lines := bytes.SplitAfter(wire, []byte("\n"))
	for i, l := range lines[:len(lines)-1] { // the last is empty
		if !bytes.HasSuffix(l, []byte("\r\n")) || bytes.IndexByte(l[:len(l)-2], '\r') >= 0 || bytes.IndexByte(l[:len(l)-1], '\n') >= 0 {
			t.Fatalf("line %d %q: a bare CR or LF reached the wire", i, l)
		}
		if i < len(lines)-2 && string(l) == ".\r\n" {
			t.Fatalf("line %d: a lone dot before the end of the data", i)
		}
	}
}

func TestDotWriter(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", ".\r\n"},
		{"a\r\n", "a\r\n.\r\n"},
		{"a", "a\r\n.\r\n"},
		{".\r\n", "..\r\n.\r\n"},
		{".", "..\r\n.\r\n"},
		{"a\r\n.\r\nb\r\n", "a\r\n..\r\nb\r\n.\r\n"},
		{"..two\r\n", "...two\r\n.\r\n"},
		{"a.b\r\n.c\r\n", "a.b\r\n..c\r\n.\r\n"},
		// bare LF and bare CR become CRLF (SMTP smuggling: "\n.\n" must
		// not become an end of data for a lenient server, nor survive)
		{"a\n.\nb\n", "a\r\n..\r\nb\r\n.\r\n"},
		{"a\r.\rb", "a\r\n..\r\nb\r\n.\r\n"},
		{"a\r\n.\nMAIL FROM:<x>\r\n", "a\r\n..\r\nMAIL FROM:<x>\r\n.\r\n"},
		{"a\n.\r\nb", "a\r\n..\r\nb\r\n.\r\n"},
		{"a\r\r\nb", "a\r\n\r\nb\r\n.\r\n"},
		{"a\n\rb", "a\r\n\r\nb\r\n.\r\n"},
		{"\r", "\r\n.\r\n"},
		{"\n", "\r\n.\r\n"},
		{"a\r", "a\r\n.\r\n"},
		{"\r\n\r\n", "\r\n\r\n.\r\n"},
		// as many bare CRs as bare LFs: the CR count alone does not tell
		{"\r0\n0", "\r\n0\r\n0\r\n.\r\n"},
		{"x\n.\ry\r\n", "x\r\n..\r\ny\r\n.\r\n"},
	} {
		want := c.want
		if got := string(refDot([]byte(c.in))); got != want {
			t.Fatalf("reference %q: %q, want %q", c.in, got, want)
		}
		// Every way of cutting the input in two or three Writes.
		in := []byte(c.in)
		for i := 0; i <= len(in); i++ {
			for j := i; j <= len(in); j++ {
				got := dotData(t, in, []int{i, j})
				if string(got) != want {
					t.Errorf("%q cut at %d,%d: %q, want %q", c.in, i, j, got, want)
				}
				checkWire(t, got)
			}
		}
	}
}

// TestDotWriterLargeBody: a normal body goes through the whole-lines
// path, written in one piece or many.
func TestDotWriterLargeBody(t *testing.T) {
	b := body(7, 200_000)
	b = append(b, []byte(".\r\nend without line break")...)
	want := refDot(b)
	for _, cuts := range [][]int{nil, {1}, {4095, 4096, 8191, 32768, 65536}, {len(b) - 1}} {
		got := dotData(t, b, cuts)
		if !bytes.Equal(got, want) {
			t.Fatalf("cuts %v: output differs from the reference", cuts)
		}
		checkWire(t, got)
	}
	// A bare LF late in the body switches to the line-by-line path.
	b2 := append(append([]byte(nil), b[:150_000]...), "x\n.\r\ny\r\n"...)
	if got := dotData(t, b2, []int{100_000}); !bytes.Equal(got, refDot(b2)) {
		t.Fatal("body with a late bare LF differs from the reference")
	}
}

func FuzzDotWriter(f *testing.F) {
	for _, s := range []string{"", "a\r\n.\r\n", "\n.\n", "\r.\r", ".\r\n..\r\n", "a\r\r\n", "x\r"} {
		f.Add([]byte(s), uint16(1), uint16(3))
	}
	f.Add(body(1, 3000), uint16(100), uint16(2000))
	f.Fuzz(func(t *testing.T, in []byte, c1, c2 uint16) {
		got := dotData(t, in, []int{int(c1) % (len(in) + 1), int(c2) % (len(in) + 1)})
		if want := refDot(in); !bytes.Equal(got, want) {
			t.Fatalf("input %q: got %q, want %q", in, got, want)
		}
		checkWire(t, got)
		// The relay host, undoing the dot-stuffing, gets the body with
		// every line break as CRLF.
		norm := strings.NewReplacer("\r\n", "\r\n", "\r", "\r\n", "\n", "\r\n").Replace(string(in))
		if norm != "" && !strings.HasSuffix(norm, "\r\n") {
			norm += "\r\n"
		}
		if unstuffed := unstuff(got); unstuffed != norm {
			t.Fatalf("input %q: relay host reads %q, want %q", in, unstuffed, norm)
		}
	})
}

// unstuff undoes dot-stuffing as a server does (RFC 5321 4.5.2) and drops
// the final dot line.
func unstuff(wire []byte) string {
	var b strings.Builder
	for _, l := range strings.SplitAfter(string(wire), "\r\n") {
		if l == ".\r\n" || l == "" {
			break
		}
		b.WriteString(strings.TrimPrefix(l, "."))
	}
	return b.String()
}

// BenchmarkDotWriter: a 64 KiB CRLF body (with a few dot lines) written
// in 32 KiB pieces, as the drain copies it from the spool; "textproto" is
// net/textproto's DotWriter, a byte at a time, which go-smtp's client
// used before, for comparison.
func BenchmarkDotWriter(b *testing.B) {
	in := body(1, 64<<10)
	bw := bufio.NewWriterSize(io.Discard, 64<<10)
	write := func(b *testing.B, w io.Writer) {
		for p := in; len(p) > 0; {
			n := min(len(p), 32<<10)
			if _, err := w.Write(p[:n]); err != nil {
				b.Fatal(err)
			}
			p = p[n:]
		}
	}
	b.Run("relayq", func(b *testing.B) {
		var d dotWriter
		b.SetBytes(int64(len(in)))
		for b.Loop() {
			d.reset(bw)
			write(b, &d)
			_ = d.close()
		}
	})
	b.Run("textproto", func(b *testing.B) {
		tw := textproto.NewWriter(bw)
		b.SetBytes(int64(len(in)))
		for b.Loop() {
			w := tw.DotWriter()
			write(b, w)
			_ = w.Close()
		}
	})
}

// TestDeliverBareLineEndings: a spooled body with bare LF and CR (smtpd
// normalises them, but the relay side does not rely on it) reaches the
// relay host with CRLF line endings only; rawServer refuses anything else.
func TestDeliverBareLineEndings(t *testing.T) {
	e := newEnv(t, nil)
	srv := startRawServer(t, func(s *rawServer) { s.keepBodies = true })
	e.domain(dom, srv.Addr, nil)
	e.start()
	e.send(dom, []byte("Subject: bare\r\n\r\na\n.\nMAIL FROM:<x@y>\rb\r\n.\r\nc"))
	waitFor(t, 10*time.Second, "delivery", func() bool { return srv.count() == 1 && e.queued(dom) == 0 })
	bodies, _ := srv.received()
	if want := "Subject: bare\r\n\r\na\r\n.\r\nMAIL FROM:<x@y>\r\nb\r\n.\r\nc\r\n"; string(bodies[0]) != want {
		t.Fatalf("relay host got %q, want %q", bodies[0], want)
	}
}
