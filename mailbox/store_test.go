package mailbox

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func msgBody(n int, tag string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: sender@example.org\r\nTo: x@example.com\r\nSubject: %s\r\n\r\n", tag)
	for b.Len() < n {
		fmt.Fprintf(&b, "%s line %d\r\n", tag, b.Len())
	}
	return b.Bytes()
}

// readAll returns the bodies of a folder in UID order.
func readAll(t testing.TB, s *Store, addr, folder string) [][]byte {
	t.Helper()
	_, msgs, err := s.Messages(addr, folder)
	if err != nil {
		t.Fatalf("Messages(%s, %s): %v", addr, folder, err)
	}
	var out [][]byte
	for _, m := range msgs {
		f, _, err := s.OpenMessage(addr, folder, m.UID)
		if err != nil {
			t.Fatalf("OpenMessage(%s, %s, %d): %v", addr, folder, m.UID, err)
		}
		b, err := io.ReadAll(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(b)) != m.Size {
			t.Fatalf("uid %d: size %d, index says %d", m.UID, len(b), m.Size)
		}
		out = append(out, b)
	}
	return out
}

// blobFiles counts the message files on disk.
func blobFiles(t testing.TB, dir string) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(filepath.Join(dir, "blobs"), func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestDeliver(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, testCfg(dir))
	addUser(t, s, "a@example.com")
	addUser(t, s, "b@example.com")
	addUser(t, s, "c@other.example")
	now := time.Now()

	// No user among the recipients: nothing filed, nothing written.
	n, err := s.Deliver([]string{"x@example.com", "not an address"}, bytes.NewReader(msgBody(100, "none")), now)
	if err != nil || n != 0 {
		t.Fatalf("Deliver(no users) = %d, %v", n, err)
	}
	if got := blobFiles(t, dir); got != 0 {
		t.Fatalf("%d files after a delivery to nobody", got)
	}
	// One user.
	one := msgBody(4096, "one")
	if n, err := s.Deliver([]string{"A@Example.COM", "x@example.com"}, bytes.NewReader(one), now); err != nil || n != 1 {
		t.Fatalf("Deliver(one) = %d, %v", n, err)
	}
	// Several users (and a duplicate): one shared file.
	many := msgBody(10000, "many")
	if n, err := s.Deliver([]string{"a@example.com", "b@example.com", "c@other.example", "b@EXAMPLE.com"}, bytes.NewReader(many), now); err != nil || n != 3 {
		t.Fatalf("Deliver(many) = %d, %v", n, err)
	}
	if got := blobFiles(t, dir); got != 2 {
		t.Fatalf("%d files, want 2 (bodies are shared)", got)
	}
	check := func(s *Store) {
		t.Helper()
		if got := readAll(t, s, "a@example.com", "INBOX"); len(got) != 2 || !bytes.Equal(got[0], one) || !bytes.Equal(got[1], many) {
			t.Fatalf("a's INBOX: %d messages", len(got))
		}
		for _, u := range []string{"b@example.com", "c@other.example"} {
			if got := readAll(t, s, u, "INBOX"); len(got) != 1 || !bytes.Equal(got[0], many) {
				t.Fatalf("%s's INBOX: %d messages", u, len(got))
			}
		}
		u, _ := s.User("a@example.com")
		if u.Messages != 2 || u.Bytes != int64(len(one)+len(many)) {
			t.Fatalf("User(a) = %+v", u)
		}
		users, msgs, bytes := s.Stats()
		if users != 3 || msgs != 4 || bytes != int64(len(one)+3*len(many)) {
			t.Fatalf("Stats = %d, %d, %d", users, msgs, bytes)
		}
	}
	check(s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Durable across a reopen.
	s = openT(t, testCfg(dir))
	defer s.Close()
	check(s)
	f, _, _ := s.Messages("a@example.com", "INBOX")
	if f.Messages != 2 || f.Unseen != 2 || f.UIDNext != 3 {
		t.Fatalf("INBOX after reopen: %+v", f)
	}
}

func TestDeliverConcurrent(t *testing.T) {
	s := newStore(t)
	for i := 0; i < 4; i++ {
		addUser(t, s, fmt.Sprintf("u%d@example.com", i))
	}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				rc := []string{fmt.Sprintf("u%d@example.com", g%4), fmt.Sprintf("u%d@example.com", (g+1)%4)}
				if n, err := s.Deliver(rc, bytes.NewReader(msgBody(500, fmt.Sprintf("g%d-%d", g, i))), time.Now()); err != nil || n != 2 {
					t.Errorf("Deliver = %d, %v", n, err)
				}
			}
		}(g)
	}
	wg.Wait()
	total := 0
	for i := 0; i < 4; i++ {
		f, msgs, err := s.Messages(fmt.Sprintf("u%d@example.com", i), "INBOX")
		if err != nil {
			t.Fatal(err)
		}
		for j, m := range msgs {
			if m.UID != uint32(j+1) {
				t.Fatalf("u%d: UIDs not dense: %v", i, m.UID)
			}
		}
		if f.UIDNext != uint32(len(msgs)+1) {
			t.Fatalf("u%d: UIDNEXT %d for %d messages", i, f.UIDNext, len(msgs))
		}
		total += len(msgs)
	}
	if total != 160 {
		t.Fatalf("%d copies filed, want 160", total)
	}
}

