package registry

import (
	"errors"
	"testing"
)

func TestNormalizeOutboundSmarthost(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{"", "", ""},
		{"  ", "", ""},
		{"smtp.provider.test", "smtp.provider.test:25", ""},
		{"SMTP.Provider.test:587", "smtp.provider.test:587", ""},
		{"[::1]:2525", "[::1]:2525", ""},
		{"bad host", "", "outbound_smarthost"},
		{"host:99999", "", "outbound_smarthost"},
	} {
		d, err := Normalize(Domain{Name: "example.com", RelayHost: "mx.example.com", OutboundSmarthost: tc.in})
		if tc.err != "" {
			var ve *ValidationError
			if !errors.As(err, &ve) || ve.Field != tc.err {
				t.Errorf("%q: err %v, want a %s validation error", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || d.OutboundSmarthost != tc.want {
			t.Errorf("%q: got %q, %v; want %q", tc.in, d.OutboundSmarthost, err, tc.want)
		}
	}
}
