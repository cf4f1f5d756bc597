package relayq

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"

	"github.com/mxcont/mxcont/engine/registry"
	"github.com/mxcont/mxcont/spool"
)

var drainProfile = flag.String("drainprofile", "", "write a CPU profile of BenchmarkDrain's drain phase (not the filling of the spool) to this file")

// BenchmarkDrain measures the drain after an outage: b.N queued messages
// of one domain, delivered over loopback to an in-process server that
// reads DATA a line at a time (rawServer), with the node's defaults (a
// pool of 8 connections, 8 spool shards, zstd, info logging encoded as
// JSON and discarded). The clock runs from Start to the empty queue; the
// spool is filled before it. cpu-ms/msg is the whole process's CPU time
// (relayq, spool and the server) per message.
//
//	go test -run '^$' -bench Drain -benchtime 20000x ./relayq/
//	go test -run '^$' -bench Drain/size=4KiB/pool=8 -benchtime 20000x -drainprofile drain.pprof ./relayq/
func BenchmarkDrain(b *testing.B) {
	for _, size := range []int{4 << 10, 64 << 10} {
		for _, pool := range []int{8, 16} {
			b.Run(fmt.Sprintf("size=%dKiB/pool=%d", size>>10, pool), func(b *testing.B) { benchDrain(b, size, pool) })
		}
	}
}

func benchDrain(b *testing.B, size, pool int) {
	dir := b.TempDir()
	sp, err := spool.Open(zaptest.NewLogger(b, zaptest.Level(zap.WarnLevel)), spool.Config{Dir: filepath.Join(dir, "spool")})
	if err != nil {
		b.Fatal(err)
	}
	defer sp.Close()
	bodies := make([][]byte, 16)
	for i := range bodies {
		bodies[i] = body(i, size)
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				env := spool.Envelope{Domain: dom, From: "sender@example.net", Rcpts: []string{"user@" + dom}}
				if _, err := sp.Append(env, bodies[i%16]); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()

	srv := startRawServer(b, nil)
	e := &env{t: b, dir: dir, sp: sp, clock: &clock{}, alerts: &recAlerter{}}
	e.openDB()
	e.reg = registry.NewMemory(zaptest.NewLogger(b, zaptest.Level(zap.WarnLevel)))
	e.domain(dom, srv.Addr, nil)
	cfg := Config{Hostname: "mx.mxcont.test", Alerter: e.alerts, PoolSize: pool}
	log := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(io.Discard), zap.InfoLevel))
	q, err := New(log, cfg, sp, e.db, e.reg)
	if err != nil {
		b.Fatal(err)
	}
	e.q = q
	b.Cleanup(e.stop)

	b.SetBytes(int64(size))
	if *drainProfile != "" {
		f, err := os.Create(*drainProfile)
		if err != nil {
			b.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		defer pprof.StopCPUProfile()
	}
	cpu0 := cpuTime()
	b.ResetTimer()
	start := time.Now()
	q.Start()
	for srv.count() < b.N || e.queued(dom) > 0 {
		select {
		case <-srv.notify:
		case <-time.After(5 * time.Millisecond):
		}
		if time.Since(start) > 10*time.Minute {
			b.Fatalf("drained %d of %d in 10 minutes", srv.count(), b.N)
		}
	}
	el := time.Since(start)
	b.StopTimer()
	cpu := cpuTime() - cpu0
	b.ReportMetric(float64(b.N)/el.Seconds(), "msgs/s")
	b.ReportMetric(cpu.Seconds()*1000/float64(b.N), "cpu-ms/msg")
}

// cpuTime is the process's user and system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
