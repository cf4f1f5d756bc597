package bench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
)

// The sink's SMTP server. go-smtp reads DATA one byte at a time through
// bufio.Reader.ReadByte, which costs about 1 ms of CPU per 64 KiB: on a
// machine shared with the MTA under test that would slow the drain being
// measured. This server reads DATA a line at a time and answers a
// pipelined group of commands with one write. It speaks what relaying
// MTAs use (EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT) and advertises
// PIPELINING, 8BITMIME, SIZE and ENHANCEDSTATUSCODES, not CHUNKING, so
// every client sends DATA.

const (
	sinkIdle       = 5 * time.Minute
	sinkMaxCmdLine = 4096
)

var errLineTooLong = errors.New("bench: command line too long")

func (s *Sink) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return // closed
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			s.handle(c)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
			c.Close()
		}()
	}
}

// sinkConn is one SMTP session.
type sinkConn struct {
	c     net.Conn
	r     *bufio.Reader
	w     *bufio.Writer
	mail  bool
	rcpts []string
	body  bytes.Buffer
}

func (sc *sinkConn) reply(code int, text string) {
	fmt.Fprintf(sc.w, "%d %s\r\n", code, text)
}

// readLine returns the next command line without its line ending,
// flushing pending replies first if the client has sent nothing more
// (PIPELINING, RFC 2920 section 3.1).
func (sc *sinkConn) readLine() (string, error) {
	if sc.r.Buffered() == 0 {
		if err := sc.w.Flush(); err != nil {
			return "", err
		}
	}
	_ = sc.c.SetReadDeadline(time.Now().Add(sinkIdle))
	l, err := sc.r.ReadSlice('\n')
	if err == bufio.ErrBufferFull || len(l) > sinkMaxCmdLine {
		return "", errLineTooLong
	}
	if err != nil {
		return "", err
	}
	return strings.TrimRight(string(l), "\r\n"), nil
}

// readData reads a message up to the terminating dot line, undoing
// dot-stuffing, into sc.body. The idle deadline is renewed every MiB
// rather than every line: setting a deadline costs more than reading a
// line.
func (sc *sinkConn) readData() error {
	sc.body.Reset()
	_ = sc.c.SetReadDeadline(time.Now().Add(sinkIdle))
	atStart, renewed := true, 0
	for {
		l, err := sc.r.ReadSlice('\n')
		if err != nil && err != bufio.ErrBufferFull {
			return err
		}
		if atStart && len(l) > 0 && l[0] == '.' {
			if err == nil && (len(l) == 2 && l[1] == '\n' || len(l) == 3 && l[1] == '\r' && l[2] == '\n') {
				return nil
			}
			l = l[1:]
		}
		sc.body.Write(l)
		atStart = err == nil
		if sc.body.Len()-renewed > 1<<20 {
			renewed = sc.body.Len()
			_ = sc.c.SetReadDeadline(time.Now().Add(sinkIdle))
		}
	}
}

// angle returns the address in "FROM:<addr> ..." or "TO:<addr> ...".
func angle(arg string) (string, bool) {
	i := strings.IndexByte(arg, '<')
	j := strings.IndexByte(arg, '>')
	if i < 0 || j < i {
		return "", false
	}
	return arg[i+1 : j], true
}

func (s *Sink) handle(c net.Conn) {
	sc := &sinkConn{c: c, r: bufio.NewReaderSize(c, 64<<10), w: bufio.NewWriterSize(c, 4<<10)}
	sc.reply(220, "mxbench-sink.invalid ESMTP mxbench sink")
	for {
		line, err := sc.readLine()
		if err != nil {
			if err == errLineTooLong {
				sc.reply(500, "5.5.2 line too long")
				sc.w.Flush()
			}
			return
		}
		verb, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "EHLO":
			sc.mail, sc.rcpts = false, sc.rcpts[:0]
			sc.w.WriteString("250-mxbench-sink.invalid\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SIZE\r\n250 ENHANCEDSTATUSCODES\r\n")
		case "HELO":
			sc.mail, sc.rcpts = false, sc.rcpts[:0]
			sc.reply(250, "mxbench-sink.invalid")
		case "MAIL":
			if sc.mail {
				sc.reply(503, "5.5.1 nested MAIL command")
				continue
			}
			if _, ok := angle(arg); !ok {
				sc.reply(501, "5.5.4 syntax: MAIL FROM:<address>")
				continue
			}
			sc.mail, sc.rcpts = true, sc.rcpts[:0]
			sc.reply(250, "2.1.0 OK")
		case "RCPT":
			a, ok := angle(arg)
			switch {
			case !sc.mail:
				sc.reply(503, "5.5.1 need MAIL first")
			case !ok:
				sc.reply(501, "5.5.4 syntax: RCPT TO:<address>")
			default:
				sc.rcpts = append(sc.rcpts, a)
				sc.reply(250, "2.1.5 OK")
			}
		case "DATA":
			if !sc.mail || len(sc.rcpts) == 0 {
				sc.reply(503, "5.5.1 need MAIL and RCPT first")
				continue
			}
			sc.reply(354, "end data with <CR><LF>.<CR><LF>")
			if err := sc.w.Flush(); err != nil {
				return
			}
			if err := sc.readData(); err != nil {
				return
			}
			rep := s.deliver(append([]string(nil), sc.rcpts...), InspectBytes(sc.body.Bytes()))
			sc.reply(rep.Code, rep.Text)
			sc.mail, sc.rcpts = false, sc.rcpts[:0]
		case "RSET":
			sc.mail, sc.rcpts = false, sc.rcpts[:0]
			sc.reply(250, "2.0.0 OK")
		case "NOOP":
			sc.reply(250, "2.0.0 OK")
		case "QUIT":
			sc.reply(221, "2.0.0 bye")
			sc.w.Flush()
			return
		default:
			sc.reply(502, "5.5.2 command not implemented")
		}
	}
}
