package smtpd

import (
	"strings"
	"testing"
	"time"
)

// TestOverlongCommandNotExecuted: a command line past the limit is refused
// with 500 5.4.0 and the connection closed, and the command its first
// bytes spell is not run: go-smtp is handed those bytes before the limit
// is reached, and bufio's ReadLine returns them as a line.
func TestOverlongCommandNotExecuted(t *testing.T) {
	e := newEnv(t, nil)
	for _, tc := range []struct{ name, prefix string }{
		{"MAIL padded", "MAIL FROM:<a@sender.test>"},
		{"RCPT padded", "RCPT TO:<user@example.com>"},
		{"NOOP padded", "NOOP"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := e.session()
			if strings.HasPrefix(tc.prefix, "RCPT") {
				d.cmd("MAIL FROM:<a@sender.test>", 250)
			}
			// The start of the line first, in its own read, so that
			// go-smtp holds it when the rest crosses the limit.
			d.send(tc.prefix + strings.Repeat(" ", 100))
			time.Sleep(200 * time.Millisecond)
			d.send(strings.Repeat(" ", 3*DefaultMaxLineLength))
			code, text, err := d.reply()
			if err != nil || code != 500 || !strings.Contains(text, "Too long line") {
				t.Fatalf("first reply after the long line: %d %q %v; want go-smtp's 500 5.4.0 Too long line", code, text, err)
			}
			if lines, closed := d.closed(); !closed || len(lines) > 0 {
				t.Fatalf("after the 500: %q, closed %v; want nothing more and the connection closed", lines, closed)
			}
		})
	}
	if n := e.total(); n != 0 {
		t.Fatalf("%d messages spooled", n)
	}
}
