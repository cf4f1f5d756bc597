package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"time"
)

// API is a small client of mxcont's admin API (DESIGN.md section 5),
// used to read a domain's queue and relay state.
type API struct {
	base  string
	hc    *http.Client
	token string
}

// NewAPI returns a client of the admin API at base ("http://host:port").
func NewAPI(base string) *API {
	jar, _ := cookiejar.New(nil)
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	return &API{base: strings.TrimRight(base, "/"), hc: &http.Client{Jar: jar, Timeout: 10 * time.Second}}
}

// SetToken authenticates with an API token instead of a session.
func (a *API) SetToken(tok string) { a.token = tok }

// Login opens a session (POST /api/v1/login).
func (a *API) Login(ctx context.Context, user, password string) error {
	body, _ := json.Marshal(map[string]string{"username": user, "password": password})
	_, err := a.do(ctx, http.MethodPost, "/api/v1/login", body)
	return err
}

// DomainInfo is the part of GET /api/v1/domains/{domain} mxbench uses.
type DomainInfo struct {
	Name      string `json:"name"`
	RelayHost string `json:"relay_host"`
	Status    struct {
		RelayState     string `json:"relay_state"`
		QueuedMessages int64  `json:"queued_messages"`
		QueuedBytes    int64  `json:"queued_bytes"`
		FailedMessages int64  `json:"failed_messages"`
	} `json:"status"`
}

// Domain reads one domain with its status.
func (a *API) Domain(ctx context.Context, name string) (*DomainInfo, error) {
	b, err := a.do(ctx, http.MethodGet, "/api/v1/domains/"+url.PathEscape(name), nil)
	if err != nil {
		return nil, err
	}
	var d DomainInfo
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("bench: api: %w", err)
	}
	return &d, nil
}

func (a *API) do(ctx context.Context, method, path string, body []byte) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("bench: api: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, fmt.Errorf("bench: api: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("bench: api: %s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(b)))
	}
	return b, nil
}
