package submit

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

const swaks = "/usr/bin/swaks"

// runSwaks runs the real swaks client against the server.
func runSwaks(t *testing.T, addr string, args ...string) (string, error) {
	t.Helper()
	if _, err := os.Stat(swaks); err != nil {
		t.Skip("swaks not installed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	base := []string{"--server", addr, "--helo", "client.test", "--from", alice, "--to", bob,
		"--header", "Subject: swaks test", "--body", "sent by swaks", "--timeout", "30"}
	out, err := exec.CommandContext(ctx, swaks, append(base, args...)...).CombinedOutput()
	return string(out), err
}

// TestSwaks: a real client doing STARTTLS and AUTH PLAIN or LOGIN.
func TestSwaks(t *testing.T) {
	e := startServer(t, nil)
	for _, mech := range []string{"PLAIN", "LOGIN"} {
		out, err := runSwaks(t, e.addr, "--tls", "--auth", mech, "--auth-user", alice, "--auth-password", alicePW)
		if err != nil || !strings.Contains(out, "<~  250 2.0.0 OK queued as ") {
			t.Fatalf("swaks --tls --auth %s: %v\n%s", mech, err, out)
		}
	}
	// Without TLS the server offers no AUTH: swaks gives up before MAIL.
	out, err := runSwaks(t, e.addr, "--auth", "PLAIN", "--auth-user", alice, "--auth-password", alicePW)
	if err == nil || strings.Contains(out, "MAIL FROM") {
		t.Fatalf("swaks without TLS got through:\n%s", out)
	}
	// A wrong password is refused.
	out, err = runSwaks(t, e.addr, "--tls", "--auth", "PLAIN", "--auth-user", alice, "--auth-password", "wrong")
	if err == nil || !strings.Contains(out, "535 5.7.8") {
		t.Fatalf("swaks with a wrong password:\n%s", out)
	}
	q := e.queued(t, "remote.test")
	if len(q) != 2 {
		t.Fatalf("queued %d, want 2", len(q))
	}
	for _, m := range q {
		if !strings.Contains(m.Body, "with ESMTPSA (TLS") || !strings.Contains(m.Body, "sent by swaks") {
			t.Fatalf("queued body %q", m.Body)
		}
	}
}
