package registry

import (
	"errors"
	"fmt"
	"net"
	"net/mail"
	"net/netip"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// ValidationError reports an invalid or unusable field of a Domain (or of a
// value checked by one of the Normalize functions). Field is the JSON name
// of the field, with an index for list elements ("alert_emails[1]").
type ValidationError struct {
	Field string
	Msg   string
}

// Error returns "field: msg", e.g. `relay_host: invalid port "99999"`.
func (e *ValidationError) Error() string { return e.Field + ": " + e.Msg }

func invalid(field, format string, args ...any) *ValidationError {
	return &ValidationError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// Limits on domain names (RFC 1035 section 2.3.4).
const (
	maxLabelLen = 63
	maxNameLen  = 253
)

// Normalize validates d and returns it in canonical form, or a
// *ValidationError naming the first offending field. It fills in defaults
// (mode "relay", retention 30 days, relay port 25), lower-cases and
// punycode-encodes names, masks CIDRs (a bare IP becomes a /32 or /128),
// and drops duplicate alert addresses and sources. Normalize is idempotent;
// it does not touch CreatedAt and UpdatedAt.
func Normalize(d Domain) (Domain, error) {
	d = d.clone()
	name, err := NormalizeName(d.Name)
	if err != nil {
		return Domain{}, err
	}
	d.Name = name

	switch m := strings.ToLower(strings.TrimSpace(d.Mode)); m {
	case "":
		d.Mode = ModeRelay
	case ModeRelay, ModeBoth:
		d.Mode = m
	default:
		return Domain{}, invalid("mode", "must be %q or %q, got %q", ModeRelay, ModeBoth, d.Mode)
	}

	if d.RelayHost, err = NormalizeRelayHost(d.RelayHost); err != nil {
		return Domain{}, err
	}
	if strings.TrimSpace(d.OutboundSmarthost) == "" {
		d.OutboundSmarthost = ""
	} else if hp, verr := normalizeHostPort(d.OutboundSmarthost, DefaultRelayPort); verr != nil {
		verr.Field = "outbound_smarthost"
		return Domain{}, verr
	} else {
		d.OutboundSmarthost = hp
	}

	emails := make([]string, 0, len(d.AlertEmails))
	for i, s := range d.AlertEmails {
		a, err := normalizeAddress(s)
		if err != nil {
			return Domain{}, invalid(fmt.Sprintf("alert_emails[%d]", i), "%s", err.Msg)
		}
		if !contains(emails, a) {
			emails = append(emails, a)
		}
	}
	d.AlertEmails = emails

	sources := make([]string, 0, len(d.AllowedSources))
	for i, s := range d.AllowedSources {
		p, err := normalizePrefix(s)
		if err != nil {
			return Domain{}, invalid(fmt.Sprintf("allowed_sources[%d]", i), "%s", err.Msg)
		}
		if !contains(sources, p) {
			sources = append(sources, p)
		}
	}
	d.AllowedSources = sources

	switch {
	case d.RetentionDays == 0:
		d.RetentionDays = DefaultRetentionDays
	case d.RetentionDays < 1 || d.RetentionDays > MaxRetentionDays:
		return Domain{}, invalid("retention_days", "must be between 1 and %d, got %d", MaxRetentionDays, d.RetentionDays)
	}

	d.Account = strings.TrimSpace(d.Account)
	for _, r := range d.Account {
		if r < 0x20 || r == 0x7f {
			return Domain{}, invalid("account", "must not contain control characters")
		}
	}
	return d, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// NormalizeName validates a customer domain name and returns its canonical
// form: lower-case ASCII, internationalized labels converted to punycode
// (IDNA Lookup profile), no trailing dot. The name needs at least two
// labels of letters, digits and hyphens (1..63 characters, no leading or
// trailing hyphen), at most 253 characters, and a top-level label that is
// not all digits. Errors are *ValidationError values for the field "name".
func NormalizeName(name string) (string, error) {
	if strings.TrimSpace(name) == "" {
		return "", invalid("name", "required")
	}
	n, why := canonicalHost(name, 2)
	if why != "" {
		return "", invalid("name", "invalid domain %q: %s", name, why)
	}
	return n, nil
}

// NormalizeHostname is NormalizeName for host names, which may consist of a
// single label ("localhost", "mx1"). Errors name the field "hostname".
func NormalizeHostname(name string) (string, error) {
	if strings.TrimSpace(name) == "" {
		return "", invalid("hostname", "required")
	}
	n, why := canonicalHost(name, 1)
	if why != "" {
		return "", invalid("hostname", "invalid host name %q: %s", name, why)
	}
	return n, nil
}

// canonicalHost implements NormalizeName and NormalizeHostname. It returns
// the canonical name, or why name is invalid.
func canonicalHost(name string, minLabels int) (string, string) {
	s, err := toASCII(strings.TrimSpace(name))
	if err != nil {
		return "", err.Error()
	}
	if len(s) > maxNameLen {
		return "", fmt.Sprintf("longer than %d characters", maxNameLen)
	}
	labels := strings.Split(s, ".")
	if len(labels) < minLabels {
		return "", fmt.Sprintf("need at least %d labels", minLabels)
	}
	for _, l := range labels {
		if why := checkLabel(l); why != "" {
			return "", why
		}
	}
	if isDigits(labels[len(labels)-1]) {
		return "", "top-level label is all digits"
	}
	return s, ""
}

// checkLabel returns why the lower-case ASCII label l is not a valid LDH
// label, or "".
func checkLabel(l string) string {
	switch {
	case l == "":
		return "empty label"
	case len(l) > maxLabelLen:
		return fmt.Sprintf("label %q longer than %d characters", l, maxLabelLen)
	case l[0] == '-' || l[len(l)-1] == '-':
		return fmt.Sprintf("label %q starts or ends with a hyphen", l)
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return fmt.Sprintf("label %q contains %q", l, c)
		}
	}
	if strings.HasPrefix(l, "xn--") {
		if _, err := idna.Lookup.ToUnicode(l); err != nil {
			return fmt.Sprintf("label %q is not valid punycode", l)
		}
	}
	return ""
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// NormalizeRelayHost validates a relay host and returns it as "host:port"
// or "[v6]:port". Accepted forms are "host", "host:port", "[v6]",
// "[v6]:port" and bare IPv4 or IPv6 literals; port 25 is added when none is
// given. Host names may have a single label. Errors are *ValidationError
// values for the field "relay_host".
func NormalizeRelayHost(s string) (string, error) {
	hp, err := normalizeHostPort(s, DefaultRelayPort)
	if err != nil {
		err.Field = "relay_host"
		return "", err
	}
	return hp, nil
}

func normalizeHostPort(raw string, defaultPort int) (string, *ValidationError) {
	s := strings.TrimSpace(raw)
	if s == "" {
		return "", invalid("", "required")
	}
	var host, port string
	bracketed := strings.HasPrefix(s, "[")
	switch {
	case bracketed && strings.HasSuffix(s, "]"):
		host = s[1 : len(s)-1]
	case bracketed || strings.Count(s, ":") == 1:
		var err error
		if host, port, err = net.SplitHostPort(s); err != nil {
			return "", invalid("", "invalid address %q", raw)
		}
		if port == "" {
			return "", invalid("", "invalid port %q", port)
		}
	default:
		// A name, an IPv4 literal, or a bare IPv6 literal (two or more
		// colons, no port possible).
		host = s
	}

	if host == "" {
		return "", invalid("", "invalid address %q: missing host", raw)
	}
	p := defaultPort
	if port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return "", invalid("", "invalid port %q", port)
		}
		p = n
	}

	ip, err := netip.ParseAddr(host)
	switch {
	case err == nil && bracketed && ip.Is4():
		return "", invalid("", "invalid address %q: brackets are for IPv6 literals", raw)
	case err == nil && ip.Zone() != "":
		return "", invalid("", "invalid address %q: IPv6 zones are not supported", raw)
	case err == nil:
		return netip.AddrPortFrom(ip.Unmap(), uint16(p)).String(), nil
	case bracketed || strings.Contains(host, ":"):
		return "", invalid("", "invalid IPv6 address %q", host)
	}
	h, why := canonicalHost(host, 1)
	if why != "" {
		return "", invalid("", "invalid host %q: %s", host, why)
	}
	return net.JoinHostPort(h, strconv.Itoa(p)), nil
}

// normalizeAddress checks that s is a bare mail address (user@example.com,
// no display name or angle brackets) and lower-cases its domain.
func normalizeAddress(s string) (string, *ValidationError) {
	t := strings.TrimSpace(s)
	a, err := mail.ParseAddress(t)
	if err != nil {
		return "", invalid("", "invalid address %q: %v", s, err)
	}
	if a.Address != t {
		return "", invalid("", "invalid address %q: want a bare address like user@example.com", s)
	}
	at := strings.LastIndexByte(t, '@')
	return t[:at] + strings.ToLower(t[at:]), nil
}

// NormalizeAddress validates a bare mail address as Normalize does for
// alert_emails. Errors name the field "address".
func NormalizeAddress(s string) (string, error) {
	a, err := normalizeAddress(s)
	if err != nil {
		err.Field = "address"
		return "", err
	}
	return a, nil
}

// normalizePrefix parses a CIDR or a bare IP (which becomes a /32 or /128)
// and returns the masked prefix.
func normalizePrefix(s string) (string, *ValidationError) {
	t := strings.TrimSpace(s)
	if !strings.Contains(t, "/") {
		ip, err := netip.ParseAddr(t)
		if err != nil || ip.Zone() != "" {
			return "", invalid("", "invalid CIDR or IP address %q", s)
		}
		ip = ip.Unmap()
		return netip.PrefixFrom(ip, ip.BitLen()).String(), nil
	}
	p, err := netip.ParsePrefix(t)
	if err != nil {
		return "", invalid("", "invalid CIDR %q", s)
	}
	return p.Masked().String(), nil
}

// NormalizePrefix validates a CIDR or bare IP address as Normalize does for
// allowed_sources and returns the masked prefix. Errors name the field
// "cidr".
func NormalizePrefix(s string) (string, error) {
	p, err := normalizePrefix(s)
	if err != nil {
		err.Field = "cidr"
		return "", err
	}
	return p, nil
}

// lookupKey maps a domain as written in an RCPT command to the snapshot key
// it would be stored under, without full validation: a name that does not
// normalize is simply not found.
func lookupKey(name string) (string, bool) {
	s, err := toASCII(strings.TrimSpace(name))
	return s, err == nil
}

// dotReplacer maps the dots IDNA treats as label separators (ideographic
// and full-width full stops) to ".".
var dotReplacer = strings.NewReplacer("\u3002", ".", "\uff0e", ".", "\uff61", ".")

// toASCII lower-cases name, strips one trailing dot and converts each
// non-ASCII label to its A-label with the IDNA Lookup profile. Labels are
// converted one by one so that ASCII labels are judged only by the LDH
// rules (the Lookup profile rejects valid DNS labels such as "ab--cd").
func toASCII(name string) (string, error) {
	if isASCII(name) {
		return strings.ToLower(strings.TrimSuffix(name, ".")), nil
	}
	if !utf8.ValidString(name) {
		return "", errors.New("not valid UTF-8")
	}
	labels := strings.Split(strings.TrimSuffix(dotReplacer.Replace(name), "."), ".")
	for i, l := range labels {
		if isASCII(l) {
			labels[i] = strings.ToLower(l)
			continue
		}
		a, err := idna.Lookup.ToASCII(l)
		if err != nil {
			return "", err
		}
		labels[i] = a
	}
	return strings.Join(labels, "."), nil
}
