package relayq

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"time"
)

// deadlineConn puts a deadline on every Read and Write: step from now,
// but never later than hard (if set). Callers' SetDeadline calls are
// ignored and ours apply instead (go-smtp, used for alert mail, clears
// its own deadline after each command).
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

// connectError means the relay host could not be reached or did not
// greet us properly: the host is down.
type connectError struct{ err error }

func (e *connectError) Error() string { return e.err.Error() }
func (e *connectError) Unwrap() error { return e.err }

var errTLSHandshake = errors.New("STARTTLS handshake failed")

// pconn is one pooled SMTP connection to a relay host.
type pconn struct {
	raw       net.Conn
	dc        *deadlineConn
	c         *client
	dw        dotWriter
	offered   bool  // the server advertised STARTTLS
	tls       bool  // STARTTLS succeeded
	verifyErr error // certificate verification result, when tls
	msgs      int   // messages sent on this connection
	idleSince time.Time
}

// quit says QUIT (briefly) and closes the connection.
func (pc *pconn) quit(timeout time.Duration) {
	pc.dc.step, pc.dc.hard = timeout, time.Time{}
	_ = pc.c.cmd(2, "QUIT")
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
// STARTTLS when offered and wanted, then EHLO again over TLS.
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
	c := newClient(dc, dc, clientReadBuf, clientWriteBuf)
	if err := c.greet(q.cfg.Hostname); err != nil {
		return nil, &connectError{err}
	}
	pc := &pconn{raw: raw, dc: dc, c: c}
	pc.offered = c.has("STARTTLS")
	if pc.offered && useTLS {
		err := c.cmd(220, "STARTTLS")
		var re *replyError
		switch {
		case errors.As(err, &re): // refused: go on in plain text
		case err != nil:
			return nil, &connectError{fmt.Errorf("starttls: %w", err)}
		case c.br.Buffered() > 0:
			return nil, &connectError{errors.New("starttls: data after the 220 reply")}
		default:
			tc := tls.Client(dc, p.tlsConfig(pc))
			if err := tc.HandshakeContext(ctx); err != nil {
				return nil, fmt.Errorf("%w: %w", errTLSHandshake, err)
			}
			pc.tls = true
			pc.c = newClient(tc, tc, clientReadBuf, clientWriteBuf)
			if err := pc.c.hello(q.cfg.Hostname); err != nil {
				return nil, &connectError{err}
			}
		}
	}
	if pc.c.br.Buffered() > 0 {
		return nil, &connectError{errors.New("unexpected data from relay host")}
	}
	pc.dw.reset(pc.c.bw)
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
	c := newClient(dc, dc, 1024, 256)
	if err := c.greet(q.cfg.Hostname); err != nil {
		return err
	}
	_ = c.cmd(2, "QUIT")
	return nil
}
