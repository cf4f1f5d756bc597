package relayq

import (
	"fmt"
	"io"
	"time"

	"go.uber.org/zap"

	"github.com/mxcont/mxcont/spool"
)

// tx is one message's SMTP transaction on a connection, in phases:
// prepare (no network), sendEnvelope (MAIL, and with PIPELINING every
// RCPT and DATA, written but not flushed), readEnvelope (their replies,
// and without PIPELINING the RCPTs and DATA one by one), writeBody (the
// body and the final dot, not flushed) and readEnd (the reply to the
// dot). Splitting them lets the next message's envelope leave in the same
// write as this message's body (RFC 2920 section 3.1: message content may
// start a pipelined group).
type tx struct {
	it       queued
	onUsed   bool  // the connection carried a transaction before this one
	werr     error // error of the write that sent the envelope
	m        spool.Message
	send     []int // pending recipients with a sendable address, in order
	utf8     bool
	body     *spool.BodyReader
	o        *outcome
	accepted []int
}

// close releases the body reader.
func (t *tx) close() {
	if t.body != nil {
		_ = t.body.Close()
		t.body = nil
	}
}

// prepare checks what needs no network and opens the body. It returns a
// nil tx when the outcome is already known (nothing to send, an envelope
// the relay host cannot take, a spool error); the body is opened before
// any command, so that a spool error never leaves a transaction half
// sent.
func (q *Queue) prepare(c *client, m *spool.Message) (*tx, *outcome) {
	o := &outcome{}
	t := &tx{m: *m, o: o, utf8: !m.ASCIIEnvelope()}
	for i, st := range m.Status {
		if st != spool.Pending {
			continue
		}
		if !validAddr(m.Rcpts[i]) { // never reaches the spool through smtpd
			o.failed = append(o.failed, i)
			o.note("<%s>: RCPT: address cannot be sent", m.Rcpts[i])
			continue
		}
		t.send = append(t.send, i)
	}
	switch {
	case len(t.send) == 0:
		return nil, o
	case t.utf8 && !c.has("SMTPUTF8"):
		o.failed = append(o.failed, t.send...)
		o.note("MAIL: relay host does not support SMTPUTF8 and the envelope needs it")
		return nil, o
	case !validAddr(m.From):
		o.failed = append(o.failed, t.send...)
		o.note("MAIL: sender address cannot be sent")
		return nil, o
	}
	body, err := q.sp.OpenBody(m.ID)
	if err != nil {
		q.log.Error("open spool body", zapMsg(m.ID), zap.String("domain", m.Domain), zapErr(err))
		o.deferred = append(o.deferred, t.send...)
		o.note("read spool: %v", err)
		return nil, o
	}
	t.body = body
	return t, nil
}

// sendEnvelope writes MAIL, and with PIPELINING every RCPT and DATA, to
// the connection's buffer; the caller flushes.
func (t *tx) sendEnvelope(c *client) {
	c.mail(t.m.From, t.m.Size, t.utf8)
	if c.pipelining {
		for _, i := range t.send {
			c.rcpt(t.m.Rcpts[i])
		}
		c.bw.WriteString("DATA\r\n")
	}
}

