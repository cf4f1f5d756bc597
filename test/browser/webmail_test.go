package browser

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/mxcont/mxcont/admin/auth"
	"github.com/mxcont/mxcont/engine"
	"github.com/mxcont/mxcont/engine/registry"
	"github.com/mxcont/mxcont/relayq"
)

// TestWebmailDuringOutage is the promise of "both" mode, end to end with
// Debian's Roundcube in headless Chromium: the customer's primary is
// down; the provider adds the user's mailbox in the portal; a message arrives and lands in the user's shadow mailbox; the user
// logs in to Roundcube, opens it and replies; the reply goes out through
// the outbound smarthost and is saved in Sent; the primary comes back and
// the original is delivered there too.
func TestWebmailDuringOutage(t *testing.T) {
	needRoundcube(t)
	const (
		user     = "alice@customer.test"
		password = "correct horse battery staple"
		sender   = "bob@partner.test"
		subject  = "Quarterly figures during the outage"
		body     = "Hello Alice, the figures are attached in spirit."
		reply    = "Thanks Bob, read during the outage via webmail."
	)
	primary := newSink(freeAddr(t)) // not started: the customer's server is down
	smarthost := newSink(freeAddr(t))
	smarthost.start(t)
	node := startNodeWith(t, adminPassword, func(c *engine.Config) {
		c.IMAPAddr = freeAddr(t)
		c.SubmissionAddr = freeAddr(t)
		c.Mailbox.Hash = auth.Params{Memory: 1024, Time: 1, Threads: 1}
		c.Outbound.Smarthost = smarthost.addr
		c.Outbound.ScanInterval = 200 * time.Millisecond
		c.Domains = []registry.Domain{{Name: domain, Mode: registry.ModeBoth, RelayHost: primary.addr}}
	})
	waitFor(t, "the primary to be seen down", 30*time.Second, func() bool {
		return node.Relay().Status(domain).RelayState == relayq.StateDown
	})

	rc := startRoundcube(t, node.IMAPAddr(), node.SubmissionAddr())
	sh := newShots(t)
	portal := "http://" + node.HTTPAddr() + "/"
	b := startBrowser(t, portal, sh)

	// The provider's admin creates the user's mailbox in the portal.
	b.do("portal login", time.Minute,
		chromedp.Navigate(portal),
		chromedp.WaitVisible(chromedp.ID("login-username")),
		chromedp.SendKeys(chromedp.ID("login-username"), "admin"),
		chromedp.SendKeys(chromedp.ID("login-password"), adminPassword),
		chromedp.Click(chromedp.ID("login-submit")),
		chromedp.WaitVisible(chromedp.ID("view-dashboard")))
	b.do("mailboxes of the domain", wait,
		chromedp.Navigate(portal+"#/mailboxes?domain="+domain),
		chromedp.WaitVisible(chromedp.ID("view-mailboxes")),
		chromedp.WaitVisible(chromedp.ID("add-mailbox-button")),
		chromedp.Click(chromedp.ID("add-mailbox-button")),
		chromedp.WaitVisible(chromedp.ID("add-mailbox-form")),
		chromedp.SendKeys(chromedp.ID("mailbox-address"), user),
		chromedp.SendKeys(chromedp.ID("mailbox-password"), password),
		chromedp.Click(chromedp.ID("mailbox-submit")),
		chromedp.WaitVisible(chromedp.CSS(`#mailbox-table tbody tr[data-address="`+user+`"]`)))
	b.shot("webmail-00-portal-mailbox.png")

	qid := sendMail(t, node.SMTPAddr(), sender, user, subject, body)
	t.Logf("queued %s for the primary and filed in the shadow mailbox", qid)
	if n := len(primary.messages()); n != 0 {
		t.Fatalf("primary is down but has %d messages", n)
	}
	if n := len(smarthost.messages()); n != 0 {
		t.Fatalf("smarthost has %d messages before any reply", n)
	}

	b.do("Roundcube login page", time.Minute,
		chromedp.Navigate(rc.URL),
		chromedp.WaitVisible(chromedp.ID("rcmloginuser")))
	b.shot("webmail-01-login.png")
	b.do("log in", time.Minute,
		chromedp.SendKeys(chromedp.ID("rcmloginuser"), user),
		chromedp.SendKeys(chromedp.ID("rcmloginpwd"), password),
		chromedp.Click(chromedp.ID("rcmloginsubmit")),
		chromedp.WaitVisible(chromedp.CSS(`#messagelist tbody tr`)))
	b.waitJS("the message in the inbox list",
		`document.querySelector('#messagelist').innerText.includes(`+js(subject)+`)`, wait)
	b.shot("webmail-02-inbox.png")

	// The list widget knows the IMAP UIDs of its rows (row ids are encoded).
	uid := eval[string](b, "message UID", `String(Object.keys(rcmail.message_list.rows)[0] || '')`)
	if uid == "" {
		t.Fatal("no message row id")
	}
	b.do("open the message", time.Minute,
		chromedp.Navigate(fmt.Sprintf("%s?_task=mail&_mbox=INBOX&_uid=%s&_action=show", rc.URL, uid)),
		chromedp.WaitVisible(chromedp.ID("messagebody")))
	if got := eval[string](b, "message body", `document.getElementById('messagebody').innerText`); !strings.Contains(got, body) {
		t.Fatalf("message body shown as %q, want it to contain %q", got, body)
	}
	b.shot("webmail-03-message.png")

	b.do("reply", time.Minute,
		chromedp.Navigate(fmt.Sprintf("%s?_task=mail&_reply_uid=%s&_mbox=INBOX&_action=compose", rc.URL, uid)),
		chromedp.WaitVisible(chromedp.ID("composebody")))
	b.waitJS("the compose form ready", `window.rcmail && rcmail.env.compose_id && document.querySelector('[name=_subject]') && document.querySelector('[name=_subject]').value.includes('Re:')`, wait)
	b.do("type the reply", wait,
		chromedp.Evaluate[chromedp.Void](`(function(){var t=document.getElementById('composebody'); t.value = `+js(reply+"\n\n")+` + t.value; })()`))
	b.shot("webmail-04-reply.png")
	b.do("send", wait, chromedp.Evaluate[chromedp.Void](`rcmail.command('send', {})`))
	// Roundcube leaves the compose screen once the message is sent and
	// saved in Sent (leaving earlier would ask "discard the message?").
	waitFor(t, "Roundcube back from composing", time.Minute, func() bool {
		ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
		defer cancel()
		loc, err := chromedp.Run(ctx, chromedp.Location())
		return err == nil && !strings.Contains(loc, "_action=compose")
	})
	b.do("the list after sending", wait, chromedp.WaitVisible(chromedp.ID("messagelist")))
	b.shot("webmail-05-sent-confirmation.png")

	waitFor(t, "the reply at the smarthost", time.Minute, func() bool {
		for _, m := range smarthost.messages() {
			if strings.Contains(string(m.Data), reply) {
				return true
			}
		}
		return false
	})
	var out message
	for _, m := range smarthost.messages() {
		if strings.Contains(string(m.Data), reply) {
			out = m
		}
	}
	if out.From != user || len(out.To) != 1 || out.To[0] != sender {
		t.Fatalf("reply envelope from %q to %v, want %s to %s", out.From, out.To, user, sender)
	}
	if !strings.Contains(string(out.Data), "Subject: Re: "+subject) || !strings.Contains(string(out.Data), "In-Reply-To:") {
		t.Fatalf("reply is not a reply to the message:\n%s", out.Data)
	}

	b.do("Sent folder", time.Minute,
		chromedp.Navigate(rc.URL+"?_task=mail&_mbox=Sent"),
		chromedp.WaitVisible(chromedp.ID("messagelist")))
	b.waitJS("the reply in Sent", `document.querySelector('#messagelist').innerText.includes(`+js("Re: "+subject)+`)`, wait)
	b.shot("webmail-06-sent-folder.png")

	// The primary comes back: the original reaches it as well.
	primary.start(t)
	waitFor(t, "the original at the primary", time.Minute, func() bool { return len(primary.messages()) == 1 })
	if got := string(primary.messages()[0].Data); !strings.Contains(got, "Subject: "+subject) {
		t.Fatalf("primary got %q", got)
	}
	if errs := b.consoleErrors(); len(errs) > 0 {
		t.Errorf("page errors: %v", errs)
	}
	if e := rc.errorsLog(); strings.Contains(e, "IMAP Error") || strings.Contains(e, "SMTP Error") {
		t.Errorf("Roundcube errors.log:\n%s", e)
	}
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
