// Package smtpd is mxcont's SMTP acceptor: the server a customer's spam
// filter fails over to while the customer's primary mail server is down.
//
// It is built on github.com/emersion/go-smtp and adds what a continuity MTA
// needs around it:
//
//   - Policy. RCPT is accepted only for domains in the registry (Domains);
//     everything else is "550 5.7.1 relay not permitted", so the server is
//     never an open relay. Routing tricks are refused with 550 5.7.1: source
//     routes, '%' and '!' in the local part, quoted local parts containing
//     '@', and address literals. A domain with allowed sources accepts mail
//     only from those networks (the PROXY protocol address when there is one).
//   - Durability. Data streams the body into one spool.Writer per recipient
//     domain (one spool record per message and domain, holding that domain's
//     recipients) and returns only after spool.CommitAll has fsync'd them;
//     the client then reads "250 2.0.0 queued as <id>[,<id>...]". Every spool
//     failure is a temporary "451 4.3.0"; go-smtp never sees an error that it
//     would turn into a permanent 554.
//   - Content checks while streaming: bare CR and bare LF are normalized to
//     CRLF (or refused with 554 5.6.11), NUL bytes in the header section are
//     refused (554 5.6.0), more than MaxReceivedHeaders Received: fields is a
//     loop (554 5.4.6). A Received: trace field is prepended.
//   - Limits and timeouts. Connections over the total or per-address limit
//     get "421 4.7.0 too many connections" before go-smtp sees them. Each
//     connection has an idle read deadline refreshed on every read (go-smtp's
//     own ReadTimeout would bound the whole DATA phase), an overall cap on
//     one DATA, a command-line limit, and a free-space floor on the spool's
//     filesystem (452 4.3.1).
//   - PROXY protocol v1/v2 from trusted networks (github.com/pires/go-proxyproto);
//     a PROXY header from anywhere else closes the connection.
//
// Each transaction is logged as one structured line ("smtp transaction")
// with stable kebab-case keys; message content is never logged. Counters go
// to a Metrics implementation (Stats is a ready-made one).
//
// # What sconn adds under go-smtp
//
// go-smtp applies one MaxLineLength to command lines and to body lines
// alike, and its ReadTimeout is set once per command line, so it would
// bound a whole DATA body. smtpd therefore sets go-smtp's MaxLineLength to
// Config.MaxDataLineLength (1 MiB, so that long body lines are accepted),
// its timeouts to zero, and wraps every connection in an sconn that keeps
// an idle deadline per read and follows the client's plaintext byte stream
// as go-smtp parses it (commands, DATA bodies up to the final dot, BDAT
// chunks). It hands go-smtp one command line at a time, which enforces
// Config.MaxLineLength on commands and leaves nothing buffered that
// go-smtp could run after QUIT has closed the session. The same view of
// the stream refuses a PROXY header from an untrusted client and detects
// source routes, which go-smtp strips before the Session sees the address.
//
// Two things sconn does for speed. It holds replies back until a read
// has to wait for the client, or the connection closes (go-smtp writes
// every reply line with its own write(2), also under PIPELINING; RFC 2920
// asks a server to flush when it has no more input). And a plaintext DATA
// body is read by bodyReader straight from sconn, a buffer at a time,
// instead of by go-smtp's reader, which takes one byte per call: it
// follows go-smtp's state machine and limits exactly (FuzzDataEquivalence
// runs both readers side by side) and hands go-smtp's reader only the
// final ".\r\n".
//
// After STARTTLS the stream is encrypted below sconn. Over TLS the bound
// on a command line is therefore MaxDataLineLength, plus a check of the
// HELO, MAIL and RCPT arguments against MaxLineLength, and a source route
// is ignored (RFC 5321 appendix C) rather than refused; policy applies to
// the final mailbox either way.
package smtpd
