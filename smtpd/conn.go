package smtpd

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
	"go.uber.org/zap"
)

// sconn wraps each accepted connection before go-smtp sees it. It
//
//   - sets an idle read deadline before every Read (and a write deadline
//     before every Write), capped by the DATA deadline while a body is
//     being read: go-smtp's own ReadTimeout is set once per command line
//     and would bound the whole DATA phase;
//   - makes a timeout sticky, so that go-smtp's drain of an unfinished body
//     ends at once and the connection is closed with 421;
//   - lets Shutdown end idle connections while transactions finish;
//   - feeds the plaintext stream to a streamScanner, one command at a time;
//   - holds replies back until a read would block (or the connection
//     closes), so that the replies to pipelined commands, and the lines of
//     a multi-line reply (go-smtp flushes every line), leave in one write;
//   - releases its connection-limit slot when closed.
type sconn struct {
	net.Conn // the accepted connection (writes, addresses, Close)

	srv     *Server
	r       io.Reader // reads: Conn, or a bufio.Reader left by the PROXY header
	client  netip.Addr
	remote  net.Addr // the client's address (the PROXY source when proxied)
	proxied bool
	slotKey netip.Addr // per-address limit key
	ipSlot  bool       // slotKey holds a per-address slot

	scan    streamScanner
	rbuf    []byte // read from the client, not yet handed to go-smtp
	store   []byte // rbuf's backing array
	pendErr error  // read error that came with the bytes in rbuf
	rerr    error  // sticky read error
	pass    []byte // scanned bytes to hand go-smtp before rbuf (see bodyReader)
	closed  atomic.Bool

	// Replies are queued in wbuf and sent before the next read that
	// has to wait for the client (RFC 2920 section 3.1: "the server
	// flushes its output when it has no more input"), and on Close. The
	// lock is only contended when another goroutine closes the connection.
	wmu  sync.Mutex
	wbuf []byte
	werr error // sticky write error

	// The deadlines last set on Conn. Moving a deadline is a runtime
	// timer update under a lock, twice per command, so a later one
	// replaces it only when it is later by a tenth of the timeout (at
	// most deadlineSlack): timeouts may fire that much early. An earlier
	// one (the DATA deadline, Close's short flush) is always set.
	rdl, wdl time.Time

	// truncated is set when a command line ends without its line end:
	// the scanner refused it as over-long, or the read failed (timeout,
	// EOF, Shutdown) in the middle of it. go-smtp has by then been handed
	// the line's first bytes, and bufio.Reader.ReadLine returns them as a
	// line (dropping the read error), so go-smtp runs that truncated
	// command before it sees the error: the session refuses every command
	// from then on, and Write drops every reply but go-smtp's last one
	// (finalReply), so the client never sees a truncated command run.
	truncated atomic.Bool

	// lineDeadline is when the command line being received must be
	// complete (zero between lines): reads within a line do not renew the
	// idle timeout, or a client sending a byte now and then would hold
	// the connection forever (Postfix's smtpd_per_record_deadline).
	lineDeadline time.Time

	dataDeadline atomic.Int64 // unix nanoseconds; 0 when no body is being read
	inTxn        atomic.Bool  // a transaction is open (MAIL accepted)
	draining     atomic.Bool  // Shutdown: end the connection when idle
	closeOnce    sync.Once
}

func (c *sconn) idle() time.Duration { return c.srv.cfg.IdleTimeout }

