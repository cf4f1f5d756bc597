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
// session's CSRF token in X-CSRF-Token; requests with a body must be JSON.
// Users with role "operator" see every account; users with role "admin"
// see only the domains, queues, messages and events of their own account:
// anything else answers 404 and is left out of listings. /metrics is for
// operators (or open, with Config.MetricsOpen).
//
// # Errors
//
// Errors are JSON objects {"error": "...", "field": "..."}, field naming
// the request field at fault when there is one: 400 invalid input, 401 not
// authenticated, 403 not allowed (or missing CSRF token), 404 not found or
// not visible, 409 conflict, 413 body too large, 415 not JSON, 429 login
// throttled, 503 relay engine not running.
//
// The engine wires the server to the spool, the registry and the relay
// engine through the small interfaces in deps.go.
package admin
