package mailbox

import (
	"context"
	"testing"

	"go.uber.org/zap/zaptest"

	"github.com/mxcont/mxcont/admin/auth"
)

// cheap are argon2id costs small enough for tests.
var cheap = auth.Params{Memory: 64, Time: 1, Threads: 1}

func testCfg(dir string) Config {
	return Config{Dir: dir, Hash: cheap}
}

func openT(t testing.TB, cfg Config) *Store {
	t.Helper()
	s, err := Open(zaptest.NewLogger(t), cfg)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return s
}

func newStore(t testing.TB) *Store {
	t.Helper()
	s := openT(t, testCfg(t.TempDir()))
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func addUser(t testing.TB, s *Store, addr string) User {
	t.Helper()
	u, err := s.AddUser(context.Background(), addr, "password-"+addr)
	if err != nil {
		t.Fatalf("add user %s: %v", addr, err)
	}
	return u
}
