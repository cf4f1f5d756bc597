package relayq

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// rawServer is a small SMTP server on a raw socket, for what the go-smtp
// based testutil.RelayServer cannot show: it can leave PIPELINING out of
// its EHLO reply, it records which commands arrived together (a group is
// what the client sent before the server had to wait for more input), and
// it reads DATA a line at a time and answers a pipelined group with one
// write, so that the drain benchmark spends its CPU in relayq rather than
// in the server.
type rawServer struct {
	Addr string

	// Set before the first connection.
	noPipelining bool                     // leave PIPELINING out of EHLO
	keepBodies   bool                     // record every body (tests)
	mail         func(from string) string // reply to MAIL ("": 250)
	rcpt         func(to string) string   // reply to RCPT ("": 250)
	data         func() string            // reply to DATA ("": 354, or 503 without a recipient)
	end          func() string            // reply after the final dot ("": 250)
	closeAfter   int                      // close a connection after it delivered this many (0: never)

	ln net.Listener
	wg sync.WaitGroup

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	msgs   int
	bodies [][]byte
	groups []string // commands read together, space separated; "." ends DATA
	mails  []int    // connection number (1-based) of every MAIL command
	nconns int
	closed bool
	notify chan struct{}
}

func startRawServer(t testing.TB, mut func(*rawServer)) *rawServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &rawServer{Addr: ln.Addr().String(), ln: ln, conns: map[net.Conn]struct{}{}, notify: make(chan struct{}, 1)}
	if mut != nil {
		mut(s)
	}
	s.wg.Add(1)
	go s.serve()
	t.Cleanup(s.close)
	return s
}

func (s *rawServer) close() {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		_ = s.ln.Close()
		for c := range s.conns {
			_ = c.Close()
		}
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *rawServer) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.msgs
}

func (s *rawServer) received() ([][]byte, []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]byte(nil), s.bodies...), append([]string(nil), s.groups...)
}

// mailConns returns the connection number of every MAIL command so far.
func (s *rawServer) mailConns() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int(nil), s.mails...)
}

func (s *rawServer) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			_ = c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.nconns++
		n := s.nconns
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			s.handle(c, n)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
			_ = c.Close()
		}()
	}
}

type rawConn struct {
	s     *rawServer
	c     net.Conn
	r     *bufio.Reader
	w     *bufio.Writer
	group []string
}

// line returns the next command line; before waiting for input it sends
// the replies written so far and closes the current group.
func (rc *rawConn) line() (string, error) {
	if rc.r.Buffered() == 0 {
		rc.endGroup()
		if err := rc.w.Flush(); err != nil {
			return "", err
		}
	}
	_ = rc.c.SetReadDeadline(time.Now().Add(time.Minute))
	l, err := rc.r.ReadSlice('\n')
	if err != nil {
		return "", err
	}
	return strings.TrimRight(string(l), "\r\n"), nil
}

func (rc *rawConn) endGroup() {
	if len(rc.group) == 0 {
		return
	}
	rc.s.mu.Lock()
	rc.s.groups = append(rc.s.groups, strings.Join(rc.group, " "))
	rc.s.mu.Unlock()
	rc.group = rc.group[:0]
}

var errBadDot = errors.New("rawServer: line ending other than CRLF in DATA")

// body reads DATA up to the final dot, undoing dot-stuffing. Every line
// must end in CRLF (a bare CR or LF is an error the test sees).
func (rc *rawConn) body(keep bool) ([]byte, error) {
	var b bytes.Buffer
	for {
		l, err := rc.r.ReadSlice('\n')
		if err != nil {
			return nil, err
		}
		if len(l) < 2 || l[len(l)-2] != '\r' || bytes.IndexByte(l[:len(l)-2], '\r') >= 0 {
			return nil, errBadDot
		}
		if l[0] == '.' {
			if len(l) == 3 {
				return b.Bytes(), nil
			}
			l = l[1:]
		}
		if keep {
			b.Write(l)
		}
	}
}

