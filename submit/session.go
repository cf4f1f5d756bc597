package submit

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net/netip"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"go.uber.org/zap"

	"github.com/mxcont/mxcont/outbound"
	"github.com/mxcont/mxcont/spool"

	"github.com/mxcont/mxcont/internal/tracehdr"
)

// Replies. Every failure is an *smtp.SMTPError returned unwrapped: go-smtp
// turns any other error into a permanent 554 carrying its text.
var (
	errAuthRequired = &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0},
		Message: "Authentication required"}
	errEncryptionRequired = &smtp.SMTPError{Code: 538, EnhancedCode: smtp.EnhancedCode{5, 7, 11},
		Message: "Encryption required: issue STARTTLS first"}
	errBadCredentials = &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8},
		Message: "Authentication credentials invalid"}
	errAuthThrottled = &smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0},
		Message: "Too many failed logins, try again later"}
	errAuthUnavailable = &smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0},
		Message: "Temporary authentication failure"}
	errMechanism = &smtp.SMTPError{Code: 504, EnhancedCode: smtp.EnhancedCode{5, 5, 4},
		Message: "Unrecognized authentication mechanism"}
	errAuthzid = &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8},
		Message: "Authorization identity not supported"}
	errNotOwner = &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 7, 1},
		Message: "Sender address is not yours: use your own address"}
	errRateLimited = &smtp.SMTPError{Code: 450, EnhancedCode: smtp.EnhancedCode{4, 7, 1},
		Message: "Sending rate exceeded, try again later"}
	errBadRcpt = &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 1, 3},
		Message: "Bad recipient address"}
	errTooLarge = &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4},
		Message: "Message exceeds the size limit"}
	errLongLine = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0},
		Message: "Message has a line that is too long"}
	errTempLocal = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0},
		Message: "Temporary local problem, try again later"}
	errDataTimeoutReply = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 4, 2},
		Message: "Timeout reading the message, closing connection"}
)

// session is one client session (go-smtp makes a new one after STARTTLS).
type session struct {
	s      *Server
	conn   *sconn
	helo   string
	client netip.Addr
	tls    string // protocol and cipher; "" without TLS
	secure bool   // TLS, or a client allowed plain-text AUTH

	user *address // authenticated user, nil before AUTH

	// the open transaction
	from   string
	rcpts  []string
	txnID  string
	logged bool // its log line is written
}

func (s *Server) newSession(c *smtp.Conn) *session {
	sess := &session{s: s, conn: sconnOf(c.Conn()), helo: c.Hostname()}
	if sess.conn != nil {
		sess.client = sess.conn.ip
	}
	if cs, ok := c.TLSConnectionState(); ok {
		sess.tls = tls.VersionName(cs.Version) + " " + tls.CipherSuiteName(cs.CipherSuite)
	}
	sess.secure = sess.tls != "" || s.cfg.InsecureAuth(c.Conn().RemoteAddr())
	return sess
}

// AuthMechanisms implements smtp.AuthSession: none until the connection
// is encrypted (or the client is allowed plain-text AUTH).
func (x *session) AuthMechanisms() []string {
	if !x.secure {
		return nil
	}
	return []string{sasl.Plain, sasl.Login}
}

// Auth implements smtp.AuthSession.
func (x *session) Auth(mech string) (sasl.Server, error) {
	if !x.secure {
		return nil, errEncryptionRequired
	}
	if x.s.ipThrottle.Wait(x.ipKey()) > 0 {
		x.s.log.Info("auth throttled", zap.String("client-ip", x.client.String()), zap.String("reason", "client address"))
		return nil, errAuthThrottled
	}
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, user, pass string) error {
			if identity != "" && identity != user {
				return errAuthzid
			}
			return x.authenticate(user, pass)
		}), nil
	case sasl.Login:
		return newLoginServer(x.authenticate), nil
	}
	return nil, errMechanism
}

func (x *session) ipKey() string { return "ip:" + x.client.String() }

// authenticate checks a login against the throttles and the user store.
func (x *session) authenticate(user, pass string) error {
	s := x.s
	addr, ok := parseAddress(strings.TrimSpace(user))
	key := strings.ToLower(user)
	if ok {
		key = addr.key()
	}
	if len(key) > 320 {
		key = key[:320]
	}
	userKey := "user:" + key
	lg := s.log.With(zap.String("user", tracehdr.Text(key, "?")), zap.String("client-ip", x.client.String()))
	if max(s.userThrottle.Wait(userKey), s.ipThrottle.Wait(x.ipKey())) > 0 {
		lg.Info("auth throttled")
		return errAuthThrottled
	}
	var err error
	if !ok {
		err = errors.New("not a mail address")
	} else {
		ctx, cancel := context.WithTimeout(s.ctx, s.cfg.AuthTimeout)
		err = s.users.Authenticate(ctx, addr.String(), pass)
		cancel()
	}
	switch {
	case err == nil:
		s.userThrottle.Succeed(userKey)
		x.user = &addr
		lg.Info("auth ok", zap.Bool("tls", x.tls != ""))
		return nil
	case errors.Is(err, ErrUnavailable):
		lg.Error("auth unavailable", zap.Error(err))
		return errAuthUnavailable
	}
	s.userThrottle.Fail(userKey)
	s.ipThrottle.Fail(x.ipKey())
	lg.Info("auth failed", zap.Error(err))
	return errBadCredentials
}

