package smtpd

import (
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-smtp"

	"github.com/mxcont/mxcont/engine/registry"
)

func policyError(msg string) *smtp.SMTPError {
	return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: msg}
}

var (
	errRelayDenied  = policyError("relay not permitted")
	errSourceDenied = policyError("relay not permitted from your address")
	errSourceRoute  = policyError("source routes not permitted")
	errPercentHack  = policyError("'%' and '!' in the local part not permitted")
	errQuotedAt     = policyError("'@' in the local part not permitted")
	errAddrLiteral  = policyError("address literals not permitted")
	errRcptSyntax   = &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 1, 3}, Message: "bad recipient address syntax"}
	errRcptTooLong  = &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 1, 3}, Message: "recipient address too long"}
)

// checkRcpt applies the relay policy to a RCPT address as go-smtp parsed
// it (angle brackets and any source route removed, a quoted local part
// unquoted). It returns the domain and the address as stored: the local
// part re-quoted if needed, the domain in the registry's form.
func (s *session) checkRcpt(to string) (*registry.Domain, string, *smtp.SMTPError, string) {
	if s.conn.scan.takeRouted(to) {
		return nil, "", errSourceRoute, ReasonRouting
	}
	if len(to) > s.srv.cfg.MaxLineLength {
		return nil, "", errRcptTooLong, ReasonAddress
	}
	if !printable(to) {
		return nil, "", errRcptSyntax, ReasonAddress
	}
	at := strings.LastIndexByte(to, '@')
	if at <= 0 || at == len(to)-1 {
		return nil, "", errRcptSyntax, ReasonAddress
	}
	local, domain := to[:at], to[at+1:]
	switch {
	case strings.ContainsRune(local, '@'):
		return nil, "", errQuotedAt, ReasonRouting
	case strings.ContainsAny(local, "%!"):
		return nil, "", errPercentHack, ReasonRouting
	case strings.HasPrefix(domain, "["):
		return nil, "", errAddrLiteral, ReasonRouting
	}
	d, ok := s.srv.domains.Lookup(domain)
	if !ok {
		return nil, "", errRelayDenied, ReasonRelayDenied
	}
	if !d.AllowsSource(s.conn.client) {
		return nil, "", errSourceDenied, ReasonSourceDenied
	}
	return d, quoteLocal(local) + "@" + d.Name, nil, ""
}

// canonicalSender checks a reverse path as go-smtp parsed it and returns
// it as stored ("" for the null sender).
func canonicalSender(from string) (string, bool) {
	if from == "" {
		return "", true
	}
	if !printable(from) {
		return "", false
	}
	at := strings.LastIndexByte(from, '@')
	if at <= 0 || at == len(from)-1 {
		return "", false
	}
	return quoteLocal(from[:at]) + from[at:], true
}

// printable reports whether s is valid UTF-8 without control characters.
func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return false
		}
	}
	return true
}

// quoteLocal returns a local part in the form to use in an SMTP command:
// as is when it is a dot-string (RFC 5321, with RFC 6531's UTF-8), else
// as a quoted string. go-smtp hands local parts over unquoted.
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

// isDotString reports whether l is Atom *("." Atom).
func isDotString(l string) bool {
	if l == "" || l[0] == '.' || l[len(l)-1] == '.' || strings.Contains(l, "..") {
		return false
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		switch {
		case c >= 0x80, c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.':
		case strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0:
		default:
			return false
		}
	}
	return true
}
