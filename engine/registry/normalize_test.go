package registry

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func TestNormalizeGood(t *testing.T) {
	base := func(mod func(*Domain)) Domain {
		d := Domain{Name: "customer.com", RelayHost: "mail.customer.com"}
		if mod != nil {
			mod(&d)
		}
		return d
	}
	want := func(mod func(*Domain)) Domain {
		d := Domain{
			Name: "customer.com", Mode: "relay", RelayHost: "mail.customer.com:25",
			AlertEmails: []string{}, AllowedSources: []string{}, RetentionDays: 30,
		}
		if mod != nil {
			mod(&d)
		}
		return d
	}
	tests := []struct {
		name string
		in   Domain
		want Domain
	}{
		{"defaults", base(nil), want(nil)},
		{"upper case and trailing dot",
			base(func(d *Domain) { d.Name = " Customer.COM. " }), want(nil)},
		{"IDN to punycode",
			base(func(d *Domain) { d.Name = "Bücher.Example" }),
			want(func(d *Domain) { d.Name = "xn--bcher-kva.example" })},
		{"A-label kept",
			base(func(d *Domain) { d.Name = "XN--BCHER-KVA.example" }),
			want(func(d *Domain) { d.Name = "xn--bcher-kva.example" })},
		{"IDN with ideographic full stop",
			base(func(d *Domain) { d.Name = "例え。テスト" }),
			want(func(d *Domain) { d.Name = "xn--r8jz45g.xn--zckzah" })},
		{"IDN next to an ASCII label with double hyphen",
			base(func(d *Domain) { d.Name = "münchen.ab--cd.com" }),
			want(func(d *Domain) { d.Name = "xn--mnchen-3ya.ab--cd.com" })},
		{"63-character label",
			base(func(d *Domain) { d.Name = strings.Repeat("a", 63) + ".com" }),
			want(func(d *Domain) { d.Name = strings.Repeat("a", 63) + ".com" })},
		{"mode both, any case",
			base(func(d *Domain) { d.Mode = "Both" }),
			want(func(d *Domain) { d.Mode = "both" })},
		{"relay host with port",
			base(func(d *Domain) { d.RelayHost = "Mail.Customer.com:2525" }),
			want(func(d *Domain) { d.RelayHost = "mail.customer.com:2525" })},
		{"relay host single label",
			base(func(d *Domain) { d.RelayHost = "exchange01" }),
			want(func(d *Domain) { d.RelayHost = "exchange01:25" })},
		{"relay host IDN",
			base(func(d *Domain) { d.RelayHost = "mx.bücher.example:26" }),
			want(func(d *Domain) { d.RelayHost = "mx.xn--bcher-kva.example:26" })},
		{"relay host IPv4",
			base(func(d *Domain) { d.RelayHost = "192.0.2.1" }),
			want(func(d *Domain) { d.RelayHost = "192.0.2.1:25" })},
		{"relay host IPv4 with port",
			base(func(d *Domain) { d.RelayHost = "192.0.2.1:587" }),
			want(func(d *Domain) { d.RelayHost = "192.0.2.1:587" })},
		{"relay host bare IPv6",
			base(func(d *Domain) { d.RelayHost = "2001:DB8:0::1" }),
			want(func(d *Domain) { d.RelayHost = "[2001:db8::1]:25" })},
		{"relay host bracketed IPv6",
			base(func(d *Domain) { d.RelayHost = "[2001:db8::1]" }),
			want(func(d *Domain) { d.RelayHost = "[2001:db8::1]:25" })},
		{"relay host bracketed IPv6 with port",
			base(func(d *Domain) { d.RelayHost = "[2001:db8::1]:2525" }),
			want(func(d *Domain) { d.RelayHost = "[2001:db8::1]:2525" })},
		{"relay host IPv4-mapped",
			base(func(d *Domain) { d.RelayHost = "[::ffff:192.0.2.1]:26" }),
			want(func(d *Domain) { d.RelayHost = "192.0.2.1:26" })},
		{"alert emails lower-case domain, deduplicated",
			base(func(d *Domain) { d.AlertEmails = []string{" NOC@Provider.NET", "noc@provider.net", "Ops@x.org"} }),
			want(func(d *Domain) { d.AlertEmails = []string{"NOC@provider.net", "noc@provider.net", "Ops@x.org"} })},
		{"allowed sources masked, bare IPs, deduplicated",
			base(func(d *Domain) {
				d.AllowedSources = []string{"10.1.2.3/8", "192.0.2.7", "2001:db8::1", "10.0.0.0/8", "::ffff:198.51.100.1", "2001:DB8::/32"}
			}),
			want(func(d *Domain) {
				d.AllowedSources = []string{"10.0.0.0/8", "192.0.2.7/32", "2001:db8::1/128", "198.51.100.1/32", "2001:db8::/32"}
			})},
		{"retention bounds",
			base(func(d *Domain) { d.RetentionDays = 3650 }),
			want(func(d *Domain) { d.RetentionDays = 3650 })},
		{"flags and account kept",
			base(func(d *Domain) { d.Monitoring, d.RequireTLS, d.Account = true, true, " acme " }),
			want(func(d *Domain) { d.Monitoring, d.RequireTLS, d.Account = true, true, "acme" })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Normalize(tt.in)
			if err != nil {
				t.Fatalf("Normalize: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Normalize:\n got %+v\nwant %+v", got, tt.want)
			}
			again, err := Normalize(got)
			if err != nil || !reflect.DeepEqual(again, got) {
				t.Fatalf("Normalize is not idempotent: %+v, %v", again, err)
			}
		})
	}
}

