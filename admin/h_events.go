package admin

import (
	"errors"

	"github.com/valyala/fasthttp"

	"github.com/mxcont/mxcont/admin/events"
	"github.com/mxcont/mxcont/engine/registry"
)

type eventsResponse struct {
	Events     []events.Event `json:"events"`
	NextCursor string         `json:"next_cursor"`
}

// handleEvents lists events, newest first: GET /api/v1/events?domain=&
// limit=&cursor=. Admins see their account's events only; naming a domain
// they cannot see answers 404.
func (s *Server) handleEvents(ctx *fasthttp.RequestCtx, p *principal) {
	limit, ok := queryInt(ctx, "limit", 100, 1, 1000)
	if !ok {
		return
	}
	q := events.Query{Limit: limit, Before: query(ctx, "cursor")}
	if name := query(ctx, "domain"); name != "" {
		n, err := registry.NormalizeName(name)
		if err != nil {
			writeError(ctx, fasthttp.StatusBadRequest, "domain: not a valid domain name", "domain")
			return
		}
		if !p.user.IsOperator() {
			if _, ok := s.visibleDomain(ctx, p, n); !ok {
				return
			}
		}
		q.Domain = n
	}
	if !p.user.IsOperator() {
		account := p.user.Account
		q.Match = func(e *events.Event) bool { return e.Account == account }
	}
	evs, next, err := s.events.List(q)
	if errors.Is(err, events.ErrBadCursor) {
		writeError(ctx, fasthttp.StatusBadRequest, "cursor: must be an event id from next_cursor", "cursor")
		return
	}
	if err != nil {
		s.writeErr(ctx, err)
		return
	}
	writeJSON(ctx, fasthttp.StatusOK, eventsResponse{Events: evs, NextCursor: next})
}
