package spool

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// diskUsage sums the segment files of every shard (not .broken copies).
func diskUsage(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() && strings.Contains(p, "shard-") {
			if _, ok := segmentIndex(fi.Name()); ok {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestReclaimAfterDelivery(t *testing.T) {
	forEachPerm(t, func(t *testing.T, p perm) {
		dir := t.TempDir()
		sp := openT(t, testCfg(dir, p))
		var ids []ID
		for i := 0; i < 200; i++ {
			d := fmt.Sprintf("d%d.example", i%5)
			ids = append(ids, mustAppend(t, sp, env(d), body(uint64(i), 3000+(i%7)*5000)))
		}
		peak := diskUsage(t, dir)
		for _, id := range ids {
			if err := sp.RecordAttempt(id, Attempt{Delivered: []int{0}}); err != nil {
				t.Fatal(err)
			}
		}
		waitFor(t, "space to come back", func() bool { return diskUsage(t, dir) <= peak/10 })
		t.Logf("peak %d bytes, after delivery %d", peak, diskUsage(t, dir))
		// The emptied log still works and survives a restart.
		id := mustAppend(t, sp, env("d1.example"), []byte("later"))
		sp.Close()
		sp = openT(t, testCfg(dir, p))
		mustBody(t, sp, id, []byte("later"))
	})
}

// One domain stays down while another flows: compaction must keep the
// spool from growing with the flowing domain's history.
func TestCompactionBoundsPinnedLog(t *testing.T) {
	forEachPerm(t, func(t *testing.T, p perm) {
		p.shards = 1 // both domains in one shard: the down one pins it
		dir := t.TempDir()
		sp := openT(t, testCfg(dir, p))
		var down []ID
		next := time.Now().Add(time.Hour).Truncate(time.Millisecond)
		for i := 0; i < 1000; i++ {
			if i%25 == 0 {
				id := mustAppend(t, sp, env("down.example"), body(uint64(i), 2500))
				if err := sp.RecordAttempt(id, Attempt{Error: "connection refused", Next: next}); err != nil {
					t.Fatal(err)
				}
				down = append(down, id)
				continue
			}
			id := mustAppend(t, sp, env("up.example"), body(uint64(i), 2500))
			if err := sp.RecordAttempt(id, Attempt{Delivered: []int{0}}); err != nil {
				t.Fatal(err)
			}
		}
		live := sp.Stats()[0].LiveBytes
		limit := 2*live + 4*32<<10
		waitFor(t, "compaction", func() bool { return diskUsage(t, dir) <= limit })
		t.Logf("live %d bytes, disk %d bytes (limit %d)", live, diskUsage(t, dir), limit)
		check := func(sp *Spool) {
			t.Helper()
			for j, id := range down {
				mustBody(t, sp, id, body(uint64(j*25), 2500))
				m, err := sp.Get(id)
				if err != nil || m.Attempts != 1 || m.LastError != "connection refused" || !m.NextAttempt.Equal(next) {
					t.Fatalf("state of %s after compaction: %+v %v", id, m, err)
				}
			}
			if n := sp.DomainStats("up.example").Messages; n != 0 {
				t.Fatalf("%d delivered messages came back", n)
			}
		}
		check(sp)
		sp.Close()
		sp = openT(t, testCfg(dir, p))
		defer sp.Close()
		check(sp)
	})
}

func TestReaderPinsAgainstTruncation(t *testing.T) {
	dir := t.TempDir()
	cfg := testCfg(dir, perm{CodecRaw, 1, false})
	sp := openT(t, cfg)
	defer sp.Close()
	big := body(7, 300<<10)
	id := mustAppend(t, sp, env("pin.example"), big)
	r, err := sp.OpenBody(id)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// Deliver it and push lots of other traffic through: the reader must
	// still read every chunk.
	if err := sp.RecordAttempt(id, Attempt{Delivered: []int{0}}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 200; i++ {
		x := mustAppend(t, sp, env("pin.example"), body(uint64(i), 3000))
		sp.RecordAttempt(x, Attempt{Delivered: []int{0}})
	}
	time.Sleep(200 * time.Millisecond)
	var got []byte
	buf := make([]byte, 4096)
	for {
		n, err := r.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			break
		}
	}
	if string(got) != string(big) {
		t.Fatalf("pinned reader got %d of %d bytes", len(got), len(big))
	}
}
