package relayq

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// client is the SMTP client side of one connection to a relay host: a
// buffered reader and writer and the extensions the server advertised.
// Commands are written to bw and sent by flush, so that a pipelined group
// (RFC 2920) leaves in one write; replies are read in order with
// readReply. A client is used by one goroutine at a time.
type client struct {
	br         *bufio.Reader
	bw         *bufio.Writer
	ext        map[string]string // EHLO keywords, upper case
	pipelining bool              // the server advertised PIPELINING
	num        []byte            // scratch for numbers
}

// Buffer sizes of a delivery connection: the writer holds a 4 KiB
// message with its commands, so that the body of a typical message and
// its final dot leave in one write, and large bodies in few writes.
const (
	clientReadBuf  = 4 << 10
	clientWriteBuf = 64 << 10
)

func newClient(r io.Reader, w io.Writer, rsize, wsize int) *client {
	return &client{br: bufio.NewReaderSize(r, rsize), bw: bufio.NewWriterSize(w, wsize)}
}

// replyError is a reply from the server that is not the one wanted.
// Text is the reply's text without its code: lines are joined with a
// space, and an enhanced status code repeated at the start of every line
// is kept only once.
type replyError struct {
	Code int
	Text string
}

func (e *replyError) Error() string { return strconv.Itoa(e.Code) + " " + e.Text }

// maxReplyLines bounds a multi-line reply; a server sending more is broken.
const maxReplyLines = 100

var errReplyTooLong = errors.New("reply too long")

// readReply reads one reply. The text is kept when keep is set or the
// code is not 2xx or 3xx (it then ends up in the message's history);
// otherwise it is skipped without allocating.
func (c *client) readReply(keep bool) (int, string, error) {
	code := 0
	var sb strings.Builder
	var enh string
	for n := 0; ; n++ {
		l, err := c.br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			return 0, "", errReplyTooLong
		}
		if err != nil {
			if err == io.EOF && (n > 0 || len(l) > 0) {
				err = io.ErrUnexpectedEOF
			}
			return 0, "", err
		}
		l = trimEOL(l)
		if len(l) < 3 || (len(l) > 3 && l[3] != ' ' && l[3] != '-') {
			return 0, "", fmt.Errorf("malformed reply %q", truncate(l, 64))
		}
		c3, ok := replyCode(l)
		if !ok || (n > 0 && c3 != code) {
			return 0, "", fmt.Errorf("malformed reply %q", truncate(l, 64))
		}
		code = c3
		last := len(l) == 3 || l[3] == ' '
		if keep || code >= 400 {
			var t []byte
			if len(l) > 4 {
				t = l[4:]
			}
			if n == 0 {
				if e, _, ok := strings.Cut(string(t), " "); ok && isEnhanced(e) {
					enh = e + " "
				}
			} else {
				sb.WriteByte('\n')
				if enh != "" && len(t) >= len(enh) && string(t[:len(enh)]) == enh {
					t = t[len(enh):]
				}
			}
			sb.Write(t)
		}
		if last {
			return code, sb.String(), nil
		}
		if n >= maxReplyLines {
			return 0, "", errReplyTooLong
		}
	}
}

// reply reads one reply and returns a *replyError unless its code is
// want (a single digit: its class; three digits: exactly).
func (c *client) reply(want int) error {
	code, text, err := c.readReply(false)
	if err != nil {
		return err
	}
	if want < 10 && code/100 == want || code == want {
		return nil
	}
	if text == "" && code < 400 {
		text = "(unexpected reply)"
	}
	return &replyError{Code: code, Text: strings.ReplaceAll(text, "\n", " ")}
}

func trimEOL(l []byte) []byte {
	l = l[:len(l)-1]
	if len(l) > 0 && l[len(l)-1] == '\r' {
		l = l[:len(l)-1]
	}
	return l
}

