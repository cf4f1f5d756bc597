package mailbox

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
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

	"github.com/mxcont/mxcont/admin/auth"
)

const crashChildEnv = "MXCONT_MAILBOX_CRASH_CHILD"

// TestMain lets the test binary act as the crash test's child process.
func TestMain(m *testing.M) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		crashChild(dir)
		return
	}
	os.Exit(m.Run())
}

var crashUsers = []string{"u0@crash.example", "u1@crash.example", "u2@crash.example", "u3@crash.example"}

// crashBody is the deterministic body of delivery seed.
func crashBody(seed uint64) []byte {
	size := 300 + int(seed%5)*2500
	if seed%11 == 0 {
		size = 200 << 10
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "X-Seed: %d\r\nSubject: crash %d\r\n\r\n", seed, seed)
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	var raw [40]byte
	var line [76]byte
	for b.Len() < size {
		for i := 0; i < len(raw); i += 8 {
			binary.BigEndian.PutUint64(raw[i:], r.Uint64())
		}
		hex.Encode(line[:], raw[:38]) // 76 hex digits
		b.Write(line[:])
		b.WriteString("\r\n")
	}
	return b.Bytes()
}

// crashRcpts picks a non-empty subset of crashUsers from seed.
func crashRcpts(seed uint64) []string {
	mask := seed%15 + 1
	var out []string
	for i, u := range crashUsers {
		if mask&(1<<i) != 0 {
			out = append(out, u)
		}
	}
	return out
}

// crashChild delivers from many goroutines (and appends to Sent from one)
// and prints "d seed ." or "a user seed ." for every call that returned, until
// it is killed.
func crashChild(dir string) {
	s, err := Open(nil, Config{Dir: dir, Hash: auth.Params{Memory: 64, Time: 1, Threads: 1}})
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		os.Exit(3)
	}
	base, _ := strconv.ParseUint(os.Getenv(crashChildEnv+"_SEED"), 10, 64)
	var mu sync.Mutex
	out := os.Stdout // one write per line
	var wg sync.WaitGroup
	for g := 0; g < 9; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := uint64(0); ; i++ {
				seed := base<<40 | uint64(g)<<32 | i
				var line string
				if g == 8 {
					u := crashUsers[i%4]
					if _, err := s.Append(u, "Sent", []string{`\Seen`}, time.Time{}, bytes.NewReader(crashBody(seed))); err != nil {
						fmt.Fprintln(os.Stderr, "append:", err)
						os.Exit(4)
					}
					line = fmt.Sprintf("a %s %d .\n", u, seed)
				} else {
					n, err := s.Deliver(crashRcpts(seed), bytes.NewReader(crashBody(seed)), time.Now())
					if err != nil || n != len(crashRcpts(seed)) {
						fmt.Fprintln(os.Stderr, "deliver:", n, err)
						os.Exit(4)
					}
					line = fmt.Sprintf("d %d .\n", seed)
				}
				mu.Lock()
				_, _ = out.WriteString(line)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

// TestCrashKill9 kills a delivering child process at random moments;
// after each kill every delivery and append that had returned must be in
// the store, byte for byte, and no file may be left unreferenced.
func TestCrashKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("process-level crash test")
	}
	dir := t.TempDir()
	s := openT(t, testCfg(dir))
	for _, u := range crashUsers {
		if _, err := s.AddUser(context.Background(), u, "crash-password"); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// want[user][folder] = seeds acknowledged
	want := map[string]map[string][]uint64{}
	for _, u := range crashUsers {
		want[u] = map[string][]uint64{}
	}
	cycles := 12
	if raceEnabled {
		cycles = 10
	}
	acked := 0
	for c := 0; c < cycles; c++ {
		cmd := exec.Command(exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+dir, fmt.Sprintf("%s_SEED=%d", crashChildEnv, c+1))
		stdout, _ := cmd.StdoutPipe()
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var lines []string
		done := make(chan struct{})
		started := make(chan struct{})
		go func() {
			defer close(done)
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				lines = append(lines, sc.Text())
				if len(lines) == 20 {
					close(started)
				}
			}
		}()
		select {
		case <-started:
		case <-done:
		case <-time.After(60 * time.Second):
		}
		time.Sleep(time.Duration(rand.IntN(300)) * time.Millisecond)
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-done
		_ = cmd.Wait()
		if e := stderr.String(); strings.Contains(e, "open:") || strings.Contains(e, "deliver:") || strings.Contains(e, "append:") {
			t.Fatalf("cycle %d: child failed: %s", c, e)
		}
		for _, l := range lines {
			f := strings.Fields(l)
			switch {
			case len(f) == 0 || f[len(f)-1] != ".":
				continue // the line the kill cut short
			case len(f) == 3 && f[0] == "d":
				seed, _ := strconv.ParseUint(f[1], 10, 64)
				for _, u := range crashRcpts(seed) {
					want[u]["INBOX"] = append(want[u]["INBOX"], seed)
				}
			case len(f) == 4 && f[0] == "a":
				seed, _ := strconv.ParseUint(f[2], 10, 64)
				want[f[1]]["Sent"] = append(want[f[1]]["Sent"], seed)
			default:
				t.Fatalf("cycle %d: child printed %q", c, l)
			}
			acked++
		}

		s := openT(t, testCfg(dir))
		seeds := map[uint64]bool{}
		for _, u := range crashUsers {
			for _, folder := range []string{"INBOX", "Sent"} {
				have := map[uint64]bool{}
				for _, b := range readAll(t, s, u, folder) {
					var seed uint64
					if _, err := fmt.Sscanf(string(b), "X-Seed: %d", &seed); err != nil || !bytes.Equal(b, crashBody(seed)) {
						t.Fatalf("cycle %d: %s %s: damaged message (seed %d)", c, u, folder, seed)
					}
					have[seed] = true
					seeds[seed] = true
				}
				for _, seed := range want[u][folder] {
					if !have[seed] {
						t.Fatalf("cycle %d: %s %s: acknowledged message %d lost", c, u, folder, seed)
					}
				}
			}
		}
		if n := blobFiles(t, dir); n != len(seeds) {
			t.Fatalf("cycle %d: %d files for %d distinct messages", c, n, len(seeds))
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		t.Logf("cycle %d: %d lines this run, %d acknowledged in all, all intact", c, len(lines), acked)
	}
	if acked < cycles*20 {
		t.Fatalf("only %d calls acknowledged over %d cycles", acked, cycles)
	}
}
