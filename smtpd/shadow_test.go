package smtpd

import (
	"errors"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/mxcont/mxcont/engine/registry"
	"github.com/mxcont/mxcont/spool"
)

// fakeShadow records what the acceptor hands it, reading each body back
// from the spool as the real filer does.
type fakeShadow struct {
	sp   func() *spool.Spool
	mu   sync.Mutex
	got  []spool.Envelope
	body []string
	fail error
}

func (f *fakeShadow) File(env spool.Envelope, id spool.ID) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return f.fail
	}
	r, err := f.sp().OpenBody(id)
	if err != nil {
		return err
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	f.got = append(f.got, env)
	f.body = append(f.body, string(b))
	return nil
}

func TestShadowFiledOnlyForBothDomains(t *testing.T) {
	var e *env
	sh := &fakeShadow{sp: func() *spool.Spool { return e.sp }}
	e = newEnv(t, func(c *Config) { c.Shadow = sh })
	if _, err := e.reg.Put(registry.Domain{Name: "both.example", Mode: registry.ModeBoth, RelayHost: "mail.both.example"}); err != nil {
		t.Fatal(err)
	}
	d := e.session()
	code, text := d.transaction("a@sender.test", []string{"u1@both.example", "x@example.com", "u2@both.example"},
		"Subject: hi\r\n\r\nbody line\r\n")
	if code != 250 {
		t.Fatalf("DATA: %d %s", code, text)
	}
	if len(queued(t, text)) != 2 {
		t.Fatalf("want two records (one per domain): %s", text)
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if len(sh.got) != 1 {
		t.Fatalf("shadow filed %d times, want once (for both.example only): %+v", len(sh.got), sh.got)
	}
	if g := sh.got[0]; g.Domain != "both.example" || !slices.Equal(g.Rcpts, []string{"u1@both.example", "u2@both.example"}) || g.From != "a@sender.test" {
		t.Fatalf("envelope %+v", g)
	}
	if !strings.HasPrefix(sh.body[0], "Received: ") || !strings.HasSuffix(sh.body[0], "body line\r\n") {
		t.Fatalf("shadow body %q", sh.body[0])
	}
	if n := len(e.messages("both.example")); n != 1 {
		t.Fatalf("relay copy: %d records, want 1", n)
	}
}

func TestShadowFailureIs451AndLeavesNothingQueued(t *testing.T) {
	var e *env
	sh := &fakeShadow{sp: func() *spool.Spool { return e.sp }, fail: errors.New("disk on fire")}
	e = newEnv(t, func(c *Config) { c.Shadow = sh })
	if _, err := e.reg.Put(registry.Domain{Name: "both.example", Mode: registry.ModeBoth, RelayHost: "mail.both.example"}); err != nil {
		t.Fatal(err)
	}
	d := e.session()
	code, text := d.transaction("a@sender.test", []string{"x@example.com", "u1@both.example"}, "Subject: hi\r\n\r\nx\r\n")
	if code != 451 || strings.Contains(text, "fire") {
		t.Fatalf("DATA: %d %s, want 451 without detail", code, text)
	}
	if n := e.total(); n != 0 {
		t.Fatalf("%d records left after a refused transaction, want 0", n)
	}
	// A relay-only transaction is unaffected.
	if code, text := d.transaction("a@sender.test", []string{"x@example.com"}, "Subject: hi\r\n\r\nx\r\n"); code != 250 {
		t.Fatalf("relay-only DATA: %d %s", code, text)
	}
}
