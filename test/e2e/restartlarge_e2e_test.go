package e2e

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestLargeQueueRestart queues a large backlog while the primary is down,
// restarts the node twice on it — SIGTERM, then SIGKILL — and measures
// each start: until the SMTP port accepts, the spool's own open time, until
// the API reports the whole queue, and the resident memory after the start
// (and its peak). Then Postfix's smtp-sink, as the primary, receives every
// message once.
//
// 10,000 messages by default (CI); MXCONT_E2E_LARGE=1 queues 100,000
// (several minutes on 2 cores), -short 2,000. Speed is measured, not
// asserted; memory has a generous ceiling.
func TestLargeQueueRestart(t *testing.T) {
	t.Parallel()
	count := 10_000
	switch {
	case os.Getenv("MXCONT_E2E_LARGE") != "":
		count = 100_000
	case testing.Short():
		count = 2_000
	}
	const memCeiling = 1 << 30
	port := freePort(t)
	dir := t.TempDir()
	n := startNode(t, dir, domainYAML("customer.test", fmt.Sprintf("127.0.0.1:%d", port)))
	t0 := time.Now()
	want := sendBulk(t, n.smtpAddr, "customer.test", "large", count, 16, 20)
	if len(want) != count {
		t.Fatalf("%d of %d accepted", len(want), count)
	}
	fill := time.Since(t0)
	rss, peak := procMem(t, n.pid())
	a := login(t, n.httpAddr)
	a.waitQueued("customer.test", count, 60*time.Second)
	t.Logf("%d messages of 2 KiB queued in %.1fs (%.0f msg/s); spool %s on disk; node RSS %s (peak %s)",
		count, fill.Seconds(), float64(count)/fill.Seconds(), mib(dirSize(t, filepath.Join(dir, "data", "spool"))), mib(rss), mib(peak))

	for _, how := range []string{"SIGTERM", "SIGKILL"} {
		if how == "SIGTERM" {
			n.stop()
		} else {
			n.kill()
		}
		t0 := time.Now()
		n.start() // returns once the SMTP port accepts
		smtpUp := time.Since(t0)
		open := n.spoolOpen(60 * time.Second)
		a = login(t, n.httpAddr)
		a.waitQueued("customer.test", count, 120*time.Second)
		apiUp := time.Since(t0)
		rss, peak := procMem(t, n.pid())
		t.Logf("restart after %s with %d queued: SMTP accepting after %.2fs (spool open %v ms, %v messages indexed), whole queue in the API after %.2fs; RSS %s, peak %s",
			how, count, smtpUp.Seconds(), open["took"], open["messages"], apiUp.Seconds(), mib(rss), mib(peak))
		if peak > memCeiling {
			t.Errorf("peak RSS %s after a restart with %d queued, ceiling %s", mib(peak), count, mib(memCeiling))
		}
		if open["messages"] != float64(count) {
			t.Errorf("spool indexed %v messages, want %d", open["messages"], count)
		}
	}

	sink := startSink(t, port)
	t0 = time.Now()
	got := sink.wait(t, want, 120*time.Second+time.Duration(count)*10*time.Millisecond)
	drain := time.Since(t0)
	a.waitQueued("customer.test", 0, 60*time.Second)
	sink.scan()
	dups := duplicates(want, sink.ids)
	rss, _ = procMem(t, n.pid())
	t.Logf("%d acknowledged, %d delivered to smtp-sink in %.1fs (%.0f msg/s), %d duplicates; node RSS after the drain %s",
		len(want), len(got), drain.Seconds(), float64(count)/drain.Seconds(), dups, mib(rss))
	if dups > 0 {
		t.Errorf("%d duplicates: no delivery was in flight at either restart", dups)
	}
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// dirSize returns the bytes of the regular files under dir.
func dirSize(t testing.TB, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			n += fi.Size()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}
