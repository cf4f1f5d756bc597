package e2e

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/textproto"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// bodyHeader carries the SHA-256 of a test message's body (lines joined by
// LF), so that the receiving side can check every delivered byte.
const bodyHeader = "X-E2E-Body"

// randomLines is a pool of base64 lines of random bytes that messages
// take their bodies from: encoding fresh random bytes for every message is
// slow under the race detector, and a body need not be unique to be
// incompressible (the spool compresses each record on its own).
var randomLines = sync.OnceValue(func() string {
	var b strings.Builder
	raw := make([]byte, 57)
	for b.Len() < 4<<20 {
		_, _ = rand.Read(raw)
		b.WriteString(base64.StdEncoding.EncodeToString(raw))
		b.WriteString("\r\n")
	}
	return b.String()
})

// randomMessage returns a message of about size bytes (at most 4 MiB)
// with an incompressible body of base64 lines, its Message-ID and a
// digest header of its body.
func randomMessage(msgID, from, to string, size int) []byte {
	pool := randomLines()
	const line = 78 // 76 characters and CRLF
	n := min(size/line+1, len(pool)/line)
	off := mrand.IntN(len(pool)/line-n+1) * line
	body := pool[off : off+n*line]
	sum := sha256.Sum256([]byte(strings.ReplaceAll(body, "\r\n", "\n")))
	return fmt.Appendf(nil, "From: <%s>\r\nTo: <%s>\r\nSubject: e2e %s\r\nMessage-ID: %s\r\n%s: %s\r\nDate: %s\r\n\r\n%s",
		from, to, msgID, msgID, bodyHeader, hex.EncodeToString(sum[:]), time.Now().Format(time.RFC1123Z), body)
}

// sendData runs one SMTP transaction with msg as the DATA (size, when
// positive, is declared with MAIL SIZE=) and returns the server's last
// reply as "code text" ("250 2.0.0 queued as …", "552 5.3.4 …"), or ""
// with the error when the connection failed without one. It speaks SMTP
// itself and writes the body in one piece: go-smtp's client dot-stuffs
// byte by byte, which is slow under the race detector.
func sendData(addr, from, to string, msg []byte, size int64) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 30*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(120 * time.Second))
	r := textproto.NewReader(bufio.NewReader(c))
	step := func(cmd string, want int) (string, error) {
		if cmd != "" {
			if _, err := io.WriteString(c, cmd+"\r\n"); err != nil {
				return "", err
			}
		}
		code, text, err := r.ReadResponse(want)
		if code == 0 {
			return "", err
		}
		return fmt.Sprintf("%d %s", code, strings.ReplaceAll(text, "\n", " ")), err
	}
	mail := "MAIL FROM:<" + from + ">"
	if size > 0 {
		mail += fmt.Sprintf(" SIZE=%d", size)
	}
	for _, s := range []struct {
		cmd  string
		want int
	}{{"", 220}, {"EHLO sender.e2e.test", 250}, {mail, 250}, {"RCPT TO:<" + to + ">", 250}, {"DATA", 354}} {
		if reply, err := step(s.cmd, s.want); err != nil {
			return reply, err
		}
	}
	_, werr := c.Write(dotStuff(msg))
	reply, err := step("", 250) // read even after a failed write: the server may have answered early
	if reply == "" && werr != nil {
		return "", werr
	}
	if err == nil {
		_, _ = step("QUIT", 221)
	}
	return reply, err
}

// dotStuff returns msg as a DATA body: CRLF-terminated, lines starting
// with a dot doubled, and the final dot line.
func dotStuff(msg []byte) []byte {
	if len(msg) > 0 && !bytes.HasSuffix(msg, []byte("\r\n")) {
		msg = append(msg[:len(msg):len(msg)], "\r\n"...)
	}
	if bytes.HasPrefix(msg, []byte(".")) || bytes.Contains(msg, []byte("\n.")) {
		msg = bytes.ReplaceAll(msg, []byte("\n."), []byte("\n.."))
		if msg[0] == '.' {
			msg = append([]byte("."), msg...)
		}
	}
	return append(msg[:len(msg):len(msg)], ".\r\n"...)
}

var queuedAs = regexp.MustCompile(`queued as ([0-9a-f]{16})`)

// queueID returns the spool id from a "250 … queued as <id>" reply.
func queueID(reply string) string {
	if m := queuedAs.FindStringSubmatch(reply); m != nil {
		return m[1]
	}
	return ""
}

// inbox reads a Postfix primary's Maildir incrementally: each delivered
// file is parsed once (Postfix renames complete files into new/), so
// polling stays cheap with tens of thousands of messages.
type inbox struct {
	p    *postfix
	seen map[string]bool
	ids  map[string]int // Message-ID → copies delivered
	bad  []string       // Message-IDs whose body did not match its digest
}

