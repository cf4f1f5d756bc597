package outbound

import (
	"strings"
	"testing"
	"time"

	"github.com/mxcont/mxcont/spool"
)

// TestDSNInjection: reply text from a remote server cannot add fields
// or parts to the DSN.
func TestDSNInjection(t *testing.T) {
	m := &spool.Message{ID: 1, From: "alice@local.test", Rcpts: []string{"bob@remote.test"}, ReceivedAt: time.Now()}
	diag := "smtp; 550 5.1.1 no\r\nBcc: victim@x.test\r\n\r\n--boundary"
	b := buildDSN(dsnInput{hostname: "mxcont.test", msg: m, now: time.Now(),
		failed: []rcptFailure{{idx: 0, status: "5.1.1", diag: diag}},
		header: []byte("Subject: hi\r\n")})
	rep := parseDSN(t, b)
	if !strings.Contains(rep.status, "Diagnostic-Code: smtp; 550 5.1.1 no  Bcc: victim@x.test    --boundary\r\n") {
		t.Fatalf("diagnostic not kept on one line:\n%s", rep.status)
	}
	if strings.Contains(string(b), "\nBcc:") {
		t.Fatalf("injected field:\n%s", b)
	}
}

func TestReadHeader(t *testing.T) {
	long := "X-Long: " + strings.Repeat("z", 6000) + "\r\n"
	cases := []struct{ in, want string }{
		{"A: 1\r\nB: 2\r\n\r\nbody\r\n", "A: 1\r\nB: 2\r\n"},
		{"A: 1\nB: 2\n\nbody\n", "A: 1\r\nB: 2\r\n"},
		{"A: 1", "A: 1\r\n"},
		{long + "B: 2\r\n\r\nbody", long[:4096] + "\r\nB: 2\r\n"},
	}
	for _, c := range cases {
		got, err := readHeader(strings.NewReader(c.in), 1<<20)
		if err != nil || string(got) != c.want {
			t.Errorf("%.40q: got %.60q, %v", c.in, got, err)
		}
	}
	got, _ := readHeader(strings.NewReader(strings.Repeat("A: 1\r\n", 100)+"\r\n"), 60)
	if len(got) < 60 || len(got) > 66 || !strings.HasSuffix(string(got), "\r\n") {
		t.Errorf("limited read: %d bytes %q", len(got), got)
	}
}

func TestBackoff(t *testing.T) {
	c := Config{RetryMin: time.Minute, RetryMax: time.Hour}
	for n := range 12 {
		base := min(time.Minute<<n, time.Hour)
		for range 20 {
			d := c.backoff(n)
			if d < base*8/10 || d > base*12/10 {
				t.Fatalf("backoff(%d) = %v, want %v ±20%%", n, d, base)
			}
		}
	}
}
