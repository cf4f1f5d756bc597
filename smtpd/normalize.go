package smtpd

import (
	"bytes"
	"errors"
)

var (
	errBareLF          = errors.New("smtpd: bare LF in message")
	errBareCR          = errors.New("smtpd: bare CR in message")
	errNULInHeader     = errors.New("smtpd: NUL byte in the header section")
	errTooManyHops     = errors.New("smtpd: too many Received: fields")
	errBodyLineTooLong = errors.New("smtpd: body line too long")
)

// newlineFixer makes line endings CRLF in a streamed body. In normalize
// mode a bare LF becomes CRLF and a bare CR becomes CRLF (so "\r\r\n" is
// two line breaks); in reject mode either is an error. It keeps one bit of
// state across calls, so the body may be cut anywhere.
type newlineFixer struct {
	reject bool
	lastCR bool // the previous byte was a CR
}

// append adds p, fixed, to dst.
func (f *newlineFixer) append(dst, p []byte) ([]byte, error) {
	if f.reject {
		return f.check(dst, p)
	}
	if q, ok := f.skipLF(p); ok && crlfOnly(q) {
		// The common case, without a loop over every byte: this is what
		// the loop below would write.
		dst = append(dst, q...)
		f.lastCR = len(q) > 0 && q[len(q)-1] == '\r'
		if f.lastCR {
			dst = append(dst, '\n') // as normalizeLoop does for a CR
		}
		return dst, nil
	}
	return f.normalizeLoop(dst, p), nil
}

// normalizeLoop is append's general case: it stops at every CR and LF.
func (f *newlineFixer) normalizeLoop(dst, p []byte) []byte {
	for len(p) > 0 {
		if f.lastCR {
			f.lastCR = false
			if p[0] == '\n' { // the LF of a CRLF, already written
				p = p[1:]
				continue
			}
		}
		i := bytes.IndexAny(p, "\r\n")
		if i < 0 {
			dst = append(dst, p...)
			break
		}
		dst = append(dst, p[:i]...)
		dst = append(dst, '\r', '\n')
		f.lastCR = p[i] == '\r'
		p = p[i+1:]
	}
	return dst
}

// skipLF returns p without the LF that completes a CR at the end of the
// previous piece, and false if p is empty or starts with something else
// while such a CR is pending (a bare CR). It does not change f.
func (f *newlineFixer) skipLF(p []byte) ([]byte, bool) {
	switch {
	case len(p) == 0:
		return p, false // nothing to do: the loops leave f as it is
	case !f.lastCR:
		return p, true
	case p[0] == '\n':
		return p[1:], true
	}
	return p, false
}

// crlfOnly reports whether every CR in q is followed by an LF and every LF
// preceded by a CR, except that q may end with a CR (whose LF may come in
// the next piece). It counts the CRs and visits the LFs with vectorised
// searches instead of looking at each byte (bytes.IndexAny does, and it
// was 14 % of the node's CPU for 64 KiB messages).
func crlfOnly(q []byte) bool {
	crs := bytes.Count(q, crByte)
	lfs := 0
	for i := 0; ; {
		j := bytes.IndexByte(q[i:], '\n')
		if j < 0 {
			break
		}
		k := i + j
		if k == 0 || q[k-1] != '\r' {
			return false
		}
		lfs++
		i = k + 1
	}
	if len(q) > 0 && q[len(q)-1] == '\r' {
		lfs++ // the trailing CR
	}
	return crs == lfs // no CR other than those before LFs and a trailing one
}

var crByte = []byte{'\r'}

func (f *newlineFixer) check(dst, p []byte) ([]byte, error) {
	if q, ok := f.skipLF(p); ok && crlfOnly(q) {
		f.lastCR = len(q) > 0 && q[len(q)-1] == '\r'
		return append(dst, p...), nil
	}
	return f.checkLoop(dst, p)
}

// checkLoop is check's general case: it stops at every CR and LF.
func (f *newlineFixer) checkLoop(dst, p []byte) ([]byte, error) {
	q := p
	for len(q) > 0 {
		if f.lastCR {
			if q[0] != '\n' {
				return dst, errBareCR
			}
			f.lastCR = false
			q = q[1:]
			continue
		}
		i := bytes.IndexAny(q, "\r\n")
		if i < 0 {
			break
		}
		if q[i] == '\n' {
			return dst, errBareLF
		}
		f.lastCR = true
		q = q[i+1:]
	}
	return append(dst, p...), nil
}

// finish reports a CR left at the very end of the body in reject mode.
func (f *newlineFixer) finish() error {
	if f.reject && f.lastCR {
		return errBareCR
	}
	return nil
}

// States of headerScanner.
const (
	hLineStart = iota // at the start of a header line
	hName             // in a field name
	hNameWSP          // white space between a field name and its colon
	hValue            // in a field body (or its continuation)
	hBody             // past the header section
)

// headerScanner follows the header section of a CRLF body as it streams
// by: it counts Received: fields and refuses NUL bytes. It is lenient
// otherwise: the header section ends at the blank line or at the first
// line that is neither a field nor a continuation (as in Postfix), and
// everything after it is body.
type headerScanner struct {
	max      int // most Received: fields allowed
	state    int
	name     [8]byte // first bytes of the field name, lower case
	nameLen  int
	received int
}

// scan looks at the next bytes of the body.
func (h *headerScanner) scan(p []byte) error {
	for i := 0; i < len(p) && h.state != hBody; i++ {
		c := p[i]
		if c == 0 {
			return errNULInHeader
		}
		switch h.state {
		case hLineStart:
			switch {
			case c == '\r': // the blank line (line endings are CRLF here)
				h.state = hBody
			case c == ' ' || c == '\t':
				h.state = hValue
			case c > ' ' && c < 0x7f && c != ':':
				h.state = hName
				h.nameLen = 0
				h.addName(c)
			default:
				h.state = hBody
			}
		case hName:
			switch {
			case c == ':':
				if err := h.field(); err != nil {
					return err
				}
				h.state = hValue
			case c == ' ' || c == '\t':
				h.state = hNameWSP
			case c > ' ' && c < 0x7f:
				h.addName(c)
			default:
				h.state = hBody
			}
		case hNameWSP:
			switch c {
			case ' ', '\t':
			case ':':
				if err := h.field(); err != nil {
					return err
				}
				h.state = hValue
			default:
				h.state = hBody
			}
		case hValue:
			rest := p[i:]
			j := bytes.IndexByte(rest, '\n')
			if j < 0 {
				j = len(rest)
			}
			if bytes.IndexByte(rest[:j], 0) >= 0 {
				return errNULInHeader
			}
			if j < len(rest) {
				h.state = hLineStart
			}
			i += j // onto the LF; the loop steps past it
		}
	}
	return nil
}

func (h *headerScanner) addName(c byte) {
	if h.nameLen < len(h.name) {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		h.name[h.nameLen] = c
	}
	h.nameLen++
}

// field is called at the colon of a field.
func (h *headerScanner) field() error {
	if h.nameLen == len("received") && string(h.name[:]) == "received" {
		h.received++
		if h.received > h.max {
			return errTooManyHops
		}
	}
	return nil
}
