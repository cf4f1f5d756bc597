package e2e

import (
	"testing"
	"time"
)

func TestPostfixPrimarySmoke(t *testing.T) {
	p := startPostfix(t, "primary.example", freePort(t))
	out, err := swaks(t, p.addr, "--to", "user@primary.example", "--from", "a@b.example", "--header", "Message-ID: <smoke-1@e2e>")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(p.delivered()) == 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if ids := p.messageIDs(); ids["<smoke-1@e2e>"] != 1 {
		t.Fatalf("delivered: %v", ids)
	}
}
