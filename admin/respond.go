package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/mxcont/mxcont/admin/auth"
	"github.com/mxcont/mxcont/engine/registry"
	"github.com/mxcont/mxcont/spool"
)

// apiError is the body of every error response.
type apiError struct {
	Error string `json:"error"`
	Field string `json:"field,omitempty"`
}

// writeJSON answers v as JSON with status.
func writeJSON(ctx *fasthttp.RequestCtx, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = fasthttp.StatusInternalServerError, []byte(`{"error":"internal error"}`)
	}
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json; charset=utf-8")
	ctx.Response.Header.Set("Cache-Control", "no-store")
	ctx.SetBody(append(b, '\n'))
}

// writeError answers {"error": msg, "field": field}.
func writeError(ctx *fasthttp.RequestCtx, status int, msg, field string) {
	writeJSON(ctx, status, apiError{Error: msg, Field: field})
}

// writeErr maps an error from a store to a response: validation errors are
// 400 with their field, "exists" 409, "not found" 404, anything else 500
// (logged, with a generic text for the client).
func (s *Server) writeErr(ctx *fasthttp.RequestCtx, err error) {
	var ve *registry.ValidationError
	var fe *auth.FieldError
	switch {
	case errors.As(err, &ve):
		writeError(ctx, fasthttp.StatusBadRequest, ve.Error(), ve.Field)
	case errors.As(err, &fe):
		writeError(ctx, fasthttp.StatusBadRequest, fe.Error(), fe.Field)
	case errors.Is(err, registry.ErrExists):
		writeError(ctx, fasthttp.StatusConflict, "domain already exists", "name")
	case errors.Is(err, auth.ErrExists):
		writeError(ctx, fasthttp.StatusConflict, "already exists", "name")
	case errors.Is(err, registry.ErrNotFound), errors.Is(err, spool.ErrNotFound), errors.Is(err, auth.ErrNotFound):
		writeError(ctx, fasthttp.StatusNotFound, "not found", "")
	default:
		s.log.Error("request failed", zap.String("path", string(ctx.Path())), zap.Error(err))
		writeError(ctx, fasthttp.StatusInternalServerError, "internal error", "")
	}
}

// decodeJSON decodes the request body into v, refusing unknown fields and
// trailing data. On failure it answers 400 (naming the field when it can)
// and returns false.
func decodeJSON(ctx *fasthttp.RequestCtx, v any) bool {
	body := ctx.PostBody()
	if len(bytes.TrimSpace(body)) == 0 {
		writeError(ctx, fasthttp.StatusBadRequest, "request body is empty; JSON expected", "")
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.More() {
		err = errors.New("unexpected data after the JSON value")
	}
	if err == nil {
		return true
	}
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		writeError(ctx, fasthttp.StatusBadRequest, fmt.Sprintf("%s: must be %s", te.Field, jsonKind(te.Type.Kind().String())), te.Field)
	case errors.As(err, &se):
		writeError(ctx, fasthttp.StatusBadRequest, fmt.Sprintf("malformed JSON at offset %d", se.Offset), "")
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		f, _ := strconv.Unquote(strings.TrimPrefix(err.Error(), "json: unknown field "))
		writeError(ctx, fasthttp.StatusBadRequest, fmt.Sprintf("unknown field %q", f), f)
	default:
		writeError(ctx, fasthttp.StatusBadRequest, "malformed JSON: "+err.Error(), "")
	}
	return false
}

func jsonKind(k string) string {
	switch k {
	case "slice", "array":
		return "a list"
	case "struct", "map":
		return "an object"
	case "bool":
		return "true or false"
	case "string":
		return "a string"
	}
	return "a number"
}

// param returns a path parameter, URL-decoded and copied (the router's
// value aliases the request buffer).
func param(ctx *fasthttp.RequestCtx, name string) string {
	v, _ := ctx.UserValue(name).(string)
	if u, err := url.PathUnescape(v); err == nil {
		v = u // PathUnescape returns v itself when there is nothing to unescape
	}
	return strings.Clone(v)
}

// query returns a query argument as a new string.
func query(ctx *fasthttp.RequestCtx, name string) string {
	return string(ctx.QueryArgs().Peek(name))
}

// queryInt parses an optional integer query argument within [lo, hi]; it
// answers 400 and returns false when it is malformed.
func queryInt(ctx *fasthttp.RequestCtx, name string, def, lo, hi int) (int, bool) {
	v := query(ctx, name)
	if v == "" {
		return def, true
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		writeError(ctx, fasthttp.StatusBadRequest, fmt.Sprintf("%s: must be a number from %d to %d", name, lo, hi), name)
		return 0, false
	}
	return n, true
}

// timePtr renders a zero time as JSON null.
func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}
