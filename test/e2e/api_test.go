package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"testing"
	"time"
)

// api is a logged-in admin API client.
type api struct {
	t    testing.TB
	base string
	c    *http.Client
	csrf string
}

func login(t testing.TB, httpAddr string) *api {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	a := &api{t: t, base: "http://" + httpAddr, c: &http.Client{Jar: jar, Timeout: 30 * time.Second}}
	var out struct {
		CSRF string `json:"csrf_token"`
	}
	waitPort(t, httpAddr, 30*time.Second)
	if code := a.do("POST", "/api/v1/login", map[string]string{"username": "admin", "password": "e2e-admin-password"}, &out); code != 200 {
		t.Fatalf("login: %d", code)
	}
	a.csrf = out.CSRF
	return a
}

func (a *api) do(method, path string, body, out any) int {
	a.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, a.base+path, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if a.csrf != "" {
		req.Header.Set("X-CSRF-Token", a.csrf)
	}
	resp, err := a.c.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			a.t.Fatalf("%s %s: %d %s: %v", method, path, resp.StatusCode, b, err)
		}
	}
	return resp.StatusCode
}

type domainStatus struct {
	RelayHost string `json:"relay_host"`
	Status    struct {
		RelayState     string `json:"relay_state"`
		QueuedMessages int    `json:"queued_messages"`
		LastProbeError string `json:"last_probe_error"`
		Outage         *struct {
			StartedAt time.Time `json:"started_at"`
		} `json:"outage"`
	} `json:"status"`
}

func (a *api) domain(name string) domainStatus {
	a.t.Helper()
	var d domainStatus
	if code := a.do("GET", "/api/v1/domains/"+name, nil, &d); code != 200 {
		a.t.Fatalf("GET domain %s: %d", name, code)
	}
	return d
}

// waitQueued polls the API until the domain's queue holds n messages.
func (a *api) waitQueued(name string, n int, d time.Duration) domainStatus {
	a.t.Helper()
	deadline := time.Now().Add(d)
	for {
		st := a.domain(name)
		if st.Status.QueuedMessages == n {
			return st
		}
		if time.Now().After(deadline) {
			a.t.Fatalf("domain %s: %d queued, want %d", name, st.Status.QueuedMessages, n)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func domainYAML(name, relay string) string {
	return fmt.Sprintf("domains:\n  - name: %s\n    mode: relay\n    relay_host: %s\n", name, relay)
}
