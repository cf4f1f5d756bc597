package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// smtpSink is Postfix's smtp-sink on a loopback port, dumping every
// transaction to a file: a real receiving server an order of magnitude
// faster than a Postfix instance delivering to a Maildir, for backlogs of
// tens of thousands. A dump file is written while the message arrives, so
// it stands for a delivered message only where no connection is cut
// mid-transaction.
type smtpSink struct {
	addr string
	dir  string
	cmd  *exec.Cmd
	seen map[string]bool
	ids  map[string]int
}

func startSink(t testing.TB, port int) *smtpSink {
	t.Helper()
	bin := need(t, "smtp-sink")
	dir, err := os.MkdirTemp("", "mxcont-sink")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777); err != nil { // smtp-sink drops to nobody
		t.Fatal(err)
	}
	s := &smtpSink{addr: fmt.Sprintf("127.0.0.1:%d", port), dir: dir, seen: map[string]bool{}, ids: map[string]int{}}
	args := []string{"-d", dir + "/%H%M/", s.addr, "256"}
	if os.Geteuid() == 0 {
		args = append([]string{"-u", "nobody"}, args...)
	}
	s.cmd = exec.Command(bin, args...)
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
		os.RemoveAll(dir)
	})
	waitPort(t, s.addr, 30*time.Second)
	return s
}

// scan reads the Message-IDs of the dumps written since the last scan.
func (s *smtpSink) scan() {
	_ = filepath.WalkDir(s.dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || s.seen[p] {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			l := sc.Text()
			if k, v, ok := strings.Cut(l, ":"); ok && strings.EqualFold(k, "message-id") {
				s.seen[p] = true
				s.ids[strings.TrimSpace(v)]++
				break
			}
		}
		return nil // no Message-ID yet: still being written, read again later
	})
}

// wait polls until every id of want has arrived, or fails the test.
func (s *smtpSink) wait(t testing.TB, want map[string]bool, d time.Duration) map[string]int {
	t.Helper()
	seen := func() map[string]int { s.scan(); return s.ids }
	return waitAll(t, want, d, 250*time.Millisecond, seen, func(missing int) string {
		return fmt.Sprintf("%d of %d acknowledged messages never arrived at the sink", missing, len(want))
	})
}
