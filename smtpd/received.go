package smtpd

import (
	"strings"
	"time"

	"github.com/mxcont/mxcont/internal/tracehdr"
)

// received returns the Received: trace field (RFC 5321 section 4.4) that
// is prepended to a message for one recipient group:
//
//	Received: from <helo> ([<client ip>])
//		by <hostname> (mxcont) with ESMTPS (TLS1.3 TLS_AES_128_GCM_SHA256) id <txn-id>
//		for <rcpt>; Mon, 02 Jan 2006 15:04:05 -0700
//
// "for" is given only when the group has one recipient, so that a message
// does not disclose its other recipients. Client-supplied text (HELO, the
// recipient) is reduced to characters that cannot break the field.
func received(t *transaction, g *rcptGroup, s *session, hostname string, now time.Time) []byte {
	var b strings.Builder
	b.Grow(256)
	b.WriteString("Received: from ")
	b.WriteString(tracehdr.Text(t.helo, "unknown"))
	b.WriteString(" (")
	b.WriteString(tracehdr.AddressLiteral(s.conn.client))
	b.WriteString(")\r\n\tby ")
	b.WriteString(hostname)
	b.WriteString(" (mxcont) with ")
	b.WriteString(protocol(s.tls != "", t.utf8))
	if s.tls != "" {
		b.WriteString(" (")
		b.WriteString(s.tls)
		b.WriteString(")")
	}
	b.WriteString(" id ")
	b.WriteString(t.id)
	if len(g.rcpts) == 1 {
		if r := tracehdr.Text(g.rcpts[0], ""); r == g.rcpts[0] {
			b.WriteString("\r\n\tfor <")
			b.WriteString(r)
			b.WriteString(">")
		}
	}
	b.WriteString("; ")
	b.WriteString(now.Format(time.RFC1123Z))
	b.WriteString("\r\n")
	return []byte(b.String())
}

// protocol is the "with" keyword of RFC 3848 and RFC 6531. go-smtp does
// not tell HELO from EHLO sessions; both are served as ESMTP.
func protocol(tls, utf8 bool) string {
	p := "ESMTP"
	if utf8 {
		p = "UTF8SMTP"
	}
	if tls {
		p += "S"
	}
	return p
}
