package e2e

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// sendResult is what a sender saw for one message.
type sendResult struct {
	msgID string
	reply string // the server's reply to DATA, "" if none
	ok    bool   // 250 received
}

// sendMany sends n messages to rcptDomain over conc concurrent
// connections (one message per connection), each with a unique
// Message-ID. It returns what each message got; messages that got no
// answer (the node died) have ok=false. It stops early when stop closes.
func sendMany(t testing.TB, addr, rcptDomain, tag string, n, conc int, stop <-chan struct{}) []sendResult {
	t.Helper()
	res := make([]sendResult, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	for g := 0; g < conc; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("<%s-%d@e2e.test>", tag, i)
				res[i].msgID = id
				reply, err := sendOne(addr, "sender@source.example", "user@"+rcptDomain, id, 2048)
				res[i].reply = reply
				res[i].ok = err == nil && strings.HasPrefix(reply, "250")
			}
		}()
	}
	wg.Wait()
	return res
}

// sendOne delivers one message of about size bytes of text and returns
// the DATA reply.
func sendOne(addr, from, to, msgID string, size int) (string, error) {
	return sendBody(addr, from, to, msgID, size, false)
}

// sendBody is sendOne with an incompressible (base64 of random bytes)
// body when random is set.
func sendBody(addr, from, to, msgID string, size int, random bool) (string, error) {
	c, err := smtp.Dial(addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if err := c.Hello("sender.e2e.test"); err != nil {
		return "", err
	}
	if err := c.Mail(from, nil); err != nil {
		return "", err
	}
	if err := c.Rcpt(to, nil); err != nil {
		return "", err
	}
	w, err := c.Data()
	if err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "From: <%s>\r\nTo: <%s>\r\nSubject: e2e %s\r\nMessage-ID: %s\r\nDate: %s\r\n\r\n",
		from, to, msgID, msgID, time.Now().Format(time.RFC1123Z))
	for b.Len() < size {
		if random {
			raw := make([]byte, 57)
			_, _ = rand.Read(raw)
			b.WriteString(base64.StdEncoding.EncodeToString(raw) + "\r\n")
			continue
		}
		b.WriteString("The quick brown fox jumps over the lazy dog while the primary is down.\r\n")
	}
	if _, err := w.Write([]byte(b.String())); err != nil {
		return "", err
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		if se, ok := err.(*smtp.SMTPError); ok {
			return fmt.Sprintf("%d %s", se.Code, se.Message), err
		}
		return "", err
	}
	_ = c.Quit()
	return "250 " + resp.StatusText, nil
}

func acked(rs []sendResult) map[string]bool {
	m := map[string]bool{}
	for _, r := range rs {
		if r.ok {
			m[r.msgID] = true
		}
	}
	return m
}

// waitDelivered polls until every id in want arrived at p, or times out.
func waitDelivered(t testing.TB, p *postfix, want map[string]bool, d time.Duration) map[string]int {
	t.Helper()
	return waitAll(t, want, d, 200*time.Millisecond, p.messageIDs, func(missing int) string {
		return fmt.Sprintf("%d of %d acknowledged messages never arrived at the primary", missing, len(want))
	})
}

// waitAll calls seen every `every` until the Message-IDs it returns (with
// how often each arrived) include every id of want, and returns them; once
// d has passed it fails the test with failMsg(how many are missing).
func waitAll(t testing.TB, want map[string]bool, d, every time.Duration, seen func() map[string]int, failMsg func(missing int) string) map[string]int {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		got := seen()
		missing := 0
		for id := range want {
			if got[id] == 0 {
				missing++
			}
		}
		if missing == 0 {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatal(failMsg(missing))
		}
		time.Sleep(every)
	}
}

// duplicates counts the extra copies of the wanted messages that arrived
// (waitDelivered has checked that each arrived at least once).
func duplicates(want map[string]bool, got map[string]int) int {
	n := 0
	for id := range want {
		n += got[id] - 1
	}
	return n
}
