package relayq

import (
	"errors"
	"fmt"
	"io"
	"strings"

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
	// staleConn: MAIL failed without a reply (a connection the server
	// closed while it was idle in the pool, or after its last message);
	// nothing was delivered.
	staleConn bool
}

func (o *outcome) note(format string, a ...any) { o.notes = append(o.notes, fmt.Sprintf(format, a...)) }

// replyText renders an error as the server's reply when it is one.
func replyText(err error) (code int, text string) {
	var re *replyError
	if errors.As(err, &re) {
		return re.Code, re.Error()
	}
	return 0, err.Error()
}

func isReply(err error) bool {
	var re *replyError
	return errors.As(err, &re)
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
func (q *Queue) record(relayHost string, m *spool.Message, o *outcome, res *result) {
	a := spool.Attempt{Delivered: o.delivered, Failed: o.failed, Error: strings.Join(keptNotes(m, o.notes), "; ")}
	if len(o.deferred) > 0 {
		a.Next = q.now().Add(q.cfg.backoff(m.Attempts))
		res.next = a.Next
	}
	ids := func() []zap.Field {
		return []zap.Field{zapMsg(m.ID), zap.String("domain", m.Domain), zapHost(relayHost)}
	}
	if err := q.sp.RecordAttempt(m.ID, a); err != nil {
		q.log.Error("record attempt", append(ids(), zapErr(err))...)
	}
	met := q.cfg.Metrics
	if n := len(o.delivered); n > 0 {
		met.Recipients(m.Domain, "delivered", n)
		q.log.Info("delivered", append(ids(), zap.Int("rcpts", n), zap.Int("attempt", m.Attempts+1))...)
	}
	if n := len(o.failed); n > 0 {
		met.Recipients(m.Domain, "failed", n)
		q.log.Warn("recipients failed", append(ids(), zap.Int("rcpts", n), zap.String("reply", a.Error))...)
	}
	if n := len(o.deferred); n > 0 {
		met.Recipients(m.Domain, "deferred", n)
		q.log.Info("deferred", append(ids(), zap.Int("rcpts", n), zap.String("reply", a.Error), zap.Time("next-attempt", a.Next))...)
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
