package smtpd

import (
	"bytes"
	"errors"
	"strconv"
	"strings"

	"github.com/emersion/go-smtp"
	"github.com/pires/go-proxyproto"
)

// errProxyRefused ends a connection whose client is not in ProxyFrom but
// started with a PROXY protocol header.
var errProxyRefused = errors.New("smtpd: PROXY header from an untrusted address")

type scanMode uint8

const (
	scanCmd  scanMode = iota // command lines: enforce the line limit
	scanData                 // a DATA body, up to the final dot
	scanBdat                 // a BDAT chunk of known size
	scanTLS                  // STARTTLS answered: a TLS handshake should follow
	scanOff                  // TLS is on: the stream is encrypted
)

// States of go-smtp's dataReader, which recognises the end of a DATA body.
const (
	dBeginLine = iota
	dDot
	dDotCR
	dCR
	dData
)

// dataStep is go-smtp's dataReader transition (quirks included) for byte
// c in state: the next state, whether c is dropped from the body (a
// stuffed dot, the CR of the end-of-data line), and whether c ends the
// body (the LF of "\r\n.\r\n"). The scanner and the body reader both run
// it, so they cannot disagree about where a body ends.
func dataStep(state int, c byte) (next int, drop, end bool) {
	switch state {
	case dBeginLine:
		switch c {
		case '.':
			return dDot, true, false
		case '\r':
			return dCR, false, false
		}
	case dDot:
		if c == '\r' {
			return dDotCR, true, false
		}
	case dDotCR:
		if c == '\n' {
			return dData, false, true
		}
		// Otherwise the dot and the CR stay dropped (go-smtp's quirk).
	case dCR:
		if c == '\n' {
			return dBeginLine, false, false
		}
	case dData:
		if c == '\r' {
			return dCR, false, false
		}
	}
	return dData, false, false
}

// maxRouted bounds the remembered source-routed recipients of a connection.
const maxRouted = 64

// streamScanner follows the plaintext byte stream a client sends, the way
// go-smtp will parse it, as go-smtp reads it: it enforces the
// command-line limit (go-smtp's own limit must be high enough for body
// lines), refuses a PROXY header at the start of the stream, and notes RCPT
// commands with a source route (go-smtp strips the route before the Session
// sees the address). It is fed from the connection's Read and told about
// every reply the server writes: a 354 starts a DATA body, a 220 after the
// greeting starts TLS, which ends scanning. It runs on the connection's
// goroutine only.
type streamScanner struct {
	limit    int
	mode     scanMode
	lineLen  int    // bytes of the current line so far, without its LF
	capture  bool   // the current line might be BDAT or RCPT: keep it
	line     []byte // the captured line
	dstate   int    // dataReader state in scanData
	bdatLeft uint64 // bytes of the current BDAT chunk still to come
	greeted  bool
	sigDone  bool
	sig      []byte // first client bytes, until they cannot be a PROXY header
	routed   map[string]int
}

// inCommandLine reports whether part of a command line has been received
// and its end has not (plaintext only: after STARTTLS nothing is scanned).
func (s *streamScanner) inCommandLine() bool { return s.mode == scanCmd && s.lineLen > 0 }

// feed scans the bytes the client sent next, up to the first boundary
// where go-smtp changes how it reads: the end of a command line, the end
// of a DATA body, the end of a BDAT chunk. It returns how many bytes of p
// it took; the caller hands exactly those to go-smtp and feeds the rest
// later, so that go-smtp never holds bytes it has not parsed yet. An error
// ends the connection: smtp.ErrTooLongLine (go-smtp replies 500 5.4.0 and
// closes) or errProxyRefused.
func (s *streamScanner) feed(p []byte) (int, error) {
	if s.mode >= scanTLS || len(p) == 0 {
		return len(p), nil
	}
	if !s.sigDone {
		if err := s.checkSignature(p); err != nil {
			return 0, err
		}
	}
	k, err := s.consume(p)
	if !s.sigDone {
		s.sig = append(s.sig, p[:min(k, len(proxyproto.SIGV2)-len(s.sig))]...)
	}
	return k, err
}

