package submit

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"net/netip"
	"strings"
	"time"

	"github.com/mxcont/mxcont/internal/tracehdr"
)

// crlfReader makes every line ending CRLF: a bare LF becomes CRLF and a
// bare CR becomes CRLF (so "\r\r\n" is two line breaks). go-smtp hands
// bare CR and LF through; relayed further they invite SMTP smuggling.
type crlfReader struct {
	r      io.Reader
	lastCR bool   // the previous input byte was a CR
	in     []byte // read buffer
	buf    []byte // converted bytes
	out    []byte // the part of buf not yet returned
	err    error
}

func newCRLFReader(r io.Reader) *crlfReader {
	return &crlfReader{r: r, in: make([]byte, 32<<10)}
}

func (c *crlfReader) Read(p []byte) (int, error) {
	for len(c.out) == 0 {
		if c.err != nil {
			return 0, c.err
		}
		n, err := c.r.Read(c.in)
		c.buf = c.fix(c.buf[:0], c.in[:n])
		c.out, c.err = c.buf, err
	}
	n := copy(p, c.out)
	c.out = c.out[n:]
	return n, nil
}

func (c *crlfReader) fix(dst, p []byte) []byte {
	for len(p) > 0 {
		if c.lastCR {
			c.lastCR = false
			if p[0] == '\n' { // the LF of a CRLF, already written
				p = p[1:]
				continue
			}
		}
		i := bytes.IndexAny(p, "\r\n")
		if i < 0 {
			return append(dst, p...)
		}
		dst = append(dst, p[:i]...)
		dst = append(dst, '\r', '\n')
		c.lastCR = p[i] == '\r'
		p = p[i+1:]
	}
	return dst
}

// maxHeaderScan bounds the header section looked at for Message-ID: and
// Date:; a longer one is passed through unchanged.
const maxHeaderScan = 256 << 10

// headerInfo is what the scan of a header section found.
type headerInfo struct {
	messageID, date bool
	complete        bool // the whole header section was seen
}

// scanHeader reads the header section from br (CRLF line endings) and
// returns it with what it contains. The section ends at the blank line
// (returned with it), at the first line that is neither a field nor a
// continuation (that line is returned too), at the end of the message, or
// after maxHeaderScan bytes (complete is false then).
func scanHeader(br *bufio.Reader) ([]byte, headerInfo, error) {
	var hdr []byte
	var info headerInfo
	partial := false // the last slice ended inside a (long) line
	for len(hdr) < maxHeaderScan {
		line, err := br.ReadSlice('\n')
		hdr = append(hdr, line...)
		if !partial && len(line) > 0 {
			switch name, ok := fieldName(line); {
			case string(line) == "\r\n":
				info.complete = true
				return hdr, info, nil
			case ok:
				switch strings.ToLower(name) {
				case "message-id":
					info.messageID = true
				case "date":
					info.date = true
				}
			case line[0] == ' ' || line[0] == '\t':
			default:
				info.complete = true
				return hdr, info, nil
			}
		}
		partial = errors.Is(err, bufio.ErrBufferFull)
		switch {
		case partial:
		case err == io.EOF:
			info.complete = true
			return hdr, info, nil
		case err != nil:
			return hdr, info, err
		}
	}
	return hdr, info, nil
}

// fieldName returns the name of a header field line ("Name: value").
func fieldName(line []byte) (string, bool) {
	i := bytes.IndexByte(line, ':')
	if i <= 0 {
		return "", false
	}
	name := bytes.TrimRight(line[:i], " \t")
	for _, c := range name {
		if c <= ' ' || c >= 0x7f {
			return "", false
		}
	}
	return string(name), len(name) > 0
}

// traceFields returns the fields prepended to a submitted message: the
// Received: trace field (RFC 5321 section 4.4, "with ESMTPSA" per RFC
// 3848), and Date: and Message-ID: when the message lacks them.
func traceFields(t trace, info headerInfo, keep bool) []byte {
	var b strings.Builder
	b.WriteString("Received: from ")
	b.WriteString(tracehdr.Text(t.helo, "unknown"))
	b.WriteString(" (")
	b.WriteString(tracehdr.AddressLiteral(t.client))
	b.WriteString(")\r\n\tby ")
	b.WriteString(t.hostname)
	b.WriteString(" (mxcont) with ESMTP")
	if t.tls != "" {
		b.WriteString("S")
	}
	b.WriteString("A")
	if t.tls != "" {
		b.WriteString(" (" + t.tls + ")")
	}
	b.WriteString(" id ")
	b.WriteString(t.id)
	b.WriteString(";\r\n\t")
	b.WriteString(t.now.Format(time.RFC1123Z))
	b.WriteString("\r\n")
	if !keep && info.complete {
		if !info.date {
			b.WriteString("Date: " + t.now.Format(time.RFC1123Z) + "\r\n")
		}
		if !info.messageID {
			b.WriteString("Message-ID: <" + randomHex(16) + "@" + t.hostname + ">\r\n")
		}
	}
	return []byte(b.String())
}

// trace is what the Received: field says about a transaction.
type trace struct {
	helo     string
	client   netip.Addr
	hostname string
	tls      string // "TLS1.3 TLS_AES_128_GCM_SHA256", "" without TLS
	id       string
	now      time.Time
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// errDataTimeout ends a body that takes longer than Config.DataTimeout.
var errDataTimeout = errors.New("submit: message not received within the DATA timeout")

// deadlineReader fails once the deadline has passed, so that a client
// trickling a body under the idle timeout cannot hold a session forever.
type deadlineReader struct {
	r        io.Reader
	deadline time.Time
}

func (d *deadlineReader) Read(p []byte) (int, error) {
	if time.Now().After(d.deadline) {
		return 0, errDataTimeout
	}
	return d.r.Read(p)
}
