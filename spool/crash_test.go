package spool

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const crashChildEnv = "MXCONT_SPOOL_CRASH_CHILD"

// TestMain lets the test binary act as the crash test's child process.
func TestMain(m *testing.M) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		crashChild(dir)
		return
	}
	os.Exit(m.Run())
}

// crashChild appends from many goroutines and prints "id seed size" for
// every append that returned, until it is killed.
func crashChild(dir string) {
	sp, err := Open(nil, crashCfg(dir))
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		os.Exit(3)
	}
	base, _ := strconv.ParseUint(os.Getenv(crashChildEnv+"_SEED"), 10, 64)
	var mu sync.Mutex
	out := os.Stdout
	var wg sync.WaitGroup
	for g := 0; g < 32; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				seed := base<<32 | uint64(g)<<20 | uint64(i)
				size := 500 + int(seed%7)*3000
				if i%13 == 0 {
					size = 70 << 10 // several chunks
				}
				d := fmt.Sprintf("c%d.example", g%6)
				id, err := sp.Append(env(d), body(seed, size))
				if err != nil {
					fmt.Fprintln(os.Stderr, "append:", err)
					os.Exit(4)
				}
				mu.Lock()
				fmt.Fprintf(out, "%d %d %d\n", id, seed, size)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

// crashCfg uses small segments so that kills land around rotations too.
func crashCfg(dir string) Config {
	cfg := testCfg(dir, perm{CodecZstd, 4, true}) // the default codec policy
	cfg.SegmentSize = 256 << 10
	return cfg
}

type acked struct {
	id   ID
	seed uint64
	size int
}

// TestCrashKill9 kills a writing child process at random moments; after
// each kill every append that had returned must be present and intact.
func TestCrashKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("process-level crash test")
	}
	if raceEnabled {
		t.Skip("runs without -race: make test runs it in its second pass")
	}
	dir := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var all []acked
	cycles := 20
	for c := 0; c < cycles; c++ {
		cmd := exec.Command(exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+dir, fmt.Sprintf("%s_SEED=%d", crashChildEnv, c+1))
		stdout, _ := cmd.StdoutPipe()
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var got []acked
		done := make(chan struct{})
		started := make(chan struct{})
		go func() {
			defer close(done)
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				var a acked
				var id uint64
				if _, err := fmt.Sscanf(sc.Text(), "%d %d %d", &id, &a.seed, &a.size); err == nil {
					a.id = ID(id)
					got = append(got, a)
					if len(got) == 20 {
						close(started)
					}
				}
			}
		}()
		// Kill at a random moment once the child is appending.
		select {
		case <-started:
		case <-done:
		case <-time.After(60 * time.Second):
		}
		time.Sleep(time.Duration(rand.IntN(300)) * time.Millisecond)
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-done
		_ = cmd.Wait()
		if strings.Contains(stderr.String(), "append:") || strings.Contains(stderr.String(), "open:") {
			t.Fatalf("cycle %d: child failed: %s", c, stderr.String())
		}
		all = append(all, got...)

		sp := openT(t, crashCfg(dir))
		for _, a := range all {
			mustBody(t, sp, a.id, body(a.seed, a.size))
		}
		st := 0
		for _, d := range sp.Damage() {
			st += d.Messages
		}
		if st != 0 {
			t.Fatalf("cycle %d: repair reports %d lost messages", c, st)
		}
		if err := sp.Close(); err != nil {
			t.Fatal(err)
		}
		t.Logf("cycle %d: %d acknowledged this run, %d in all, all intact", c, len(got), len(all))
	}
	if len(all) < cycles*20 {
		t.Fatalf("only %d appends acknowledged over %d cycles", len(all), cycles)
	}
}
