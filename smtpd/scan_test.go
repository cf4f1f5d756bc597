package smtpd

import (
	"errors"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"
)

// feedAll feeds s to a scanner as sconn does: in reads of up to n bytes,
// each handed out up to the scanner's next boundary.
func feedAll(sc *streamScanner, s string, n int) error {
	for len(s) > 0 {
		k, err := sc.feed([]byte(s[:min(n, len(s))]))
		if err != nil {
			return err
		}
		if k == 0 {
			return errors.New("scanner took nothing")
		}
		s = s[k:]
	}
	return nil
}

func newScanner() *streamScanner {
	sc := &streamScanner{limit: 512}
	sc.wrote([]byte("220 greeting\r\n"))
	return sc
}

func TestScannerLineLimit(t *testing.T) {
	for _, n := range []int{1, 7, 4096} {
		sc := newScanner()
		if err := feedAll(sc, "EHLO x\r\n"+strings.Repeat("a", 510)+"\r\nNOOP\r\n", n); err != nil {
			t.Errorf("512-byte line with CRLF, pieces of %d: %v", n, err)
		}
		if err := feedAll(sc, strings.Repeat("b", 511)+"\r\n", n); !errors.Is(err, smtp.ErrTooLongLine) {
			t.Errorf("513-byte line with CRLF, pieces of %d: %v", n, err)
		}
	}
}

func TestScannerData(t *testing.T) {
	long := strings.Repeat("d", 5000)
	for _, n := range []int{1, 3, 100, 1 << 20} {
		sc := newScanner()
		if err := feedAll(sc, "DATA\r\n", n); err != nil {
			t.Fatal(err)
		}
		sc.wrote([]byte("354 go ahead\r\n"))
		// Lines that look like an end but are not, then the real end and
		// a pipelined over-long command that must be caught.
		body := long + "\r\n.\n" + long + "\r\r\n.\r\n" + long + "\n.\r\n" + long + "\r\n..\r\n" + long + "\r\n.\r\n"
		if err := feedAll(sc, body, n); err != nil {
			t.Fatalf("body in pieces of %d: %v", n, err)
		}
		if sc.mode != scanCmd {
			t.Fatalf("pieces of %d: still in mode %d after the final dot", n, sc.mode)
		}
		sc.wrote([]byte("250 queued\r\n"))
		if err := feedAll(sc, long+"\r\n", n); !errors.Is(err, smtp.ErrTooLongLine) {
			t.Errorf("pieces of %d: long command after DATA: %v", n, err)
		}
	}
}

func TestScannerDataResync(t *testing.T) {
	sc := newScanner()
	sc.wrote([]byte("354 go ahead\r\n"))
	_ = feedAll(sc, strings.Repeat("x", 600), 50) // never reaches a final dot
	sc.wrote([]byte("421 4.4.2 timeout\r\n"))
	if sc.mode != scanCmd {
		t.Errorf("a final reply did not end data mode")
	}
}

func TestScannerBDAT(t *testing.T) {
	chunk := strings.Repeat("c", 3000)
	for _, n := range []int{1, 11, 1 << 20} {
		sc := newScanner()
		in := "BDAT 3000\r\n" + chunk + "bdat  3000   last \r\n" + chunk + "NOOP\r\n"
		if err := feedAll(sc, in, n); err != nil {
			t.Errorf("pieces of %d: %v", n, err)
		}
		// Arguments go-smtp refuses carry no chunk.
		for _, bad := range []string{"BDAT\r\n", "BDAT x\r\n", "BDAT 5 FIRST\r\n", "BDAT 1 LAST more\r\n", "BDAT -1\r\n", "BDATE 5\r\n"} {
			sc := newScanner()
			if err := feedAll(sc, bad+strings.Repeat("e", 600)+"\r\n", n); !errors.Is(err, smtp.ErrTooLongLine) {
				t.Errorf("%q, pieces of %d: %v", bad, n, err)
			}
		}
	}
}

func TestScannerStartTLS(t *testing.T) {
	sc := newScanner()
	_ = feedAll(sc, "STARTTLS\r\n", 100)
	sc.wrote([]byte("220 2.0.0 Ready to start TLS\r\n"))
	if err := feedAll(sc, strings.Repeat("\x16", 10000), 100); err != nil {
		t.Errorf("ClientHello scanned: %v", err)
	}
	sc.wrote([]byte("\x16\x03\x03 server hello"))
	if err := feedAll(sc, strings.Repeat("\x17", 10000), 100); err != nil {
		t.Errorf("TLS records scanned: %v", err)
	}
	sc.wrote([]byte("\x17\x03\x03 record"))
	if sc.mode != scanOff {
		t.Errorf("mode %d after the handshake", sc.mode)
	}

	// A failed handshake: go-smtp goes on in plaintext, and so do we.
	sc = newScanner()
	sc.wrote([]byte("220 2.0.0 Ready to start TLS\r\n"))
	_ = feedAll(sc, "not a client hello\r\n", 100)
	sc.wrote([]byte("550 5.0.0 Handshake error\r\n"))
	if err := feedAll(sc, strings.Repeat("x", 600)+"\r\n", 100); !errors.Is(err, smtp.ErrTooLongLine) {
		t.Errorf("after a failed handshake: %v", err)
	}
}

func TestScannerProxySignature(t *testing.T) {
	for _, in := range []string{"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "\r\n\r\n\x00\r\nQUIT\n\x21\x11"} {
		for _, n := range []int{1, 2, 100} {
			sc := newScanner()
			if err := feedAll(sc, in, n); !errors.Is(err, errProxyRefused) {
				t.Errorf("%q in pieces of %d: %v", in, n, err)
			}
		}
	}
	for _, in := range []string{"EHLO x\r\n", "PROX\r\n", "\r\nEHLO x\r\n", "P"} {
		sc := newScanner()
		if err := feedAll(sc, in, 1); err != nil {
			t.Errorf("%q: %v", in, err)
		}
	}
}

func TestScannerSourceRoutes(t *testing.T) {
	sc := newScanner()
	in := "RCPT TO:<@a.test,@b.test:user@example.com>\r\n" +
		"rcpt to: @relay.test:\"q u\"@example.org\r\n" +
		"RCPT TO:<plain@example.com>\r\n" +
		"RCPT TO:<@broken.test user@example.com>\r\n"
	if err := feedAll(sc, in, 5); err != nil {
		t.Fatal(err)
	}
	for mbox, want := range map[string]bool{
		"user@example.com":  true,
		"q u@example.org":   true,
		"plain@example.com": false,
	} {
		if got := sc.takeRouted(mbox); got != want {
			t.Errorf("takeRouted(%q) = %v", mbox, got)
		}
	}
	if sc.takeRouted("user@example.com") {
		t.Errorf("a note was used twice")
	}
}

func TestScannerBoundaries(t *testing.T) {
	sc := newScanner()
	take := func(in string, want string) {
		t.Helper()
		k, err := sc.feed([]byte(in))
		if err != nil || in[:k] != want {
			t.Errorf("feed(%q) took %q, %v; want %q", in, in[:k], err, want)
		}
	}
	take("NOOP\r\nQUIT\r\n", "NOOP\r\n")
	take("DATA\r\nbody", "DATA\r\n")
	sc.wrote([]byte("354 go ahead\r\n"))
	take("body\r\n.\r\nQUIT\r\n", "body\r\n.\r\n")
	take("BDAT 3\r\nabcQUIT\r\n", "BDAT 3\r\n")
	take("abcQUIT\r\n", "abc")
	take("QUIT\r\n", "QUIT\r\n")
	take("partial line", "partial line")
}
