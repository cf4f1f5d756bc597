package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// TestKill9WithShadowMailboxes kills the node with SIGKILL at random
// moments while mail for a both-mode domain with a mailbox user is being
// accepted. After each restart the user's IMAP INBOX holds every message
// the senders saw 250 for, each intact (its Message-ID header is found by
// a header search); at the end, the primary comes back and gets them too.
func TestKill9WithShadowMailboxes(t *testing.T) {
	cycles := 5
	if testing.Short() {
		cycles = 2
	}
	const user, password = "user@both.test", "shadow-mailbox-password"
	port := freePort(t)
	imapAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	dir := t.TempDir()
	n := startNode(t, dir, fmt.Sprintf("domains:\n  - name: both.test\n    mode: both\n    relay_host: 127.0.0.1:%d\n", port),
		"imap_addr: "+imapAddr)
	a := login(t, n.httpAddr)
	if code := a.do(http.MethodPost, "/api/v1/domains/both.test/mailboxes",
		map[string]string{"address": user, "password": password}, nil); code != http.StatusCreated {
		t.Fatalf("add mailbox user: HTTP %d", code)
	}
	want := map[string]bool{}
	for c := 0; c < cycles; c++ {
		if c > 0 {
			n.start()
		}
		stop := make(chan struct{})
		var res []sendResult
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			res = sendMany(t, n.smtpAddr, "both.test", fmt.Sprintf("shadow%d", c), 100000, 8, stop)
		}()
		time.Sleep(time.Duration(500+300*c) * time.Millisecond)
		n.kill()
		close(stop)
		wg.Wait()
		got := acked(res)
		for id := range got {
			want[id] = true
		}
		n.start()
		inbox := imapMessageIDs(t, imapAddr, user, password)
		missing := 0
		for id := range want {
			if !inbox[id] {
				missing++
			}
		}
		t.Logf("cycle %d: %d acknowledged so far, %d in the shadow INBOX, %d missing", c, len(want), len(inbox), missing)
		if missing > 0 {
			t.Fatalf("cycle %d: %d acknowledged messages missing from the shadow mailbox after kill -9", c, missing)
		}
		n.kill()
	}
	n.start()
	p := startPostfix(t, "both.test", port)
	got := waitDelivered(t, p, want, 300*time.Second)
	t.Logf("%d acknowledged over %d kills: all in the shadow mailbox and delivered to the primary, %d duplicates",
		len(want), cycles, duplicates(want, got))
}

// imapMessageIDs logs in over IMAP and returns the Message-IDs in INBOX.
func imapMessageIDs(t testing.TB, addr, user, password string) map[string]bool {
	t.Helper()
	c, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		t.Fatalf("imap dial: %v", err)
	}
	defer c.Close()
	if err := c.Login(user, password).Wait(); err != nil {
		t.Fatalf("imap login: %v", err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatalf("imap select: %v", err)
	}
	sec := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"Message-Id"}, Peek: true}
	msgs, err := c.Fetch(imap.SeqSet{imap.SeqRange{Start: 1, Stop: 0}}, &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{sec}, RFC822Size: true}).Collect()
	if err != nil {
		// An empty mailbox answers "1:*" with nothing or an error,
		// depending on the server; both mean no messages here.
		return map[string]bool{}
	}
	ids := map[string]bool{}
	for _, m := range msgs {
		for _, b := range m.BodySection {
			for _, l := range strings.Split(string(b.Bytes), "\r\n") {
				if strings.HasPrefix(strings.ToLower(l), "message-id:") {
					ids[strings.TrimSpace(l[len("message-id:"):])] = true
				}
			}
		}
	}
	_ = c.Logout().Wait()
	return ids
}