func replyCode(l []byte) (int, bool) {
	if l[0] < '2' || l[0] > '5' || l[1] < '0' || l[1] > '9' || l[2] < '0' || l[2] > '9' {
		return 0, false
	}
	return int(l[0]-'0')*100 + int(l[1]-'0')*10 + int(l[2]-'0'), true
}

// isEnhanced reports whether s looks like an enhanced status code
// (RFC 3463: class.subject.detail).
func isEnhanced(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || len(s) > 11 {
		return false
	}
	for _, p := range parts {
		if p == "" || strings.Trim(p, "0123456789") != "" {
			return false
		}
	}
	return s[0] >= '2' && s[0] <= '5'
}

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

// greet reads the banner and says EHLO (HELO if EHLO is refused with 500
// or 502), recording the advertised extensions.
func (c *client) greet(hostname string) error {
	if err := c.reply(220); err != nil {
		return fmt.Errorf("banner: %w", err)
	}
	return c.hello(hostname)
}

// hello says EHLO (HELO if EHLO is refused with 500 or 502).
func (c *client) hello(hostname string) error {
	c.ext, c.pipelining = map[string]string{}, false
	c.bw.WriteString("EHLO " + hostname + "\r\n")
	if err := c.bw.Flush(); err != nil {
		return fmt.Errorf("ehlo: %w", err)
	}
	code, text, err := c.readReply(true)
	if err != nil {
		return fmt.Errorf("ehlo: %w", err)
	}
	if code == 500 || code == 502 {
		c.bw.WriteString("HELO " + hostname + "\r\n")
		if err := c.bw.Flush(); err != nil {
			return fmt.Errorf("helo: %w", err)
		}
		if err := c.reply(250); err != nil {
			return fmt.Errorf("helo: %w", err)
		}
		return nil
	}
	if code != 250 {
		return fmt.Errorf("ehlo: %w", &replyError{Code: code, Text: strings.ReplaceAll(text, "\n", " ")})
	}
	lines := strings.Split(text, "\n")
	for _, l := range lines[1:] {
		k, v, _ := strings.Cut(strings.TrimSpace(l), " ")
		c.ext[strings.ToUpper(k)] = v
	}
	_, c.pipelining = c.ext["PIPELINING"]
	return nil
}

func (c *client) has(ext string) bool {
	_, ok := c.ext[ext]
	return ok
}

// mail writes (without sending) MAIL FROM with the parameters the server
// supports: BODY=8BITMIME, SIZE, SMTPUTF8 (when utf8 is set; the caller
// checked that the server offers it).
func (c *client) mail(from string, size int64, utf8 bool) {
	c.bw.WriteString("MAIL FROM:<")
	c.bw.WriteString(from)
	c.bw.WriteByte('>')
	if c.has("8BITMIME") {
		c.bw.WriteString(" BODY=8BITMIME")
	}
	if size > 0 && c.has("SIZE") {
		c.bw.WriteString(" SIZE=")
		c.num = strconv.AppendInt(c.num[:0], size, 10)
		c.bw.Write(c.num)
	}
	if utf8 {
		c.bw.WriteString(" SMTPUTF8")
	}
	c.bw.WriteString("\r\n")
}

// rcpt writes (without sending) RCPT TO.
func (c *client) rcpt(to string) {
	c.bw.WriteString("RCPT TO:<")
	c.bw.WriteString(to)
	c.bw.WriteString(">\r\n")
}

// cmd writes a command line, sends it and reads the reply.
func (c *client) cmd(want int, line string) error {
	c.bw.WriteString(line)
	c.bw.WriteString("\r\n")
	if err := c.bw.Flush(); err != nil {
		return err
	}
	return c.reply(want)
}

// validAddr reports whether an address can be sent in a command line: no
// line breaks, no angle brackets, no NUL (command injection).
func validAddr(a string) bool {
	return !strings.ContainsAny(a, "\r\n<>\x00")
}