// Mail implements smtp.Session: only an authenticated user, only with
// their own address, only within their sending rate.
func (x *session) Mail(from string, _ *smtp.MailOptions) error {
	x.Reset()
	if x.user == nil {
		x.refuse(from, errAuthRequired, "not authenticated")
		return errAuthRequired
	}
	// The mailbox store folds user names to lower case, so Alice@ and
	// alice@ are one user: the same owner, as with Postfix's
	// reject_sender_login_mismatch, whose lookups ignore case.
	a, ok := parseAddress(from)
	if !ok || a.key() != x.user.key() {
		x.refuse(from, errNotOwner, "foreign sender")
		return errNotOwner
	}
	if !x.s.rate.allow(x.user.key()) {
		x.refuse(from, errRateLimited, "rate limit")
		return errRateLimited
	}
	x.from, x.txnID = a.String(), randomHex(6)
	if x.conn != nil {
		x.conn.inTxn.Store(true)
	}
	return nil
}

// Rcpt implements smtp.Session. go-smtp enforces MaxRecipients.
func (x *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	a, ok := parseAddress(to)
	if !ok {
		return errBadRcpt
	}
	x.rcpts = append(x.rcpts, a.String())
	return nil
}

// Data implements smtp.Session. It answers 250 only once the message is
// durable in the outbound queue, and every failure is an unwrapped
// *smtp.SMTPError (451 4.3.0 for anything not the client's fault).
func (x *session) Data(r io.Reader) error {
	s := x.s
	now := time.Now()
	if x.conn != nil {
		x.conn.dataDeadline.Store(now.Add(s.cfg.DataTimeout).UnixNano())
		defer x.conn.dataDeadline.Store(0)
	}
	cr := &countingReader{r: &deadlineReader{r: r, deadline: now.Add(s.cfg.DataTimeout)}}
	br := bufio.NewReaderSize(newCRLFReader(cr), 64<<10)
	hdr, info, err := scanHeader(br)
	if err != nil {
		return x.finish(nil, cr.n, err)
	}
	t := trace{helo: x.helo, client: x.client, hostname: s.cfg.Hostname, tls: x.tls, id: x.txnID, now: now}
	body := io.MultiReader(bytes.NewReader(traceFields(t, info, s.cfg.KeepHeaders)), bytes.NewReader(hdr), br)
	ids, err := s.q.Submit(x.from, x.rcpts, body)
	if err == nil {
		s.rate.take(x.user.key())
	}
	return x.finish(ids, cr.n, err)
}

// finish maps the outcome of DATA to the reply and logs the transaction.
func (x *session) finish(ids []spool.ID, size int64, err error) error {
	var reply *smtp.SMTPError
	result := "queued"
	switch {
	case err == nil:
		reply = &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0},
			Message: "OK queued as " + strings.Join(stringsOf(ids), ",")}
	case errors.Is(err, smtp.ErrDataTooLarge), errors.Is(err, outbound.ErrTooLarge):
		reply, result = errTooLarge, "too large"
	case errors.Is(err, smtp.ErrTooLongLine):
		reply, result = errLongLine, "line too long"
	case errors.Is(err, errDataTimeout):
		reply, result = errDataTimeoutReply, "timeout"
	default:
		reply, result = errTempLocal, "deferred"
	}
	fields := []zap.Field{zap.Int("code", reply.Code), zap.String("result", result),
		zap.Strings("queue-ids", stringsOf(ids)), zap.Int64("size", size)}
	if err != nil {
		fields = append(fields, zap.Error(err))
	}
	x.logTxn(fields...)
	return reply
}

func stringsOf(ids []spool.ID) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = id.String()
	}
	return out
}

// refuse logs a transaction refused at MAIL.
func (x *session) refuse(from string, reply *smtp.SMTPError, reason string) {
	x.from = from
	x.logTxn(zap.Int("code", reply.Code), zap.String("result", "refused"), zap.String("reason", reason))
	x.from = ""
}

// logTxn writes the transaction's one log line.
func (x *session) logTxn(fields ...zap.Field) {
	x.logged = true
	user := ""
	if x.user != nil {
		user = x.user.String()
	}
	x.s.log.Info("submission", append([]zap.Field{
		zap.String("txn-id", x.txnID), zap.String("user", user), zap.String("client-ip", x.client.String()),
		zap.String("from", x.from), zap.Int("rcpts", len(x.rcpts)), zap.Bool("tls", x.tls != ""),
	}, fields...)...)
}

// Reset implements smtp.Session: the transaction ends (a transaction
// abandoned before DATA gets its log line here).
func (x *session) Reset() {
	if x.from != "" && !x.logged {
		x.logTxn(zap.String("result", "abandoned"))
	}
	x.from, x.rcpts, x.txnID, x.logged = "", nil, "", false
	if x.conn != nil {
		x.conn.inTxn.Store(false)
	}
}

// Logout implements smtp.Session.
func (x *session) Logout() error {
	x.Reset()
	return nil
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