// readEnvelope reads the replies to the envelope (werr: the error of the
// write that sent it) and reports whether the server is waiting for the
// body (354). Otherwise t.o holds the outcome: recipients refused at RCPT
// do not hold up the others; a transaction that cannot go on is reset
// with RSET, or the connection is marked broken.
func (q *Queue) readEnvelope(pc *pconn, t *tx, werr error) bool {
	c, o := pc.c, t.o
	pipe := c.pipelining
	err := werr
	if err == nil {
		err = c.reply(2)
	}
	if err != nil {
		o.classify(err, "MAIL", t.send, nil)
		// No reply at all: a pooled connection the server closed while
		// it was idle. Nothing was delivered; the caller may retry.
		o.staleConn = !isReply(err)
		if pipe && !o.brokenTx {
			q.skipReplies(pc, o, len(t.send)+1) // the RCPTs and DATA, refused
		}
		return false
	}
	pc.msgs++
	t.accepted = make([]int, 0, len(t.send))
	for n, i := range t.send {
		if !pipe {
			c.rcpt(t.m.Rcpts[i])
			err = c.bw.Flush()
		}
		if err == nil {
			err = c.reply(2)
		}
		if err != nil {
			o.classify(err, "RCPT", []int{i}, t.m.Rcpts)
			if o.brokenTx { // the connection is dropped: unread replies do not matter
				o.deferred = append(o.deferred, t.send[n+1:]...)
				o.deferred = append(o.deferred, t.accepted...)
				return false
			}
			err = nil
			continue
		}
		t.accepted = append(t.accepted, i)
	}
	if !pipe {
		if len(t.accepted) == 0 {
			q.reset(pc, o)
			return false
		}
		c.bw.WriteString("DATA\r\n")
		err = c.bw.Flush()
	}
	if err == nil {
		err = c.reply(354)
	}
	if len(t.accepted) == 0 { // pipelined: DATA must have been refused
		switch {
		case err == nil: // a 354 with no recipient: send an empty message, drop the connection
			_ = pc.dw.close()
			if c.bw.Flush() == nil {
				_ = c.reply(2)
			}
			o.brokenTx = true
		case !isReply(err):
			o.brokenTx = true
		default:
			q.reset(pc, o)
		}
		return false
	}
	if err != nil {
		o.classify(err, "DATA", t.accepted, nil)
		if !o.brokenTx {
			q.reset(pc, o)
		}
		return false
	}
	return true
}

// writeBody writes the body, dot-stuffed, and the final dot to the
// connection's buffer (flushing as it fills), within CommandTimeout +
// size/MinDataRate. On failure t.o holds the outcome and the connection
// is broken.
func (q *Queue) writeBody(pc *pconn, t *tx, buf []byte) bool {
	c := pc.c
	er := &errReader{r: t.body}
	pc.dc.hard = time.Now().Add(q.cfg.CommandTimeout + time.Duration(t.m.Size)*time.Second/time.Duration(q.cfg.MinDataRate))
	pc.dw.reset(c.bw)
	_, err := io.CopyBuffer(&pc.dw, er, buf)
	t.close()
	if err == nil {
		err = pc.dw.close()
	}
	if err != nil {
		q.bodyFailed(t, er.err, err)
		return false
	}
	return true
}

// bodyFailed sets the outcome of a body that could not be sent: rerr is
// the spool's read error, if that was the cause, else werr the network's.
func (q *Queue) bodyFailed(t *tx, rerr, werr error) {
	o := t.o
	o.deferred = append(o.deferred, t.accepted...)
	o.brokenTx = true
	if rerr != nil {
		q.log.Error("read spool body", zapMsg(t.m.ID), zap.String("domain", t.m.Domain), zapErr(rerr))
		o.note("read spool: %v", rerr)
		return
	}
	o.hold = fmt.Errorf("DATA: %w", werr)
	o.note("DATA: %v", werr)
}

// readEnd reads the reply to the final dot (within DataTimeout).
func (q *Queue) readEnd(pc *pconn, t *tx) {
	pc.dc.step, pc.dc.hard = q.cfg.DataTimeout, time.Time{}
	err := pc.c.reply(2)
	pc.dc.step = q.cfg.CommandTimeout
	if err != nil {
		t.o.classify(err, "end of DATA", t.accepted, nil)
		return
	}
	t.o.delivered = append(t.o.delivered, t.accepted...)
}

// skipReplies reads n replies of a pipelined group whose MAIL was
// refused. A server that answers DATA with 354 anyway gets an empty
// message and the connection is dropped.
func (q *Queue) skipReplies(pc *pconn, o *outcome, n int) {
	for k := 0; k < n; k++ {
		code, _, err := pc.c.readReply(false)
		switch {
		case err != nil:
			o.brokenTx = true
			return
		case code == 354:
			_ = pc.dw.close()
			if pc.c.bw.Flush() == nil {
				_ = pc.c.reply(2)
			}
			o.brokenTx = true
			return
		}
	}
}

// reset aborts the transaction with RSET so the connection can be reused.
func (q *Queue) reset(pc *pconn, o *outcome) {
	if err := pc.c.cmd(2, "RSET"); err != nil {
		o.brokenTx = true
	}
}
