// Package e2e runs the real mxcont binary against real peers: swaks and
// Postfix's smtp-source as senders, Postfix as the customer's primary
// server, curl against the admin API. Everything listens on 127.0.0.1.
//
// The tools are installed by scripts/ci-setup.sh. Under CI (CI=true) a
// missing tool fails the suite; elsewhere the tests that need it skip.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var mxcontBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "mxcont-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	mxcontBin = filepath.Join(dir, "mxcont")
	build := exec.Command("go", "build", "-o", mxcontBin, "../../cmd/mxcont")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build mxcont:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// need returns the path of a tool, failing under CI and skipping
// elsewhere when it is missing.
func need(t testing.TB, tool string) string {
	t.Helper()
	for _, d := range []string{"", "/usr/sbin/", "/usr/bin/"} {
		if p, err := exec.LookPath(d + tool); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s not installed (scripts/ci-setup.sh installs it)", tool)
	}
	t.Skipf("%s not installed", tool)
	return ""
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func waitPort(t testing.TB, addr string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("nothing listens on %s after %v", addr, d)
}

// node is a running mxcont process.
type node struct {
	t        testing.TB
	dir      string
	cfgPath  string
	smtpAddr string
	httpAddr string
	cmd      *exec.Cmd
	log      *syncBuffer // stdout: the JSON log, readable while the node runs
	stderr   *syncBuffer
}

// syncBuffer is a bytes.Buffer that the process's output copier writes
// while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// startNode writes a config with the given domains YAML and starts mxcont.
func startNode(t testing.TB, dir, domainsYAML string, extra ...string) *node {
	t.Helper()
	n := &node{t: t, dir: dir,
		smtpAddr: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		httpAddr: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	n.cfgPath = filepath.Join(dir, "mxcont.yaml")
	floor := "min_free_bytes: 1048576\n"
	for _, e := range extra {
		if strings.HasPrefix(e, "min_free_bytes:") {
			floor = ""
		}
	}
	cfg := fmt.Sprintf("data_dir: %s\nsmtp_addr: %s\nhttp_addr: %s\nprobe_interval: 500ms\nhostname: mx.e2e.test\n%s%s\n%s",
		filepath.Join(dir, "data"), n.smtpAddr, n.httpAddr, floor, strings.Join(extra, "\n"), domainsYAML)
	if err := os.WriteFile(n.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	n.start()
	return n
}

func (n *node) start() {
	n.t.Helper()
	n.log, n.stderr = &syncBuffer{}, &syncBuffer{}
	n.cmd = exec.Command(mxcontBin, "serve", "--config", n.cfgPath)
	n.cmd.Env = append(os.Environ(), "MXCONT_ADMIN_PASSWORD=e2e-admin-password")
	n.cmd.Stdout, n.cmd.Stderr = n.log, n.stderr
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := n.cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	n.t.Cleanup(func() { n.kill() })
	waitPort(n.t, n.smtpAddr, 30*time.Second)
}

// pid returns the process id of the running node.
func (n *node) pid() int { return n.cmd.Process.Pid }

// kill stops the node with SIGKILL (no shutdown at all).
func (n *node) kill() {
	if n.cmd == nil || n.cmd.Process == nil {
		return
	}
	_ = n.cmd.Process.Signal(syscall.SIGKILL)
	_ = n.cmd.Wait()
	n.cmd = nil
}

// stop stops the node with SIGTERM and waits for a clean exit.
func (n *node) stop() {
	n.t.Helper()
	if n.cmd == nil {
		return
	}
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- n.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			n.t.Errorf("mxcont exit: %v\nstderr: %s", err, n.stderr)
		}
	case <-time.After(60 * time.Second):
		n.kill()
		n.t.Fatal("mxcont did not stop within 60s of SIGTERM")
	}
	n.cmd = nil
}

// run runs a command with a timeout and returns its combined output.
func run(t testing.TB, timeout time.Duration, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// swaks sends one message and returns swaks' transcript.
func swaks(t testing.TB, server string, args ...string) (string, error) {
	t.Helper()
	bin := need(t, "swaks")
	return run(t, 60*time.Second, bin, append([]string{"--server", server, "--timeout", "30"}, args...)...)
}

// lastReply returns the last server reply line of a swaks transcript
// (lines starting "<-" or "<**").
func lastReply(transcript string) string {
	var last string
	sc := bufio.NewScanner(strings.NewReader(transcript))
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "<-") || strings.HasPrefix(l, "<**") {
			if r := strings.TrimSpace(strings.TrimLeft(l, "<-*")); !strings.HasPrefix(r, "221 ") {
				last = r
			}
		}
	}
	return last
}

func netDial(addr string) (net.Conn, error) {
	return net.DialTimeout("tcp", addr, 300*time.Millisecond)
}

func writeFile(p, s string) error { return os.WriteFile(p, []byte(s), 0o600) }
