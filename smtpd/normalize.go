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
	return dst, nil
}

func (f *newlineFixer) check(dst, p []byte) ([]byte, error) {
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
