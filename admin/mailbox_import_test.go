package admin

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/mxcont/mxcont/admin/events"
)

func TestMailboxImport(t *testing.T) {
	e := newMailboxEnv(t)
	alice := e.login("alice", alicePass)
	expect(t, "existing", alice.do("POST", mailboxesURL(acmeDom), map[string]string{"address": "old@acme.example", "password": "old-secret-123"}), http.StatusCreated)
	body := "\ufeffAddress,Password\r\n" + // BOM and header, as spreadsheets write them
		"ann@acme.example,ann-password-1\r\n" + // 2
		" Bob@ACME.example , bob-password-2 \r\n" + // 3: spaces trimmed, address normalized
		"carl@globex.example,carl-password-3\r\n" + // 4: other domain
		"secret-in-first-column,not-an-address-4\r\n" + // 5: no address
		"dora@acme.example,short\r\n" + // 6: password too short
		"ANN@acme.example,ann-again-pass-7\r\n" + // 7: duplicate of line 2
		"eve@acme.example\r\n" + // 8: one column
		"\r\n" + // 9: blank, skipped
		`"fred@acme.example","pass,with,commas"` + "\r\n" + // 10: quoted
		`gina@acme.example,pass"quote"1` + "\r\n" + // 11: bare quotes
		"old@acme.example,old-again-12\r\n" + // 12: exists
		"hal@acme.example,\r\n" + // 13: empty password
		`"kate@acme.example,unterminated-secret` + "\r\n" + // 14: broken quoting spoils this line only
		"lea@acme.example,lea-password-15" // 15: no final newline
	r := alice.doWith("POST", mailboxesURL(acmeDom)+"/import", body, csvHeader)
	expect(t, "import", r, http.StatusOK)
	var res importResult
	r.json(t, &res)
	if res.Created != 5 {
		t.Errorf("created %d, want 5 (%s)", res.Created, r.body)
	}
	want := []struct {
		line    int
		address string
		field   string
	}{
		{4, "carl@globex.example", "not in the domain"},
		{5, "", "not a valid mail address"},
		{6, "dora@acme.example", "password"},
		{7, "ANN@acme.example", "already on line 2"},
		{8, "", "2 columns"},
		{12, "old@acme.example", "exists"},
		{13, "hal@acme.example", "password: is required"},
		{14, "", "quoted field"},
	}
	if len(res.Failed) != len(want) {
		t.Fatalf("failed %+v", res.Failed)
	}
	for i, w := range want {
		f := res.Failed[i]
		if f.Line != w.line || f.Address != w.address || !strings.Contains(f.Error, w.field) {
			t.Errorf("failure %d = %+v, want line %d, address %q, error with %q", i, f, w.line, w.address, w.field)
		}
	}
	for _, pw := range []string{"ann-password-1", "bob-password-2", "carl-password-3", "secret-in-first-column", "not-an-address-4",
		"short", "ann-again-pass-7", "pass,with,commas", `pass"quote"1`, "old-again-12", "unterminated-secret", "lea-password-15"} {
		if strings.Contains(string(r.body), pw) {
			t.Errorf("import response contains the password %q", pw)
		}
	}
	for addr, pw := range map[string]string{"ann@acme.example": "ann-password-1", "bob@acme.example": "bob-password-2",
		"fred@acme.example": "pass,with,commas", "gina@acme.example": `pass"quote"1`, "old@acme.example": "old-secret-123",
		"lea@acme.example": "lea-password-15"} {
		if !e.canLogin(addr, pw) {
			t.Errorf("%s cannot log in with its imported password", addr)
		}
	}
	evs, _, _ := e.srv.Events().List(eventsQuery(events.MailboxCreated))
	if len(evs) != 6 || !strings.Contains(evs[0].Detail, "(CSV import)") || evs[0].Actor != "alice" {
		t.Errorf("creation events %+v", evs)
	}

	// Header in the other order; no header at all.
	r = alice.doWith("POST", mailboxesURL(acmeDom)+"/import", "password,address\nivy-password-1,ivy@acme.example\n", csvHeader)
	expect(t, "reversed header", r, http.StatusOK)
	r.json(t, &res)
	if res.Created != 1 || len(res.Failed) != 0 || !e.canLogin("ivy@acme.example", "ivy-password-1") {
		t.Fatalf("reversed header: %+v", res)
	}
	r = alice.doWith("POST", mailboxesURL(acmeDom)+"/import", "jack@acme.example,jack-password-1", csvHeader)
	expect(t, "no header", r, http.StatusOK)
	r.json(t, &res)
	if res.Created != 1 || !e.canLogin("jack@acme.example", "jack-password-1") {
		t.Fatalf("no header: %+v", res)
	}
	r = alice.doWith("POST", mailboxesURL(acmeDom)+"/import", "Address;Password\nlou@acme.example;lou,password;1\n", csvHeader)
	expect(t, "semicolons", r, http.StatusOK)
	r.json(t, &res)
	if res.Created != 0 || len(res.Failed) != 1 || res.Failed[0].Line != 2 {
		t.Fatalf("semicolons, a password with a semicolon unquoted: %+v", res)
	}
	r = alice.doWith("POST", mailboxesURL(acmeDom)+"/import", "Address;Password\nlou@acme.example;\"lou,password;1\"\n", csvHeader)
	expect(t, "semicolons", r, http.StatusOK)
	r.json(t, &res)
	if res.Created != 1 || !e.canLogin("lou@acme.example", "lou,password;1") {
		t.Fatalf("semicolons: %+v", res)
	}

	// Whole-request refusals create nothing.
	before := len(e.addresses(acmeDom))
	many := &strings.Builder{}
	for i := 0; i <= maxImportLines; i++ {
		fmt.Fprintf(many, "u%d@acme.example,password-%d\n", i, i)
	}
	for _, tc := range []struct {
		name, body string
		hdr        map[string]string
		status     int
	}{
		{"too many lines", many.String(), csvHeader, http.StatusRequestEntityTooLarge},
		{"empty", "", csvHeader, http.StatusBadRequest},
		{"header only", "address,password\n", csvHeader, http.StatusBadRequest},
		{"bad header", "address,password,name\nk@acme.example,k-password-1,K\n", csvHeader, http.StatusBadRequest},
		{"JSON", `[{"address":"k@acme.example","password":"k-password-1"}]`, nil, http.StatusUnsupportedMediaType},
	} {
		r := alice.doWith("POST", mailboxesURL(acmeDom)+"/import", tc.body, tc.hdr)
		expect(t, tc.name, r, tc.status)
		r.errField(t)
		if strings.Contains(string(r.body), "secret") || strings.Contains(string(r.body), "password-1") {
			t.Errorf("%s: response quotes the body: %s", tc.name, r.body)
		}
	}
	if after := len(e.addresses(acmeDom)); after != before {
		t.Fatalf("refused imports created %d mailboxes", after-before)
	}

	// The import's own size limit holds where the server's is larger.
	big := newMailboxEnv(t, func(c *Config, _ *Deps) { c.MaxBodyBytes = 4 << 20 })
	r = big.login("alice", alicePass).doWith("POST", mailboxesURL(acmeDom)+"/import", strings.Repeat("x", maxImportBytes+1), csvHeader)
	expect(t, "above the import limit", r, http.StatusRequestEntityTooLarge)
	if !strings.Contains(string(r.body), "split the file") {
		t.Errorf("413 body %s", r.body)
	}

	// One import at a time.
	e.srv.imports <- struct{}{}
	r = alice.doWith("POST", mailboxesURL(acmeDom)+"/import", "kim@acme.example,kim-password-1", csvHeader)
	<-e.srv.imports
	expect(t, "concurrent import", r, http.StatusTooManyRequests)
	if r.header.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
}
