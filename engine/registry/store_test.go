package registry

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
)

// forEachStore runs test against every Store implementation, NATS-style,
// so that they keep one behaviour.
func forEachStore(t *testing.T, test func(t *testing.T, s Store)) {
	t.Helper()
	impls := []struct {
		name string
		open func(t *testing.T) Store
	}{
		{"mem", func(t *testing.T) Store { return NewMemory(zaptest.NewLogger(t)) }},
		{"bolt", func(t *testing.T) Store {
			s, err := OpenFile(zaptest.NewLogger(t), filepath.Join(t.TempDir(), "registry.db"))
			if err != nil {
				t.Fatal(err)
			}
			return s
		}},
	}
	for _, impl := range impls {
		t.Run(impl.name, func(t *testing.T) {
			s := impl.open(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			test(t, s)
		})
	}
}

func mustPut(t *testing.T, s Store, d Domain) Domain {
	t.Helper()
	got, err := s.Put(d)
	if err != nil {
		t.Fatalf("Put(%s): %v", d.Name, err)
	}
	return got
}

func TestStoreCRUD(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		before := time.Now().UTC()
		c, err := s.Create(Domain{Name: "Customer.com.", RelayHost: "mail.customer.com", AlertEmails: []string{"noc@provider.net"}})
		if err != nil {
			t.Fatalf("Create: %v", err)
		}
		if c.Name != "customer.com" || c.RelayHost != "mail.customer.com:25" || c.Mode != ModeRelay || c.RetentionDays != 30 {
			t.Fatalf("Create returned an unnormalized domain: %+v", c)
		}
		if c.CreatedAt.Before(before) || !c.UpdatedAt.Equal(c.CreatedAt) || c.CreatedAt.Location() != time.UTC {
			t.Fatalf("timestamps: created %v updated %v", c.CreatedAt, c.UpdatedAt)
		}

		if _, err := s.Create(Domain{Name: "CUSTOMER.com", RelayHost: "other"}); !errors.Is(err, ErrExists) {
			t.Fatalf("second Create: err = %v, want ErrExists", err)
		} else if err.Error() != `registry: domain exists: "customer.com"` {
			t.Fatalf("second Create: err = %q", err)
		}

		time.Sleep(2 * time.Millisecond)
		u := mustPut(t, s, Domain{Name: "customer.com", RelayHost: "[2001:db8::1]:2525", Mode: "both",
			CreatedAt: time.Unix(1, 0)})
		if !u.CreatedAt.Equal(c.CreatedAt) || !u.UpdatedAt.After(c.UpdatedAt) {
			t.Fatalf("Put must keep CreatedAt and advance UpdatedAt: %+v (was %+v)", u, c)
		}

		g, err := s.Get("CUSTOMER.COM.")
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		if g.RelayHost != "[2001:db8::1]:2525" || g.Mode != ModeBoth || len(g.AlertEmails) != 0 {
			t.Fatalf("Get after Put = %+v", g)
		}
		g.AllowedSources = append(g.AllowedSources, "10.0.0.0/8")
		if d, _ := s.Lookup("customer.com"); len(d.AllowedSources) != 0 {
			t.Fatal("modifying a Get result changed the store")
		}

		if _, err := s.Put(Domain{Name: "bad_name.com", RelayHost: "x"}); err == nil {
			t.Fatal("Put accepted an invalid domain")
		} else if ve := (*ValidationError)(nil); !errors.As(err, &ve) || ve.Field != "name" {
			t.Fatalf("Put(invalid) error = %v, want a name ValidationError", err)
		}

		mustPut(t, s, Domain{Name: "b.example", RelayHost: "mx.b.example"})
		mustPut(t, s, Domain{Name: "a.example", RelayHost: "mx.a.example"})
		list, err := s.List()
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		var names []string
		for _, d := range list {
			names = append(names, d.Name)
		}
		if fmt.Sprint(names) != "[a.example b.example customer.com]" {
			t.Fatalf("List names = %v", names)
		}

		if err := s.Delete("Customer.Com"); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		if _, err := s.Get("customer.com"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get after Delete: err = %v, want ErrNotFound", err)
		} else if err.Error() != `registry: domain not found: "customer.com"` {
			t.Fatalf("Get after Delete: err = %q", err)
		}
		if err := s.Delete("customer.com"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("second Delete: err = %v, want ErrNotFound", err)
		}
		if err := s.Delete("not a domain"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Delete(invalid name): err = %v, want ErrNotFound", err)
		}
		if _, err := s.Get("\xff"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get(invalid name): err = %v, want ErrNotFound", err)
		}
	})
}

func TestStoreLookup(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		if _, ok := s.Lookup("customer.com"); ok {
			t.Fatal("Lookup on an empty registry found something")
		}
		mustPut(t, s, Domain{Name: "customer.com", RelayHost: "mx.customer.com"})
		mustPut(t, s, Domain{Name: "bücher.example", RelayHost: "mx.customer.com"})
		for _, q := range []string{
			"customer.com", "CUSTOMER.COM", "Customer.Com.",
			"bücher.example", "BÜCHER.example.", "xn--bcher-kva.example", "XN--BCHER-KVA.EXAMPLE",
		} {
			d, ok := s.Lookup(q)
			if !ok {
				t.Errorf("Lookup(%q) found nothing", q)
				continue
			}
			if d.RelayHost != "mx.customer.com:25" {
				t.Errorf("Lookup(%q) = %+v", q, d)
			}
		}
		for _, q := range []string{"", ".", "customer.co", "sub.customer.com", "customer.com..", "[192.0.2.1]", "\xff.com"} {
			if d, ok := s.Lookup(q); ok {
				t.Errorf("Lookup(%q) = %+v, want not found", q, d)
			}
		}
	})
}