// Read implements net.Conn. It hands go-smtp at most one command line
// (or the rest of one DATA body or BDAT chunk) per call, keeping what
// follows for the next call: the scanner then always knows what go-smtp
// is reading, and nothing the client pipelined after QUIT sits in
// go-smtp's buffer when it closes the connection.
func (c *sconn) Read(p []byte) (int, error) {
	if c.rerr != nil {
		return 0, c.rerr
	}
	if c.closed.Load() {
		return 0, net.ErrClosed
	}
	if len(p) == 0 {
		return 0, nil
	}
	if len(c.pass) > 0 {
		n := copy(p, c.pass)
		c.pass = c.pass[n:]
		return n, nil
	}
	if len(c.rbuf) == 0 && c.pendErr != nil {
		err := c.pendErr
		c.pendErr = nil
		return 0, c.readFailed(err)
	}
	if len(c.rbuf) > 0 {
		k, err := c.scan.feed(c.rbuf[:min(len(p), len(c.rbuf))])
		if err != nil {
			return 0, c.refused(err)
		}
		copy(p, c.rbuf[:k])
		c.rbuf = c.rbuf[k:]
		return k, nil
	}
	n, err := c.readRaw(p)
	if n == 0 {
		return 0, err
	}
	c.pendErr = err // returned once the data before it is consumed
	k, serr := c.scan.feed(p[:n])
	if serr != nil {
		return 0, c.refused(serr)
	}
	if k < n {
		c.store = append(c.store[:0], p[k:n]...)
		c.rbuf = c.store
	}
	return k, nil
}

// readRaw reads from the client under the idle (or DATA) deadline, after
// sending the replies queued so far: the client may be waiting for them.
func (c *sconn) readRaw(p []byte) (int, error) {
	if err := c.flush(); err != nil {
		return 0, err
	}
	for {
		now := time.Now()
		dl := now.Add(c.idle())
		if d := c.dataDeadline.Load(); d != 0 && d < dl.UnixNano() {
			dl = time.Unix(0, d)
		}
		if c.scan.inCommandLine() {
			if c.lineDeadline.IsZero() {
				c.lineDeadline = dl // the line began with the last read
			}
			dl = c.lineDeadline
		} else {
			c.lineDeadline = time.Time{}
		}
		// After drain() the deadline on Conn is in the past, whatever
		// rdl says: set it again.
		if err := c.setReadDeadline(dl, c.idle(), c.draining.Load()); err != nil {
			return 0, err
		}
		// Checked after setting the deadline: Shutdown sets draining and
		// then a past deadline, so one of the two is seen.
		if c.draining.Load() && !c.inTxn.Load() {
			c.rerr = os.ErrDeadlineExceeded // go-smtp: "421 4.4.2 Idle timeout"
			c.cutLine()
			return 0, c.rerr
		}
		n, err := c.r.Read(p)
		if n == 0 && err != nil && isTimeout(err) && c.draining.Load() && time.Now().Before(dl) {
			continue // woken by Shutdown: idle or not?
		}
		if n == 0 && err != nil {
			c.cutLine()
			return 0, c.readFailed(err)
		}
		return n, err
	}
}

// cutLine notes that the stream ends in the middle of a command line.
func (c *sconn) cutLine() {
	if c.scan.inCommandLine() {
		c.truncated.Store(true)
	}
}

// readFailed makes a timeout sticky: the connection is over, and go-smtp's
// drain of an unfinished body must not wait again.
func (c *sconn) readFailed(err error) error {
	if isTimeout(err) {
		c.rerr = err
	}
	return err
}

// refused records a scanner error, which ends the connection.
func (c *sconn) refused(err error) error {
	c.rerr = err
	if errors.Is(err, smtp.ErrTooLongLine) {
		c.truncated.Store(true)
	}
	if errors.Is(err, errProxyRefused) {
		c.srv.metrics.Rejected(ReasonProxyRefused)
		c.srv.log.Info("PROXY header from an untrusted client refused", zap.Stringer("client-ip", c.client))
	}
	return err
}

// finalReply reports whether p is one of the replies go-smtp writes when a
// read fails and it ends the connection (server.go: 500 5.4.0 for an
// over-long line, 421 4.4.2 for a timeout, 421 4.4.0 for other errors):
// the only replies a truncated connection sends.
func finalReply(p []byte) bool {
	return bytes.HasPrefix(p, tooLongReply) || bytes.HasPrefix(p, []byte("421 "))
}

// tooLongReply starts go-smtp's reply to smtp.ErrTooLongLine, the only
// reply sent after the scanner refused a command line.
var tooLongReply = []byte("500 5.4.0 Too long line")

// maxQueued bounds the replies held back; more is written at once.
const maxQueued = 4 << 10

// closeFlushWait bounds the wait for queued replies at Close, which may be
// called by Shutdown on another goroutine.
const closeFlushWait = 2 * time.Second

