package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDiskFull puts the node's data directory on a 32 MiB tmpfs and
// sends until the disk is full: senders get 4xx, never 250-then-lost.
// After space is freed, acceptance resumes by itself and everything that
// was acknowledged is delivered to a real Postfix primary.
func TestDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	mnt := t.TempDir()
	if out, err := run(t, 30*time.Second, "mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", mnt); err != nil {
		t.Skipf("cannot mount tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { _, _ = run(t, 30*time.Second, "umount", "-l", mnt) })
	// Ballast to free later.
	ballast := filepath.Join(mnt, "ballast")
	if err := os.WriteFile(ballast, make([]byte, 12<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	// A 1-byte free-space floor: the spool itself runs into ENOSPC (451,
	// sticky shard, automatic repair) rather than smtpd's 452 floor.
	// Incompressible 256 KiB bodies fill the disk in a few dozen messages.
	n := startNode(t, mnt, domainYAML("customer.test", fmt.Sprintf("127.0.0.1:%d", port)), "shards: 2", "min_free_bytes: 1")
	want := map[string]bool{}
	var temp, perm int
	codes := map[string]int{}
	for i := 0; i < 400 && temp < 20; i++ {
		id := fmt.Sprintf("<full-%d@e2e.test>", i)
		reply, err := sendBody(n.smtpAddr, "a@sender.example", "user@customer.test", id, 256<<10, true)
		switch {
		case err == nil && strings.HasPrefix(reply, "250"):
			want[id] = true
		case strings.HasPrefix(reply, "4"):
			temp++
			codes[reply[:3]]++
		case strings.HasPrefix(reply, "5"):
			perm++
			t.Errorf("%s: permanent failure on a full disk: %q", id, reply)
		default:
			temp++ // connection refused or dropped: the client retries later
			codes[fmt.Sprint(err)]++
		}
	}
	if temp == 0 {
		t.Fatalf("disk never filled: %d accepted", len(want))
	}
	t.Logf("disk full after %d accepted messages; %d temporary failures %v, %d permanent", len(want), temp, codes, perm)
	if codes["451"] == 0 {
		t.Errorf("no 451 from the spool's ENOSPC path: %v", codes)
	}

	// Free space: acceptance must resume without a restart.
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	resumed := false
	for i := 0; time.Now().Before(deadline); i++ {
		id := fmt.Sprintf("<after-%d@e2e.test>", i)
		reply, err := sendOne(n.smtpAddr, "a@sender.example", "user@customer.test", id, 4096)
		if err == nil && strings.HasPrefix(reply, "250") {
			want[id] = true
			resumed = true
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if !resumed {
		t.Fatalf("acceptance did not resume after space was freed\n%s", tail(n.log.String(), 20))
	}
	p := startPostfix(t, "customer.test", port)
	got := waitDelivered(t, p, want, 120*time.Second)
	for id := range want {
		if got[id] != 1 {
			t.Errorf("%s delivered %d times", id, got[id])
		}
	}
}

func tail(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}
