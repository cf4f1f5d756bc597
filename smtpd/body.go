package smtpd

import (
	"bytes"
	"io"

	"github.com/emersion/go-smtp"
)

// bodyReader reads a plaintext DATA body straight from the connection, in
// bulk, instead of through go-smtp's dataReader. go-smtp v0.25 reads a
// body one byte at a time (bufio.ReadByte per byte, under a
// lineLimitReader that loops over every byte again): 38 % of the node's
// CPU at 64 KiB and 12 % at 4 KiB in the acceptance profile
// (docs/PERFORMANCE.md). bodyReader does the same work per buffer:
//
//   - the bytes come from sconn exactly as go-smtp would get them: through
//     the streamScanner, which stops at the end-of-data line, so nothing
//     after the body is taken;
//   - it removes the dot-stuffing and finds the end with go-smtp's state
//     machine, quirks included (".\rX" loses its CR; "\r\r\n." does not
//     start a line), skipping whole runs of ordinary bytes;
//   - it enforces go-smtp's two limits the way go-smtp does: the server's
//     MaxMessageBytes on the bytes it returns (a body of MaxMessageBytes
//     bytes or more is smtp.ErrDataTooLarge) and MaxLineLength on every
//     raw line (a line of MaxLineLength bytes or more, before its LF, is
//     smtp.ErrTooLongLine, which then ends the connection as go-smtp's
//     lineLimitReader would: it is made sticky on the sconn);
//   - when the body ends, it hands the end-of-data line ".\r\n" back to
//     go-smtp (sconn.pass), whose own reader, started by handleData and
//     drained after Session.Data returns, then ends at once.
//
// It is used only for DATA on a plaintext connection (the scanner is off
// under TLS) and runs on the connection's goroutine, as go-smtp's reader
// would. finish must be called before Data returns.
type bodyReader struct {
	c       *sconn
	state   int   // dBeginLine ... dData, as in streamScanner.feedData
	left    int64 // bytes that may still be returned; limited only if limited
	limited bool
	lineMax int // go-smtp's MaxLineLength (0: none)
	lineLen int // lineLimitReader's count: bytes since the last LF, plus one
	eof     bool
	err     error
}

// endOfData is what bodyReader hands back to go-smtp's reader.
var endOfData = []byte(".\r\n")

// newBodyReader returns a bodyReader if c is at the start of a plaintext
// DATA body, or nil (then go-smtp's reader must be used).
func newBodyReader(c *sconn, maxBytes int64, lineMax int) *bodyReader {
	if c == nil || c.scan.mode != scanData || c.scan.dstate != dBeginLine || len(c.pass) > 0 {
		return nil
	}
	return &bodyReader{c: c, state: dBeginLine, left: maxBytes, limited: maxBytes > 0, lineMax: lineMax, lineLen: 1}
}

// Read implements io.Reader. It returns io.EOF at the end of the body and
// io.ErrUnexpectedEOF if the client goes away before it.
func (b *bodyReader) Read(p []byte) (int, error) {
	for {
		if b.eof {
			return 0, io.EOF
		}
		if b.err != nil {
			return 0, b.err
		}
		if len(p) == 0 {
			return 0, nil
		}
		q := p
		if b.limited {
			if b.left <= 0 {
				return 0, smtp.ErrDataTooLarge
			}
			q = p[:min(int64(len(p)), b.left)]
		}
		n, err := b.c.Read(q) // stops at the end-of-data line
		if n > 0 {
			if lerr := b.checkLines(q[:n]); lerr != nil {
				b.c.rerr = lerr // go-smtp's lineLimitReader is sticky too
				b.err = lerr
				return 0, lerr
			}
			out, used := b.unstuff(q[:n])
			if b.limited {
				b.left -= int64(out)
			}
			if b.eof {
				b.c.pass = endOfData
			}
			if b.eof != (b.c.scan.mode != scanData) || used != n {
				// The scanner and this reader follow the same state
				// machine; disagreeing is a bug, and the connection's
				// view of the stream cannot be trusted any more.
				b.err = errScanMismatch
				b.c.rerr = errScanMismatch
				return 0, b.err
			}
			if out > 0 {
				return out, nil
			}
			continue
		}
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		b.err = err
		return 0, err
	}
}

// errScanMismatch is returned if bodyReader and streamScanner disagree on
// where a body ends (a bug, never expected).
var errScanMismatch = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 0},
	Message: "internal error reading the message, closing connection"}

// finish reads and drops the rest of the body, as go-smtp does after
// Session.Data returns, so that go-smtp's reader finds the end of data.
// The size limit no longer applies; the line limit does, as in go-smtp.
func (b *bodyReader) finish() {
	if b.eof || b.err != nil {
		return
	}
	b.limited = false
	buf := make([]byte, 4096)
	for !b.eof && b.err == nil {
		_, _ = b.Read(buf)
	}
}

// checkLines applies go-smtp's lineLimitReader to raw bytes: the count
// restarts at 1 after each LF and may not pass lineMax.
func (b *bodyReader) checkLines(p []byte) error {
	if b.lineMax <= 0 {
		return nil
	}
	if b.lineLen+len(p) <= b.lineMax { // no line in p can pass the limit
		if i := bytes.LastIndexByte(p, '\n'); i >= 0 {
			b.lineLen = len(p) - i
		} else {
			b.lineLen += len(p)
		}
		return nil
	}
	for {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			b.lineLen += len(p)
			if b.lineLen > b.lineMax {
				return smtp.ErrTooLongLine
			}
			return nil
		}
		if b.lineLen+i > b.lineMax {
			return smtp.ErrTooLongLine
		}
		b.lineLen = 1
		p = p[i+1:]
	}
}

// unstuff runs go-smtp's dataReader state machine over p, removing the
// bytes it drops (the stuffed dot, and the end-of-data line) in place, and
// returns the length of what remains and the bytes of p it looked at (all
// of p, unless the end-of-data line ends before). It sets eof at the end
// of the end-of-data line.
func (b *bodyReader) unstuff(p []byte) (int, int) {
	w := 0 // p[:w] is output
	i := 0
	for i < len(p) {
		c := p[i]
		if b.state == dData {
			// The common case: copy up to and including the next CR.
			j := bytes.IndexByte(p[i:], '\r')
			if j < 0 {
				w += copy(p[w:], p[i:])
				return w, len(p)
			}
			w += copy(p[w:], p[i:i+j+1])
			i += j + 1
			b.state = dCR
			continue
		}
		next, drop, end := dataStep(b.state, c)
		if end {
			b.eof = true
			return w, i + 1
		}
		b.state = next
		if drop {
			i++
			continue
		}
		p[w] = c
		w++
		i++
	}
	return w, len(p)
}
