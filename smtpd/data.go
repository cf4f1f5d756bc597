package smtpd

import (
	"errors"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
	"go.uber.org/zap"

	"github.com/mxcont/mxcont/spool"
)

const readChunk = 32 << 10

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 2*readChunk); return &b }}

// dataResult is the outcome of one DATA.
type dataResult struct {
	ids    []spool.ID
	size   int64 // body bytes as received, line endings fixed
	err    *smtp.SMTPError
	reason string
	detail error // for the log only
}

// Data implements smtp.Session. It never returns nil: success is a 250
// SMTPError carrying the queue ids, and every failure is an SMTPError
// (go-smtp would turn any other error into a permanent 554).
func (s *session) Data(r io.Reader) error {
	if s.conn.truncated.Load() {
		s.takeTxn()
		s.conn.inTxn.Store(false)
		return errTruncatedCommand
	}
	t := s.takeTxn()
	if t == nil || len(t.groups) == 0 {
		s.conn.inTxn.Store(false)
		return &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "no valid recipients"}
	}
	var br *bodyReader
	if _, bdat := r.(*io.PipeReader); !bdat && !s.srv.cfg.goSMTPData {
		// DATA (not BDAT, whose Data runs on another goroutine): read the
		// body in bulk if the connection is plaintext.
		br = newBodyReader(s.conn, s.srv.smtp.MaxMessageBytes, s.srv.smtp.MaxLineLength)
	}
	if br != nil {
		s.srv.bulkBodies.Add(1)
		r = br
	}
	res := s.receive(t, r)
	if br != nil {
		br.finish()
	}
	s.conn.inTxn.Store(false)
	if res.err != nil {
		s.srv.metrics.Rejected(res.reason)
		outcome := "rejected"
		if res.err.Temporary() {
			outcome = "deferred"
		}
		s.logLine(t, res.err.Code, outcome, res.reason, nil, res.size, res.detail)
		return res.err
	}
	s.srv.metrics.Accepted(int(res.size))
	s.logLine(t, 250, "queued", "", res.ids, res.size, nil)
	qids := make([]string, len(res.ids))
	for i, id := range res.ids {
		qids[i] = id.String()
	}
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "queued as " + strings.Join(qids, ",")}
}

// receive streams the body into one spool writer per recipient domain and
// commits them all.
func (s *session) receive(t *transaction, r io.Reader) (res dataResult) {
	cfg := &s.srv.cfg
	start := time.Now()
	s.conn.startData(cfg.DataTimeout)
	if !s.srv.haveSpace(0) {
		return dataResult{err: errNoSpace, reason: ReasonNoSpace}
	}
	ws := make([]*spool.Writer, 0, len(t.groups))
	committed := false
	defer func() {
		if !committed {
			for _, w := range ws {
				w.Abort()
			}
		}
	}()
	for _, g := range t.groups {
		w, err := s.srv.sp.Create(spool.Envelope{Domain: g.domain, From: t.from, Rcpts: g.rcpts})
		if err != nil {
			return spoolFailure(err)
		}
		ws = append(ws, w)
		if _, err := w.Write(received(t, g, s, cfg.Hostname, start)); err != nil {
			return spoolFailure(err)
		}
	}

	inp := bufPool.Get().(*[]byte)
	out := bufPool.Get().(*[]byte)
	defer bufPool.Put(inp)
	defer bufPool.Put(out)
	buf := (*inp)[:readChunk]
	fix := newlineFixer{reject: cfg.BareNewlines == BareNewlinesReject}
	hdr := headerScanner{max: cfg.MaxReceivedHeaders}
	var size int64
	for {
		n, rerr := r.Read(buf)
		if n > 0 {
			o, err := fix.append((*out)[:0], buf[:n])
			*out = o[:0]
			if err != nil {
				return contentFailure(err, size)
			}
			if err := hdr.scan(o); err != nil {
				return contentFailure(err, size)
			}
			size += int64(len(o))
			for _, w := range ws {
				if _, err := w.Write(o); err != nil {
					res = spoolFailure(err)
					res.size = size
					return res
				}
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			res = readFailure(rerr)
			res.size = size
			return res
		}
		if time.Since(start) > cfg.DataTimeout { // BDAT: chunks are read under idle deadlines only
			return dataResult{err: errDataTimeout, reason: ReasonTimeout, size: size, detail: errors.New("DataTimeout")}
		}
	}
	if err := fix.finish(); err != nil {
		return contentFailure(err, size)
	}
	committed = true
	ids, err := spool.CommitAll(ws)
	if err != nil {
		res = spoolFailure(err)
		res.size = size
		return res
	}
	if err := s.fileShadows(t, ids); err != nil {
		res = dataResult{err: errTempLocal, reason: ReasonShadow, size: size, detail: err}
		return res
	}
	return dataResult{ids: ids, size: size}
}

// fileShadows hands the committed records of mode-both domains to the
// shadow mailboxes before the 250. If that fails the records are deleted
// again (best effort) and the client gets 451: it retries, and the relay
// copy is not duplicated.
func (s *session) fileShadows(t *transaction, ids []spool.ID) error {
	sh := s.srv.cfg.Shadow
	if sh == nil {
		return nil
	}
	for i, g := range t.groups {
		if !g.shadow {
			continue
		}
		if err := sh.File(spool.Envelope{Domain: g.domain, From: t.from, Rcpts: g.rcpts}, ids[i]); err != nil {
			for _, id := range ids {
				if derr := s.srv.sp.Delete(id, "smtpd"); derr != nil {
					s.srv.log.Error("delete after shadow failure", zap.String("queue_id", id.String()), zap.Error(derr))
				}
			}
			return err
		}
	}
	return nil
}

var (
	errTooLarge = &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4},
		Message: "message exceeds the size limit"}
	errDataTimeout = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 4, 2},
		Message: "timeout reading the message, closing connection"}
	errConnection = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 4, 0},
		Message: "connection error"}
)

// spoolFailure maps a spool error: too large is permanent, everything
// else temporary, with no detail leaked to the client.
func spoolFailure(err error) dataResult {
	if errors.Is(err, spool.ErrTooLarge) {
		return dataResult{err: errTooLarge, reason: ReasonTooLarge, detail: err}
	}
	return dataResult{err: errTempLocal, reason: ReasonSpool, detail: err}
}

// readFailure maps an error reading the body from go-smtp.
func readFailure(err error) dataResult {
	switch {
	case errors.Is(err, smtp.ErrDataTooLarge):
		return dataResult{err: errTooLarge, reason: ReasonTooLarge, detail: err}
	case errors.Is(err, smtp.ErrTooLongLine):
		return dataResult{err: &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0},
			Message: "message has a line that is too long"}, reason: ReasonLongLine, detail: errBodyLineTooLong}
	case isTimeout(err):
		return dataResult{err: errDataTimeout, reason: ReasonTimeout, detail: err}
	default: // the client went away, or RSET during BDAT
		return dataResult{err: errConnection, reason: ReasonAborted, detail: err}
	}
}

// contentFailure maps a refusal of the message content.
func contentFailure(err error, size int64) dataResult {
	res := dataResult{size: size, detail: err}
	switch err {
	case errBareLF, errBareCR:
		res.err = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 11},
			Message: "bare CR or LF not allowed, use CRLF line endings"}
		res.reason = ReasonBareNewline
	case errTooManyHops:
		res.err = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 4, 6},
			Message: "too many Received: fields, mail loop?"}
		res.reason = ReasonLoop
	default:
		res.err = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0},
			Message: "NUL byte in message header"}
		res.reason = ReasonBadHeader
	}
	return res
}
