package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// faultMode is how a faultRelay connection misbehaves.
type faultMode int32

const (
	faultNone       faultMode = iota // a healthy primary
	faultSilent                      // accepts TCP, never says a word
	faultLateBanner                  // sends its banner only after the stall
	faultDropData                    // reads the whole body, then closes instead of answering
	faultStallMail                   // answers MAIL only after the stall
	faultStallDot                    // answers the final dot only after the stall
)

// faultRelay is a hand-written SMTP server on loopback playing a
// customer's primary that misbehaves on purpose. Each connection keeps the
// mode in force when it was accepted: switching the server back to healthy
// does not rescue a connection already hanging, only the node's own
// timeout does. It records the Message-ID of every message it answered
// 250 for, and how long each stalled connection lasted before the node
// gave up on it.
type faultRelay struct {
	addr  string
	ln    net.Listener
	stall time.Duration
	mode  atomic.Int32
	// healOnCut makes the server healthy for new connections as soon as
	// the node has cut a stalled one.
	healOnCut atomic.Bool
	done      chan struct{}
	wg        sync.WaitGroup

	mu       sync.Mutex
	conns    map[net.Conn]bool
	open     int
	maxOpen  int
	total    int
	drops    int
	cutAfter []time.Duration // stalled connections the node closed, by how long they lasted
	ids      map[string]int  // Message-ID → times answered 250
}

// startFaultRelay listens on a free loopback port in mode; stall is the
// delay of faultLateBanner, faultStallMail and faultStallDot.
func startFaultRelay(t testing.TB, mode faultMode, stall time.Duration) *faultRelay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &faultRelay{addr: ln.Addr().String(), ln: ln, stall: stall, done: make(chan struct{}),
		conns: map[net.Conn]bool{}, ids: map[string]int{}}
	s.mode.Store(int32(mode))
	s.wg.Add(1)
	go s.accept()
	t.Cleanup(s.close)
	return s
}

func (s *faultRelay) setMode(m faultMode) { s.mode.Store(int32(m)) }

func (s *faultRelay) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns[c] = true
		s.open++
		s.total++
		s.maxOpen = max(s.maxOpen, s.open)
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serve(c, faultMode(s.mode.Load()))
			c.Close()
			s.mu.Lock()
			delete(s.conns, c)
			s.open--
			s.mu.Unlock()
		}()
	}
}

func (s *faultRelay) close() {
	select {
	case <-s.done:
		return
	default:
	}
	close(s.done)
	s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// hang waits d (forever if d is 0) for the client to give up. It reports
// true, and records how long the connection lasted, when the client
// closed the connection first.
func (s *faultRelay) hang(c net.Conn, br *bufio.Reader, since time.Time, d time.Duration) bool {
	end := time.Now().Add(time.Hour)
	if d > 0 {
		end = time.Now().Add(d)
	}
	for time.Now().Before(end) {
		_ = c.SetReadDeadline(end)
		if _, err := br.Peek(1); err == nil {
			// The client sent something while waiting for our reply
			// (it should not, without PIPELINING): keep waiting for a close.
			_, _ = br.Discard(br.Buffered())
			continue
		} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
			return false
		}
		select {
		case <-s.done:
		default:
			s.mu.Lock()
			s.cutAfter = append(s.cutAfter, time.Since(since))
			s.mu.Unlock()
			if s.healOnCut.Load() {
				s.setMode(faultNone)
			}
		}
		return true
	}
	return false
}

func (s *faultRelay) serve(c net.Conn, mode faultMode) {
	start := time.Now()
	br := bufio.NewReader(c)
	switch mode {
	case faultSilent:
		s.hang(c, br, start, 0)
		return
	case faultLateBanner:
		if s.hang(c, br, start, s.stall) {
			return
		}
	}
	write := func(l string) bool {
		_ = c.SetWriteDeadline(time.Now().Add(30 * time.Second))
		_, err := io.WriteString(c, l+"\r\n")
		return err == nil
	}
	if !write("220 fault.e2e.test ESMTP") {
		return
	}
	for {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Minute))
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		verb, _, _ := strings.Cut(strings.ToUpper(strings.TrimSpace(line)), " ")
		var reply string
		switch verb {
		case "EHLO":
			reply = "250-fault.e2e.test\r\n250-8BITMIME\r\n250 SIZE 104857600"
		case "HELO", "RSET", "NOOP":
			reply = "250 2.0.0 ok"
		case "MAIL":
			if mode == faultStallMail && s.hang(c, br, time.Now(), s.stall) {
				return
			}
			reply = "250 2.1.0 ok"
		case "RCPT":
			reply = "250 2.1.5 ok"
		case "DATA":
			if !write("354 go ahead") {
				return
			}
			id, ok := readBody(c, br)
			if !ok {
				return
			}
			switch mode {
			case faultDropData:
				s.mu.Lock()
				s.drops++
				s.mu.Unlock()
				return
			case faultStallDot:
				if s.hang(c, br, time.Now(), s.stall) {
					return
				}
			}
			s.mu.Lock()
			s.ids[id]++
			s.mu.Unlock()
			reply = "250 2.0.0 ok: queued"
		case "QUIT":
			write("221 2.0.0 bye")
			return
		default:
			reply = "502 5.5.2 not implemented"
		}
		if !write(reply) {
			return
		}
	}
}

// readBody reads a DATA body up to the final dot and returns its
// Message-ID.
func readBody(c net.Conn, br *bufio.Reader) (string, bool) {
	var id string
	head := true
	for {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Minute))
		l, err := br.ReadString('\n')
		if err != nil {
			return "", false
		}
		l = strings.TrimRight(l, "\r\n")
		switch {
		case l == ".":
			return id, true
		case l == "":
			head = false
		case head && strings.HasPrefix(strings.ToLower(l), "message-id:"):
			id = strings.TrimSpace(l[len("message-id:"):])
		}
	}
}

// stats returns a snapshot: connections open now, most open at once,
// accepted in all, bodies dropped, and the lifetimes of the stalled
// connections the node cut.
func (s *faultRelay) stats() (open, maxOpen, total, drops int, cut []time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.open, s.maxOpen, s.total, s.drops, append([]time.Duration(nil), s.cutAfter...)
}

// delivered returns how many times each Message-ID was answered 250.
func (s *faultRelay) delivered() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.ids))
	for k, v := range s.ids {
		out[k] = v
	}
	return out
}

// waitDelivered polls until every id of want was answered 250.
func (s *faultRelay) waitDelivered(t testing.TB, want map[string]bool, d time.Duration) map[string]int {
	t.Helper()
	return waitAll(t, want, d, 200*time.Millisecond, s.delivered, func(missing int) string {
		open, maxOpen, total, drops, cut := s.stats()
		return fmt.Sprintf("%s: %d of %d acknowledged messages never arrived (conns open %d, max %d, total %d, drops %d, cut %v)",
			s.addr, missing, len(want), open, maxOpen, total, drops, cut)
	})
}

func (s *faultRelay) String() string { return fmt.Sprintf("fault relay %s", s.addr) }
