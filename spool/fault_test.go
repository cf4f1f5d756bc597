package spool

import (
	"errors"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tidwall/wal"
)

type faults struct{ write, sync atomic.Bool }

type faultLog struct {
	walLog
	f *faults
}

func (l *faultLog) WriteBatch(b *wal.Batch) error {
	if l.f.write.Load() {
		return syscall.ENOSPC
	}
	return l.walLog.WriteBatch(b)
}

func (l *faultLog) Sync() error {
	if l.f.sync.Load() {
		return syscall.EIO
	}
	return l.walLog.Sync()
}

func faultCfg(dir string, f *faults) Config {
	cfg := testCfg(dir, perm{CodecZstd, 1, false})
	cfg.wrapLog = func(_ int, l walLog) walLog { return &faultLog{walLog: l, f: f} }
	cfg.fsyncHook = func(int) error {
		if f.sync.Load() {
			return syscall.EIO
		}
		return nil
	}
	return cfg
}

func TestStickyWriteError(t *testing.T) {
	for _, kind := range []string{"write-enospc", "fsync-eio"} {
		t.Run(kind, func(t *testing.T) {
			dir := t.TempDir()
			f := &faults{}
			sp := openT(t, faultCfg(dir, f))
			var acked []ID
			for i := 0; i < 5; i++ {
				acked = append(acked, mustAppend(t, sp, env("f.example"), body(uint64(i), 2000)))
			}
			before := sp.DomainStats("f.example")
			if kind == "write-enospc" {
				f.write.Store(true)
			} else {
				f.sync.Store(true)
			}
			_, err := sp.Append(env("f.example"), body(99, 2000))
			if !errors.Is(err, ErrWriteFailed) {
				t.Fatalf("append during fault: %v", err)
			}
			if !errors.Is(err, syscall.ENOSPC) && !errors.Is(err, syscall.EIO) {
				t.Fatalf("cause not wrapped: %v", err)
			}
			// Visible state unchanged, further appends refused at once.
			if after := sp.DomainStats("f.example"); after != before {
				t.Fatalf("state changed: %+v → %+v", before, after)
			}
			if _, err := sp.Create(env("f.example")); !errors.Is(err, ErrWriteFailed) {
				t.Fatalf("create while broken: %v", err)
			}
			if st := sp.Stats()[0]; st.Err == "" {
				t.Fatal("stats do not show the sticky error")
			}
			// Once the fault is gone the shard reopens itself and accepts again.
			f.write.Store(false)
			f.sync.Store(false)
			deadline := time.Now().Add(10 * time.Second)
			for {
				id, err := sp.Append(env("f.example"), body(100, 2000))
				if err == nil {
					acked = append(acked, id)
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("shard did not recover: %v", err)
				}
				time.Sleep(50 * time.Millisecond)
			}
			sp.Close()
			// After a restart exactly the acknowledged messages are there: the
			// refused one did not come back from the partly written batch.
			sp = openT(t, faultCfg(dir, f))
			defer sp.Close()
			if n := sp.DomainStats("f.example").Messages; n != len(acked) {
				t.Fatalf("%d messages after reopen, want %d", n, len(acked))
			}
			for i, id := range acked[:5] {
				mustBody(t, sp, id, body(uint64(i), 2000))
			}
			mustBody(t, sp, acked[5], body(100, 2000))
		})
	}
}

func TestWriterInvalidatedByFailure(t *testing.T) {
	dir := t.TempDir()
	f := &faults{}
	sp := openT(t, faultCfg(dir, f))
	defer sp.Close()
	w, err := sp.Create(env("f.example"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(body(1, 40<<10)); err != nil { // two chunks written
		t.Fatal(err)
	}
	f.sync.Store(true)
	if _, err := sp.Append(env("f.example"), []byte("x")); err == nil {
		t.Fatal("append with failing fsync succeeded")
	}
	f.sync.Store(false)
	time.Sleep(1500 * time.Millisecond) // the shard reopens
	if _, err := w.Commit(); !errors.Is(err, ErrWriteFailed) {
		t.Fatalf("commit of a writer that spans a failure: %v", err)
	}
}
