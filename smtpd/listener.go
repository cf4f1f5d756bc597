package smtpd

import (
	"bufio"
	"errors"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/pires/go-proxyproto"
	"go.uber.org/zap"

	"github.com/mxcont/mxcont/internal/connlimit"
)

// listener sits between the real listener and go-smtp. Its own accept loop
// enforces the connection limits, reads PROXY headers from trusted
// networks (off the accept loop, since a header can be slow), wraps each
// connection in an sconn and hands it to go-smtp through Accept.
type listener struct {
	srv   *Server
	ln    net.Listener
	ready chan *sconn
	fatal chan error
	done  chan struct{}
	once  sync.Once
	wg    sync.WaitGroup

	mu      sync.Mutex
	pending map[net.Conn]struct{} // waiting for a PROXY header
}

func newListener(s *Server, ln net.Listener) *listener {
	return &listener{
		srv:     s,
		ln:      ln,
		ready:   make(chan *sconn),
		fatal:   make(chan error, 1),
		done:    make(chan struct{}),
		pending: make(map[net.Conn]struct{}),
	}
}

// Accept implements net.Listener for go-smtp.
func (l *listener) Accept() (net.Conn, error) {
	select {
	case <-l.done:
		return nil, net.ErrClosed
	default:
	}
	select {
	case c := <-l.ready:
		return c, nil
	case err := <-l.fatal:
		return nil, err
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close implements net.Listener: it closes the real listener and the
// connections still waiting for a PROXY header.
func (l *listener) Close() error {
	var err error
	l.once.Do(func() {
		close(l.done)
		err = l.ln.Close()
		l.mu.Lock()
		for c := range l.pending {
			_ = c.Close()
		}
		l.mu.Unlock()
	})
	return err
}

// Addr implements net.Listener.
func (l *listener) Addr() net.Addr { return l.ln.Addr() }

func (l *listener) start() {
	l.wg.Add(1)
	go l.acceptLoop()
}

func (l *listener) acceptLoop() {
	defer l.wg.Done()
	var delay time.Duration
	for {
		raw, err := l.ln.Accept()
		if err != nil {
			select {
			case <-l.done:
				return
			default:
			}
			if retryableAccept(err) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				l.srv.log.Warn("accept failed, retrying", zap.Error(err), zap.Duration("delay", delay))
				select {
				case <-time.After(delay):
				case <-l.done:
					return
				}
				continue
			}
			l.fatal <- err
			return
		}
		delay = 0
		if !l.srv.limits.acquireTotal() {
			l.srv.metrics.Rejected(ReasonConnLimit)
			l.srv.log.Debug("connection refused: too many connections", zap.Stringer("peer", raw.RemoteAddr()))
			l.wg.Add(1)
			go func() {
				defer l.wg.Done()
				refuse(raw, tooManyConnections)
			}()
			continue
		}
		l.wg.Add(1)
		if l.srv.trusted(connlimit.AddrOf(raw.RemoteAddr())) {
			go l.prepare(raw) // may wait for a PROXY header
		} else {
			l.prepare(raw) // does not block: spares a goroutine per connection
		}
	}
}

// retryableAccept reports whether an Accept error is worth waiting out.
func retryableAccept(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED, syscall.ECONNRESET, syscall.EINTR} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// prepare turns a raw connection holding a total-limit slot into an sconn
// and hands it to go-smtp, or refuses it.
func (l *listener) prepare(raw net.Conn) {
	defer l.wg.Done()
	s := l.srv
	peer := connlimit.AddrOf(raw.RemoteAddr())
	c := &sconn{Conn: raw, srv: s, r: raw, client: peer, remote: raw.RemoteAddr()}
	c.scan.limit = s.cfg.MaxLineLength
	if s.trusted(peer) {
		if !l.readProxyHeader(c) {
			s.limits.releaseTotal()
			_ = raw.Close()
			return
		}
	}
	c.slotKey = connlimit.Key(c.client)
	if !s.limits.acquireIP(c.slotKey) {
		s.limits.releaseTotal()
		s.metrics.Rejected(ReasonConnPerIP)
		s.log.Debug("connection refused: too many connections from one address", zap.Stringer("client-ip", c.client))
		refuse(raw, tooManyConnections)
		return
	}
	c.ipSlot = true
	if !s.track(c) {
		_ = c.Conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
		_, _ = c.Conn.Write([]byte("421 4.3.2 service shutting down\r\n"))
		_ = c.Close()
		return
	}
	select {
	case l.ready <- c:
	case <-l.done:
		_ = c.Close()
	}
}

// readProxyHeader reads an optional PROXY header from a trusted peer. It
// reports false when the connection must be dropped.
func (l *listener) readProxyHeader(c *sconn) bool {
	s := l.srv
	raw := c.Conn
	l.mu.Lock()
	select {
	case <-l.done:
		l.mu.Unlock()
		return false
	default:
	}
	l.pending[raw] = struct{}{}
	l.mu.Unlock()
	br := bufio.NewReaderSize(raw, 256) // holds a whole v1 line, as go-proxyproto requires
	h, err := proxyproto.ReadHeaderTimeout(raw, br, s.cfg.ProxyHeaderTimeout)
	l.mu.Lock()
	delete(l.pending, raw)
	l.mu.Unlock()
	switch {
	case errors.Is(err, proxyproto.ErrNoProxyProtocol):
		// A trusted client speaking for itself.
	case err != nil:
		select {
		case <-l.done:
		default:
			s.metrics.Rejected(ReasonProxyBad)
			s.log.Info("bad PROXY header", zap.Stringer("peer", raw.RemoteAddr()), zap.Error(err))
		}
		return false
	case h.Command.IsProxy():
		if a := connlimit.AddrOf(h.SourceAddr); a.IsValid() {
			c.client = a
			c.remote = h.SourceAddr
			c.proxied = true
		}
	}
	c.r = br
	return true
}
