package imapd

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// rawConn speaks IMAP line by line, for dialogs copied from real clients.
type rawConn struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
	n  int
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(time.Minute))
	r := &rawConn{t: t, c: c, br: bufio.NewReader(c)}
	if g := r.line(); !strings.HasPrefix(g, "* OK") {
		t.Fatalf("greeting %q", g)
	}
	return r
}

// line reads one response line, with any literals it announces inlined.
func (r *rawConn) line() string {
	r.t.Helper()
	var sb strings.Builder
	for {
		l, err := r.br.ReadString('\n')
		if err != nil {
			r.t.Fatalf("read: %v (so far %q)", err, sb.String())
		}
		sb.WriteString(l)
		l = strings.TrimRight(l, "\r\n")
		i := strings.LastIndexByte(l, '{')
		if i < 0 || !strings.HasSuffix(l, "}") {
			return strings.TrimRight(sb.String(), "\r\n")
		}
		n, err := strconv.Atoi(l[i+1 : len(l)-1])
		if err != nil {
			return strings.TrimRight(sb.String(), "\r\n")
		}
		buf := make([]byte, n)
		if _, err := io.ReadFull(r.br, buf); err != nil {
			r.t.Fatal(err)
		}
		sb.Write(buf)
	}
}

// cmd sends one command and returns the untagged lines; the tagged
// answer must be OK.
func (r *rawConn) cmd(format string, args ...any) []string {
	r.t.Helper()
	r.n++
	tag := fmt.Sprintf("A%04d", r.n)
	text := fmt.Sprintf(format, args...)
	if _, err := fmt.Fprintf(r.c, "%s %s\r\n", tag, text); err != nil {
		r.t.Fatal(err)
	}
	var out []string
	for {
		l := r.line()
		if strings.HasPrefix(l, tag+" ") {
			if !strings.HasPrefix(l, tag+" OK") {
				r.t.Fatalf("%s\n-> %s", text, l)
			}
			return out
		}
		out = append(out, l)
	}
}

func containsLine(lines []string, subs ...string) bool {
	for _, l := range lines {
		ok := true
		for _, s := range subs {
			ok = ok && strings.Contains(l, s)
		}
		if ok {
			return true
		}
	}
	return false
}

// TestRoundcubeDialog replays what Roundcube 1.6 sends for a login, a
// message list, opening a message, marking it read and a quick search
// (research/roundcube-e2e.md); every command must be answered OK.
func TestRoundcubeDialog(t *testing.T) {
	e := newEnv(t)
	e.user("alice@example.com")
	e.deliver(multipart, "alice@example.com")
	e.deliver(simple("lunch"), "alice@example.com")
	r := dialRaw(t, e.addr)
	ir := base64.StdEncoding.EncodeToString([]byte("\x00alice@example.com\x00" + testPassword))
	r.cmd("AUTHENTICATE PLAIN %s", ir)
	if ns := r.cmd("NAMESPACE"); !containsLine(ns, `* NAMESPACE (("" "/")) NIL NIL`) {
		t.Errorf("NAMESPACE: %q", ns)
	}
	list := r.cmd(`LIST (SPECIAL-USE) "" "*" RETURN (SUBSCRIBED)`)
	if !containsLine(list, `\Sent`, "Sent") || !containsLine(list, `\Trash`, "Trash") || containsLine(list, "INBOX") {
		t.Errorf("LIST (SPECIAL-USE): %q", list)
	}
	list = r.cmd(`LIST "" "*" RETURN (SUBSCRIBED SPECIAL-USE)`)
	if len(list) != 4 || !containsLine(list, `\Subscribed`, "INBOX") || !containsLine(list, `\Drafts`, "Drafts") {
		t.Errorf("LIST RETURN (SUBSCRIBED SPECIAL-USE): %q", list)
	}
	if st := r.cmd("STATUS INBOX (MESSAGES UNSEEN)"); !containsLine(st, "MESSAGES 2", "UNSEEN 2") {
		t.Errorf("STATUS: %q", st)
	}
	if sel := r.cmd("SELECT INBOX"); !containsLine(sel, "2 EXISTS") || !containsLine(sel, "UIDVALIDITY") {
		t.Errorf("SELECT: %q", sel)
	}
	if s := r.cmd("UID SEARCH ALL UNDELETED"); !containsLine(s, "* SEARCH 1 2") {
		t.Errorf("UID SEARCH: %q", s)
	}
	f := r.cmd("UID FETCH 1:* (UID RFC822.SIZE FLAGS INTERNALDATE BODYSTRUCTURE BODY.PEEK[HEADER.FIELDS " +
		"(DATE FROM TO SUBJECT CONTENT-TYPE CC REPLY-TO LIST-POST DISPOSITION-NOTIFICATION-TO X-PRIORITY)])")
	if len(f) != 2 || !containsLine(f, "UID 1", "BODYSTRUCTURE", "Subject: Quarterly report") ||
		!containsLine(f, "UID 2", "Subject: lunch") {
		t.Errorf("UID FETCH list: %q", f)
	}
	if f := r.cmd("UID FETCH 1 (BODY.PEEK[1])"); !containsLine(f, "Hello Alice, the numbers are attached.") {
		t.Errorf("UID FETCH BODY.PEEK[1]: %q", f)
	}
	r.cmd(`UID STORE 1 +FLAGS.SILENT (\Seen)`)
	if s := r.cmd(`UID SEARCH RETURN (ALL) OR HEADER SUBJECT "lunch" HEADER FROM "lunch"`); !containsLine(s, "* ESEARCH", "UID ALL 2") {
		t.Errorf("ESEARCH: %q", s)
	}
	if s := r.cmd("UID SEARCH UNSEEN"); !containsLine(s, "* SEARCH 2") {
		t.Errorf("UNSEEN after STORE: %q", s)
	}
	if l := r.cmd("LOGOUT"); !containsLine(l, "* BYE") {
		t.Errorf("LOGOUT: %q", l)
	}
}
