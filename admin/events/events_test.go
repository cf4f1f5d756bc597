package events

import (
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.etcd.io/bbolt"
	"go.uber.org/zap/zaptest"
)

func openDB(t *testing.T) *bbolt.DB {
	t.Helper()
	db, err := bbolt.Open(filepath.Join(t.TempDir(), "events.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func open(t *testing.T, db *bbolt.DB, cfg Config) *Store {
	t.Helper()
	s, err := Open(zaptest.NewLogger(t), db, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestRecordListFilterPage(t *testing.T) {
	db := openDB(t)
	s := open(t, db, Config{})
	base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for i := 0; i < 30; i++ {
		d := "a.example"
		acct := "a"
		if i%3 == 0 {
			d, acct = "b.example", "b"
		}
		s.Record(Event{Time: base.Add(time.Duration(i) * time.Second), Type: DomainUpdated, Actor: "op", Domain: d, Account: acct, Detail: fmt.Sprint(i)})
	}
	all, next, err := s.List(Query{})
	if err != nil || len(all) != 30 || next != "" {
		t.Fatalf("List = %d events, next %q, %v", len(all), next, err)
	}
	if all[0].Detail != "29" || all[29].Detail != "0" {
		t.Fatalf("not newest first: %s..%s", all[0].Detail, all[29].Detail)
	}
	for i := 1; i < len(all); i++ {
		if all[i].ID >= all[i-1].ID {
			t.Fatalf("ids not decreasing: %s then %s", all[i-1].ID, all[i].ID)
		}
	}
	bs, _, _ := s.List(Query{Domain: "b.example"})
	if len(bs) != 10 {
		t.Fatalf("domain filter: %d events, want 10", len(bs))
	}
	as, _, _ := s.List(Query{Match: func(e *Event) bool { return e.Account == "a" }})
	if len(as) != 20 {
		t.Fatalf("account filter: %d events, want 20", len(as))
	}
	// Paging: 7 at a time covers everything once.
	seen := map[string]bool{}
	cursor := ""
	for pages := 0; ; pages++ {
		page, nx, err := s.List(Query{Limit: 7, Before: cursor})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range page {
			if seen[e.ID] {
				t.Fatalf("event %s on two pages", e.ID)
			}
			seen[e.ID] = true
		}
		if nx == "" {
			break
		}
		cursor = nx
		if pages > 10 {
			t.Fatal("paging does not end")
		}
	}
	if len(seen) != 30 {
		t.Fatalf("paging saw %d events", len(seen))
	}
	if _, _, err := s.List(Query{Before: "zz"}); err != ErrBadCursor {
		t.Fatalf("bad cursor: %v", err)
	}

	// Reopen: still there, and new IDs keep increasing.
	s.Close()
	s2 := open(t, db, Config{})
	s2.Record(Event{Time: base, Type: Login, Actor: "x"})
	got, _, _ := s2.List(Query{Limit: 1})
	if len(got) != 1 || got[0].Type != Login || got[0].ID <= all[0].ID {
		t.Fatalf("after reopen: %+v (previous newest %s)", got, all[0].ID)
	}
}

func TestCap(t *testing.T) {
	s := open(t, openDB(t), Config{Max: 200})
	for i := 0; i < 1000; i++ {
		s.Record(Event{Type: ProbeFailed, Actor: "relayq", Detail: fmt.Sprint(i)})
		if i%100 == 0 {
			s.Sync()
		}
	}
	all, _, err := s.List(Query{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) > 200 || len(all) < 150 {
		t.Fatalf("%d events kept, cap 200", len(all))
	}
	if all[0].Detail != "999" {
		t.Fatalf("newest event lost: %s", all[0].Detail)
	}
}

func TestConcurrentRecordAndDropWhenFull(t *testing.T) {
	s := open(t, openDB(t), Config{QueueLen: 50})
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				s.Record(Event{Type: Login, Actor: "u"})
			}
		}()
	}
	wg.Wait()
	s.Sync()
	all, _, _ := s.List(Query{Limit: 1000, Scan: 0})
	total := len(all)
	if len(all) == 1000 { // a page is at most 1000; count the rest
		more, _, _ := s.List(Query{Limit: 1000, Before: all[999].ID})
		total += len(more)
	}
	if uint64(total)+s.Dropped() != 1600 {
		t.Fatalf("stored %d + dropped %d != 1600 recorded", total, s.Dropped())
	}
	before := s.Dropped()
	s.Close()
	s.Record(Event{Type: Login})
	if s.Dropped() != before+1 {
		t.Fatal("Record after Close was not counted as dropped")
	}
}
