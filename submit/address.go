package submit

import (
	"strings"

	"github.com/mxcont/mxcont/engine/registry"
)

// address is a parsed mail address: the local part as go-smtp hands it
// over (unquoted) and the domain normalized (lower case, punycode).
type address struct {
	local, domain string
}

// parseAddress accepts printable-ASCII addresses with a local part of at
// most 64 bytes and a valid domain name (no address literals). Non-ASCII
// addresses would need SMTPUTF8, which this server does not offer.
func parseAddress(s string) (address, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] >= 0x7f {
			return address{}, false
		}
	}
	at := strings.LastIndexByte(s, '@')
	if at <= 0 || at > 64 || at == len(s)-1 {
		return address{}, false
	}
	d, err := registry.NormalizeName(s[at+1:])
	if err != nil {
		return address{}, false
	}
	return address{local: s[:at], domain: d}, true
}

// String renders the address as used in SMTP commands: the local part
// quoted when it is not a dot-string.
func (a address) String() string { return quoteLocal(a.local) + "@" + a.domain }

// key is the address folded to lower case, for throttles and rate limits.
func (a address) key() string { return strings.ToLower(a.local) + "@" + a.domain }

// quoteLocal returns a local part as it must appear in an SMTP command:
// as is when it is a dot-string, else as a quoted string.
func quoteLocal(l string) string {
	if isDotString(l) {
		return l
	}
	var b strings.Builder
	b.Grow(len(l) + 2)
	b.WriteByte('"')
	for i := 0; i < len(l); i++ {
		if l[i] == '"' || l[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(l[i])
	}
	b.WriteByte('"')
	return b.String()
}

// isDotString reports whether l is Atom *("." Atom) (RFC 5321).
func isDotString(l string) bool {
	if l == "" || l[0] == '.' || l[len(l)-1] == '.' || strings.Contains(l, "..") {
		return false
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.':
		case strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0:
		default:
			return false
		}
	}
	return true
}