func TestNormalizeDoesNotAliasInput(t *testing.T) {
	in := Domain{Name: "a.com", RelayHost: "h", AllowedSources: []string{"10.1.1.1/8"}, AlertEmails: []string{"A@B.COM"}}
	if _, err := Normalize(in); err != nil {
		t.Fatal(err)
	}
	if in.AllowedSources[0] != "10.1.1.1/8" || in.AlertEmails[0] != "A@B.COM" {
		t.Fatalf("Normalize modified its argument: %+v", in)
	}
}

func TestNormalizeBad(t *testing.T) {
	long := strings.Repeat("a", 63)
	tests := []struct {
		name string
		mod  func(*Domain)
		want string
	}{
		{"empty name", func(d *Domain) { d.Name = " " }, `name: required`},
		{"single label", func(d *Domain) { d.Name = "localhost" }, `name: invalid domain "localhost": need at least 2 labels`},
		{"empty label", func(d *Domain) { d.Name = "a..com" }, `name: invalid domain "a..com": empty label`},
		{"two trailing dots", func(d *Domain) { d.Name = "a.com.." }, `name: invalid domain "a.com..": empty label`},
		{"leading hyphen", func(d *Domain) { d.Name = "-a.com" }, `name: invalid domain "-a.com": label "-a" starts or ends with a hyphen`},
		{"trailing hyphen", func(d *Domain) { d.Name = "a-.com" }, `name: invalid domain "a-.com": label "a-" starts or ends with a hyphen`},
		{"underscore", func(d *Domain) { d.Name = "a_b.com" }, `name: invalid domain "a_b.com": label "a_b" contains '_'`},
		{"space", func(d *Domain) { d.Name = "a b.com" }, `name: invalid domain "a b.com": label "a b" contains ' '`},
		{"address literal", func(d *Domain) { d.Name = "[192.0.2.1]" }, `name: invalid domain "[192.0.2.1]": label "[192" contains '['`},
		{"IP address", func(d *Domain) { d.Name = "192.0.2.1" }, `name: invalid domain "192.0.2.1": top-level label is all digits`},
		{"label too long", func(d *Domain) { d.Name = long + "a.com" }, `name: invalid domain "` + long + `a.com": label "` + long + `a" longer than 63 characters`},
		{"name too long", func(d *Domain) { d.Name = strings.Repeat(long+".", 4) + "com" }, `name: invalid domain "` + strings.Repeat(long+".", 4) + `com": longer than 253 characters`},
		{"bad punycode", func(d *Domain) { d.Name = "xn--zz.com" }, `name: invalid domain "xn--zz.com": label "xn--zz" is not valid punycode`},
		{"bad UTF-8", func(d *Domain) { d.Name = "\xff.com" }, `name: invalid domain "\xff.com": not valid UTF-8`},
		{"disallowed rune", func(d *Domain) { d.Name = "a☃_.com" }, `name: invalid domain "a☃_.com": idna: disallowed rune U+005F`},
		{"mode", func(d *Domain) { d.Mode = "backup" }, `mode: must be "relay" or "both", got "backup"`},
		{"relay host missing", func(d *Domain) { d.RelayHost = "" }, `relay_host: required`},
		{"relay port too big", func(d *Domain) { d.RelayHost = "mail.customer.com:99999" }, `relay_host: invalid port "99999"`},
		{"relay port zero", func(d *Domain) { d.RelayHost = "mail.customer.com:0" }, `relay_host: invalid port "0"`},
		{"relay port empty", func(d *Domain) { d.RelayHost = "mail.customer.com:" }, `relay_host: invalid port ""`},
		{"relay port name", func(d *Domain) { d.RelayHost = "mail.customer.com:smtp" }, `relay_host: invalid port "smtp"`},
		{"relay host missing host", func(d *Domain) { d.RelayHost = ":25" }, `relay_host: invalid address ":25": missing host`},
		{"relay host bad name", func(d *Domain) { d.RelayHost = "mail_1.customer.com" }, `relay_host: invalid host "mail_1.customer.com": label "mail_1" contains '_'`},
		{"relay host bad IPv4", func(d *Domain) { d.RelayHost = "192.0.2.300" }, `relay_host: invalid host "192.0.2.300": top-level label is all digits`},
		{"relay host bad IPv6", func(d *Domain) { d.RelayHost = "2001:db8::g" }, `relay_host: invalid IPv6 address "2001:db8::g"`},
		{"relay host unclosed bracket", func(d *Domain) { d.RelayHost = "[2001:db8::1" }, `relay_host: invalid address "[2001:db8::1"`},
		{"relay host bracketed IPv4", func(d *Domain) { d.RelayHost = "[192.0.2.1]:25" }, `relay_host: invalid address "[192.0.2.1]:25": brackets are for IPv6 literals`},
		{"relay host with zone", func(d *Domain) { d.RelayHost = "[fe80::1%eth0]:25" }, `relay_host: invalid address "[fe80::1%eth0]:25": IPv6 zones are not supported`},
		{"relay host bracketed name", func(d *Domain) { d.RelayHost = "[mail.customer.com]:25" }, `relay_host: invalid IPv6 address "mail.customer.com"`},
		{"alert email display name", func(d *Domain) { d.AlertEmails = []string{"a@b.com", "NOC <noc@provider.net>"} },
			`alert_emails[1]: invalid address "NOC <noc@provider.net>": want a bare address like user@example.com`},
		{"alert email angle brackets", func(d *Domain) { d.AlertEmails = []string{"<noc@provider.net>"} },
			`alert_emails[0]: invalid address "<noc@provider.net>": want a bare address like user@example.com`},
		{"alert email no at", func(d *Domain) { d.AlertEmails = []string{"noc"} },
			`alert_emails[0]: invalid address "noc": mail: missing '@' or angle-addr`},
		{"alert email empty", func(d *Domain) { d.AlertEmails = []string{""} },
			`alert_emails[0]: invalid address "": mail: no address`},
		{"source bad CIDR", func(d *Domain) { d.AllowedSources = []string{"10.0.0.0/8", "10.0.0.0/33"} },
			`allowed_sources[1]: invalid CIDR "10.0.0.0/33"`},
		{"source not an IP", func(d *Domain) { d.AllowedSources = []string{"filter.example.net"} },
			`allowed_sources[0]: invalid CIDR or IP address "filter.example.net"`},
		{"source with zone", func(d *Domain) { d.AllowedSources = []string{"fe80::1%eth0"} },
			`allowed_sources[0]: invalid CIDR or IP address "fe80::1%eth0"`},
		{"retention negative", func(d *Domain) { d.RetentionDays = -1 }, `retention_days: must be between 1 and 3650, got -1`},
		{"retention too long", func(d *Domain) { d.RetentionDays = 3651 }, `retention_days: must be between 1 and 3650, got 3651`},
		{"account control character", func(d *Domain) { d.Account = "a\nb" }, `account: must not contain control characters`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Domain{Name: "customer.com", RelayHost: "mail.customer.com"}
			tt.mod(&d)
			_, err := Normalize(d)
			if err == nil {
				t.Fatalf("Normalize(%+v) succeeded, want %q", d, tt.want)
			}
			if err.Error() != tt.want {
				t.Fatalf("Normalize error\n got %s\nwant %s", err, tt.want)
			}
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("error %T is not a *ValidationError", err)
			}
		})
	}
}

