package auth

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"
	"go.uber.org/zap/zaptest"
)

// fastParams keep tests quick; the real defaults are exercised in
// TestHashPasswordDefaults.
var fastParams = Params{Memory: 64, Time: 1, Threads: 1}

func openDB(t *testing.T) *bbolt.DB {
	t.Helper()
	db, err := bbolt.Open(filepath.Join(t.TempDir(), "mxcont.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func openStore(t *testing.T, db *bbolt.DB) *Store {
	t.Helper()
	s, err := Open(zaptest.NewLogger(t), db, Config{Params: fastParams})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestHashPasswordDefaults(t *testing.T) {
	h, err := HashPassword("correct horse battery", Params{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("encoding %q does not carry the default parameters", h)
	}
	ok, err := VerifyPassword("correct horse battery", h)
	if err != nil || !ok {
		t.Fatalf("verify right password = %v, %v", ok, err)
	}
	if ok, _ := VerifyPassword("correct horse batterY", h); ok {
		t.Fatal("wrong password accepted")
	}
	h2, _ := HashPassword("correct horse battery", Params{})
	if h == h2 {
		t.Fatal("two hashes of the same password are equal: salt not random")
	}
}

func TestVerifyPasswordMalformed(t *testing.T) {
	good, _ := HashPassword("password1", fastParams)
	parts := strings.Split(good, "$")
	for name, enc := range map[string]string{
		"empty":         "",
		"bcrypt":        "$2a$10$abcdefghijklmnopqrstuu",
		"argon2i":       strings.Replace(good, "argon2id", "argon2i", 1),
		"version":       strings.Replace(good, "v=19", "v=16", 1),
		"no params":     strings.Join([]string{"", parts[1], parts[2], "", parts[4], parts[5]}, "$"),
		"zero time":     strings.Replace(good, "t=1", "t=0", 1),
		"huge memory":   strings.Replace(good, "m=64", "m=99999999", 1),
		"unknown param": strings.Replace(good, "p=1", "x=1", 1),
		"bad salt":      strings.Join([]string{"", parts[1], parts[2], parts[3], "!!!", parts[5]}, "$"),
		"short key":     strings.Join([]string{"", parts[1], parts[2], parts[3], parts[4], "AAAA"}, "$"),
		"extra field":   good + "$x",
	} {
		if _, err := VerifyPassword("password1", enc); !errors.Is(err, ErrBadHash) {
			t.Errorf("%s: err = %v, want ErrBadHash", name, err)
		}
	}
}

func TestUsersAndAccounts(t *testing.T) {
	db := openDB(t)
	s := openStore(t, db)
	ctx := context.Background()
	if s.HasUsers() {
		t.Fatal("new store has users")
	}
	if _, err := s.CreateAccount("Acme"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateAccount("acme"); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate account: %v", err)
	}
	for _, tc := range []struct {
		nu    NewUser
		field string
	}{
		{NewUser{Username: "", Password: "longenough", Role: RoleOperator}, "username"},
		{NewUser{Username: "bad name", Password: "longenough", Role: RoleOperator}, "username"},
		{NewUser{Username: "ok", Password: "short", Role: RoleOperator}, "password"},
		{NewUser{Username: "ok", Password: strings.Repeat("x", 1025), Role: RoleOperator}, "password"},
		{NewUser{Username: "ok", Password: "longenough", Role: "root"}, "role"},
		{NewUser{Username: "ok", Password: "longenough", Role: RoleAdmin}, "account"},
		{NewUser{Username: "ok", Password: "longenough", Role: RoleAdmin, Account: "nope"}, "account"},
	} {
		_, err := s.CreateUser(ctx, tc.nu)
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("CreateUser(%+v) = %v, want field %q", tc.nu, err, tc.field)
		}
	}
	u, err := s.CreateUser(ctx, NewUser{Username: "Alice@Acme.example", Password: "alice-secret", Role: "admin", Account: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	if u.Username != "alice@acme.example" || u.Role != RoleAdmin || u.Account != "acme" {
		t.Fatalf("stored user %+v", u)
	}
	if _, err := s.CreateUser(ctx, NewUser{Username: "alice@acme.example", Password: "alice-secret", Role: "admin", Account: "acme"}); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate user: %v", err)
	}
	if _, err := s.Authenticate(ctx, "ALICE@acme.example", "alice-secret"); err != nil {
		t.Fatalf("authenticate: %v", err)
	}
	for _, pw := range []string{"alice-secreT", "", strings.Repeat("a", 2000)} {
		if _, err := s.Authenticate(ctx, "alice@acme.example", pw); !errors.Is(err, ErrInvalidCredentials) {
			t.Errorf("password %q: %v", pw, err)
		}
	}
	if _, err := s.Authenticate(ctx, "nobody", "alice-secret"); !errors.Is(err, ErrInvalidCredentials) {
		t.Errorf("unknown user: %v", err)
	}

	// Everything survives a reopen.
	s2 := openStore(t, db)
	if _, ok := s2.Account("acme"); !ok {
		t.Fatal("account lost on reopen")
	}
	if _, err := s2.Authenticate(ctx, "alice@acme.example", "alice-secret"); err != nil {
		t.Fatalf("user lost on reopen: %v", err)
	}
}

func TestEnsureAdmin(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, openDB(t))
	pw, err := s.EnsureAdmin(ctx, "")
	if err != nil || len(pw) < 16 {
		t.Fatalf("generated password %q, %v", pw, err)
	}
	u, err := s.Authenticate(ctx, AdminUser, pw)
	if err != nil || u.Role != RoleOperator {
		t.Fatalf("admin login: %+v, %v", u, err)
	}
	if again, err := s.EnsureAdmin(ctx, ""); err != nil || again != "" {
		t.Fatalf("second EnsureAdmin = %q, %v; want nothing", again, err)
	}

	s2 := openStore(t, openDB(t))
	if pw, err := s2.EnsureAdmin(ctx, "from-the-environment"); err != nil || pw != "" {
		t.Fatalf("EnsureAdmin with env password returned %q, %v", pw, err)
	}
	if _, err := s2.Authenticate(ctx, AdminUser, "from-the-environment"); err != nil {
		t.Fatal(err)
	}
}

func TestSessionsAndTokens(t *testing.T) {
	ctx := context.Background()
	db := openDB(t)
	s := openStore(t, db)
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	s.now = func() time.Time { return now }
	if _, err := s.EnsureAdmin(ctx, "operator-pass"); err != nil {
		t.Fatal(err)
	}
	secret, sess, err := s.NewSession(AdminUser)
	if err != nil {
		t.Fatal(err)
	}
	if len(secret) < 40 || sess.CSRF == "" || sess.CSRF == secret {
		t.Fatalf("weak session secret %q / csrf %q", secret, sess.CSRF)
	}
	// Only the digest is stored.
	_ = db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket([]byte(BucketSessions)).ForEach(func(k, v []byte) error {
			if strings.Contains(string(k)+string(v), secret) {
				t.Error("session secret stored in clear")
			}
			return nil
		})
	})
	if _, u, err := s.Session(secret); err != nil || u.Username != AdminUser {
		t.Fatalf("session lookup: %v", err)
	}
	if _, _, err := s.Session(secret + "x"); !errors.Is(err, ErrNoSession) {
		t.Fatalf("wrong secret: %v", err)
	}
	now = now.Add(13 * time.Hour)
	if _, _, err := s.Session(secret); !errors.Is(err, ErrNoSession) {
		t.Fatalf("expired session still valid: %v", err)
	}
	if n, err := s.PurgeExpired(); err != nil || n != 1 {
		t.Fatalf("purge = %d, %v", n, err)
	}

	secret2, _, _ := s.NewSession(AdminUser)
	if err := s.DeleteSession(secret2); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Session(secret2); !errors.Is(err, ErrNoSession) {
		t.Fatal("deleted session still valid")
	}

	tok, info, err := s.NewToken(AdminUser, "ci")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tok, TokenPrefix) || info.Name != "ci" || info.Username != AdminUser {
		t.Fatalf("token %q %+v", tok, info)
	}
	if _, u, err := s.TokenUser(tok); err != nil || u.Username != AdminUser {
		t.Fatalf("token lookup: %v", err)
	}
	for _, bad := range []string{"", tok[:len(tok)-1], "Bearer " + tok, strings.TrimPrefix(tok, TokenPrefix)} {
		if _, _, err := s.TokenUser(bad); !errors.Is(err, ErrNoSession) {
			t.Errorf("token %q accepted: %v", bad, err)
		}
	}
	if _, _, err := s.NewToken(AdminUser, "bad\nname"); err == nil {
		t.Error("control character in token name accepted")
	}
}