func (s *rawServer) handle(c net.Conn, n int) {
	rc := &rawConn{s: s, c: c, r: bufio.NewReaderSize(c, 64<<10), w: bufio.NewWriterSize(c, 4<<10)}
	rc.w.WriteString("220 raw.test ESMTP\r\n")
	mail, rcpts, delivered := false, 0, 0
	for {
		l, err := rc.line()
		if err != nil {
			return
		}
		verb, arg, _ := strings.Cut(l, " ")
		verb = strings.ToUpper(verb)
		rc.group = append(rc.group, verb)
		switch verb {
		case "EHLO":
			mail, rcpts = false, 0
			rc.w.WriteString("250-raw.test\r\n")
			if !s.noPipelining {
				rc.w.WriteString("250-PIPELINING\r\n")
			}
			rc.w.WriteString("250-8BITMIME\r\n250 SIZE\r\n")
		case "MAIL":
			s.mu.Lock()
			s.mails = append(s.mails, n)
			s.mu.Unlock()
			if mail {
				rc.w.WriteString("503 5.5.1 nested MAIL\r\n")
				continue
			}
			if s.mail != nil {
				if r := s.mail(arg); r != "" {
					rc.w.WriteString(r + "\r\n")
					continue
				}
			}
			mail, rcpts = true, 0
			rc.w.WriteString("250 2.1.0 OK\r\n")
		case "RCPT":
			to, _ := strings.CutPrefix(arg, "TO:<")
			to, _, _ = strings.Cut(to, ">")
			r := ""
			if s.rcpt != nil {
				r = s.rcpt(to)
			}
			switch {
			case !mail:
				rc.w.WriteString("503 5.5.1 need MAIL\r\n")
			case r != "":
				rc.w.WriteString(r + "\r\n")
			default:
				rcpts++
				rc.w.WriteString("250 2.1.5 OK\r\n")
			}
		case "DATA":
			r := ""
			if s.data != nil {
				r = s.data()
			}
			switch {
			case r != "":
			case !mail || rcpts == 0:
				r = "503 5.5.1 need RCPT"
			default:
				r = "354 go ahead"
			}
			rc.w.WriteString(r + "\r\n")
			if !strings.HasPrefix(r, "354") {
				continue
			}
			rc.endGroup()
			if err := rc.w.Flush(); err != nil {
				return
			}
			b, err := rc.body(s.keepBodies)
			if err != nil {
				if errors.Is(err, errBadDot) {
					rc.w.WriteString("550 5.6.0 bad line ending\r\n")
					_ = rc.w.Flush()
				}
				return
			}
			rc.group = append(rc.group, ".")
			mail = false
			r = ""
			if s.end != nil {
				r = s.end()
			}
			if r != "" {
				rc.w.WriteString(r + "\r\n")
				if strings.HasPrefix(r, "421") { // and close, as servers do
					rc.endGroup()
					_ = rc.w.Flush()
					return
				}
				continue
			}
			s.mu.Lock()
			s.msgs++
			if s.keepBodies {
				s.bodies = append(s.bodies, append([]byte(nil), b...))
			}
			s.mu.Unlock()
			select {
			case s.notify <- struct{}{}:
			default:
			}
			rc.w.WriteString("250 2.0.0 queued\r\n")
			if delivered++; delivered == s.closeAfter {
				rc.endGroup()
				_ = rc.w.Flush()
				return
			}
		case "RSET":
			mail, rcpts = false, 0
			rc.w.WriteString("250 2.0.0 OK\r\n")
		case "NOOP":
			rc.w.WriteString("250 2.0.0 OK\r\n")
		case "QUIT":
			rc.w.WriteString("221 2.0.0 bye\r\n")
			rc.endGroup()
			_ = rc.w.Flush()
			return
		default:
			rc.w.WriteString("502 5.5.2 not implemented\r\n")
		}
	}
}
