package mailbox

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
)

func TestAddUserValidation(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	long := strings.Repeat("x", 65)
	for _, tc := range []struct {
		addr, pw string
		want     string // address, or the field named by the error
	}{
		{"Alice@Example.COM ", "secret-password", "alice@example.com"},
		{"bob@bücher.example", "secret-password", "bob@xn--bcher-kva.example"},
		{"o'neil+tag@example.com", "secret-password", "o'neil+tag@example.com"},
		{"", "secret-password", "address"},
		{"alice", "secret-password", "address"},
		{"@example.com", "secret-password", "address"},
		{"alice@", "secret-password", "address"},
		{"a b@example.com", "secret-password", "address"},
		{".a@example.com", "secret-password", "address"},
		{"a..b@example.com", "secret-password", "address"},
		{long + "@example.com", "secret-password", "address"},
		{"alice@exa mple.com", "secret-password", "address"},
		{"alice@localhost", "secret-password", "address"},
		{"carol@example.com", "short", "password"},
		{"carol@example.com", strings.Repeat("p", 257), "password"},
		{"carol@example.com", "pass\nword-long", "password"},
		{"carol@example.com", strings.Repeat("p", 256), "carol@example.com"},
		{"dave@example.com", "12345678", "dave@example.com"},
	} {
		u, err := s.AddUser(ctx, tc.addr, tc.pw)
		if strings.Contains(tc.want, "@") {
			if err != nil || u.Address != tc.want {
				t.Errorf("AddUser(%q) = %+v, %v; want %s", tc.addr, u, err, tc.want)
			}
			if u.Domain != tc.want[strings.IndexByte(tc.want, '@')+1:] {
				t.Errorf("AddUser(%q).Domain = %q", tc.addr, u.Domain)
			}
			continue
		}
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("AddUser(%q, %d-byte password) error = %v; want ErrInvalid naming %q", tc.addr, len(tc.pw), err, tc.want)
		}
	}
	if _, err := s.AddUser(ctx, "ALICE@example.com", "another-password"); !errors.Is(err, ErrExists) {
		t.Errorf("duplicate AddUser: %v; want ErrExists", err)
	}
}

func TestUserCRUD(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, testCfg(dir))
	ctx := context.Background()
	for _, a := range []string{"b@one.example", "a@one.example", "c@two.example"} {
		addUser(t, s, a)
	}
	if !s.HasUser("A@One.Example") || s.HasUser("z@one.example") {
		t.Fatal("HasUser wrong")
	}
	us, err := s.Users("ONE.example")
	if err != nil || len(us) != 2 || us[0].Address != "a@one.example" || us[1].Address != "b@one.example" {
		t.Fatalf("Users(one) = %+v, %v", us, err)
	}
	if all, _ := s.Users(""); len(all) != 3 {
		t.Fatalf("Users(\"\") = %d users", len(all))
	}
	u, err := s.User("c@two.example")
	if err != nil || u.Created.IsZero() || u.Domain != "two.example" {
		t.Fatalf("User = %+v, %v", u, err)
	}
	if _, err := s.User("nobody@two.example"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("User(unknown) = %v", err)
	}
	if err := s.SetPassword(ctx, "nobody@two.example", "whatever-pw"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("SetPassword(unknown) = %v", err)
	}
	if err := s.SetPassword(ctx, "c@two.example", "short"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("SetPassword(short) = %v", err)
	}
	if err := s.DeleteUser("nobody@two.example"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("DeleteUser(unknown) = %v", err)
	}
	if err := s.DeleteUser("C@two.example"); err != nil {
		t.Fatal(err)
	}
	if s.HasUser("c@two.example") {
		t.Fatal("deleted user still there")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.User("a@one.example"); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}

	// Users survive a reopen; DeleteDomain removes a domain's users.
	s = openT(t, testCfg(dir))
	defer s.Close()
	if !s.HasUser("a@one.example") || s.HasUser("c@two.example") {
		t.Fatal("user set wrong after reopen")
	}
	n, err := s.DeleteDomain("one.example")
	if err != nil || n != 2 {
		t.Fatalf("DeleteDomain = %d, %v", n, err)
	}
	if all, _ := s.Users(""); len(all) != 0 {
		t.Fatalf("users left: %+v", all)
	}
	// A deleted address can be added again.
	addUser(t, s, "a@one.example")
}

func TestAuthenticate(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	if _, err := s.AddUser(ctx, "alice@example.com", "correct horse"); err != nil {
		t.Fatal(err)
	}
	u, err := s.Authenticate(ctx, "Alice@Example.com", "correct horse")
	if err != nil || u.Address != "alice@example.com" {
		t.Fatalf("right password: %+v, %v", u, err)
	}
	// Cached now; still correct.
	if _, err := s.Authenticate(ctx, "alice@example.com", "correct horse"); err != nil {
		t.Fatalf("cached login: %v", err)
	}
	for _, tc := range []struct{ addr, pw string }{
		{"alice@example.com", "wrong horse"},
		{"alice@example.com", ""},
		{"bob@example.com", "correct horse"},
		{"not an address", "correct horse"},
	} {
		if _, err := s.Authenticate(ctx, tc.addr, tc.pw); !errors.Is(err, ErrAuth) {
			t.Errorf("Authenticate(%q, %q) = %v; want ErrAuth", tc.addr, tc.pw, err)
		}
	}
	// A new password invalidates the cached old one.
	if err := s.SetPassword(ctx, "alice@example.com", "battery staple"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(ctx, "alice@example.com", "correct horse"); !errors.Is(err, ErrAuth) {
		t.Fatalf("old password after SetPassword: %v", err)
	}
	if _, err := s.Authenticate(ctx, "alice@example.com", "battery staple"); err != nil {
		t.Fatalf("new password: %v", err)
	}
	// Deleting the user invalidates its cached login.
	if err := s.DeleteUser("alice@example.com"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(ctx, "alice@example.com", "battery staple"); !errors.Is(err, ErrAuth) {
		t.Fatalf("deleted user: %v", err)
	}
}

func TestAuthenticateConcurrent(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	addUser(t, s, "a@example.com")
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := 0; i < 32; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			pw := "password-a@example.com"
			if i%2 == 1 {
				pw = "bad-password"
			}
			_, err := s.Authenticate(ctx, "a@example.com", pw)
			if (i%2 == 0) != (err == nil) {
				errs <- err
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent Authenticate: %v", err)
	}
}
