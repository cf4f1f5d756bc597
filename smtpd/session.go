package smtpd

import (
	"crypto/rand"
	"encoding/hex"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
	"go.uber.org/zap"

	"github.com/mxcont/mxcont/engine/registry"
	"github.com/mxcont/mxcont/spool"
)

// maxHeloLen bounds the HELO/EHLO argument (a domain is at most 255 octets).
const maxHeloLen = 255

// maxLoggedRefusals bounds the refused recipients listed in a log line.
const maxLoggedRefusals = 20

var (
	errTempLocal = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0},
		Message: "temporary local problem, try again later"}
	errShuttingDown = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2},
		Message: "service shutting down, try again later"}
	errNoSpace = &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 3, 1},
		Message: "insufficient system storage, try again later"}
	errNestedMail = &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1},
		Message: "nested MAIL command"}
	errTooManyDomains = &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 5, 3},
		Message: "too many recipient domains, send the rest in another transaction"}
)

// session is one SMTP session of a connection (go-smtp starts a new one
// after STARTTLS). go-smtp calls Mail, Rcpt and Reset from the connection's
// goroutine; Data for BDAT runs on another goroutine, and Logout may come
// from Shutdown, hence mu.
type session struct {
	srv  *Server
	conn *sconn
	c    *smtp.Conn
	tls  string // "TLS 1.3 TLS_AES_128_GCM_SHA256"; empty without TLS

	mu  sync.Mutex
	txn *transaction
}

// transaction is the state from MAIL to the end of DATA (or RSET).
type transaction struct {
	id      string // per-transaction id, in the Received: field and the log
	start   time.Time
	helo    string
	from    string
	utf8    bool
	groups  []*rcptGroup // one per recipient domain, in RCPT order
	byName  map[string]*rcptGroup
	seen    map[string]bool
	nrcpt   int
	refused []string
}

// rcptGroup is the recipients of one domain: one spool record.
type rcptGroup struct {
	domain string
	rcpts  []string
	shadow bool // the domain is in mode both: file shadow copies too
}

// errTruncatedCommand refuses a command go-smtp parsed from the first
// bytes of a line whose end never came (see sconn.truncated); the client
// never sees it, only the 500 or 421 that closes the connection.
var errTruncatedCommand = &smtp.SMTPError{Code: 500, EnhancedCode: smtp.EnhancedCode{5, 4, 0}, Message: "line too long"}

func newTxnID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Mail implements smtp.Session.
func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	if s.conn.truncated.Load() {
		return errTruncatedCommand
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	reject := func(err *smtp.SMTPError, reason string) error {
		s.srv.metrics.Rejected(reason)
		s.logLine(&transaction{id: newTxnID(), start: time.Now(), helo: s.c.Hostname(), from: from},
			err.Code, "rejected", reason, nil, 0, nil)
		return err
	}
	if s.txn != nil {
		return reject(errNestedMail, ReasonSequence)
	}
	if s.srv.closing.Load() {
		return reject(errShuttingDown, ReasonShutdown)
	}
	if len(from) > s.srv.cfg.MaxLineLength {
		return reject(&smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 1, 7}, Message: "sender address too long"}, ReasonAddress)
	}
	canon, ok := canonicalSender(from)
	if !ok {
		return reject(&smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 1, 7}, Message: "bad sender address syntax"}, ReasonAddress)
	}
	if !s.srv.haveSpace(opts.Size) {
		return reject(errNoSpace, ReasonNoSpace)
	}
	s.txn = &transaction{
		id:     newTxnID(),
		start:  time.Now(),
		helo:   s.c.Hostname(),
		from:   canon,
		utf8:   opts.UTF8,
		byName: make(map[string]*rcptGroup),
		seen:   make(map[string]bool),
	}
	s.conn.inTxn.Store(true)
	return nil
}

// Rcpt implements smtp.Session.
func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if s.conn.truncated.Load() {
		return errTruncatedCommand
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.txn
	if t == nil {
		return &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "need MAIL command"}
	}
	d, canon, serr, reason := s.checkRcpt(to)
	if serr == nil && t.byName[d.Name] == nil && len(t.groups) >= s.srv.cfg.MaxDomains {
		serr, reason = errTooManyDomains, ReasonTooManyRcpts
	}
	if serr != nil {
		s.srv.metrics.Rejected(reason)
		if len(t.refused) < maxLoggedRefusals {
			t.refused = append(t.refused, to)
		}
		return serr
	}
	g := t.byName[d.Name]
	if g == nil {
		g = &rcptGroup{domain: d.Name, shadow: d.Mode == registry.ModeBoth}
		t.byName[d.Name] = g
		t.groups = append(t.groups, g)
	}
	if !t.seen[canon] { // a duplicate RCPT gets 250 but is stored once
		t.seen[canon] = true
		g.rcpts = append(g.rcpts, canon)
		t.nrcpt++
	}
	return nil
}

// Reset implements smtp.Session.
func (s *session) Reset() { s.endTxn() }

// Logout implements smtp.Session.
func (s *session) Logout() error {
	s.endTxn()
	return nil
}

// endTxn logs a transaction that ended without DATA.
func (s *session) endTxn() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t := s.txn; t != nil {
		s.txn = nil
		s.logLine(t, 0, "abandoned", "", nil, 0, nil)
	}
	s.conn.inTxn.Store(false)
}

// takeTxn hands the transaction to Data.
func (s *session) takeTxn() *transaction {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.txn
	s.txn = nil
	return t
}

// haveSpace reports whether the spool's filesystem stays above the floor
// after size more bytes. If free space cannot be read, mail is accepted
// (the spool reports real write failures itself).
func (s *Server) haveSpace(size int64) bool {
	if s.cfg.MinFreeBytes < 0 {
		return true
	}
	free, err := s.free.get(s.sp.Dir())
	if err != nil {
		s.log.Warn("cannot read free space of the spool filesystem", zap.Error(err))
		return true
	}
	return free-size >= s.cfg.MinFreeBytes
}

// logLine writes the one mail-log line of a transaction.
// outcome is "queued", "rejected" (5xx), "deferred" (4xx) or "abandoned"
// (no DATA); reason is one of the Reason* constants.
func (s *session) logLine(t *transaction, code int, outcome, reason string, ids []spool.ID, size int64, err error) {
	var rcpts []string
	if len(t.groups) == 1 {
		rcpts = t.groups[0].rcpts // the common case: no copy
	} else {
		rcpts = make([]string, 0, t.nrcpt)
		for _, g := range t.groups {
			rcpts = append(rcpts, g.rcpts...)
		}
	}
	qids := make([]string, len(ids))
	for i, id := range ids {
		qids[i] = id.String()
	}
	fields := [...]zap.Field{
		zap.String("txn-id", t.id),
		zap.Strings("queue-ids", qids),
		zap.Stringer("client-ip", s.conn.client),
		zap.Bool("proxied", s.conn.proxied),
		zap.String("helo", t.helo),
		zap.String("tls", s.tls),
		zap.String("from", t.from),
		zap.Int("rcpt-count", len(rcpts)),
		zap.Strings("rcpts", rcpts),
		zap.Strings("refused-rcpts", t.refused),
		zap.Int64("size", size),
		zap.Int("result", code),
		zap.String("outcome", outcome),
		zap.String("reason", reason),
		zap.Int64("duration-ms", time.Since(t.start).Milliseconds()),
		zap.Skip(),
	}
	if err != nil {
		fields[len(fields)-1] = zap.Error(err)
	}
	s.srv.mlog.Info("smtp transaction", fields[:]...)
}
