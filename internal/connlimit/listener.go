package connlimit

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// RefuseTimeout bounds the answer to a refused connection (including a
// TLS handshake, when the answer is sent over TLS).
const RefuseTimeout = 5 * time.Second

// maxRefusing bounds the refusals in progress; above it, a refused
// connection is closed without an answer, so that a flood cannot turn
// refusals into a goroutine per connection.
const maxRefusing = 64

// Listener is a net.Listener whose Accept returns only connections within
// the Limiter's limits. Others are answered by Refuse and closed, off the
// accept loop, and Accept waits for the next one.
type Listener struct {
	net.Listener
	lim    *Limiter
	refuse func(net.Conn)

	refusing atomic.Int32
	wg       sync.WaitGroup
}

// NewListener wraps ln. refuse writes the protocol's refusal to a
// connection (under a RefuseTimeout deadline already set); the Listener
// closes the connection afterwards. A nil refuse closes without a word.
func NewListener(ln net.Listener, lim *Limiter, refuse func(net.Conn)) *Listener {
	return &Listener{Listener: ln, lim: lim, refuse: refuse}
}

// Accept implements net.Listener. The connections it returns are *Conn.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		release, ok := l.lim.Acquire(AddrOf(c.RemoteAddr()))
		if ok {
			return &Conn{Conn: c, release: release}, nil
		}
		l.reject(c)
	}
}

func (l *Listener) reject(c net.Conn) {
	if l.refuse == nil {
		_ = c.Close()
		return
	}
	if l.refusing.Add(1) > maxRefusing {
		l.refusing.Add(-1)
		_ = c.Close()
		return
	}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		defer l.refusing.Add(-1)
		_ = c.SetDeadline(time.Now().Add(RefuseTimeout))
		l.refuse(c)
		_ = c.Close()
	}()
}

// Wait waits for the refusals in progress to end (at most RefuseTimeout
// after the last one started).
func (l *Listener) Wait() { l.wg.Wait() }

// Conn is an accepted connection holding a slot of the Limiter. Close
// frees the slot once the connection is closed.
type Conn struct {
	net.Conn
	release func()
}

// Close closes the connection and releases its slot (once; later calls
// only close again).
func (c *Conn) Close() error {
	err := c.Conn.Close()
	c.release()
	return err
}

// RefuseLine returns a refuse function for NewListener that writes line.
func RefuseLine(line string) func(net.Conn) {
	return func(c net.Conn) { _, _ = c.Write([]byte(line)) }
}
