package tracehdr

import (
	"net/netip"
	"strings"
	"testing"
)

func TestText(t *testing.T) {
	if got := Text("evil\r\nX-Injected: (yes); <a>", "x"); got != "evil??X-Injected:??yes????a?" {
		t.Errorf("Text: %q", got)
	}
	if got := Text("", "unknown"); got != "unknown" {
		t.Errorf("Text empty: %q", got)
	}
	if got := Text(strings.Repeat("h", 300), ""); len(got) != 255 {
		t.Errorf("Text length %d", len(got))
	}
}

func TestAddressLiteral(t *testing.T) {
	for in, want := range map[string]string{
		"":             "unknown",
		"192.0.2.1":    "[192.0.2.1]",
		"2001:db8::1":  "[IPv6:2001:db8::1]",
		"fe80::1%eth0": "[IPv6:fe80::1]",
	} {
		var a netip.Addr
		if in != "" {
			a = netip.MustParseAddr(in)
		}
		if got := AddressLiteral(a); got != want {
			t.Errorf("AddressLiteral(%q) = %q, want %q", in, got, want)
		}
	}
}
