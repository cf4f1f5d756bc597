// Package submit is the message submission server (RFC 6409, port 587)
// for the mailbox users of domains in mode "both": Roundcube, or a mail
// client, sends replies through it while the users' primary server is
// down. Accepted mail goes into the outbound queue (package outbound).
//
// It is never an open relay: MAIL is refused (530 5.7.0) until the client
// has authenticated as a mailbox user with AUTH PLAIN or LOGIN, and then
// accepted only with that user's own address (553 5.7.1 otherwise;
// the domain is compared case-insensitively and in punycode, the local
// part exactly). AUTH is offered only over TLS (STARTTLS with the node's
// certificate) or to clients Config.InsecureAuth allows, such as a
// webmail on loopback. Failed logins are throttled per login name and per
// client address (admin/auth.Throttle); each user may send
// Config.MessagesPerHour messages (450 4.7.1 beyond).
//
// A message is answered 250 only once Queue.Submit has made it durable.
// Any failure that is not the client's fault is a plain 451 4.3.0 with a
// generic text: go-smtp would turn any error other than an unwrapped
// *smtp.SMTPError into a permanent 554 that leaks its text. A message over
// Config.MaxMessageBytes gets 552 5.3.4, too many recipients 452 4.5.3.
//
// Bare CR and LF in a message become CRLF. A Received: field is
// prepended, and Date: and Message-ID: are added when missing (unless
// Config.KeepHeaders).
//
// Each transaction is logged once ("submission": txn-id, user,
// client-ip, from, rcpts, size, queue-ids, code, result); passwords and
// message content never are.
package submit
