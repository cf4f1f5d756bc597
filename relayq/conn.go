package relayq

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strings"
	"time"

	"github.com/emersion/go-smtp"
)

// deadlineConn puts a deadline on every Read and Write: step from now,
// but never later than hard (if set). go-smtp sets no deadline while the
// body is written and clears its own after each command, so its
// SetDeadline calls are ignored here and ours apply instead.
//
// step and hard are changed only by the goroutine that owns the
// connection, between operations.
type deadlineConn struct {
	net.Conn
	step time.Duration
	hard time.Time
}

func (c *deadlineConn) deadline() time.Time {
	d := time.Now().Add(c.step)
	if !c.hard.IsZero() && c.hard.Before(d) {
		d = c.hard
	}
	return d
}

func (c *deadlineConn) Read(p []byte) (int, error) {
	if err := c.Conn.SetReadDeadline(c.deadline()); err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

func (c *deadlineConn) Write(p []byte) (int, error) {
	if err := c.Conn.SetWriteDeadline(c.deadline()); err != nil {
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

// greetedConn replays a 220 greeting before the real stream. We read the
// server's banner (and do STARTTLS) ourselves, because go-smtp's client
// has no opportunistic STARTTLS; its NewClient then reads this synthetic
// greeting and sends its own EHLO.
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

// connectError means the relay host could not be reached or did not
// greet us properly: the host is down.
type connectError struct{ err error }

func (e *connectError) Error() string { return e.err.Error() }
func (e *connectError) Unwrap() error { return e.err }

var errTLSHandshake = errors.New("STARTTLS handshake failed")

// handshake reads the banner and says EHLO (HELO if EHLO is refused) on a
// fresh connection, returning the advertised extensions (upper case).
func handshake(w io.Writer, br *bufio.Reader, hostname string) (map[string]string, error) {
	tr := textproto.NewReader(br)
	if _, _, err := tr.ReadResponse(220); err != nil {
		return nil, fmt.Errorf("banner: %w", err)
	}
	if _, err := fmt.Fprintf(w, "EHLO %s\r\n", hostname); err != nil {
		return nil, fmt.Errorf("ehlo: %w", err)
	}
	_, msg, err := tr.ReadResponse(250)
	var te *textproto.Error
	if errors.As(err, &te) && (te.Code == 500 || te.Code == 502) {
		if _, err := fmt.Fprintf(w, "HELO %s\r\n", hostname); err != nil {
			return nil, fmt.Errorf("helo: %w", err)
		}
		if _, _, err := tr.ReadResponse(250); err != nil {
			return nil, fmt.Errorf("helo: %w", err)
		}
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("ehlo: %w", err)
	}
	ext := make(map[string]string)
	lines := strings.Split(msg, "\n")
	for _, l := range lines[1:] {
		k, v, _ := strings.Cut(strings.TrimSpace(l), " ")
		ext[strings.ToUpper(k)] = v
	}
	return ext, nil
}

// pconn is one pooled SMTP connection to a relay host.
type pconn struct {
	raw       net.Conn
	dc        *deadlineConn
	c         *smtp.Client
	offered   bool  // the server advertised STARTTLS
	tls       bool  // STARTTLS succeeded
	verifyErr error // certificate verification result, when tls
	msgs      int   // messages sent on this connection
	idleSince time.Time
}

// quit says QUIT (briefly) and closes the connection.
func (pc *pconn) quit(timeout time.Duration) {
	pc.dc.step, pc.dc.hard = timeout, time.Time{}
	_ = pc.c.Quit()
	_ = pc.raw.Close()
}

// tlsProblem says why pc cannot carry mail of a domain that requires TLS.
func (pc *pconn) tlsProblem(requireTLS bool) error {
	switch {
	case !requireTLS:
		return nil
	case !pc.tls && pc.offered:
		return errors.New("TLS required: STARTTLS was refused by the relay host")
	case !pc.tls:
		return errors.New("TLS required: relay host does not offer STARTTLS")
	case pc.verifyErr != nil:
		return fmt.Errorf("TLS required: certificate not verified: %w", pc.verifyErr)
	}
	return nil
}

// connect opens a ready-to-use client connection: TCP, banner, EHLO,
// STARTTLS when offered and wanted, EHLO again through go-smtp.
func (p *pool) connect(ctx context.Context, useTLS bool) (*pconn, error) {
	q := p.q
	raw, err := q.dialRelay(ctx, p.addr, q.cfg.DialTimeout)
	if err != nil {
		return nil, &connectError{err}
	}
	stop := context.AfterFunc(ctx, func() { _ = raw.Close() })
	defer stop()
	ok := false
	defer func() {
		if !ok {
			_ = raw.Close()
		}
	}()
	dc := &deadlineConn{Conn: raw, step: q.cfg.CommandTimeout}
	br := bufio.NewReaderSize(dc, 4096)
	ext, err := handshake(dc, br, q.cfg.Hostname)
	if err != nil {
		return nil, &connectError{err}
	}
	pc := &pconn{raw: raw, dc: dc}
	_, pc.offered = ext["STARTTLS"]
	var sc net.Conn = dc
	if pc.offered && useTLS {
		if _, err := io.WriteString(dc, "STARTTLS\r\n"); err != nil {
			return nil, &connectError{fmt.Errorf("starttls: %w", err)}
		}
		_, _, err := textproto.NewReader(br).ReadResponse(220)
		var te *textproto.Error
		switch {
		case errors.As(err, &te): // refused: go on in plain text
		case err != nil:
			return nil, &connectError{fmt.Errorf("starttls: %w", err)}
		case br.Buffered() > 0:
			return nil, &connectError{errors.New("starttls: data after the 220 reply")}
		default:
			tc := tls.Client(dc, p.tlsConfig(pc))
			if err := tc.HandshakeContext(ctx); err != nil {
				return nil, fmt.Errorf("%w: %w", errTLSHandshake, err)
			}
			sc, pc.tls = tc, true
		}
	}
	if !pc.tls && br.Buffered() > 0 {
		return nil, &connectError{errors.New("unexpected data from relay host")}
	}
	pc.c = smtp.NewClient(&greetedConn{Conn: sc, pre: []byte("220 greeted\r\n")})
	if err := pc.c.Hello(q.cfg.Hostname); err != nil {
		return nil, &connectError{fmt.Errorf("ehlo: %w", err)}
	}
	ok = true
	return pc, nil
}

// tlsConfig verifies the peer without failing the handshake, so that one
// connection serves both opportunistic TLS and domains that require a
// verified certificate: pc.verifyErr records the result.
func (p *pool) tlsConfig(pc *pconn) *tls.Config {
	roots := p.q.cfg.TLSRootCAs
	name := p.tlsName
	return &tls.Config{
		ServerName:         name,
		InsecureSkipVerify: true, // verified below, result kept per connection
		VerifyConnection: func(cs tls.ConnectionState) error {
			pc.verifyErr = verifyPeer(cs.PeerCertificates, name, roots)
			return nil
		},
	}
}

func verifyPeer(certs []*x509.Certificate, name string, roots *x509.CertPool) error {
	if len(certs) == 0 {
		return errors.New("no certificate")
	}
	opts := x509.VerifyOptions{DNSName: name, Roots: roots, Intermediates: x509.NewCertPool()}
	for _, c := range certs[1:] {
		opts.Intermediates.AddCert(c)
	}
	_, err := certs[0].Verify(opts)
	return err
}

// probe checks a relay host: TCP connect, 220 banner, EHLO, QUIT, each
// step bounded by ProbeTimeout.
func (q *Queue) probe(ctx context.Context, hostport string) error {
	raw, err := q.dialRelay(ctx, hostport, q.cfg.ProbeTimeout)
	if err != nil {
		return err
	}
	defer raw.Close()
	stop := context.AfterFunc(ctx, func() { _ = raw.Close() })
	defer stop()
	dc := &deadlineConn{Conn: raw, step: q.cfg.ProbeTimeout}
	br := bufio.NewReaderSize(dc, 1024)
	if _, err := handshake(dc, br, q.cfg.Hostname); err != nil {
		return err
	}
	if _, err := io.WriteString(dc, "QUIT\r\n"); err == nil {
		_, _, _ = textproto.NewReader(br).ReadResponse(221)
	}
	return nil
}
