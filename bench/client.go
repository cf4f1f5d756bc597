package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Reply is an SMTP reply: the code and the text of its last line.
type Reply struct {
	Code int
	Text string
}

func (r Reply) String() string { return fmt.Sprintf("%d %s", r.Code, r.Text) }

// client is a small SMTP client made for load: no allocation-heavy
// textproto, optional PIPELINING (RFC 2920) of MAIL, RCPT and DATA.
type client struct {
	conn       net.Conn
	r          *bufio.Reader
	w          *bufio.Writer
	pipelining bool // offered by the server
	timeout    time.Duration
}

// dial connects, reads the greeting and says EHLO.
func dial(ctx context.Context, addr, helo string, timeout time.Duration) (*client, error) {
	d := net.Dialer{Timeout: timeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c := &client{conn: conn, r: bufio.NewReaderSize(conn, 4096), w: bufio.NewWriterSize(conn, 64<<10), timeout: timeout}
	_ = conn.SetDeadline(time.Now().Add(timeout))
	rep, err := c.reply()
	if err != nil {
		conn.Close()
		return nil, err
	}
	if rep.Code != 220 {
		conn.Close()
		return nil, &ReplyError{Stage: "greeting", Reply: rep}
	}
	fmt.Fprintf(c.w, "EHLO %s\r\n", helo)
	if err := c.w.Flush(); err != nil {
		conn.Close()
		return nil, err
	}
	lines, rep, err := c.replyLines()
	if err != nil {
		conn.Close()
		return nil, err
	}
	if rep.Code != 250 {
		conn.Close()
		return nil, &ReplyError{Stage: "EHLO", Reply: rep}
	}
	for _, l := range lines[1:] {
		if strings.EqualFold(strings.Fields(l + " ")[0], "PIPELINING") {
			c.pipelining = true
		}
	}
	return c, nil
}

// ReplyError is a refusal by the server.
type ReplyError struct {
	Stage string // greeting, EHLO, MAIL, RCPT, DATA, "end of data"
	Reply Reply
}

func (e *ReplyError) Error() string { return fmt.Sprintf("%s: %s", e.Stage, e.Reply) }

// reply reads one (possibly multi-line) reply.
func (c *client) reply() (Reply, error) {
	_, r, err := c.replyLines()
	return r, err
}

func (c *client) replyLines() ([]string, Reply, error) {
	var lines []string
	for {
		l, err := c.r.ReadSlice('\n')
		if err != nil {
			if err == bufio.ErrBufferFull {
				return nil, Reply{}, errors.New("smtp: reply line too long")
			}
			return nil, Reply{}, err
		}
		s := strings.TrimRight(string(l), "\r\n")
		if len(s) < 3 {
			return nil, Reply{}, fmt.Errorf("smtp: malformed reply %q", s)
		}
		code, err := strconv.Atoi(s[:3])
		if err != nil {
			return nil, Reply{}, fmt.Errorf("smtp: malformed reply %q", s)
		}
		text := ""
		if len(s) > 4 {
			text = s[4:]
		}
		lines = append(lines, text)
		if len(s) == 3 || s[3] == ' ' {
			return lines, Reply{Code: code, Text: text}, nil
		}
	}
}

// txResult is the outcome of one transaction.
type txResult struct {
	reply    Reply         // final reply (250 on success)
	stage    string        // where it failed, "" on success
	accepted []string      // recipients accepted at RCPT
	refused  []int         // reply codes of the recipients refused at RCPT
	latency  time.Duration // DATA command sent → final reply
}

// send runs one transaction. A non-nil error means the connection is
// unusable (I/O error, timeout, 421); refusals are in the result.
func (c *client) send(m *Message, pipelining bool) (txResult, error) {
	var res txResult
	_ = c.conn.SetDeadline(time.Now().Add(c.timeout))
	pipe := pipelining && c.pipelining
	fmt.Fprintf(c.w, "MAIL FROM:<%s> SIZE=%d\r\n", m.From, m.Size())
	if pipe {
		for _, r := range m.Rcpts {
			fmt.Fprintf(c.w, "RCPT TO:<%s>\r\n", r)
		}
		c.w.WriteString("DATA\r\n")
	}
	var dataSent time.Time
	if err := c.w.Flush(); err != nil {
		return res, err
	}
	if pipe {
		dataSent = time.Now()
	}
	rep, err := c.reply()
	if err != nil {
		return res, err
	}
	mailOK := rep.Code == 250
	if !mailOK {
		res.reply, res.stage = rep, "MAIL"
		if !pipe {
			return res, c.reset(rep)
		}
	}
	for _, r := range m.Rcpts {
		if !pipe {
			fmt.Fprintf(c.w, "RCPT TO:<%s>\r\n", r)
			if err := c.w.Flush(); err != nil {
				return res, err
			}
		}
		rr, err := c.reply()
		if err != nil {
			return res, err
		}
		if rr.Code == 421 {
			return res, &ReplyError{Stage: "RCPT", Reply: rr}
		}
		if rr.Code/100 == 2 {
			res.accepted = append(res.accepted, r)
			continue
		}
		if mailOK {
			res.refused = append(res.refused, rr.Code)
		}
		if res.stage == "" || res.stage == "RCPT" {
			res.reply, res.stage = rr, "RCPT"
		}
	}
	if !pipe {
		if len(res.accepted) == 0 {
			return res, c.reset(res.reply)
		}
		c.w.WriteString("DATA\r\n")
		if err := c.w.Flush(); err != nil {
			return res, err
		}
		dataSent = time.Now()
	}
	dr, err := c.reply()
	if err != nil {
		return res, err
	}
	if dr.Code != 354 {
		if res.stage == "" {
			res.reply, res.stage = dr, "DATA"
		}
		return res, c.reset(dr)
	}
	if !mailOK || len(res.accepted) == 0 {
		// The server wants the body although nothing was accepted: send an
		// empty message to get back in step.
		c.w.WriteString(".\r\n")
		if err := c.w.Flush(); err != nil {
			return res, err
		}
		if _, err := c.reply(); err != nil {
			return res, err
		}
		return res, c.reset(res.reply)
	}
	if _, err := m.WriteTo(c.w); err != nil {
		return res, err
	}
	c.w.WriteString(".\r\n")
	if err := c.w.Flush(); err != nil {
		return res, err
	}
	fin, err := c.reply()
	res.latency = time.Since(dataSent)
	if err != nil {
		return res, err
	}
	res.reply = fin
	if fin.Code != 250 {
		res.stage = "end of data"
		if fin.Code == 421 {
			return res, &ReplyError{Stage: res.stage, Reply: fin}
		}
	} else {
		res.stage = ""
	}
	return res, nil
}

// reset sends RSET after a refused transaction; a 421 refusal closes the
// session instead.
func (c *client) reset(why Reply) error {
	if why.Code == 421 {
		return &ReplyError{Stage: "session", Reply: why}
	}
	c.w.WriteString("RSET\r\n")
	if err := c.w.Flush(); err != nil {
		return err
	}
	_, err := c.reply()
	return err
}

// quit says QUIT (waiting briefly for the reply) and closes.
func (c *client) quit() {
	_ = c.conn.SetDeadline(time.Now().Add(2 * time.Second))
	c.w.WriteString("QUIT\r\n")
	if c.w.Flush() == nil {
		_, _ = c.reply()
	}
	c.conn.Close()
}

func (c *client) close() { c.conn.Close() }

// errorKey names an error for the "errors by reply code" table: the
// reply code for refusals, a short class for network failures.
func errorKey(err error) string {
	var re *ReplyError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &re):
		return strconv.Itoa(re.Reply.Code) + " " + re.Stage
	case errors.Is(err, syscall.ECONNREFUSED):
		return "net: connection refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "net: connection reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "net: closed by server"
	case errors.Is(err, os.ErrDeadlineExceeded):
		return "net: timeout"
	default:
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return "net: timeout"
		}
		return "other: " + err.Error()
	}
}