func TestThrottle(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	th := NewThrottle(ThrottleConfig{Free: 3, Base: time.Second, Max: 8 * time.Second, Window: time.Minute})
	th.now = func() time.Time { return now }
	for i := 0; i < 2; i++ {
		th.Fail("u")
		if w := th.Wait("u"); w != 0 {
			t.Fatalf("blocked after %d failures", i+1)
		}
	}
	want := []time.Duration{1, 2, 4, 8, 8}
	for i, w := range want {
		th.Fail("u")
		if got := th.Wait("u"); got != w*time.Second {
			t.Fatalf("failure %d: wait %v, want %v", 3+i, got, w*time.Second)
		}
	}
	now = now.Add(9 * time.Second)
	if w := th.Wait("u"); w != 0 {
		t.Fatalf("still blocked after the delay: %v", w)
	}
	th.Fail("u")
	if w := th.Wait("u"); w != 8*time.Second {
		t.Fatalf("failure after delay: %v", w)
	}
	th.Succeed("u")
	if w := th.Wait("u"); w != 0 {
		t.Fatal("success did not reset")
	}
	for i := 0; i < 5; i++ {
		th.Fail("v")
	}
	now = now.Add(2 * time.Minute)
	if w := th.Wait("v"); w != 0 {
		t.Fatal("window did not forget old failures")
	}
}