// consume takes bytes up to and including the first boundary.
func (s *streamScanner) consume(p []byte) (int, error) {
	switch s.mode {
	case scanBdat:
		k := min(uint64(len(p)), s.bdatLeft)
		s.bdatLeft -= k
		if s.bdatLeft == 0 {
			s.toCmd()
		}
		return int(k), nil
	case scanData:
		return s.feedData(p), nil
	}
	i := bytes.IndexByte(p, '\n')
	seg := p
	if i >= 0 {
		seg = p[:i]
	}
	if s.lineLen == 0 && len(seg) > 0 {
		switch seg[0] {
		case 'B', 'b', 'R', 'r':
			s.capture = true
		}
	}
	s.lineLen += len(seg)
	if s.lineLen >= s.limit { // with its LF, the line is longer than limit
		return 0, smtp.ErrTooLongLine
	}
	if s.capture {
		s.line = append(s.line, seg...)
	}
	if i < 0 {
		return len(p), nil
	}
	line := s.line
	s.toCmd()
	if len(line) > 0 {
		s.command(line)
	}
	return i + 1, nil
}

// toCmd starts a new command line.
func (s *streamScanner) toCmd() {
	s.mode = scanCmd
	s.lineLen = 0
	s.capture = false
	s.line = s.line[:0]
}

// feedData mirrors go-smtp's dataReader state machine (including its
// quirks) and returns the bytes taken: all of p, or up to the end of the
// end-of-data line.
func (s *streamScanner) feedData(p []byte) int {
	for i := 0; i < len(p); i++ {
		c := p[i]
		if s.dstate == dData && c != '\r' {
			// The common case: skip to the next CR.
			j := bytes.IndexByte(p[i+1:], '\r')
			if j < 0 {
				return len(p)
			}
			i += j // the loop's i++ lands on the CR
			continue
		}
		next, _, end := dataStep(s.dstate, c)
		if end {
			s.toCmd()
			return i + 1
		}
		s.dstate = next
	}
	return len(p)
}

// checkSignature refuses a stream that starts with a PROXY v1 or v2
// signature. It looks at the bytes taken so far and those available in p,
// and decides as soon as they rule both signatures out.
func (s *streamScanner) checkSignature(p []byte) error {
	have := append(s.sig[:len(s.sig):len(s.sig)], p[:min(len(p), len(proxyproto.SIGV2)-len(s.sig))]...)
	v1 := matchPrefix(have, proxyproto.SIGV1)
	v2 := matchPrefix(have, proxyproto.SIGV2)
	if (v1 && len(have) >= len(proxyproto.SIGV1)) || (v2 && len(have) >= len(proxyproto.SIGV2)) {
		return errProxyRefused
	}
	if !v1 && !v2 {
		s.sigDone = true
		s.sig = nil
	}
	return nil
}

// matchPrefix reports whether a and sig agree on their common length.
func matchPrefix(a, sig []byte) bool {
	n := min(len(a), len(sig))
	return bytes.Equal(a[:n], sig[:n])
}

// wrote is told about each reply line the server writes.
func (s *streamScanner) wrote(p []byte) {
	if !s.greeted {
		s.greeted = true
		return
	}
	switch {
	case s.mode == scanOff:
	case s.mode == scanTLS:
		// The handshake's first record, or go-smtp's plaintext "550
		// Handshake error" after which the session goes on in the clear.
		if bytes.HasPrefix(p, []byte("550 ")) {
			s.toCmd()
		} else {
			s.mode = scanOff
			s.line = nil
		}
	case bytes.HasPrefix(p, []byte("220")):
		// Only STARTTLS is answered with 220 after the greeting.
		s.mode = scanTLS
	case bytes.HasPrefix(p, []byte("354")):
		if s.mode == scanCmd {
			s.toCmd()
			s.mode = scanData
			s.dstate = dBeginLine
		}
	case s.mode == scanData:
		// A final reply while we still think a body is coming: the client
		// sent its body before the 354, so our view is off. Resync.
		s.toCmd()
	}
}