func TestNormalizeHelpers(t *testing.T) {
	if got, err := NormalizeHostname("MX1."); err != nil || got != "mx1" {
		t.Errorf("NormalizeHostname(MX1.) = %q, %v", got, err)
	}
	if _, err := NormalizeHostname("mx_1"); err == nil || err.Error() != `hostname: invalid host name "mx_1": label "mx_1" contains '_'` {
		t.Errorf("NormalizeHostname(mx_1) error = %v", err)
	}
	if got, err := NormalizeAddress(" a@B.example "); err != nil || got != "a@b.example" {
		t.Errorf("NormalizeAddress = %q, %v", got, err)
	}
	if _, err := NormalizeAddress("x"); err == nil || err.Error() != `address: invalid address "x": mail: missing '@' or angle-addr` {
		t.Errorf("NormalizeAddress(x) error = %v", err)
	}
	if got, err := NormalizePrefix("192.0.2.9/24"); err != nil || got != "192.0.2.0/24" {
		t.Errorf("NormalizePrefix = %q, %v", got, err)
	}
	if _, err := NormalizePrefix("x/8"); err == nil || err.Error() != `cidr: invalid CIDR "x/8"` {
		t.Errorf("NormalizePrefix(x/8) error = %v", err)
	}
}

func TestAllowsSource(t *testing.T) {
	d := Domain{AllowedSources: []string{"192.0.2.0/24", "2001:db8::/32", "::ffff:198.51.100.0/120"}}
	tests := []struct {
		ip   string
		want bool
	}{
		{"192.0.2.1", true},
		{"192.0.3.1", false},
		{"::ffff:192.0.2.77", true},
		{"::ffff:192.0.3.1", false},
		{"2001:db8::25", true},
		{"2001:db9::25", false},
		{"198.51.100.4", true},
		{"::ffff:198.51.100.4", true},
		{"fe80::1%eth0", false},
	}
	for _, tt := range tests {
		if got := d.AllowsSource(netip.MustParseAddr(tt.ip)); got != tt.want {
			t.Errorf("AllowsSource(%s) = %v, want %v", tt.ip, got, tt.want)
		}
	}
	if d.AllowsSource(netip.Addr{}) {
		t.Error("AllowsSource(invalid address) = true")
	}
	open := Domain{}
	if !open.AllowsSource(netip.MustParseAddr("203.0.113.9")) || !open.AllowsSource(netip.Addr{}) {
		t.Error("empty allow-list must allow everyone")
	}
}
