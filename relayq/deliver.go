package relayq

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/emersion/go-smtp"
	"go.uber.org/zap"

	"github.com/mxcont/mxcont/spool"
)

// outcome is the result of one delivery attempt of one message.
type outcome struct {
	delivered []int // recipient indexes accepted
	failed    []int // refused permanently (5xx)
	deferred  []int // temporary failure or not tried: retried later
	notes     []string

	hold     error // 421 or connection lost mid-session: pause the host
	brokenTx bool  // the connection is unusable (discard it)
	// staleConn: MAIL failed without a reply (a pooled connection the
	// server closed while it was idle); nothing was sent.
	staleConn bool
}

func (o *outcome) note(format string, a ...any) { o.notes = append(o.notes, fmt.Sprintf(format, a...)) }

// replyText renders an error as the server's reply when it is one.
func replyText(err error) (code int, text string) {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		t := fmt.Sprintf("%d", se.Code)
		if se.EnhancedCode != (smtp.EnhancedCode{}) && se.EnhancedCode != smtp.NoEnhancedCode {
			t += fmt.Sprintf(" %d.%d.%d", se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
		}
		if se.Message != "" {
			t += " " + strings.ReplaceAll(se.Message, "\n", " ")
		}
		return se.Code, t
	}
	return 0, err.Error()
}

// classify sorts a command's error for the recipients it concerns:
// 4xx → deferred, 5xx → failed; 503 (bad sequence: our state, not the
// message) → deferred on a new connection; 421, a non-reply error (I/O,
// timeout) or an unexpected code → deferred and the host paused.
func (o *outcome) classify(err error, stage string, idx []int, rcpts []string) {
	code, text := replyText(err)
	switch {
	case code == 503:
		o.deferred = append(o.deferred, idx...)
		o.brokenTx = true
	case code >= 500 && code < 600:
		o.failed = append(o.failed, idx...)
	case code >= 400 && code < 500 && code != 421:
		o.deferred = append(o.deferred, idx...)
	default:
		o.deferred = append(o.deferred, idx...)
		o.brokenTx = true
		if o.hold == nil {
			o.hold = fmt.Errorf("%s: %s", stage, text)
		}
	}
	if len(idx) == 1 && rcpts != nil {
		o.note("<%s>: %s: %s", rcpts[idx[0]], stage, text)
	} else {
		o.note("%s: %s", stage, text)
	}
}

// errReader remembers its reader's error, to tell a spool read failure
// from a network write failure in io.Copy.
type errReader struct {
	r   io.Reader
	err error
}

func (e *errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF {
		e.err = err
	}
	return n, err
}

// transact sends one message on pc: MAIL, RCPT for each pending
// recipient, DATA streamed from the spool. Recipients refused at RCPT do
// not hold up the others.
func (q *Queue) transact(pc *pconn, m *spool.Message, buf []byte) *outcome {
	o := &outcome{}
	c := pc.c
	pc.dc.step, pc.dc.hard = q.cfg.CommandTimeout, time.Time{}
	var pending []int
	for i, st := range m.Status {
		if st == spool.Pending {
			pending = append(pending, i)
		}
	}
	opts := &smtp.MailOptions{Size: m.Size, UTF8: !isASCII(m.From) || !allASCII(m.Rcpts)}
	if err := c.Mail(m.From, opts); err != nil {
		var se *smtp.SMTPError
		if opts.UTF8 && !errors.As(err, &se) && strings.Contains(err.Error(), "SMTPUTF8") {
			o.failed = append(o.failed, pending...)
			o.note("MAIL: relay host does not support SMTPUTF8 and the envelope needs it")
			return o
		}
		o.classify(err, "MAIL", pending, nil)
		o.staleConn = !errors.As(err, &se)
		return o
	}
	pc.msgs++
	var accepted []int
	for n, i := range pending {
		if err := c.Rcpt(m.Rcpts[i], nil); err != nil {
			o.classify(err, "RCPT", []int{i}, m.Rcpts)
			if o.brokenTx {
				o.deferred = append(o.deferred, pending[n+1:]...)
				o.deferred = append(o.deferred, accepted...)
				return o
			}
			continue
		}
		accepted = append(accepted, i)
	}
	if len(accepted) == 0 {
		q.reset(pc, o)
		return o
	}
	w, err := c.Data()
	if err != nil {
		o.classify(err, "DATA", accepted, nil)
		if !o.brokenTx {
			q.reset(pc, o)
		}
		return o
	}
	body, err := q.sp.OpenBody(m.ID)
	if err != nil {
		q.log.Error("open spool body", zapMsg(m.ID), zap.String("domain", m.Domain), zapErr(err))
		// We cannot end DATA without sending a truncated message.
		o.deferred = append(o.deferred, accepted...)
		o.brokenTx = true
		o.note("read spool: %v", err)
		return o
	}
	er := &errReader{r: body}
	pc.dc.hard = time.Now().Add(q.cfg.CommandTimeout + time.Duration(m.Size)*time.Second/time.Duration(q.cfg.MinDataRate))
	_, err = io.CopyBuffer(w, er, buf)
	_ = body.Close()
	if err != nil {
		o.deferred = append(o.deferred, accepted...)
		o.brokenTx = true
		if er.err != nil {
			q.log.Error("read spool body", zapMsg(m.ID), zap.String("domain", m.Domain), zapErr(er.err))
			o.note("read spool: %v", er.err)
		} else {
			o.hold = fmt.Errorf("DATA: %w", err)
			o.note("DATA: %v", err)
		}
		return o
	}
	pc.dc.step, pc.dc.hard = q.cfg.DataTimeout, time.Time{}
	_, err = w.CloseWithResponse()
	pc.dc.step = q.cfg.CommandTimeout
	if err != nil {
		o.classify(err, "end of DATA", accepted, nil)
		return o
	}
	o.delivered = append(o.delivered, accepted...)
	return o
}