// command looks at one complete command line the way go-smtp's parseCmd
// and command handlers will.
func (s *streamScanner) command(line []byte) {
	l := string(bytes.TrimRight(line, "\r\n"))
	if len(l) < 4 || len(l) == 5 || (len(l) > 5 && l[4] != ' ') {
		return
	}
	cmd := strings.ToUpper(l[:4])
	arg := ""
	if len(l) > 5 {
		arg = strings.TrimSpace(l[5:])
	}
	switch cmd {
	case "BDAT":
		// As handleBdat: the chunk follows whenever the arguments parse,
		// whether or not the command is then refused.
		args := strings.Fields(arg)
		if len(args) == 0 || len(args) > 2 || (len(args) == 2 && !strings.EqualFold(args[1], "LAST")) {
			return
		}
		n, err := strconv.ParseUint(args[0], 10, 32)
		if err != nil || n == 0 {
			return
		}
		s.mode = scanBdat
		s.bdatLeft = n
	case "RCPT":
		if mbox, ok := routedMailbox(arg); ok {
			if s.routed == nil {
				s.routed = make(map[string]int)
			}
			if len(s.routed) < maxRouted {
				s.routed[mbox]++
			}
		}
	}
}

// takeRouted reports whether a RCPT for mbox was sent with a source route,
// consuming the note.
func (s *streamScanner) takeRouted(mbox string) bool {
	if s.routed[mbox] == 0 {
		return false
	}
	if s.routed[mbox]--; s.routed[mbox] == 0 {
		delete(s.routed, mbox)
	}
	return true
}

// routedMailbox parses a RCPT argument as go-smtp's parsePath does and
// returns the mailbox it yields, if the path carries a source route.
func routedMailbox(arg string) (string, bool) {
	if len(arg) < 3 || !strings.EqualFold(arg[:3], "TO:") {
		return "", false
	}
	p := strings.TrimSpace(arg[3:])
	bracket := strings.HasPrefix(p, "<")
	if bracket {
		p = p[1:]
	}
	if !strings.HasPrefix(p, "@") {
		return "", false
	}
	i := strings.IndexByte(p, ':')
	if i < 0 {
		return "", false
	}
	mbox, rest, ok := parseMailbox(p[i+1:])
	if !ok || (bracket && !strings.HasPrefix(rest, ">")) {
		return "", false
	}
	return mbox, true
}

// parseMailbox is go-smtp's parser.parseMailbox: it returns the mailbox
// (quoted local parts unquoted) and the rest of the input.
func parseMailbox(p string) (string, string, bool) {
	var sb strings.Builder
	if strings.HasPrefix(p, `"`) {
		p = p[1:]
		for {
			if p == "" {
				return "", "", false
			}
			ch := p[0]
			p = p[1:]
			if ch == '"' {
				break
			}
			if ch == '\\' {
				if p == "" {
					return "", "", false
				}
				ch = p[0]
				p = p[1:]
			}
			sb.WriteByte(ch)
		}
	} else {
		for p != "" && p[0] != '@' {
			if strings.IndexByte("()<>[]:;\\,\" \t", p[0]) >= 0 {
				return "", "", false
			}
			sb.WriteByte(p[0])
			p = p[1:]
		}
	}
	if sb.Len() == 0 || !strings.HasPrefix(p, "@") {
		return "", "", false
	}
	sb.WriteByte('@')
	p = p[1:]
	n := strings.IndexAny(p, " \t>")
	if n < 0 {
		n = len(p)
	}
	if n == 0 {
		return "", "", false
	}
	sb.WriteString(p[:n])
	return sb.String(), p[n:], true
}
