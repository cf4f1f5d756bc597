package e2e

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestSwaksAcceptAndRelayPolicy: a real client (swaks) hands mail to a
// running node; registered domains get "250 2.0.0 queued as <id>",
// everything else 550 5.7.1.
func TestSwaksAcceptAndRelayPolicy(t *testing.T) {
	n := startNode(t, t.TempDir(), domainYAML("customer.test", "127.0.0.1:1"))
	out, err := swaks(t, n.smtpAddr, "--to", "user@customer.test", "--from", "a@sender.example")
	if err != nil || !strings.Contains(lastReply(out), "250 2.0.0 queued as ") {
		t.Fatalf("registered domain: %v\n%s", err, out)
	}
	for _, rcpt := range []string{"user@other.example", "user%other.example@customer.test", "other.example!user@customer.test",
		"user@[127.0.0.1]", "user@customer.test.evil.example"} {
		out, _ := swaks(t, n.smtpAddr, "--to", rcpt, "--from", "a@sender.example")
		if !strings.Contains(out, "550 5.7.1") {
			t.Errorf("%s: want 550 5.7.1, got %q", rcpt, lastReply(out))
		}
	}
	a := login(t, n.httpAddr)
	if st := a.waitQueued("customer.test", 1, 10*time.Second); st.Status.RelayState != "down" && st.Status.RelayState != "unknown" {
		t.Fatalf("relay state %q", st.Status.RelayState)
	}
}

// TestOutageRedeliveryToPostfix: the customer's primary (a real Postfix)
// is down; mail is queued; Postfix starts; every acknowledged message
// arrives exactly once within a few probe intervals.
func TestOutageRedeliveryToPostfix(t *testing.T) {
	port := freePort(t)
	primary := fmt.Sprintf("127.0.0.1:%d", port)
	n := startNode(t, t.TempDir(), domainYAML("customer.test", primary))
	res := sendMany(t, n.smtpAddr, "customer.test", "outage", 300, 20, nil)
	want := acked(res)
	if len(want) != 300 {
		t.Fatalf("%d of 300 accepted", len(want))
	}
	a := login(t, n.httpAddr)
	st := a.waitQueued("customer.test", 300, 30*time.Second)
	if st.Status.RelayState != "down" || st.Status.Outage == nil {
		t.Fatalf("while the primary is down: state %q outage %v", st.Status.RelayState, st.Status.Outage)
	}
	// smtp-source adds load from Postfix's own tool while the primary is down.
	src := need(t, "smtp-source")
	if out, err := run(t, 120*time.Second, src, "-4", "-s", "5", "-m", "100", "-l", "2048",
		"-f", "sender@source.example", "-t", "user@customer.test", n.smtpAddr); err != nil {
		t.Fatalf("smtp-source: %v\n%s", err, out)
	}
	a.waitQueued("customer.test", 400, 30*time.Second)

	p := startPostfix(t, "customer.test", port)
	up := time.Now()
	got := waitDelivered(t, p, want, 120*time.Second)
	t.Logf("300 tracked messages delivered %.1fs after the primary came up", time.Since(up).Seconds())
	for id := range want {
		if got[id] != 1 {
			t.Errorf("%s arrived %d times", id, got[id])
		}
	}
	a.waitQueued("customer.test", 0, 60*time.Second)
	deadline := time.Now().Add(60 * time.Second)
	for len(p.delivered()) < 400 && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	if d := len(p.delivered()); d != 400 {
		t.Fatalf("primary holds %d messages, want 400", d)
	}
	if st := a.domain("customer.test"); st.Status.RelayState != "up" || st.Status.Outage != nil {
		t.Fatalf("after recovery: state %q outage %v", st.Status.RelayState, st.Status.Outage)
	}
}

// TestProductGuideFailoverTest scripts the product guide's failover test
// with curl against the API: relay host 127.0.0.2 (nothing there), send,
// see it queued, restore the real host, see it delivered.
func TestProductGuideFailoverTest(t *testing.T) {
	curl := need(t, "curl")
	port := freePort(t)
	p := startPostfix(t, "customer.test", port)
	n := startNode(t, t.TempDir(), domainYAML("customer.test", fmt.Sprintf("127.0.0.1:%d", port)))
	jar := t.TempDir() + "/cookies"
	out, err := exec.Command(curl, "-sS", "-c", jar, "-H", "Content-Type: application/json",
		"-d", `{"username":"admin","password":"e2e-admin-password"}`, "http://"+n.httpAddr+"/api/v1/login").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "csrf_token") {
		t.Fatalf("curl login: %v %s", err, out)
	}
	csrf := strings.Split(strings.Split(string(out), `"csrf_token":"`)[1], `"`)[0]
	put := func(relay string) {
		t.Helper()
		out, err := exec.Command(curl, "-sS", "-b", jar, "-X", "PUT", "-H", "Content-Type: application/json",
			"-H", "X-CSRF-Token: "+csrf, "-d", fmt.Sprintf(`{"relay_host":%q}`, relay),
			"-o", "/dev/null", "-w", "%{http_code}", "http://"+n.httpAddr+"/api/v1/domains/customer.test").CombinedOutput()
		if err != nil || string(out) != "200" {
			t.Fatalf("curl PUT relay_host=%s: %v %s", relay, err, out)
		}
	}
	put(fmt.Sprintf("127.0.0.2:%d", port))
	a := login(t, n.httpAddr)
	reply, err := sendOne(n.smtpAddr, "a@sender.example", "user@customer.test", "<guide-1@e2e.test>", 1000)
	if err != nil {
		t.Fatalf("send: %v %s", err, reply)
	}
	st := a.waitQueued("customer.test", 1, 10*time.Second)
	deadline := time.Now().Add(20 * time.Second)
	for st.Status.RelayState != "down" && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
		st = a.domain("customer.test")
	}
	if st.Status.RelayState != "down" {
		t.Fatalf("relay 127.0.0.2: state %q", st.Status.RelayState)
	}
	time.Sleep(2 * time.Second) // a few probe intervals: it must stay queued
	if len(p.delivered()) != 0 || a.domain("customer.test").Status.QueuedMessages != 1 {
		t.Fatal("message left the queue while the relay host was wrong")
	}
	put(fmt.Sprintf("127.0.0.1:%d", port))
	waitDelivered(t, p, map[string]bool{"<guide-1@e2e.test>": true}, 30*time.Second)
	a.waitQueued("customer.test", 0, 30*time.Second)
}
