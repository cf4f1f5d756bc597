package e2e

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// TestKill9DuringAcceptance kills the node with SIGKILL at random moments
// while real clients (our senders and Postfix's smtp-source) are sending;
// after every restart and the final drain to a real Postfix primary, every
// message a client saw 250 for has arrived.
func TestKill9DuringAcceptance(t *testing.T) {
	cycles := 20
	if testing.Short() {
		cycles = 3
	}
	src := need(t, "smtp-source")
	port := freePort(t)
	dir := t.TempDir()
	n := startNode(t, dir, domainYAML("customer.test", fmt.Sprintf("127.0.0.1:%d", port)))
	want := map[string]bool{}
	for c := 0; c < cycles; c++ {
		if c > 0 {
			n.start()
		}
		stop := make(chan struct{})
		var res []sendResult
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			res = sendMany(t, n.smtpAddr, "customer.test", fmt.Sprintf("acc%d", c), 100000, 16, stop)
		}()
		go func() {
			defer wg.Done()
			_, _ = run(t, 30*time.Second, src, "-4", "-s", "4", "-m", "100000", "-l", "3000",
				"-f", "sender@source.example", "-t", "user@customer.test", n.smtpAddr)
		}()
		time.Sleep(time.Duration(300+rand.IntN(1200)) * time.Millisecond)
		n.kill()
		close(stop)
		wg.Wait()
		got := acked(res)
		for id := range got {
			want[id] = true
		}
		t.Logf("cycle %d: %d acknowledged", c, len(got))
	}
	n.start()
	p := startPostfix(t, "customer.test", port)
	got := waitDelivered(t, p, want, 300*time.Second)
	dups := duplicates(want, got)
	t.Logf("%d acknowledged over %d kills: all delivered, %d duplicates", len(want), cycles, dups)
	if dups > 0 {
		t.Errorf("%d duplicates: nothing was in flight towards the primary during acceptance", dups)
	}
}

// TestKill9DuringDrain kills the node at random moments while it drains a
// backlog into a real Postfix primary. Every queued message arrives; a
// duplicate is only possible for a message in flight at a kill.
func TestKill9DuringDrain(t *testing.T) {
	cycles := 10
	if testing.Short() {
		cycles = 2
	}
	port := freePort(t)
	n := startNode(t, t.TempDir(), domainYAML("customer.test", fmt.Sprintf("127.0.0.1:%d", port)))
	res := sendMany(t, n.smtpAddr, "customer.test", "drain", 3000, 20, nil)
	want := acked(res)
	if len(want) != 3000 {
		t.Fatalf("%d of 3000 accepted", len(want))
	}
	p := startPostfix(t, "customer.test", port)
	for c := 0; c < cycles; c++ {
		time.Sleep(time.Duration(200+rand.IntN(600)) * time.Millisecond)
		n.kill()
		t.Logf("cycle %d: killed with %d delivered so far", c, len(p.delivered()))
		n.start()
	}
	got := waitDelivered(t, p, want, 300*time.Second)
	dups := duplicates(want, got)
	// In flight at a kill: at most one message per pooled connection (8)
	// plus the delivery outcomes not yet written when the process died.
	limit := cycles * 16
	t.Logf("%d messages, %d kills during the drain: all delivered, %d duplicates (limit %d)", len(want), cycles, dups, limit)
	if dups > limit {
		t.Errorf("%d duplicates for %d kills: more than were in flight", dups, cycles)
	}
}