type outages map[string]struct {
	active bool
	ended  time.Time
}

func (o outages) DomainOutage(d string) (bool, time.Time) { return o[d].active, o[d].ended }

func TestPurge(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	cfg := testCfg(dir)
	cfg.Keep = 2 * day
	cfg.Outages = outages{
		"down.example":   {active: true},
		"ended.example":  {ended: now.Add(-3 * day)},
		"recent.example": {ended: now.Add(-1 * day)},
	}
	s := openT(t, cfg)
	defer s.Close()
	for _, a := range []string{"a@down.example", "a@ended.example", "a@recent.example", "a@never.example"} {
		addUser(t, s, a)
	}
	old, fresh := now.Add(-10*day), now.Add(-1*day)
	deliver := func(when time.Time, rcpts ...string) {
		t.Helper()
		if _, err := s.Deliver(rcpts, bytes.NewReader(msgBody(2000, when.String())), when); err != nil {
			t.Fatal(err)
		}
	}
	deliver(old, "a@down.example", "a@ended.example", "a@recent.example", "a@never.example")
	deliver(fresh, "a@ended.example", "a@never.example")
	deliver(old, "a@ended.example")
	// A message the user saved in Sent long ago goes too.
	s.now = func() time.Time { return old }
	if _, err := s.Append("a@ended.example", "Sent", nil, time.Time{}, bytes.NewReader(msgBody(300, "sent"))); err != nil {
		t.Fatal(err)
	}
	if n := blobFiles(t, dir); n != 4 {
		t.Fatalf("%d files before purge, want 4", n)
	}
	ps, err := s.Purge(now)
	if err != nil {
		t.Fatal(err)
	}
	if ps.Messages != 4 {
		t.Errorf("purged %d messages, want 4", ps.Messages)
	}
	for _, tc := range []struct {
		addr        string
		inbox, sent int
	}{
		{"a@down.example", 1, 0},   // outage still open: kept
		{"a@ended.example", 1, 0},  // outage ended 3 days ago: old ones go, fresh stays
		{"a@recent.example", 1, 0}, // outage ended 1 day ago: kept
		{"a@never.example", 1, 0},  // no outage: Keep after arrival
	} {
		for folder, want := range map[string]int{"INBOX": tc.inbox, "Sent": tc.sent} {
			_, msgs, err := s.Messages(tc.addr, folder)
			if err != nil || len(msgs) != want {
				t.Errorf("%s %s: %d messages (%v), want %d", tc.addr, folder, len(msgs), err, want)
			}
		}
	}
	// The old message shared with kept copies stays; the other two files go.
	if n := blobFiles(t, dir); n != 2 {
		t.Errorf("%d files after purge, want 2", n)
	}
	if u, _ := s.User("a@ended.example"); u.Messages != 1 {
		t.Errorf("a@ended.example counts %d messages", u.Messages)
	}
	// Nothing more to purge at the same instant.
	if ps, _ := s.Purge(now); ps.Messages != 0 {
		t.Errorf("second purge removed %d", ps.Messages)
	}
}