// Write implements net.Conn. It queues p; see wbuf.
func (c *sconn) Write(p []byte) (int, error) {
	if c.truncated.Load() && !finalReply(p) {
		return len(p), nil // the reply to a truncated command: see truncated
	}
	c.scan.wrote(p)
	c.dataDeadline.Store(0) // a reply ends any body
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr != nil {
		return 0, c.werr
	}
	if c.closed.Load() {
		return 0, net.ErrClosed
	}
	if len(c.wbuf)+len(p) > maxQueued {
		if err := c.flushLocked(c.idle()); err != nil {
			return 0, err
		}
		if len(p) > maxQueued {
			if err := c.setWriteDeadline(time.Now().Add(c.idle()), c.idle()); err != nil {
				return 0, err
			}
			n, err := c.Conn.Write(p)
			if err != nil {
				c.werr = err
			}
			return n, err
		}
	}
	c.wbuf = append(c.wbuf, p...)
	return len(p), nil
}

// flush sends the queued replies.
func (c *sconn) flush() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.flushLocked(c.idle())
}

func (c *sconn) flushLocked(wait time.Duration) error {
	if c.werr != nil {
		return c.werr
	}
	if len(c.wbuf) == 0 {
		return nil
	}
	if err := c.setWriteDeadline(time.Now().Add(wait), wait); err != nil {
		return err
	}
	_, err := c.Conn.Write(c.wbuf)
	c.wbuf = c.wbuf[:0]
	if err != nil {
		c.werr = err
	}
	return err
}

// Close implements net.Conn; it sends the queued replies (unless another
// goroutine is writing: then the connection is being cut anyway) and
// releases the connection's limit slot.
func (c *sconn) Close() error {
	err := net.ErrClosed
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		if c.wmu.TryLock() {
			_ = c.flushLocked(min(c.idle(), closeFlushWait))
			c.wmu.Unlock()
		}
		err = c.Conn.Close()
		if c.ipSlot {
			c.srv.limits.releaseIP(c.slotKey)
		}
		c.srv.limits.releaseTotal()
		c.srv.untrack(c)
	})
	return err
}

// deadlineSlack: see sconn.rdl.
const deadlineSlack = time.Second

// closeEnough reports whether deadline dl, for a timeout of d, may be
// left at the earlier prev.
func closeEnough(dl, prev time.Time, d time.Duration) bool {
	return !dl.Before(prev) && dl.Sub(prev) < min(deadlineSlack, d/10)
}

// setReadDeadline moves the read deadline to dl (for a timeout of d),
// unless it is closeEnough to the one already set and force is false.
func (c *sconn) setReadDeadline(dl time.Time, d time.Duration, force bool) error {
	if !force && closeEnough(dl, c.rdl, d) {
		return nil
	}
	c.rdl = dl
	return c.Conn.SetReadDeadline(dl)
}

// setWriteDeadline is setReadDeadline for writes; c.wmu is held.
func (c *sconn) setWriteDeadline(dl time.Time, d time.Duration) error {
	if closeEnough(dl, c.wdl, d) {
		return nil
	}
	c.wdl = dl
	return c.Conn.SetWriteDeadline(dl)
}

// RemoteAddr returns the client's address: the PROXY source when proxied.
func (c *sconn) RemoteAddr() net.Addr { return c.remote }

// SetDeadline and friends are no-ops: sconn owns the deadlines (go-smtp
// only sets them when its own timeouts are non-zero, and they are zero).
func (c *sconn) SetDeadline(time.Time) error { return nil }

// SetReadDeadline is a no-op; see SetDeadline.
func (c *sconn) SetReadDeadline(time.Time) error { return nil }

// SetWriteDeadline is a no-op; see SetDeadline.
func (c *sconn) SetWriteDeadline(time.Time) error { return nil }

// startData caps reads until the next reply at d from now.
func (c *sconn) startData(d time.Duration) {
	c.dataDeadline.Store(time.Now().Add(d).UnixNano())
}

// drain makes the connection end at its next idle read (or now, if it is
// waiting for a command). A transaction in progress is left to finish.
func (c *sconn) drain() {
	c.draining.Store(true)
	_ = c.Conn.SetReadDeadline(time.Unix(1, 0))
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
