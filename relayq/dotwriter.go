package relayq

import (
	"bufio"
	"bytes"
)

// dotWriter writes a message body as the content of SMTP DATA: every line
// ends in CRLF, a line starting with '.' gets another '.' (RFC 5321
// section 4.5.2), and close ends the data with ".\r\n". A bare LF and a
// bare CR each become CRLF (so "\r\r\n" is two line breaks), as smtpd's
// normaliser does: the relay host never sees a line ending other than
// CRLF, so no "." line can be smuggled past a server that reads bare line
// endings differently. The spool holds bodies normalised already; this is
// the second line of defence, and it costs a scan per line (the body is
// copied a line at a time, not a byte at a time).
//
// It keeps the state of the line being written across Write calls, so
// the body may be cut anywhere.
type dotWriter struct {
	w    *bufio.Writer
	mid  bool  // inside a line: the next byte does not start one
	cr   bool  // the last byte was a CR, already written as CRLF
	dots []int // scratch: offsets of lines starting with a dot
}

func (d *dotWriter) reset(w *bufio.Writer) { d.w, d.mid, d.cr = w, false, false }

// Write implements io.Writer.
func (d *dotWriter) Write(p []byte) (int, error) {
	n := len(p)
	w := d.w
	fast := true // cleared when p has irregular line endings: line by line from then on
	for len(p) > 0 {
		if d.cr {
			d.cr = false
			if p[0] == '\n' { // the LF of a CRLF already written
				p = p[1:]
				continue
			}
		}
		if !d.mid {
			d.mid = true
			if p[0] == '.' {
				w.WriteByte('.')
			}
		}
		if fast {
			// The usual case: whole CRLF lines, copied in one piece except
			// where a line starts with a dot.
			end := bytes.LastIndexByte(p, '\n') + 1
			var ok bool
			if d.dots, ok = scanLines(p[:end], d.dots[:0]); end > 0 && ok {
				prev := 0
				for _, i := range d.dots {
					w.Write(p[prev:i])
					w.WriteByte('.')
					prev = i
				}
				w.Write(p[prev:end])
				d.mid = false
				p = p[end:]
				continue
			}
			fast = false
		}
		lf := bytes.IndexByte(p, '\n')
		line := p
		if lf >= 0 {
			line = p[:lf]
		}
		if cr := bytes.IndexByte(line, '\r'); cr >= 0 {
			// A CRLF, or a bare CR: either way the line ends here.
			w.Write(p[:cr])
			w.WriteString("\r\n")
			d.mid = false
			switch {
			case cr+1 == len(p):
				d.cr = true
				p = p[cr+1:]
			case p[cr+1] == '\n':
				p = p[cr+2:]
			default:
				p = p[cr+1:]
			}
			continue
		}
		if lf < 0 { // the line goes on in the next Write
			w.Write(p)
			break
		}
		w.Write(p[:lf]) // a bare LF
		w.WriteString("\r\n")
		d.mid = false
		p = p[lf+1:]
	}
	if _, err := w.Write(nil); err != nil { // bufio's error is sticky
		return 0, err
	}
	return n, nil
}

// scanLines checks that b, whole lines, has no line ending but CRLF, and
// appends to dots the offsets of the lines after the first that start
// with a dot. One IndexByte per line finds the LFs, each must follow a
// CR, and as many CRs as LFs in all means there is no other CR.
func scanLines(b []byte, dots []int) ([]int, bool) {
	lines := 0
	for i := 0; i < len(b); {
		e := i + bytes.IndexByte(b[i:], '\n')
		if e < i || e == 0 || b[e-1] != '\r' {
			return dots, false
		}
		lines++
		if i = e + 1; i < len(b) && b[i] == '.' {
			dots = append(dots, i)
		}
	}
	return dots, bytes.Count(b, []byte{'\r'}) == lines
}

// close ends the data: a line break if the body did not end with one,
// then the final dot. It does not flush.
func (d *dotWriter) close() error {
	if d.mid {
		d.w.WriteString("\r\n")
	}
	_, err := d.w.WriteString(".\r\n")
	d.mid, d.cr = false, false
	return err
}
