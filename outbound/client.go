package outbound

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"go.uber.org/zap"

	"github.com/mxcont/mxcont/spool"
)

// deadlineConn puts a deadline on every Read and Write, step from now.
// go-smtp's client sets no deadline while the body is written and clears
// its own after each command, so its SetDeadline calls are ignored and
// ours apply instead. step is changed only by the connection's owner,
// between operations.
type deadlineConn struct {
	net.Conn
	step time.Duration
}

func (c *deadlineConn) Read(p []byte) (int, error) {
	if err := c.Conn.SetReadDeadline(time.Now().Add(c.step)); err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

func (c *deadlineConn) Write(p []byte) (int, error) {
	if err := c.Conn.SetWriteDeadline(time.Now().Add(c.step)); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

// SetDeadline ignores the caller's deadline; see deadlineConn.
func (c *deadlineConn) SetDeadline(time.Time) error { return nil }

// SetReadDeadline ignores the caller's deadline; see deadlineConn.
func (c *deadlineConn) SetReadDeadline(time.Time) error { return nil }

// SetWriteDeadline ignores the caller's deadline; see deadlineConn.
func (c *deadlineConn) SetWriteDeadline(time.Time) error { return nil }

// greetedConn replays a 220 greeting before the real stream: we read the
// banner, say EHLO and do STARTTLS ourselves, because go-smtp's client
// has no opportunistic STARTTLS; its NewClient then reads this greeting
// and says EHLO again (required after STARTTLS anyway).
type greetedConn struct {
	net.Conn
	pre []byte
}

func (c *greetedConn) Read(p []byte) (int, error) {
	if len(c.pre) > 0 {
		n := copy(p, c.pre)
		c.pre = c.pre[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// errTLSHandshake marks a failed TLS handshake after STARTTLS was
// accepted: the connection is unusable, a new one may go without TLS.
var errTLSHandshake = errors.New("TLS handshake failed")

// client is one SMTP connection to a hop.
type client struct {
	raw    net.Conn
	dc     *deadlineConn
	c      *smtp.Client
	hop    hop
	tls    bool
	broken bool // unusable: do not send more on it
	stop   func() bool
}

// connect opens a connection ready for MAIL: TCP, banner, EHLO,
// STARTTLS when offered (and tryTLS), EHLO again, AUTH for the node
// smarthost. Smarthost certificates are verified (unless
// SmarthostInsecureTLS), MX host certificates are not.
func (q *Queue) connect(ctx context.Context, h hop, rt route, tryTLS bool) (*client, error) {
	d := net.Dialer{Timeout: q.cfg.DialTimeout}
	raw, err := d.DialContext(ctx, "tcp", h.addr)
	if err != nil {
		return nil, err
	}
	ok := false
	cl := &client{raw: raw, hop: h, stop: context.AfterFunc(ctx, func() { _ = raw.Close() })}
	defer func() {
		if !ok {
			cl.stop()
			_ = raw.Close()
		}
	}()
	cl.dc = &deadlineConn{Conn: raw, step: q.cfg.CommandTimeout}
	br := bufio.NewReaderSize(cl.dc, 4096)
	ext, err := handshake(cl.dc, br, q.cfg.Hostname)
	if err != nil {
		return nil, err
	}
	var sc net.Conn = cl.dc
	if _, offered := ext["STARTTLS"]; offered && tryTLS {
		if _, err := io.WriteString(cl.dc, "STARTTLS\r\n"); err != nil {
			return nil, fmt.Errorf("STARTTLS: %w", err)
		}
		_, _, err := textproto.NewReader(br).ReadResponse(220)
		var te *textproto.Error
		switch {
		case errors.As(err, &te): // refused: go on in plain text
		case err != nil:
			return nil, fmt.Errorf("STARTTLS: %w", err)
		case br.Buffered() > 0:
			return nil, errors.New("STARTTLS: data after the 220 reply")
		default:
			tc := tls.Client(cl.dc, q.tlsConfig(h, rt))
			if err := tc.HandshakeContext(ctx); err != nil {
				return nil, fmt.Errorf("%w: %w", errTLSHandshake, err)
			}
			sc, cl.tls = tc, true
		}
	}
	if !cl.tls && br.Buffered() > 0 {
		return nil, errors.New("unexpected data from the server")
	}
	if rt.auth && !cl.tls {
		return nil, errors.New("smarthost offers no STARTTLS: credentials are not sent in plain text")
	}
	cl.c = smtp.NewClient(&greetedConn{Conn: sc, pre: []byte("220 greeted\r\n")})
	if err := cl.c.Hello(q.cfg.Hostname); err != nil {
		return nil, fmt.Errorf("EHLO: %w", err)
	}
	if rt.auth {
		if !cl.c.SupportsAuth(sasl.Plain) {
			return nil, errors.New("smarthost does not offer AUTH PLAIN")
		}
		if err := cl.c.Auth(sasl.NewPlainClient("", q.cfg.SmarthostUser, q.cfg.SmarthostPassword)); err != nil {
			return nil, fmt.Errorf("AUTH: %s", replyText(err))
		}
	}
	ok = true
	return cl, nil
}

func (q *Queue) tlsConfig(h hop, rt route) *tls.Config {
	cfg := &tls.Config{ServerName: h.name, MinVersion: tls.VersionTLS12}
	if rt.host == "" || q.cfg.SmarthostInsecureTLS {
		// Opportunistic TLS to MX hosts: encryption against passive
		// eavesdroppers, no authentication (RFC 7435).
		cfg.InsecureSkipVerify = true
	} else {
		cfg.RootCAs = q.cfg.RootCAs
	}
	return cfg
}

// handshake reads the banner and says EHLO (HELO if EHLO is refused),
// returning the advertised extensions (upper case).
func handshake(w io.Writer, br *bufio.Reader, hostname string) (map[string]string, error) {
	tr := textproto.NewReader(br)
	if _, _, err := tr.ReadResponse(220); err != nil {
		return nil, fmt.Errorf("banner: %w", err)
	}
	if _, err := fmt.Fprintf(w, "EHLO %s\r\n", hostname); err != nil {
		return nil, fmt.Errorf("EHLO: %w", err)
	}
	_, msg, err := tr.ReadResponse(250)
	var te *textproto.Error
	if errors.As(err, &te) && (te.Code == 500 || te.Code == 502) {
		if _, err := fmt.Fprintf(w, "HELO %s\r\n", hostname); err != nil {
			return nil, fmt.Errorf("HELO: %w", err)
		}
		if _, _, err := tr.ReadResponse(250); err != nil {
			return nil, fmt.Errorf("HELO: %w", err)
		}
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("EHLO: %w", err)
	}
	ext := make(map[string]string)
	for _, l := range strings.Split(msg, "\n")[1:] {
		k, v, _ := strings.Cut(strings.TrimSpace(l), " ")
		ext[strings.ToUpper(k)] = v
	}
	return ext, nil
}

// close says QUIT briefly and closes the connection.
func (cl *client) close() {
	if !cl.broken {
		cl.dc.step = 10 * time.Second
		_ = cl.c.Quit()
	}
	cl.stop()
	_ = cl.raw.Close()
}

// replyText renders an error as the server's reply when it is one.
func replyText(err error) string {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		t := fmt.Sprintf("%d", se.Code)
		if ec := enhanced(se); ec != "" {
			t += " " + ec
		}
		if se.Message != "" {
			t += " " + oneLine(se.Message)
		}
		return t
	}
	return oneLine(err.Error())
}

// enhanced returns the reply's enhanced status code, or "".
func enhanced(se *smtp.SMTPError) string {
	ec := se.EnhancedCode
	if ec == (smtp.EnhancedCode{}) || ec == smtp.NoEnhancedCode || ec[0] != se.Code/100 {
		return ""
	}
	return fmt.Sprintf("%d.%d.%d", ec[0], ec[1], ec[2])
}

// classify files the recipients idx under err: a 5xx reply fails them, a
// 4xx reply or anything else (I/O, timeout) defers them. After a 421 or
// an error that is not a reply the connection is marked broken.
func (cl *client) classify(o *outcome, m *spool.Message, err error, stage string, idx []int) {
	var se *smtp.SMTPError
	text := stage + ": " + replyText(err)
	if len(idx) == 1 {
		text = "<" + m.Rcpts[idx[0]] + ">: " + text
	}
	o.err = cl.hop.name + ": " + text
	if errors.As(err, &se) && se.Code >= 500 && se.Code < 600 {
		status := enhanced(se)
		if status == "" {
			status = "5.0.0"
		}
		for _, i := range idx {
			o.failed = append(o.failed, rcptFailure{idx: i, status: status,
				diag: "smtp; " + replyText(err), remote: cl.hop.name})
		}
		return
	}
	o.deferred = append(o.deferred, idx...)
	if !errors.As(err, &se) || se.Code == 421 {
		cl.broken = true
	}
}

// transact sends one message: MAIL, RCPT for each pending recipient,
// DATA streamed from the spool. A recipient refused at RCPT does not hold
// up the others. again reports that nothing was done because the
// connection failed before MAIL was accepted: the message may be tried at
// the next hop.
func (q *Queue) transact(cl *client, m *spool.Message) (o *outcome, again bool) {
	o = &outcome{remote: cl.hop.name, tls: cl.tls}
	cl.dc.step = q.cfg.CommandTimeout
	idx := pending(m)
	opts := &smtp.MailOptions{Size: m.Size, UTF8: !m.ASCIIEnvelope()}
	if err := cl.c.Mail(m.From, opts); err != nil {
		var se *smtp.SMTPError
		if opts.UTF8 && !errors.As(err, &se) && strings.Contains(err.Error(), "SMTPUTF8") {
			return failAll(m, "5.6.7", "x-mxcont; the receiving server does not support SMTPUTF8, "+
				"which the addresses need", cl.hop.name), false
		}
		cl.classify(o, m, err, "MAIL", idx)
		return o, cl.broken
	}
	var accepted []int
	for n, i := range idx {
		if err := cl.c.Rcpt(m.Rcpts[i], nil); err != nil {
			cl.classify(o, m, err, "RCPT", []int{i})
			if cl.broken {
				o.deferred = append(o.deferred, idx[n+1:]...)
				o.deferred = append(o.deferred, accepted...)
				return o, false
			}
			continue
		}
		accepted = append(accepted, i)
	}
	if len(accepted) == 0 {
		cl.reset()
		return o, false
	}
	w, err := cl.c.Data()
	if err != nil {
		cl.classify(o, m, err, "DATA", accepted)
		if !cl.broken {
			cl.reset()
		}
		return o, false
	}
	body, err := q.sp.OpenBody(m.ID)
	if err != nil {
		q.log.Error("open spool body", zap.String("msg-id", m.ID.String()), zap.Error(err))
		cl.broken = true // DATA cannot end without sending a truncated message
		o.deferred = append(o.deferred, accepted...)
		o.err = "cannot read the queued message"
		return o, false
	}
	er := &errReader{r: body}
	_, err = io.Copy(w, er)
	_ = body.Close()
	if err != nil {
		cl.broken = true
		o.deferred = append(o.deferred, accepted...)
		if er.err != nil {
			q.log.Error("read spool body", zap.String("msg-id", m.ID.String()), zap.Error(er.err))
			o.err = "cannot read the queued message"
		} else {
			o.err = cl.hop.name + ": DATA: " + oneLine(err.Error())
		}
		return o, false
	}
	cl.dc.step = q.cfg.DataTimeout
	_, err = w.CloseWithResponse()
	cl.dc.step = q.cfg.CommandTimeout
	if err != nil {
		cl.classify(o, m, err, "end of DATA", accepted)
		return o, false
	}
	o.delivered = append(o.delivered, accepted...)
	return o, false
}

// reset aborts a transaction with RSET so that the connection can go on.
func (cl *client) reset() {
	if err := cl.c.Reset(); err != nil {
		cl.broken = true
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

// deliverRemote makes one attempt for each of ms over SMTP along rt,
// trying the hops in order and reusing a connection for several messages.
func (q *Queue) deliverRemote(ctx context.Context, domain string, rt route, ms []*spool.Message) {
	hops, rerr := q.hops(ctx, domain, rt)
	if rerr != nil {
		for _, m := range ms {
			if rerr.permanent {
				q.finish(m, failAll(m, rerr.status, rerr.text, ""))
			} else {
				q.finish(m, deferAll(m, rerr.text))
			}
		}
		return
	}
	remaining := ms
	lastErr := "no address to try"
	for _, h := range hops {
		if len(remaining) == 0 || ctx.Err() != nil {
			break
		}
		cl, err := q.connect(ctx, h, rt, true)
		if errors.Is(err, errTLSHandshake) && rt.host == "" {
			// Opportunistic TLS failed: this MX gets the mail in plain text.
			q.log.Info("TLS handshake failed, retrying without TLS", zap.String("relay-host", h.name),
				zap.String("addr", h.addr), zap.Error(err))
			cl, err = q.connect(ctx, h, rt, false)
		}
		if err != nil {
			lastErr = h.name + " [" + h.addr + "]: " + oneLine(err.Error())
			q.log.Info("connect failed", zap.String("domain", domain), zap.String("relay-host", h.name),
				zap.String("addr", h.addr), zap.Error(err))
			continue
		}
		for len(remaining) > 0 && ctx.Err() == nil {
			o, again := q.transact(cl, remaining[0])
			if again {
				lastErr = o.err
				break
			}
			q.finish(remaining[0], o)
			remaining = remaining[1:]
			if cl.broken {
				break
			}
		}
		cl.close()
	}
	if ctx.Err() != nil {
		return // stopping: what is left stays due
	}
	for _, m := range remaining {
		q.finish(m, deferAll(m, lastErr))
	}
}