func newInbox(p *postfix) *inbox {
	return &inbox{p: p, seen: map[string]bool{}, ids: map[string]int{}}
}

// scan parses the files delivered since the last scan.
func (in *inbox) scan() {
	for _, sub := range []string{"new", "cur"} {
		dir := filepath.Join(in.p.mail, "inbox", sub)
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if in.seen[e.Name()] {
				continue
			}
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				continue
			}
			in.seen[e.Name()] = true
			id, ok := checkDelivered(b)
			in.ids[id]++
			if !ok {
				in.bad = append(in.bad, id)
			}
		}
	}
}

// checkDelivered returns a delivered file's Message-ID and whether its
// body matches the digest header (true when there is none).
func checkDelivered(b []byte) (string, bool) {
	s := strings.ReplaceAll(string(b), "\r\n", "\n")
	head, body, _ := strings.Cut(s, "\n\n")
	var id, sum string
	for _, l := range strings.Split(head, "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		switch strings.ToLower(k) {
		case "message-id":
			id = strings.TrimSpace(v)
		case strings.ToLower(bodyHeader):
			sum = strings.TrimSpace(v)
		}
	}
	if sum == "" {
		return id, true
	}
	got := sha256.Sum256([]byte(body))
	return id, hex.EncodeToString(got[:]) == sum
}

// wait polls until every id of want has arrived, or fails the test.
func (in *inbox) wait(t testing.TB, want map[string]bool, d time.Duration) map[string]int {
	t.Helper()
	seen := func() map[string]int { in.scan(); return in.ids }
	return waitAll(t, want, d, 250*time.Millisecond, seen, func(missing int) string {
		return fmt.Sprintf("%d of %d acknowledged messages never arrived at the primary", missing, len(want))
	})
}

// sendBulk sends n messages of about 2 KiB to user@rcptDomain over conc
// concurrent connections, perConn messages per connection, each with a
// unique Message-ID, and returns the Message-IDs acknowledged with 250.
// It is sendMany for large queues: faster, since it reuses connections
// and writes each body in one piece.
func sendBulk(t testing.TB, addr, rcptDomain, tag string, n, conc, perConn int) map[string]bool {
	t.Helper()
	var (
		mu   sync.Mutex
		ok   = map[string]bool{}
		next = make(chan int, n)
		wg   sync.WaitGroup
		errs []string
	)
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	filler := strings.Repeat("The quick brown fox jumps over the lazy dog while the primary is down.\r\n", 2048/72)
	for g := 0; g < conc; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				batch := make([]int, 0, perConn)
				for i := range next {
					batch = append(batch, i)
					if len(batch) == perConn {
						break
					}
				}
				if len(batch) == 0 {
					return
				}
				err := bulkConn(addr, rcptDomain, batch, func(i int) []byte {
					id := fmt.Sprintf("<%s-%d@e2e.test>", tag, i)
					return fmt.Appendf(nil, "From: <sender@source.example>\r\nTo: <user@%s>\r\nSubject: e2e %s\r\nMessage-ID: %s\r\n\r\n%s",
						rcptDomain, id, id, filler)
				}, func(i int) {
					mu.Lock()
					ok[fmt.Sprintf("<%s-%d@e2e.test>", tag, i)] = true
					mu.Unlock()
				})
				if err != nil {
					mu.Lock()
					errs = append(errs, err.Error())
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Logf("sendBulk: %d connections failed, e.g. %s", len(errs), errs[0])
	}
	return ok
}

// bulkConn sends the messages of batch on one connection, calling acked
// for each one answered 250.
func bulkConn(addr, rcptDomain string, batch []int, msg func(int) []byte, acked func(int)) error {
	c, err := net.DialTimeout("tcp", addr, 30*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Minute))
	r := textproto.NewReader(bufio.NewReader(c))
	step := func(cmd string, want int) error {
		if cmd != "" {
			if _, err := io.WriteString(c, cmd+"\r\n"); err != nil {
				return err
			}
		}
		_, _, err := r.ReadResponse(want)
		return err
	}
	if err := step("", 220); err != nil {
		return err
	}
	if err := step("EHLO sender.e2e.test", 250); err != nil {
		return err
	}
	for _, i := range batch {
		for _, s := range []struct {
			cmd  string
			want int
		}{{"MAIL FROM:<sender@source.example>", 250}, {"RCPT TO:<user@" + rcptDomain + ">", 250}, {"DATA", 354}} {
			if err := step(s.cmd, s.want); err != nil {
				return err
			}
		}
		if _, err := c.Write(dotStuff(msg(i))); err != nil {
			return err
		}
		if err := step("", 250); err != nil {
			return err
		}
		acked(i)
	}
	return step("QUIT", 221)
}