// TestStoreSnapshotUpdates checks that every write is visible to Lookup as
// soon as it returns, and that Watch wakes up on it.
func TestStoreSnapshotUpdates(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		w := s.Watch()
		mustPut(t, s, Domain{Name: "customer.com", RelayHost: "old.customer.com"})
		if d, ok := s.Lookup("customer.com"); !ok || d.RelayHost != "old.customer.com:25" {
			t.Fatalf("Lookup after Create = %+v, %v", d, ok)
		}
		assertClosed(t, w)

		w = s.Watch()
		select {
		case <-w:
			t.Fatal("Watch channel closed without a change")
		default:
		}
		mustPut(t, s, Domain{Name: "customer.com", RelayHost: "new.customer.com", AllowedSources: []string{"192.0.2.0/24"}})
		d, ok := s.Lookup("customer.com")
		if !ok || d.RelayHost != "new.customer.com:25" || len(d.AllowedSources) != 1 {
			t.Fatalf("Lookup after Put = %+v, %v", d, ok)
		}
		assertClosed(t, w)

		w = s.Watch()
		if _, err := s.Put(Domain{Name: "customer.com"}); err == nil {
			t.Fatal("Put without relay host succeeded")
		}
		if _, err := s.Create(Domain{Name: "customer.com", RelayHost: "x"}); err == nil {
			t.Fatal("Create of an existing domain succeeded")
		}
		select {
		case <-w:
			t.Fatal("a failed write woke the watchers")
		default:
		}
		if d, _ := s.Lookup("customer.com"); d.RelayHost != "new.customer.com:25" {
			t.Fatalf("a failed write changed the snapshot: %+v", d)
		}

		if err := s.Delete("customer.com"); err != nil {
			t.Fatal(err)
		}
		if _, ok := s.Lookup("customer.com"); ok {
			t.Fatal("Lookup finds a deleted domain")
		}
		assertClosed(t, w)
	})
}

func assertClosed(t *testing.T, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	default:
		t.Fatal("Watch channel not closed after a change")
	}
}

// TestStoreConcurrentLookup hammers Lookup and Watch while domains are
// rewritten and deleted; run it under -race. Readers must always see a
// complete, consistent Domain.
func TestStoreConcurrentLookup(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		const domains = 8
		writes := 200
		if testing.Short() {
			writes = 50
		}
		for i := range domains {
			mustPut(t, s, Domain{Name: fmt.Sprintf("d%d.example", i), RelayHost: "mx0.example", RetentionDays: 1})
		}
		var stop atomic.Bool
		var wg sync.WaitGroup
		var lookups atomic.Int64
		errc := make(chan error, 8)
		for r := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := r; !stop.Load(); i++ {
					name := fmt.Sprintf("D%d.EXAMPLE.", i%domains)
					d, ok := s.Lookup(name)
					lookups.Add(1)
					if !ok {
						continue // deleted for a moment
					}
					// RelayHost and RetentionDays are always written together.
					if want := fmt.Sprintf("mx%d.example:25", d.RetentionDays-1); d.RelayHost != want {
						errc <- fmt.Errorf("torn read: %+v", d)
						return
					}
					_ = d.AllowsSource(ipv4(192, 0, 2, byte(i)))
					_ = s.Watch()
				}
			}()
		}
		for i := range writes {
			n := i%9 + 1
			name := fmt.Sprintf("d%d.example", i%domains)
			if i%17 == 0 {
				if err := s.Delete(name); err != nil && !errors.Is(err, ErrNotFound) {
					t.Error(err)
				}
				continue
			}
			mustPut(t, s, Domain{Name: name, RelayHost: fmt.Sprintf("mx%d.example", n-1), RetentionDays: n,
				AllowedSources: []string{"192.0.2.0/25"}})
		}
		stop.Store(true)
		wg.Wait()
		close(errc)
		for err := range errc {
			t.Error(err)
		}
		if lookups.Load() == 0 {
			t.Error("no lookups ran")
		}
	})
}

func TestStoreClosed(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		mustPut(t, s, Domain{Name: "customer.com", RelayHost: "mx.customer.com"})
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if _, ok := s.Lookup("customer.com"); !ok {
			t.Error("Lookup after Close must answer from the last snapshot")
		}
		if _, err := s.Get("customer.com"); !errors.Is(err, ErrClosed) {
			t.Errorf("Get after Close: %v", err)
		}
		if _, err := s.List(); !errors.Is(err, ErrClosed) {
			t.Errorf("List after Close: %v", err)
		}
		if _, err := s.Put(Domain{Name: "b.com", RelayHost: "x"}); !errors.Is(err, ErrClosed) {
			t.Errorf("Put after Close: %v", err)
		}
		if _, err := s.Create(Domain{Name: "b.com", RelayHost: "x"}); !errors.Is(err, ErrClosed) {
			t.Errorf("Create after Close: %v", err)
		}
		if err := s.Delete("customer.com"); !errors.Is(err, ErrClosed) {
			t.Errorf("Delete after Close: %v", err)
		}
	})
}
