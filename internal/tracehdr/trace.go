// Package tracehdr renders the client-supplied parts of a Received: trace
// field (RFC 5321 section 4.4) safely; the acceptor (smtpd) and the
// submission server (submit) share it.
package tracehdr

import (
	"net/netip"
	"strings"
)

// AddressLiteral renders a client address as in RFC 5321 section 4.1.3.
func AddressLiteral(a netip.Addr) string {
	switch {
	case !a.IsValid():
		return "unknown"
	case a.Is4():
		return "[" + a.String() + "]"
	default:
		return "[IPv6:" + a.WithZone("").String() + "]"
	}
}

// Text keeps at most 255 bytes of printable ASCII other than the
// characters that delimit comments, angle addresses and the date; others
// become '?'. An empty result is replaced by def.
func Text(s, def string) string {
	if len(s) > 255 {
		s = s[:255]
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`()<>;\"`, c) >= 0 {
			c = '?'
		}
		b.WriteByte(c)
	}
	if b.Len() == 0 {
		return def
	}
	return b.String()
}
