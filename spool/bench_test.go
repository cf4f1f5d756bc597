package spool

import (
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkAppend measures durable appends (each returns after its fsync)
// for a size × concurrency matrix, like etcd's wal_bench_test.go.
//
//	go test -run '^$' -bench 'Append' -benchtime 20000x ./spool/
func BenchmarkAppend(b *testing.B) {
	for _, size := range []int{4 << 10, 64 << 10} {
		for _, writers := range []int{1, 16, 64, 256} {
			for _, domains := range []int{1, 64} {
				name := fmt.Sprintf("size=%dKiB/appenders=%d/domains=%d", size>>10, writers, domains)
				b.Run(name, func(b *testing.B) { benchAppend(b, size, writers, domains) })
			}
		}
	}
}

func benchAppend(b *testing.B, size, writers, domains int) {
	var fsyncs atomic.Int64
	cfg := Config{Dir: b.TempDir(), OnCommit: func(_, _, _ int, d time.Duration) {
		if d > 0 {
			fsyncs.Add(1)
		}
	}}
	sp, err := Open(nil, cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer sp.Close()
	bodies := make([][]byte, 16)
	for i := range bodies {
		bodies[i] = body(uint64(i), size)
	}
	b.SetBytes(int64(size))
	b.ResetTimer()
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for g := 0; g < writers; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				d := "bench" + strconv.Itoa(int(i)%domains) + ".example"
				if _, err := sp.Append(env(d), bodies[i%16]); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	el := time.Since(start).Seconds()
	b.ReportMetric(float64(b.N)/el, "records/s")
	b.ReportMetric(float64(fsyncs.Load())/el, "fsyncs/s")
}

// BenchmarkIndexMemory measures the heap the index needs per queued
// message (envelope with one recipient, as a filter hands it over).
func BenchmarkIndexMemory(b *testing.B) {
	const n = 1_000_000
	for i := 0; i < b.N; i++ {
		s := &shard{msgs: make(map[ID]*msg), domains: make(map[string]*domainQueue)}
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for j := 0; j < n; j++ {
			d := "customer" + strconv.Itoa(j%1000) + ".example"
			mm := msgMeta{id: ID(uint64(j+1) << 8), size: 4096, domain: d,
				from:  "newsletter-bounces+" + strconv.Itoa(j) + "@sender.example.net",
				rcpts: []string{"firstname.lastname@" + d}}
			s.addMessage(&mm, uint64(j+1), uint64(j+1), 4200)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "bytes/msg")
		runtime.KeepAlive(s)
	}
}

// BenchmarkReopen builds a spool with MXCONT_BENCH_MESSAGES (default
// 1,000,000) queued 4 KiB messages, then measures Open: index rebuild time
// and the heap it holds. Set MXCONT_BENCH_DIR to reuse a spool between runs.
//
//	go test -run '^$' -bench Reopen -benchtime 1x -timeout 60m ./spool/
func BenchmarkReopen(b *testing.B) {
	n := 1_000_000
	if v, err := strconv.Atoi(os.Getenv("MXCONT_BENCH_MESSAGES")); err == nil {
		n = v
	}
	dir := os.Getenv("MXCONT_BENCH_DIR")
	if dir == "" {
		dir = b.TempDir()
	}
	cfg := Config{Dir: dir}
	sp, err := Open(nil, cfg)
	if err != nil {
		b.Fatal(err)
	}
	have := 0
	for _, d := range sp.Domains() {
		have += d.Messages
	}
	bodies := make([][]byte, 64)
	for i := range bodies {
		bodies[i] = body(uint64(i), 4096)
	}
	var next atomic.Int64
	next.Store(int64(have))
	var wg sync.WaitGroup
	for g := 0; g < 64; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				d := "customer" + strconv.Itoa(int(i)%1000) + ".example"
				if _, err := sp.Append(env(d), bodies[i%64]); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	sp.Close()
	var disk int64
	for _, st := range sp.Stats() {
		disk += st.DiskBytes
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		debug.FreeOSMemory()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		t0 := time.Now()
		sp, err := Open(nil, cfg)
		if err != nil {
			b.Fatal(err)
		}
		took := time.Since(t0)
		runtime.GC()
		runtime.ReadMemStats(&after)
		msgs := 0
		for _, d := range sp.Domains() {
			msgs += d.Messages
		}
		if msgs != n {
			b.Fatalf("%d messages after reopen, want %d", msgs, n)
		}
		b.ReportMetric(took.Seconds(), "open-s")
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(msgs), "heap-bytes/msg")
		b.ReportMetric(float64(disk)/float64(msgs), "disk-bytes/msg")
		sp.Close()
	}
}

// BenchmarkCodec compresses one body section per operation with each
// codec, for sizes around the codec policy's threshold (codecFor), and
// reports the stored bytes per raw byte ("ratio"): the CPU-against-disk
// trade-off behind the policy. "prose" is English-like text; "hex" is the
// test body (three quarters random hex digits), which only an entropy
// coder (zstd) compresses.
//
//	go test -run '^$' -bench Codec ./spool/
func BenchmarkCodec(b *testing.B) {
	for _, kind := range []string{"prose", "hex"} {
		for _, size := range []int{1 << 10, 4 << 10, 16 << 10, 64 << 10, 1 << 20} {
			src := body(7, size)
			if kind == "prose" {
				src = prose(7, size)
			}
			for _, c := range []Codec{CodecRaw, CodecS2, CodecZstd} {
				b.Run(fmt.Sprintf("%s/size=%dKiB/codec=%s", kind, size>>10, c), func(b *testing.B) {
					dst := make([]byte, 0, size+size/8+64)
					var out []byte
					b.SetBytes(int64(size))
					for b.Loop() {
						out = compress(c, dst[:0], src)
					}
					b.ReportMetric(float64(len(out))/float64(size), "ratio")
				})
			}
		}
	}
}
