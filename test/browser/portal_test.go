package browser

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

const (
	adminPassword = "browser-test-admin-password"
	domain        = "customer.test"
	// wait bounds each wait for the page; generous for a loaded 2-core machine.
	wait = 20 * time.Second
)

// js quotes s as a JavaScript string literal.
func js(s string) string { return strconv.Quote(s) }

// clear empties a form field (chromedp.SetValue refuses "").
func clear(id string) chromedp.Action[chromedp.Void] {
	return chromedp.Evaluate[chromedp.Void](`document.getElementById(` + js(id) + `).value = ''`)
}

// rowStatus is a JavaScript expression: the relay status shown in a table's
// row of the domain ("" when there is no such row).
func rowStatus(table string) string {
	return fmt.Sprintf(`(() => { const s = document.querySelector('%s tbody tr[data-domain=%s] .status');
		return s ? s.textContent.trim() : ''; })()`, table, js(domain))
}

// TestPortalOutageFlow is an outage as an administrator sees it in the
// portal: the customer's primary is down when the domain is added, mail
// for it queues, the queue manager shows it; then the primary comes back,
// the mail is delivered within a few probe intervals and the queue empties.
func TestPortalOutageFlow(t *testing.T) {
	needChromium(t)
	start := time.Now()
	node := startNode(t, adminPassword)
	relayHost := freeAddr(t) // the customer's primary: nothing listens yet
	primary := newSink(relayHost)
	sh := newShots(t)
	b := startBrowser(t, "http://"+node.HTTPAddr(), sh)
	t.Logf("node: smtp %s, http %s; relay host %s (down)", node.SMTPAddr(), node.HTTPAddr(), relayHost)

	// Desktop size, whatever the window manager of headless made of it.
	b.do("desktop viewport", wait, chromedp.EmulateViewport(1280, 900))

	// --- Log in: a wrong password first, then the right one.
	b.do("open the portal", wait,
		chromedp.Navigate(b.base+"/"),
		chromedp.WaitVisible(chromedp.ID("login-username")))
	b.do("wrong password", wait,
		chromedp.SendKeys(chromedp.ID("login-username"), "admin"),
		chromedp.SendKeys(chromedp.ID("login-password"), "not-the-password"),
		chromedp.Click(chromedp.ID("login-submit")),
		chromedp.WaitVisible(chromedp.ID("login-error")))
	if got := eval[string](b, "login error", `document.querySelector('#login-error').textContent`); !strings.Contains(got, "Wrong username or password") {
		t.Errorf("login error = %q, want it to say the username or password is wrong", got)
	}
	b.shot("01-login-error.png")

	b.do("log in", wait,
		clear("login-password"),
		chromedp.SendKeys(chromedp.ID("login-password"), adminPassword),
		chromedp.Click(chromedp.ID("login-submit")),
		chromedp.WaitVisible(chromedp.ID("view-dashboard")),
		chromedp.WaitVisible(chromedp.ID("dashboard-empty")))
	if got := eval[string](b, "current user", `document.querySelector('#current-user').textContent`); !strings.Contains(got, "admin") {
		t.Errorf("top bar shows user %q, want admin", got)
	}
	b.shot("02-dashboard-empty.png")

	// --- Continuity → Add Domain. A bad alert address first: the API's
	// error is shown under its field.
	b.do("open Continuity", wait,
		chromedp.Click(chromedp.ID("nav-domains")),
		chromedp.WaitVisible(chromedp.ID("view-domains")),
		chromedp.WaitVisible(chromedp.ID("domain-empty")),
		chromedp.Click(chromedp.ID("add-domain-button")),
		chromedp.WaitVisible(chromedp.ID("add-domain-form")))
	b.do("fill the form", wait,
		chromedp.SendKeys(chromedp.ID("domain-name"), domain),
		chromedp.SetValue(chromedp.ID("domain-mode"), "relay"),
		chromedp.SendKeys(chromedp.ID("domain-relay-host"), relayHost),
		chromedp.SendKeys(chromedp.ID("domain-alert-emails"), "noc-at-provider.test"))
	if !eval[bool](b, "monitoring box", `document.querySelector('#domain-monitoring').checked`) {
		b.do("monitoring on", wait, chromedp.Click(chromedp.ID("domain-monitoring")))
	}
	b.do("submit a bad alert address", wait,
		chromedp.Click(chromedp.ID("domain-submit")))
	b.waitJS("alert address error shown",
		`document.querySelector('[data-error-for="alert_emails"]').textContent.trim() !== ''`, wait)
	b.shot("03-add-domain-error.png")

	b.do("fix the alert address", wait,
		clear("domain-alert-emails"),
		chromedp.SendKeys(chromedp.ID("domain-alert-emails"), "noc@provider.test"))
	b.shot("04-add-domain-form.png")
	b.do("add the domain", wait,
		chromedp.Click(chromedp.ID("domain-submit")),
		chromedp.WaitVisible(chromedp.CSS(`#domain-table tbody tr[data-domain="`+domain+`"]`)),
		chromedp.WaitNotVisible(chromedp.ID("add-domain-panel")))
	row := eval[string](b, "domain row", `document.querySelector('#domain-table tbody tr[data-domain="`+domain+`"]').innerText`)
	if !strings.Contains(row, relayHost) || !strings.Contains(row, "On") {
		t.Errorf("domain row %q: want relay host %s and monitoring on", row, relayHost)
	}
	b.shot("05-domain-added.png")

	// --- Dashboard: the domain, its relay host down (unknown until the
	// first probe).
	b.do("open the dashboard", wait,
		chromedp.Click(chromedp.ID("nav-dashboard")),
		chromedp.WaitVisible(chromedp.CSS(`#dashboard-table tbody tr[data-domain="`+domain+`"]`)))
	if st := eval[string](b, "status", rowStatus("#dashboard-table")); st != "down" && st != "unknown" {
		t.Fatalf("dashboard status of %s = %q before the relay host is up, want down or unknown", domain, st)
	}

	// --- Mail arrives for the domain while its primary is down.
	id := sendMail(t, node.SMTPAddr(), "alice@sender.test", "user@"+domain, "Quarterly report", "Hello from the outside world.")

	// The queue depth is sampled every second: wait until the chart has it.
	b.until("dashboard shows the relay host down with one message queued", wait,
		chromedp.Click(chromedp.ID("dashboard-refresh")),
		rowStatus("#dashboard-table")+` === 'down' && document.querySelector('#stat-queued').textContent.trim() === '1' &&
		/now 1,/.test(document.querySelector('#queue-chart svg')?.getAttribute('aria-label') || '')`)
	b.waitJS("outage banner", `!document.querySelector('#outage-banner').hidden`, wait)
	b.shot("06-dashboard-down.png")

	// --- Queue Manager: the message is there; open it.
	msgRow := `#queue-table tbody tr[data-id="` + id + `"]`
	b.do("open the queue manager", wait,
		chromedp.Click(chromedp.ID("nav-queue")),
		chromedp.WaitVisible(chromedp.ID("queue-domain-select")),
		chromedp.WaitReady(chromedp.CSS(`#queue-domain-select option[value="`+domain+`"]`)),
		chromedp.SetValue(chromedp.ID("queue-domain-select"), domain),
		chromedp.Click(chromedp.ID("load-queue")),
		chromedp.WaitVisible(chromedp.CSS(msgRow)))
	text := eval[string](b, "queue row", `document.querySelector('`+msgRow+`').innerText`)
	for _, want := range []string{id, "alice@sender.test", "user@" + domain} {
		if !strings.Contains(text, want) {
			t.Errorf("queue row %q lacks %q", text, want)
		}
	}
	b.shot("07-queue.png")

	b.do("open the message", wait,
		chromedp.Click(chromedp.CSS(msgRow+` button.open-message`)),
		chromedp.WaitVisible(chromedp.ID("message-view")))
	b.waitJS("message view shows the id", `document.querySelector('#message-id').textContent === `+js(id), wait)
	view := eval[string](b, "message view", `document.querySelector('#message-view').innerText`)
	for _, want := range []string{"Quarterly report", "user@" + domain, relayHost} {
		if !strings.Contains(view, want) {
			t.Errorf("message view lacks %q:\n%s", want, view)
		}
	}
	b.shot("08-message.png")

	// --- The primary comes back: the message is delivered within a few
	// probe intervals.
	upAt := time.Now()
	primary.start(t)
	select {
	case <-primary.received:
		t.Logf("primary received the message %v after it came up", time.Since(upAt).Round(time.Millisecond))
	case <-time.After(30 * time.Second):
		t.Fatalf("the primary received nothing within 30s of coming up")
	}
	got := primary.messages()
	if len(got) != 1 || len(got[0].To) != 1 || got[0].To[0] != "user@"+domain || !bytes.Contains(got[0].Data, []byte("Subject: Quarterly report")) {
		t.Fatalf("primary received %+v, want the one message to user@%s", got, domain)
	}

	b.until("the message has left the queue", wait,
		chromedp.Click(chromedp.ID("load-queue")),
		`!document.querySelector('`+msgRow+`') && !document.querySelector('#queue-empty').hidden && document.querySelector('#message-view').hidden`)
	b.shot("09-queue-empty.png")

	b.do("back to the dashboard", wait,
		chromedp.Click(chromedp.ID("nav-dashboard")),
		chromedp.WaitVisible(chromedp.CSS(`#dashboard-table tbody tr[data-domain="`+domain+`"]`)))
	b.until("dashboard shows the relay host up and nothing queued", wait,
		chromedp.Click(chromedp.ID("dashboard-refresh")),
		rowStatus("#dashboard-table")+` === 'up' && document.querySelector('#stat-queued').textContent.trim() === '0' && document.querySelector('#outage-banner').hidden`)
	b.shot("10-dashboard-up.png")

	// --- Events: the outage, with its start and end.
	b.do("open the events", wait,
		chromedp.Click(chromedp.ID("nav-events")),
		chromedp.WaitVisible(chromedp.ID("view-events")))
	b.until("events show the outage", wait,
		chromedp.Click(chromedp.ID("events-load")),
		`[...document.querySelectorAll('#outages-table tbody tr')].some((r) => r.dataset.domain === `+js(domain)+` && r.dataset.ended === 'true')`)
	b.waitJS("events show the domain being added",
		`[...document.querySelectorAll('#events-table tbody tr')].some((r) => r.innerText.includes('Domain added'))`, wait)
	b.shot("11-events.png")

	// --- A phone: the dashboard at 390x844.
	b.do("phone viewport", wait,
		chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile),
		chromedp.Click(chromedp.ID("nav-dashboard")),
		chromedp.WaitVisible(chromedp.CSS(`#dashboard-table tbody tr[data-domain="`+domain+`"]`)))
	overflow := eval[int](b, "horizontal overflow", `document.documentElement.scrollWidth - document.documentElement.clientWidth`)
	if overflow > 0 {
		t.Errorf("on a phone the page is %dpx wider than the screen", overflow)
	}
	b.shot("12-dashboard-phone.png")

	for _, e := range b.consoleErrors() {
		t.Errorf("browser console: %s", e)
	}
	t.Logf("screenshots in %s: %s", sh.dir, strings.Join(sh.saved, ", "))
	t.Logf("flow took %v", time.Since(start).Round(time.Millisecond))
}