func TestThrottleBounded(t *testing.T) {
	th := NewThrottle(ThrottleConfig{MaxKeys: 100})
	for i := 0; i < 1000; i++ {
		th.Fail(strings.Repeat("k", i%7) + string(rune('a'+i%26)) + time.Duration(i).String())
	}
	if n := th.Len(); n > 100 {
		t.Fatalf("%d keys tracked, limit 100", n)
	}
}

func TestManageUsersAndTokens(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, openDB(t))
	if _, err := s.EnsureAdmin(ctx, "operator-pass"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateAccount("acme"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateUser(ctx, NewUser{Username: "alice", Password: "alice-secret", Role: RoleAdmin, Account: "acme"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.DeleteUser(AdminUser); !errors.Is(err, ErrLastOperator) {
		t.Fatalf("deleting the last operator: %v", err)
	}
	if _, _, err := s.DeleteUser("nobody"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleting an unknown user: %v", err)
	}

	// SetPassword keeps one session, ends the others, leaves tokens.
	keep, _, _ := s.NewSession("alice")
	other, _, _ := s.NewSession("alice")
	opSess, _, _ := s.NewSession(AdminUser)
	tok, info, err := s.NewToken("alice", "ci")
	if err != nil {
		t.Fatal(err)
	}
	var fe *FieldError
	if _, err := s.SetPassword(ctx, "alice", "short", ""); !errors.As(err, &fe) || fe.Field != "password" {
		t.Fatalf("weak password: %v", err)
	}
	if n, err := s.SetPassword(ctx, "alice", "alice-new-secret", keep); err != nil || n != 1 {
		t.Fatalf("SetPassword = %d, %v; want 1 session ended", n, err)
	}
	for secret, want := range map[string]bool{keep: true, other: false, opSess: true} {
		if _, _, err := s.Session(secret); (err == nil) != want {
			t.Errorf("session alive = %v, want %v", err == nil, want)
		}
	}
	if _, err := s.Authenticate(ctx, "alice", "alice-secret"); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatal("old password still accepted")
	}
	if _, err := s.Authenticate(ctx, "alice", "alice-new-secret"); err != nil {
		t.Fatal(err)
	}

	// Token lookup and revocation by ID, only for its owner.
	if got, err := s.TokenByID(strings.ToUpper(info.ID)); err != nil || got.Username != "alice" {
		t.Fatalf("TokenByID = %+v, %v", got, err)
	}
	for _, bad := range []string{"", "xyz", info.ID + "0", "zzzzzzzzzzzz", "000000000000"} {
		if _, err := s.TokenByID(bad); !errors.Is(err, ErrNotFound) {
			t.Errorf("TokenByID(%q): %v", bad, err)
		}
	}
	if _, err := s.DeleteToken(info.ID, AdminUser); !errors.Is(err, ErrNotFound) {
		t.Fatalf("DeleteToken by a non-owner name: %v", err)
	}
	if _, _, err := s.TokenUser(tok); err != nil {
		t.Fatal("token revoked by a refused DeleteToken")
	}
	if ts, err := s.Tokens("alice"); err != nil || len(ts) != 1 || ts[0].LastUsedAt.IsZero() {
		t.Fatalf("Tokens = %+v, %v; want one, used", ts, err)
	}
	if _, err := s.DeleteToken(info.ID, "alice"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.TokenUser(tok); !errors.Is(err, ErrNoSession) {
		t.Fatalf("revoked token: %v", err)
	}

	// DeleteUser takes sessions and tokens along; nothing new is written
	// for the deleted user.
	tok2, _, _ := s.NewToken("alice", "")
	if _, rm, err := s.DeleteUser("alice"); err != nil || rm.Sessions != 1 || rm.Tokens != 1 {
		t.Fatalf("DeleteUser = %+v, %v", rm, err)
	}
	if _, err := s.CreateUser(ctx, NewUser{Username: "alice", Password: "alice-again", Role: RoleAdmin, Account: "acme"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Session(keep); !errors.Is(err, ErrNoSession) {
		t.Fatal("session of the deleted user valid for its namesake")
	}
	if _, _, err := s.TokenUser(tok2); !errors.Is(err, ErrNoSession) {
		t.Fatal("token of the deleted user valid for its namesake")
	}
	if _, _, err := s.DeleteUser("alice"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.NewSession("alice"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("session for a deleted user: %v", err)
	}
	if _, _, err := s.NewToken("alice", ""); !errors.Is(err, ErrNotFound) {
		t.Fatalf("token for a deleted user: %v", err)
	}
}
