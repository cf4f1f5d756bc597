package spool

import (
	"encoding/binary"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestMemoryBoundedLargeMessages writes and streams back several 30 MiB
// messages concurrently with the default segment and chunk sizes, sampling
// the Go heap: it must stay far below the bytes moved (bounded by chunks
// in flight and tidwall/wal's tail + cached segments per shard).
func TestMemoryBoundedLargeMessages(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 300 MB")
	}
	if raceEnabled {
		t.Skip("heap figures are not representative under -race; make test runs it in its second pass")
	}
	cfg := Config{Dir: t.TempDir(), Shards: 2, MaxMessageBytes: 50 << 20}
	sp := openT(t, cfg)
	defer sp.Close()
	var peak atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var ms runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
		}
	}()
	const size, n = 30 << 20, 10
	ids := make([]ID, n)
	var wwg sync.WaitGroup
	for i := 0; i < n; i++ {
		wwg.Add(1)
		go func() {
			defer wwg.Done()
			w, err := sp.Create(env("big.example"))
			if err != nil {
				t.Error(err)
				return
			}
			if _, err := io.Copy(w, io.LimitReader(&pattern{seed: uint64(i)}, size)); err != nil {
				t.Error(err)
				return
			}
			if ids[i], err = w.Commit(); err != nil {
				t.Error(err)
			}
		}()
	}
	wwg.Wait()
	for i, id := range ids {
		r, err := sp.OpenBody(id)
		if err != nil {
			t.Fatal(err)
		}
		want := io.LimitReader(&pattern{seed: uint64(i)}, size)
		if !sameStream(t, r, want) {
			t.Fatalf("message %d differs", i)
		}
		r.Close()
	}
	close(stop)
	wg.Wait()
	t.Logf("peak heap in use %d MiB while moving %d MiB", peak.Load()>>20, 2*n*size>>20)
	if peak.Load() > 160<<20 {
		t.Fatalf("peak heap %d MiB: memory not bounded by chunks", peak.Load()>>20)
	}
}

// pattern is an endless, partly compressible byte stream.
type pattern struct {
	seed, n uint64
}

func (p *pattern) Read(b []byte) (int, error) {
	for i := 0; i+8 <= len(b); i += 8 {
		p.n++
		v := p.n * 0x9e3779b97f4a7c15
		if p.n%4 == 0 {
			v = p.seed
		}
		binary.LittleEndian.PutUint64(b[i:], v)
	}
	return len(b) &^ 7, nil
}

func sameStream(t *testing.T, a, b io.Reader) bool {
	t.Helper()
	ba, bb := make([]byte, 64<<10), make([]byte, 64<<10)
	for {
		na, ea := io.ReadFull(a, ba)
		nb, eb := io.ReadFull(b, bb)
		if na != nb || string(ba[:na]) != string(bb[:nb]) {
			return false
		}
		if ea != nil || eb != nil {
			return (ea == io.EOF || ea == io.ErrUnexpectedEOF) && (eb == io.EOF || eb == io.ErrUnexpectedEOF)
		}
	}
}
