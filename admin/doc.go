// Package admin is mxcont's HTTP side: the JSON API under /api/v1
// (DESIGN.md section 5), authentication (users, sessions, API tokens; see
// admin/auth), the audit log (admin/events), the Prometheus endpoint, the
// health check and the embedded web portal (admin/web) served at "/".
//
// The server is built on fasthttp with fasthttp/router. Handlers never keep
// the request's byte slices after they return: path parameters, headers and
// bodies are copied (decoded) before anything is retained or handed to
// another goroutine.
//
// # Access control
//
// Every endpoint except POST /api/v1/login and GET /healthz needs a session
// cookie (set by login) or an "Authorization: Bearer <api token>" header.
// Requests that change state with a session cookie must also carry the
// session's CSRF token in X-CSRF-Token; requests with a body must be JSON
// (the mailbox CSV import: text/csv). Users with role "operator" see every
// account; users with role "admin" see only the domains, queues, messages,
// mailboxes and events of their own account: anything else answers 404 and
// is left out of listings. /metrics is for operators (or open, with
// Config.MetricsOpen).
//
// # Users, passwords and API tokens
//
//	GET    /api/v1/tokens[?user=]              200 {tokens: [{id, name, username, created_at, last_used_at, current}]}
//	DELETE /api/v1/tokens/{id}                 204: revoked
//	POST   /api/v1/me/password                 {current_password, new_password} → 204
//	PUT    /api/v1/users/{username}/password   {password} → 204
//	DELETE /api/v1/users/{username}            204
//
// Anyone lists and revokes their own tokens. Operators list, revoke, reset
// and delete for every user; an admin for the admins of its own account
// (an operator of that account: 403; a user or token of another account:
// 404, as if unknown). Token secrets and their digests are never returned;
// last_used_at is kept to the minute. A revoked token, a deleted user's
// sessions and tokens, and the other sessions of a user whose password
// changed fail with 401 from the next request on. Changing one's own
// password needs the current one (wrong: 403, field "current_password",
// counted by the login throttle, 429 while throttled) and keeps the
// session making the request; a reset (not of oneself: 403) ends every
// session of the user and lifts its login throttle. API tokens survive
// password changes. Deleting oneself or the last operator answers 409.
// Each change is an event (token-revoked, password-changed,
// password-reset, user-deleted) naming who did it; never a secret.
//
// # Mailboxes
//
// Domains in mode "both" have shadow mailbox users (Deps.Mailboxes):
//
//	GET    /api/v1/domains/{domain}/mailboxes            200 {domain, mailboxes: [{address, domain, created_at, messages, bytes}]}
//	POST   /api/v1/domains/{domain}/mailboxes            {address, password} → 201 the user
//	GET    /api/v1/domains/{domain}/mailboxes/{address}  200 the user
//	PUT    /api/v1/domains/{domain}/mailboxes/{address}  {password} → 204
//	DELETE /api/v1/domains/{domain}/mailboxes/{address}  204
//	POST   /api/v1/domains/{domain}/mailboxes/import     text/csv "address,password" lines → 200 {created, failed: [{line, address, error}]}
//
// A new mailbox's address must be in {domain} (422 otherwise) and the
// domain in mode "both" (409 otherwise, field "mode"); listing, password
// resets and deletions work in any mode. An {address} outside {domain} is
// 404. A node without a mailbox store answers 501. An import takes at
// most 1 MiB and 1000 lines (413 otherwise, nothing imported) and runs one
// at a time (429). Deleting a domain deletes its mailboxes. Passwords are
// never logged, kept in events or echoed.
//
// # Errors
//
// Errors are JSON objects {"error": "...", "field": "..."}, field naming
// the request field at fault when there is one: 400 invalid input, 401 not
// authenticated, 403 not allowed (or missing CSRF token), 404 not found or
// not visible, 409 conflict, 413 body too large, 415 wrong media type, 422
// a mailbox address outside its domain, 429 login throttled or an import
// running, 501 no mailbox store, 503 relay engine or mailbox store not
// running.
//
// The engine wires the server to the spool, the registry and the relay
// engine through the small interfaces in deps.go.
package admin
