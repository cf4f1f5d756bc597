package spool

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestAppendReadSizes(t *testing.T) {
	forEachPerm(t, func(t *testing.T, p perm) {
		sp := openT(t, testCfg(t.TempDir(), p))
		defer sp.Close()
		chunk := 16 << 10
		sizes := []int{0, 1, 100, chunk - 1, chunk, chunk + 1, 2 * chunk, 3*chunk + 7, 200 << 10}
		ids := make([]ID, len(sizes))
		for i, n := range sizes {
			ids[i] = mustAppend(t, sp, env("example.com"), body(uint64(i), n))
		}
		for i, n := range sizes {
			mustBody(t, sp, ids[i], body(uint64(i), n))
			m, err := sp.Get(ids[i])
			if err != nil || m.Size != int64(n) || m.State != StateQueued {
				t.Fatalf("get %d: %+v %v", n, m, err)
			}
		}
		// Streaming read with a tiny buffer sees the same bytes.
		r, err := sp.OpenBody(ids[len(ids)-1])
		if err != nil {
			t.Fatal(err)
		}
		var got []byte
		buf := make([]byte, 777)
		for {
			n, err := r.Read(buf)
			got = append(got, buf[:n]...)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		r.Close()
		if string(got) != string(body(uint64(len(sizes)-1), 200<<10)) {
			t.Fatal("streamed body differs")
		}
	})
}

func TestTooLarge(t *testing.T) {
	cfg := testCfg(t.TempDir(), perm{CodecZstd, 1, false})
	cfg.MaxMessageBytes = 100 << 10
	sp := openT(t, cfg)
	defer sp.Close()
	w, err := sp.Create(env("example.com"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(body(1, 100<<10)); err != nil {
		t.Fatalf("at the limit: %v", err)
	}
	if _, err := w.Write([]byte("x")); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("over the limit: %v", err)
	}
	if _, err := w.Commit(); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("commit after too large: %v", err)
	}
	if st := sp.DomainStats("example.com"); st.Messages != 0 {
		t.Fatalf("too-large message indexed: %+v", st)
	}
}

func TestReopenRebuildsState(t *testing.T) {
	forEachPerm(t, func(t *testing.T, p perm) {
		dir := t.TempDir()
		sp := openT(t, testCfg(dir, p))
		var ids []ID
		for i := 0; i < 40; i++ {
			d := fmt.Sprintf("d%d.example", i%4)
			ids = append(ids, mustAppend(t, sp, env(d, "a@"+d, "b@"+d), body(uint64(i), 1000+i*900)))
		}
		next := time.Now().Add(time.Hour).Truncate(time.Millisecond)
		// 0: fully delivered, 1: one delivered one deferred, 2: one failed
		// one delivered, 3: deleted, 4: expired, 5: failed then retried.
		must := func(err error) {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
		}
		must(sp.RecordAttempt(ids[0], Attempt{Delivered: []int{0, 1}}))
		must(sp.RecordAttempt(ids[1], Attempt{Delivered: []int{0}, Error: "451 4.2.0 later", Next: next}))
		must(sp.RecordAttempt(ids[2], Attempt{Delivered: []int{1}, Failed: []int{0}, Error: "550 5.1.1 no such user"}))
		must(sp.Delete(ids[3], "admin"))
		must(sp.Expire(ids[4]))
		must(sp.RecordAttempt(ids[5], Attempt{Failed: []int{0, 1}, Error: "550 nope"}))
		must(sp.Retry(ids[5], "admin"))
		check := func(sp *Spool) {
			t.Helper()
			for _, id := range []ID{ids[0], ids[3], ids[4]} {
				if _, err := sp.Get(id); !errors.Is(err, ErrNotFound) {
					t.Fatalf("%s should be retired: %v", id, err)
				}
			}
			m1, _ := sp.Get(ids[1])
			if m1.Status[0] != Delivered || m1.Status[1] != Pending || m1.Attempts != 1 || !m1.NextAttempt.Equal(next) || m1.LastError != "451 4.2.0 later" {
				t.Fatalf("msg1: %+v", m1)
			}
			m2, _ := sp.Get(ids[2])
			if m2.State != StateFailed || m2.Status[0] != Failed || m2.LastError != "550 5.1.1 no such user" {
				t.Fatalf("msg2: %+v", m2)
			}
			m5, _ := sp.Get(ids[5])
			if m5.State != StateQueued || m5.Status[0] != Pending || !m5.NextAttempt.IsZero() {
				t.Fatalf("msg5: %+v", m5)
			}
			total := 0
			for _, d := range sp.Domains() {
				total += d.Messages
			}
			if total != 37 {
				t.Fatalf("%d live messages, want 37", total)
			}
			if st := sp.DomainStats("d2.example"); st.Failed != 1 {
				t.Fatalf("d2 stats: %+v", st)
			}
			for i := 5; i < 40; i++ {
				mustBody(t, sp, ids[i], body(uint64(i), 1000+i*900))
			}
		}
		check(sp)
		if err := sp.Close(); err != nil {
			t.Fatal(err)
		}
		sp = openT(t, testCfg(dir, p))
		defer sp.Close()
		if len(sp.Damage()) != 0 {
			t.Fatalf("clean reopen reported damage: %+v", sp.Damage())
		}
		check(sp)
		// New IDs stay above the old ones.
		id := mustAppend(t, sp, env("d0.example"), []byte("x"))
		if id <= ids[len(ids)-1] && id.Shard() == ids[len(ids)-1].Shard() {
			t.Fatalf("id %s not above %s", id, ids[len(ids)-1])
		}
	})
}

func TestListCursorAndDue(t *testing.T) {
	sp := openT(t, testCfg(t.TempDir(), perm{CodecZstd, 8, false}))
	defer sp.Close()
	var ids []ID
	for i := 0; i < 250; i++ {
		ids = append(ids, mustAppend(t, sp, env("q.example"), []byte(fmt.Sprint(i))))
	}
	mustAppend(t, sp, env("other.example"), []byte("x"))
	for i := 0; i < 250; i += 3 {
		if err := sp.Delete(ids[i], "t"); err != nil {
			t.Fatal(err)
		}
	}
	var seen []ID
	var cur ID
	pages := 0
	for {
		page, next := sp.List("q.example", cur, 40)
		pages++
		seen = append(seen, idsOf(page)...)
		if next == 0 {
			break
		}
		cur = next
	}
	want := 0
	for i := range ids {
		if i%3 != 0 {
			if seen[want] != ids[i] {
				t.Fatalf("position %d: %s want %s", want, seen[want], ids[i])
			}
			want++
		}
	}
	if len(seen) != want || pages != 5 {
		t.Fatalf("listed %d in %d pages, want %d in 5", len(seen), pages, want)
	}
	// Backing-off messages are not due.
	later := time.Now().Add(time.Hour)
	for _, id := range seen[:10] {
		if err := sp.RecordAttempt(id, Attempt{Error: "451", Next: later}); err != nil {
			t.Fatal(err)
		}
	}
	due, _ := sp.Due("q.example", time.Now(), 0, 5)
	if len(due) != 5 || due[0].ID != seen[10] {
		t.Fatalf("due: %v", idsOf(due))
	}
	if due, _ := sp.Due("q.example", later.Add(time.Second), 0, 1); due[0].ID != seen[0] {
		t.Fatalf("due later: %v", idsOf(due))
	}
}

func idsOf(ms []Message) []ID {
	out := make([]ID, len(ms))
	for i, m := range ms {
		out[i] = m.ID
	}
	return out
}

func TestGroupCommit(t *testing.T) {
	cfg := testCfg(t.TempDir(), perm{CodecZstd, 1, false})
	cfg.SegmentSize = 4 << 20
	var fsyncs, records atomic.Int64
	cfg.OnCommit = func(_, recs, _ int, d time.Duration) {
		if d > 0 {
			fsyncs.Add(1)
		}
		records.Add(int64(recs))
	}
	sp := openT(t, cfg)
	defer sp.Close()
	const writers, each = 64, 20
	var wg sync.WaitGroup
	for g := 0; g < writers; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				if _, err := sp.Append(env("gc.example"), body(uint64(g*1000+i), 4096)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if n := sp.DomainStats("gc.example").Messages; n != writers*each {
		t.Fatalf("%d messages, want %d", n, writers*each)
	}
	// Concurrent appenders share fsyncs: fewer fsyncs than records.
	if f, r := fsyncs.Load(), records.Load(); f >= r || r < writers*each {
		t.Fatalf("%d fsyncs for %d records: no group commit", f, r)
	}
	t.Logf("%d records in %d fsyncs", records.Load(), fsyncs.Load())
}

func TestSecondOpenLocked(t *testing.T) {
	dir := t.TempDir()
	sp := openT(t, testCfg(dir, perm{CodecZstd, 2, false}))
	defer sp.Close()
	if _, err := Open(nil, testCfg(dir, perm{CodecZstd, 2, false})); !errors.Is(err, ErrLocked) {
		t.Fatalf("second open: %v", err)
	}
}

func TestShardCountFixedAtCreation(t *testing.T) {
	dir := t.TempDir()
	sp := openT(t, testCfg(dir, perm{CodecZstd, 4, false}))
	id := mustAppend(t, sp, env("fixed.example"), []byte("x"))
	sp.Close()
	sp = openT(t, testCfg(dir, perm{CodecZstd, 16, false}))
	defer sp.Close()
	if sp.Shards() != 4 {
		t.Fatalf("shards %d, want 4 from MANIFEST", sp.Shards())
	}
	mustBody(t, sp, id, []byte("x"))
}

func TestMultiDomainCommitAll(t *testing.T) {
	sp := openT(t, testCfg(t.TempDir(), perm{CodecZstd, 8, false}))
	defer sp.Close()
	var ws []*Writer
	for _, d := range []string{"a.example", "b.example", "c.example"} {
		w, err := sp.Create(env(d))
		if err != nil {
			t.Fatal(err)
		}
		ws = append(ws, w)
	}
	b := body(9, 50<<10)
	for _, w := range ws {
		if _, err := w.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	ids, err := CommitAll(ws)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		mustBody(t, sp, id, b)
	}
}

func TestCloseRefusesAppends(t *testing.T) {
	sp := openT(t, testCfg(t.TempDir(), perm{CodecZstd, 1, false}))
	sp.Close()
	if _, err := sp.Append(env("x.example"), []byte("x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("append after close: %v", err)
	}
}
