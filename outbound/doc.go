// Package outbound is the queue for mail that users of domains in mode
// "both" send from webmail during an outage of their primary server:
// replies submitted on the submission port (package submit) and the DSNs
// this queue generates itself.
//
// The queue keeps its own spool (spool.Open on Config.Dir), never the
// inbound relay spool. Submit stores one record per recipient domain and
// returns once all of them are fsync'd. Workers then deliver each record:
//
//   - to Local.Accept when the recipient domain is protected by this node
//     (the engine files it into the relay spool and shadow mailboxes); the
//     record is deleted only after Accept returns nil;
//   - otherwise over SMTP to the sender domain's smarthost (Config.Route),
//     else the node's Config.Smarthost, else the recipient domain's MX
//     hosts (A/AAAA of the domain itself when it has no MX, RFC 5321
//     section 5.1; a null MX, RFC 7505, fails at once).
//
// STARTTLS is used whenever offered. Certificates of MX hosts are not
// verified (opportunistic TLS, RFC 7435), and a failed handshake is
// retried in plain text on a new connection; smarthost certificates are
// verified unless Config.SmarthostInsecureTLS, and credentials go to the
// node smarthost only with AUTH PLAIN over TLS.
//
// Each recipient is handled on its own: 2xx delivered, 5xx failed at once,
// 4xx or a connection problem retried with exponential backoff (RetryMin
// doubling to RetryMax, ±20 % jitter) until Config.MaxAge, after which the
// recipient fails. Failed recipients get one DSN (RFC 3464, with the
// original header section) sent to the sender through this same queue, so
// it is durable before the failure is recorded and reaches a local sender's
// shadow mailbox through Local.Accept. A message with a null sender is
// never bounced. Records are deleted from the spool once no recipient is
// pending; the spool reclaims their space.
//
// Delivery is at least once: an attempt whose outcome was not yet fsync'd
// when the node crashed is made again.
//
// Every step is logged per message with stable keys (msg-id, domain,
// rcpt, relay-host, error): queued, delivered, deferred, failed, expired,
// bounced, done, deleted.
package outbound