func TestDeleteUserReclaims(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, testCfg(dir))
	defer s.Close()
	addUser(t, s, "a@example.com")
	addUser(t, s, "b@example.com")
	for i := 0; i < 5; i++ {
		if _, err := s.Deliver([]string{"a@example.com"}, bytes.NewReader(msgBody(1000, "solo")), time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	shared := msgBody(1000, "shared")
	if _, err := s.Deliver([]string{"a@example.com", "b@example.com"}, bytes.NewReader(shared), time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Copy("a@example.com", "INBOX", "Trash", []uint32{1, 2}); err != nil {
		t.Fatal(err)
	}
	if n := blobFiles(t, dir); n != 6 {
		t.Fatalf("%d files, want 6", n)
	}
	if err := s.DeleteUser("a@example.com"); err != nil {
		t.Fatal(err)
	}
	if n := blobFiles(t, dir); n != 1 {
		t.Fatalf("%d files after DeleteUser, want 1 (the body b still has)", n)
	}
	if got := readAll(t, s, "b@example.com", "INBOX"); len(got) != 1 || !bytes.Equal(got[0], shared) {
		t.Fatal("b lost its copy")
	}
	if err := s.DeleteUser("b@example.com"); err != nil {
		t.Fatal(err)
	}
	if n := blobFiles(t, dir); n != 0 {
		t.Fatalf("%d files after deleting every user", n)
	}
	if u, m, b := s.Stats(); u != 0 || m != 0 || b != 0 {
		t.Fatalf("Stats = %d, %d, %d", u, m, b)
	}
}

func TestOpenRepairs(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, testCfg(dir))
	addUser(t, s, "a@example.com")
	for i := 0; i < 3; i++ {
		b := msgBody(500, fmt.Sprint("m", i))
		if _, err := s.Deliver([]string{"a@example.com"}, bytes.NewReader(b), time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	// A crash between a body write and its index commit leaves an
	// unreferenced file; stray files may lie around too.
	orphan := filepath.Join(dir, "blobs", "ab", "ab0000000000000000000001")
	stray := filepath.Join(dir, "blobs", "cd", "something.tmp")
	for _, p := range []string{orphan, stray} {
		if err := os.WriteFile(p, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// And an index entry whose body vanished is dropped.
	var victim string
	filepath.WalkDir(filepath.Join(dir, "blobs"), func(p string, d os.DirEntry, err error) error {
		if d.Type().IsRegular() && p != orphan && p != stray && victim == "" {
			victim = p
		}
		return nil
	})
	data, _ := os.ReadFile(victim)
	if err := os.Remove(victim); err != nil {
		t.Fatal(err)
	}
	s = openT(t, testCfg(dir))
	defer s.Close()
	for _, p := range []string{orphan, stray} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s survived Open: %v", filepath.Base(p), err)
		}
	}
	got := readAll(t, s, "a@example.com", "INBOX")
	if len(got) != 2 {
		t.Fatalf("%d messages after losing one body, want 2", len(got))
	}
	for _, b := range got {
		if bytes.Equal(b, data) {
			t.Fatal("the message whose body vanished is still listed")
		}
	}
	if u, _ := s.User("a@example.com"); u.Messages != 2 {
		t.Fatalf("count not repaired: %+v", u)
	}
	if !strings.HasPrefix(filepath.Base(orphan), "ab") {
		t.Fatal("test bug")
	}
}
