package e2e

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestOversizeAndEndlessLines sends what a broken or hostile client sends
// to the real binary — a message over max_message_bytes (from swaks, and
// announced with SIZE=), a header section that never ends, one header line
// longer than the line limit, a command line without end, a body line
// streamed without end — and checks each permanent refusal code, that
// nothing of them is queued, and that the node then serves the next
// client as usual.
func TestOversizeAndEndlessLines(t *testing.T) {
	t.Parallel()
	const limit = 4 << 20
	n := startNode(t, t.TempDir(), domainYAML("customer.test", "127.0.0.1:1"), "max_message_bytes: 4194304")
	a := login(t, n.httpAddr)
	const from, to = "a@sender.example", "user@customer.test"

	big := filepath.Join(t.TempDir(), "big.txt")
	if err := os.WriteFile(big, bytes.Repeat([]byte(strings.Repeat("x", 76)+"\r\n"), limit/78+1000), 0o600); err != nil {
		t.Fatal(err)
	}
	out, _ := swaks(t, n.smtpAddr, "--to", to, "--from", from, "--body", "@"+big)
	if r := lastReply(out); !strings.HasPrefix(r, "552 5.3.4") {
		t.Errorf("swaks, %d KiB body: last reply %q, want 552 5.3.4", (limit+78000)>>10, r)
	}

	msg := func(head, body string) []byte {
		return []byte("From: <" + from + ">\r\nTo: <" + to + ">\r\nSubject: limits\r\n" + head + "\r\n" + body)
	}
	headerLines := strings.Repeat("X-Endless: "+strings.Repeat("h", 60)+"\r\n", limit/73+1000)
	for _, c := range []struct {
		name string
		msg  []byte
		size int64
		want string
	}{
		{"SIZE= over the limit", msg("", "small\r\n"), limit + 1, "552 5.3.4"},
		{"header section without end", msg(headerLines, "body\r\n"), 0, "552 5.3.4"},
		{"one 1.5 MiB header line", msg("X-Long: "+strings.Repeat("h", 3<<19)+"\r\n", "body\r\n"), 0, "554 5.6.0"},
	} {
		reply, _ := sendData(n.smtpAddr, from, to, c.msg, c.size)
		if !strings.HasPrefix(reply, c.want) {
			t.Errorf("%s: %q, want %s", c.name, reply, c.want)
		} else {
			t.Logf("%s: %s", c.name, reply)
		}
	}

	// A command line without end: refused at the line limit, connection
	// closed, and nothing of it executed. The replies after EHLO's count.
	replies, closed := endless(t, n.smtpAddr, "EHLO e2e.test\r\nMAIL FROM:<", 8<<20)
	t.Logf("endless command line: %q, closed %v", replies, closed)
	if len(replies) < 2 || replies[len(replies)-1] != "500 5.4.0 Too long line, closing connection" || !closed {
		t.Errorf("endless command line: %q, closed %v; want 500 5.4.0 and the connection closed", replies, closed)
	}
	if len(replies) > 2 {
		t.Errorf("the truncated first 4 KiB of an endless command line was executed before the 500: %q", replies[1:])
	}
	replies, _ = endless(t, n.smtpAddr, "EHLO e2e.test\r\nMAIL FROM:<"+from+">"+strings.Repeat(" ", 8<<10), 0)
	if len(replies) > 2 {
		t.Errorf("a MAIL command padded past the line limit was executed before the 500: %q", replies[1:])
	}
	// A body line without end, streamed until the node answers.
	replies, closed = endless(t, n.smtpAddr, "EHLO e2e.test\r\nMAIL FROM:<"+from+">\r\nRCPT TO:<"+to+">\r\nDATA\r\nSubject: x\r\n\r\n", 64<<20)
	t.Logf("endless body line: %q, closed %v", replies, closed)
	if !slices.Contains(replies, "554 5.6.0 message has a line that is too long") || !closed {
		t.Errorf("endless body line: %q, closed %v; want 554 5.6.0 and the connection closed", replies, closed)
	}

	out, err := swaks(t, n.smtpAddr, "--to", to, "--from", from)
	if r := lastReply(out); err != nil || !strings.HasPrefix(r, "250 2.0.0 queued as ") {
		t.Fatalf("swaks after the refusals: %v, last reply %q", err, r)
	}
	healthy(t, a, "after the refusals")
	a.waitQueued("customer.test", 1, 10*time.Second)
}

// endless sends prefix, then 'a's without a line end, up to max bytes or
// until the node stops reading or closes. It returns the node's final
// reply lines after its greeting (EHLO's last line first) and whether the
// node closed the connection.
func endless(t testing.TB, addr, prefix string, max int) ([]string, bool) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	lines := make(chan string, 100)
	go func() {
		defer close(lines)
		_ = c.SetReadDeadline(time.Now().Add(120 * time.Second))
		r := bufio.NewReader(c)
		for {
			l, err := r.ReadString('\n')
			if l = strings.TrimRight(l, "\r\n"); len(l) > 3 && l[3] == ' ' && !strings.HasPrefix(l, "220 ") {
				lines <- l
			}
			if err != nil {
				return
			}
		}
	}()
	_, _ = io.WriteString(c, prefix)
	chunk := bytes.Repeat([]byte("a"), 64<<10)
	for sent := 0; sent < max; sent += len(chunk) {
		_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write(chunk); err != nil {
			break // the node closed, or stopped reading
		}
	}
	var replies []string
	timeout := time.After(60 * time.Second)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				return replies, true
			}
			replies = append(replies, l)
		case <-timeout:
			return replies, false
		}
	}
}
