package e2e

import (
	"fmt"
	"testing"
	"time"
)

// TestRelayHostFlapping stops and starts the real Postfix primary every
// few seconds during a long drain: nothing is lost, nothing is delivered
// zero times, and duplicates stay within what was in flight at each drop.
func TestRelayHostFlapping(t *testing.T) {
	flaps := 6
	if testing.Short() {
		flaps = 2
	}
	port := freePort(t)
	n := startNode(t, t.TempDir(), domainYAML("customer.test", fmt.Sprintf("127.0.0.1:%d", port)))
	want := acked(sendMany(t, n.smtpAddr, "customer.test", "flap", 3000, 20, nil))
	if len(want) != 3000 {
		t.Fatalf("%d of 3000 accepted", len(want))
	}
	p := startPostfix(t, "customer.test", port)
	for i := 0; i < flaps; i++ {
		time.Sleep(1500 * time.Millisecond)
		p.stop()
		t.Logf("flap %d: primary down with %d delivered", i, len(p.delivered()))
		time.Sleep(1500 * time.Millisecond)
		p.start(need(t, "postfix"))
	}
	got := waitDelivered(t, p, want, 300*time.Second)
	dups := duplicates(want, got)
	t.Logf("3000 messages, %d primary restarts during the drain: all delivered, %d duplicates", flaps, dups)
	// A stop can cut a transaction after Postfix queued the message but
	// before mxcont read the 250: at most one per pooled connection (8).
	if dups > flaps*8 {
		t.Errorf("%d duplicates for %d flaps", dups, flaps)
	}
}
