package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"go.uber.org/zap/zaptest"

	"github.com/mxcont/mxcont/admin/auth"
	"github.com/mxcont/mxcont/engine/registry"
	"github.com/mxcont/mxcont/internal/testutil"
	"github.com/mxcont/mxcont/mailbox"
	"github.com/mxcont/mxcont/outbound"
	"github.com/mxcont/mxcont/relayq"
)

const bothDomain = "both.test"

// startBothNode starts an in-process node on loopback with one both-mode
// domain relayed to primary, two mailbox users, submission, and replies to
// other domains going to smarthost.
func startBothNode(t *testing.T, primary, smarthost string) *Node {
	t.Helper()
	n, err := New(zaptest.NewLogger(t), Config{
		DataDir:        t.TempDir(),
		Hostname:       "mx.engine.test",
		SMTPAddr:       "127.0.0.1:0",
		SubmissionAddr: "127.0.0.1:0",
		IMAPAddr:       "127.0.0.1:0",
		Domains:        []registry.Domain{{Name: bothDomain, Mode: registry.ModeBoth, RelayHost: primary}},
		Relay:          relayq.Config{ProbeInterval: 200 * time.Millisecond, RetryBase: 200 * time.Millisecond},
		Mailbox:        mailbox.Config{Hash: auth.Params{Memory: 64, Time: 1, Threads: 1}},
		Outbound:       outboundTestConfig(smarthost),
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := n.Start(); err != nil {
		_ = n.Shutdown(context.Background())
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := n.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	for _, u := range []string{"alice@" + bothDomain, "bob@" + bothDomain} {
		if _, err := n.Mailboxes().AddUser(context.Background(), u, "password-of-"+u); err != nil {
			t.Fatal(err)
		}
	}
	return n
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func inbox(t *testing.T, n *Node, user string) int {
	t.Helper()
	f, _, err := n.Mailboxes().Messages(user, "INBOX")
	if err != nil {
		t.Fatalf("messages of %s: %v", user, err)
	}
	return f.Messages
}

// plainSend sends one message without STARTTLS (loopback) and returns
// the error of the first refused step.
func plainSend(addr, from string, to []string, body string) error {
	c, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.SendMail(from, to, strings.NewReader(body)); err != nil {
		return err
	}
	return c.Quit()
}

func sendSMTP(t *testing.T, addr, from string, to []string, body string) {
	t.Helper()
	if err := plainSend(addr, from, to, body); err != nil {
		t.Fatalf("send to %s: %v", addr, err)
	}
}

// TestShadowCopyOutlivesRelayAndIsPurgedAfterOutage follows one message:
// filed in the shadow mailbox during the outage, relayed when the primary
// is back, kept while the keep time after the outage's end runs, purged
// after it.
func TestShadowCopyOutlivesRelayAndIsPurgedAfterOutage(t *testing.T) {
	primary := testutil.StartRelayServer(t, "127.0.0.1:0")
	primary.SetDown(true)
	n := startBothNode(t, primary.Addr, "127.0.0.1:1")
	waitUntil(t, "the outage", func() bool { active, _ := n.DomainOutage(bothDomain); return active })

	sendSMTP(t, n.SMTPAddr(), "sender@partner.test", []string{"alice@" + bothDomain, "carol@" + bothDomain},
		"Subject: during the outage\r\n\r\nhello\r\n")
	if got := inbox(t, n, "alice@"+bothDomain); got != 1 {
		t.Fatalf("alice's INBOX has %d messages right after the 250, want 1", got)
	}
	if got := inbox(t, n, "bob@"+bothDomain); got != 0 {
		t.Fatalf("bob (not a recipient) has %d messages", got)
	}
	if users, msgs := gauge(t, n, "mxcont_shadow_users"), gauge(t, n, "mxcont_shadow_messages"); users != 2 || msgs != 1 {
		t.Fatalf("metrics: %v users, %v messages; want 2 and 1", users, msgs)
	}

	primary.SetDown(false)
	waitUntil(t, "the relay delivery", func() bool { return primary.Count() == 1 })
	if rcpts := primary.Messages()[0].Rcpts; len(rcpts) != 2 {
		t.Fatalf("primary got recipients %v, want both (carol has no mailbox but is relayed)", rcpts)
	}
	waitUntil(t, "the outage's end", func() bool { active, _ := n.DomainOutage(bothDomain); return !active })
	_, ended := n.DomainOutage(bothDomain)
	if ended.IsZero() {
		t.Fatal("ended outage has no end time")
	}
	st, err := n.Mailboxes().Purge(ended.Add(mailbox.DefaultKeep - time.Millisecond))
	if err != nil || st.Messages != 0 {
		t.Fatalf("purge before the keep time ran out: %+v, %v; want nothing purged", st, err)
	}
	if got := inbox(t, n, "alice@"+bothDomain); got != 1 {
		t.Fatalf("the shadow copy must outlive the relay delivery: %d messages", got)
	}
	st, err = n.Mailboxes().Purge(ended.Add(mailbox.DefaultKeep + time.Minute))
	if err != nil || st.Messages != 1 {
		t.Fatalf("purge after the keep time: %+v, %v; want 1 message purged", st, err)
	}
	if got := inbox(t, n, "alice@"+bothDomain); got != 0 {
		t.Fatalf("after the purge alice has %d messages", got)
	}
}

// TestSubmissionReplyLocalAndRemote submits one reply to a user of the
// same protected domain and one address elsewhere: the local copy goes to
// the relay queue and the colleague's shadow mailbox, the remote one to
// the smarthost; unauthenticated submission is refused.
func TestSubmissionReplyLocalAndRemote(t *testing.T) {
	primary := testutil.StartRelayServer(t, "127.0.0.1:0")
	primary.SetDown(true)
	smarthost := testutil.StartRelayServer(t, "127.0.0.1:0")
	n := startBothNode(t, primary.Addr, smarthost.Addr)

	err := plainSend(n.SubmissionAddr(), "alice@"+bothDomain, []string{"x@partner.test"}, "Subject: x\r\n\r\nx\r\n")
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 530 {
		t.Fatalf("unauthenticated submission: %v, want 530", err)
	}

	c, err := smtp.Dial(n.SubmissionAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	user := "alice@" + bothDomain
	if err := c.Auth(sasl.NewPlainClient("", user, "password-of-"+user)); err != nil {
		t.Fatalf("AUTH: %v", err)
	}
	body := "From: <" + user + ">\r\nSubject: Re: figures\r\n\r\nreply text\r\n"
	if err := c.SendMail(user, []string{"bob@" + bothDomain, "partner@partner.test"}, strings.NewReader(body)); err != nil {
		t.Fatalf("submit: %v", err)
	}
	_ = c.Quit()

	waitUntil(t, "the reply at the smarthost", func() bool { return smarthost.Count() == 1 })
	if m := smarthost.Messages()[0]; len(m.Rcpts) != 1 || m.Rcpts[0] != "partner@partner.test" || m.From != user {
		t.Fatalf("smarthost got %s → %v, want only the remote recipient", m.From, m.Rcpts)
	}
	waitUntil(t, "the colleague's shadow copy", func() bool { return inbox(t, n, "bob@"+bothDomain) == 1 })
	ms, _ := n.Spool().List(bothDomain, 0, 10)
	if len(ms) != 1 || ms[0].From != user {
		t.Fatalf("relay queue for the primary: %+v, want the local copy", ms)
	}
	r, err := n.Spool().OpenBody(ms[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(r)
	r.Close()
	if !strings.Contains(string(b), "reply text") {
		t.Fatalf("relay copy body %q", b)
	}
	primary.SetDown(false)
	waitUntil(t, "the local copy at the primary", func() bool { return primary.Count() == 1 })
	if got := fmt.Sprint(primary.Messages()[0].Rcpts); got != "[bob@"+bothDomain+"]" {
		t.Fatalf("primary got %s", got)
	}
}

// outboundTestConfig sends submitted mail to smarthost quickly.
func outboundTestConfig(smarthost string) outbound.Config {
	return outbound.Config{Smarthost: smarthost, ScanInterval: 50 * time.Millisecond,
		RetryMin: 100 * time.Millisecond, RetryMax: time.Second}
}

// gauge returns the value of a gauge from the node's registry.
func gauge(t *testing.T, n *Node, name string) float64 {
	t.Helper()
	mfs, err := n.prom.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.Metric) == 1 {
			return mf.Metric[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no gauge %s", name)
	return 0
}