// reset aborts the transaction with RSET so the connection can be reused.
func (q *Queue) reset(pc *pconn, o *outcome) {
	if err := pc.c.Reset(); err != nil {
		o.brokenTx = true
	}
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func allASCII(ss []string) bool {
	for _, s := range ss {
		if !isASCII(s) {
			return false
		}
	}
	return true
}

// deliverOne runs one delivery attempt of message id for domain d through
// host h and records it. It runs in its own goroutine; the caller has
// claimed the message and taken a pool slot, both released here.
func (h *host) deliverOne(ctx context.Context, id spool.ID, d domainConf, until time.Time) {
	q := h.q
	res := result{domain: d.name}
	bp := bufPool.Get().(*[]byte)
	buf := *bp
	defer func() {
		bufPool.Put(bp)
		q.releaseMsg(id)
		h.pool.release()
		h.results <- res
		q.wg.Done()
	}()
	m, err := q.sp.Get(id)
	if err != nil || m.State != spool.StateQueued || m.NextAttempt.After(until) {
		return // delivered, expired or rescheduled since it was listed
	}
	log := q.log.With(zapMsg(id), zap.String("domain", d.name), zapHost(h.addr))
	var o *outcome
	for try := 0; ; try++ {
		pc, reused, err := h.pool.get(ctx, d.requireTLS)
		if err != nil {
			if ctx.Err() != nil {
				return // stopping: abandoned, retried after restart
			}
			var ce *connectError
			if errors.As(err, &ce) {
				res.hostDown = err
				return // not an attempt of this message: the host is down
			}
			o = &outcome{}
			o.deferred = pendingIdx(&m)
			o.note("connect: %v", err)
			break
		}
		if err := pc.tlsProblem(d.requireTLS); err != nil {
			h.pool.put(pc)
			o = &outcome{deferred: pendingIdx(&m)}
			o.note("%v", err)
			break
		}
		stop := context.AfterFunc(ctx, func() { _ = pc.raw.Close() })
		o = q.transact(pc, &m, buf)
		if !stop() { // shutdown closed the connection
			h.pool.discard(pc)
			if o.brokenTx {
				return // abandoned: retried later (at-least-once)
			}
			break // it finished anyway: record it
		}
		if o.brokenTx {
			h.pool.discard(pc)
		} else {
			h.pool.put(pc)
		}
		// A pooled connection the server has closed meanwhile fails at
		// MAIL: try again on a fresh one without counting an attempt. When
		// one idle connection is stale (the primary restarted), the others
		// are too: drop them all, or each would cost a message a failed
		// attempt and a retry delay.
		if reused && try < 3 && o.staleConn {
			h.pool.closeIdle()
			continue
		}
		break
	}
	res.delivered = len(o.delivered)
	res.hold = o.hold
	q.record(log, &m, o, &res)
}

func pendingIdx(m *spool.Message) []int {
	var out []int
	for i, st := range m.Status {
		if st == spool.Pending {
			out = append(out, i)
		}
	}
	return out
}

// record stores the attempt in the spool and reports it.
func (q *Queue) record(log *zap.Logger, m *spool.Message, o *outcome, res *result) {
	a := spool.Attempt{Delivered: o.delivered, Failed: o.failed, Error: strings.Join(keptNotes(m, o.notes), "; ")}
	if len(o.deferred) > 0 {
		a.Next = q.now().Add(q.cfg.backoff(m.Attempts))
		res.next = a.Next
	}
	if err := q.sp.RecordAttempt(m.ID, a); err != nil {
		log.Error("record attempt", zapErr(err))
	}
	met := q.cfg.Metrics
	if n := len(o.delivered); n > 0 {
		met.Recipients(m.Domain, "delivered", n)
		log.Info("delivered", zap.Int("rcpts", n), zap.Int("attempt", m.Attempts+1))
	}
	if n := len(o.failed); n > 0 {
		met.Recipients(m.Domain, "failed", n)
		log.Warn("recipients failed", zap.Int("rcpts", n), zap.String("reply", a.Error))
	}
	if n := len(o.deferred); n > 0 {
		met.Recipients(m.Domain, "deferred", n)
		log.Info("deferred", zap.Int("rcpts", n), zap.String("reply", a.Error), zap.Time("next-attempt", a.Next))
	}
}

// keptNotes returns the notes of this attempt preceded by the replies
// kept from earlier attempts for recipients that failed permanently: the
// spool keeps one error text per message, and a failed recipient's reply
// must stay visible to the admin after later attempts for the others.
func keptNotes(m *spool.Message, notes []string) []string {
	if m.LastError == "" {
		return notes
	}
	var kept []string
	parts := strings.Split(m.LastError, "; <")
	for i, p := range parts {
		if i > 0 {
			p = "<" + p
		}
		for j, st := range m.Status {
			if st == spool.Failed && strings.HasPrefix(p, "<"+m.Rcpts[j]+">: ") {
				kept = append(kept, p)
				break
			}
		}
	}
	return append(kept, notes...)
}
