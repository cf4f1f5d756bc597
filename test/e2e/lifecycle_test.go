package e2e

import (
	"os/exec"
	"strings"
	"testing"
)

// TestSecondStartAndGracefulStop: a second node on the same data
// directory refuses to start with a clear error; SIGTERM stops the first
// cleanly (exit 0) and a restart finds its mail again.
func TestSecondStartAndGracefulStop(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, dir, domainYAML("customer.test", "127.0.0.1:1"))
	reply, err := sendOne(n.smtpAddr, "a@sender.example", "user@customer.test", "<life-1@e2e.test>", 1000)
	if err != nil {
		t.Fatalf("send: %v %s", err, reply)
	}
	out, err := exec.Command(mxcontBin, "serve", "--config", n.cfgPath, "--smtp-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0").CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), "another mxcont process uses this data directory") {
		t.Fatalf("second start: %v\n%s", err, out)
	}
	n.stop()
	if !strings.Contains(n.log.String(), `"node stopped"`) {
		t.Fatalf("no clean stop in the log:\n%s", tail(n.log.String(), 10))
	}
	n.start()
	a := login(t, n.httpAddr)
	a.waitQueued("customer.test", 1, 0)
}

// TestBadConfigExitCode: a broken config file exits with status 2 and a
// message naming the key.
func TestBadConfigExitCode(t *testing.T) {
	cfg := t.TempDir() + "/bad.yaml"
	if err := writeFile(cfg, "probe_interval: 10 parsecs\n"); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(mxcontBin, "serve", "--config", cfg).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), "probe_interval") {
		t.Fatalf("bad config: %v\n%s", err, out)
	}
}
