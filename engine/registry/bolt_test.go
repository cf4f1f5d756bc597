package registry

import (
	"errors"
	"net/netip"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
	"go.uber.org/zap/zaptest"
)

func ipv4(a, b, c, d byte) netip.Addr { return netip.AddrFrom4([4]byte{a, b, c, d}) }

func TestBoltPersistsAcrossReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "registry.db")
	s, err := OpenFile(zaptest.NewLogger(t), path)
	if err != nil {
		t.Fatal(err)
	}
	full := mustPut(t, s, Domain{
		Name: "Bücher.example", Mode: "both", RelayHost: "[2001:db8::25]:2525", Monitoring: true,
		AlertEmails: []string{"noc@provider.net"}, AllowedSources: []string{"192.0.2.0/24", "2001:db8::/32"},
		RetentionDays: 90, RequireTLS: true, Account: "acme",
	})
	mustPut(t, s, Domain{Name: "gone.example", RelayHost: "mx.gone.example"})
	plain := mustPut(t, s, Domain{Name: "plain.example", RelayHost: "192.0.2.25"})
	if err := s.Delete("gone.example"); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = OpenFile(nil, path)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s.Close()
	list, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 {
		t.Fatalf("after reopen List = %+v, want 2 domains", list)
	}
	for i, want := range []Domain{plain, full} { // sorted by name
		got := list[i]
		if !got.CreatedAt.Equal(want.CreatedAt) || !got.UpdatedAt.Equal(want.UpdatedAt) {
			t.Errorf("timestamps of %s changed: %v/%v, want %v/%v", want.Name, got.CreatedAt, got.UpdatedAt, want.CreatedAt, want.UpdatedAt)
		}
		got.CreatedAt, got.UpdatedAt, want.CreatedAt, want.UpdatedAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("after reopen\n got %+v\nwant %+v", got, want)
		}
	}
	d, ok := s.Lookup("BÜCHER.EXAMPLE")
	if !ok || !d.AllowsSource(ipv4(192, 0, 2, 9)) || d.AllowsSource(ipv4(198, 51, 100, 1)) {
		t.Fatalf("Lookup after reopen = %+v, %v", d, ok)
	}
	if _, ok := s.Lookup("gone.example"); ok {
		t.Fatal("deleted domain came back after reopen")
	}
}

// TestBoltSharedDB checks that Open leaves the caller's database and its
// other buckets alone.
func TestBoltSharedDB(t *testing.T) {
	db, err := bbolt.Open(filepath.Join(t.TempDir(), "control.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucket([]byte("users"))
		if err != nil {
			return err
		}
		return b.Put([]byte("admin"), []byte("x"))
	}); err != nil {
		t.Fatal(err)
	}
	s, err := Open(zaptest.NewLogger(t), db)
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, s, Domain{Name: "customer.com", RelayHost: "mx.customer.com"})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	err = db.View(func(tx *bbolt.Tx) error {
		if v := tx.Bucket([]byte("users")).Get([]byte("admin")); string(v) != "x" {
			t.Errorf("users bucket changed: %q", v)
		}
		if v := tx.Bucket([]byte(BucketName)).Get([]byte("customer.com")); !strings.Contains(string(v), `"relay_host":"mx.customer.com:25"`) {
			t.Errorf("stored record = %s", v)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("database unusable after Close of a store that does not own it: %v", err)
	}
}

func TestBoltOpenCorrupt(t *testing.T) {
	for name, value := range map[string]string{
		"not JSON":   `{"name":`,
		"wrong name": `{"name":"other.com","relay_host":"x:25"}`,
	} {
		t.Run(name, func(t *testing.T) {
			db, err := bbolt.Open(filepath.Join(t.TempDir(), "r.db"), 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if err := db.Update(func(tx *bbolt.Tx) error {
				b, err := tx.CreateBucket([]byte(BucketName))
				if err != nil {
					return err
				}
				return b.Put([]byte("customer.com"), []byte(value))
			}); err != nil {
				t.Fatal(err)
			}
			_, err = Open(nil, db)
			if err == nil || !strings.HasPrefix(err.Error(), `registry: open: decode domain "customer.com": `) {
				t.Fatalf("Open of a corrupt record: err = %v", err)
			}
		})
	}
}

func TestOpenFileLockTimeout(t *testing.T) {
	path := filepath.Join(t.TempDir(), "registry.db")
	s, err := OpenFile(nil, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	start := time.Now()
	_, err = OpenFile(nil, path)
	if !errors.Is(err, bolterrors.ErrTimeout) {
		t.Fatalf("second OpenFile: err = %v, want a timeout", err)
	}
	if d := time.Since(start); d < fileLockTimeout/2 || d > 10*fileLockTimeout {
		t.Fatalf("second OpenFile gave up after %v", d)
	}
}
