package registry

import (
	"fmt"
	"testing"
)

// FuzzNormalizeName checks that canonical names are fixed points and that
// Lookup's cheap query normalization agrees with NormalizeName on every
// name NormalizeName accepts, so a stored domain is always found by the
// name it was stored under.
func FuzzNormalizeName(f *testing.F) {
	for _, s := range []string{"customer.com", "Customer.COM.", "bücher.example", "xn--bcher-kva.example",
		"例え。テスト", "münchen.ab--cd.com", "ａｂｃ.com", "a..b", "-a.com", "1.2.3.4", "\xff.com"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		n, err := NormalizeName(name)
		if err != nil {
			return
		}
		if again, err := NormalizeName(n); err != nil || again != n {
			t.Fatalf("NormalizeName(%q) = %q, but NormalizeName(%q) = %q, %v", name, n, n, again, err)
		}
		if key, ok := lookupKey(name); !ok || key != n {
			t.Fatalf("lookupKey(%q) = %q, %v; NormalizeName = %q", name, key, ok, n)
		}
	})
}

func BenchmarkLookup(b *testing.B) {
	s := NewMemory(nil)
	for i := range 10000 {
		if _, err := s.Put(Domain{Name: fmt.Sprintf("customer%d.example", i), RelayHost: "mx.example"}); err != nil {
			b.Fatal(err)
		}
	}
	for _, q := range []string{"customer5000.example", "Customer5000.Example.", "unknown.example"} {
		b.Run(q, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					s.Lookup(q)
				}
			})
		})
	}
}

// FuzzNormalizeRelayHost checks that normalized relay hosts are fixed
// points.
func FuzzNormalizeRelayHost(f *testing.F) {
	for _, s := range []string{"mail.customer.com", "mail.customer.com:2525", "[2001:db8::1]:26", "2001:db8::1",
		"192.0.2.1", "[::ffff:192.0.2.1]:25", "[fe80::1%eth0]:25", "host:", ":25", "[::1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := NormalizeRelayHost(s)
		if err != nil {
			return
		}
		if again, err := NormalizeRelayHost(n); err != nil || again != n {
			t.Fatalf("NormalizeRelayHost(%q) = %q, but NormalizeRelayHost(%q) = %q, %v", s, n, n, again, err)
		}
	})
}
