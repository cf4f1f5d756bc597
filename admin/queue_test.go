package admin

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/mxcont/mxcont/admin/events"
	"github.com/mxcont/mxcont/spool"
)

func TestQueuePaging(t *testing.T) {
	e := newEnv(t)
	op := e.login("admin", opPass)
	ids := e.appendN(acmeDom, 120)
	e.appendN(globexDom, 5)

	var got []string
	cursor := ""
	pages := 0
	for {
		path := "/api/v1/domains/" + acmeDom + "/queue?limit=50"
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		r := op.do("GET", path, nil)
		expect(t, "queue page", r, http.StatusOK)
		var q queueResponse
		r.json(t, &q)
		pages++
		if want := min(50, 120-len(got)); len(q.Messages) != want {
			t.Fatalf("page %d: %d messages, want %d", pages, len(q.Messages), want)
		}
		for _, m := range q.Messages {
			got = append(got, m.ID)
			if m.Domain != acmeDom || m.From != "s@sender.example" || len(m.Rcpts) != 2 || m.Size == 0 ||
				m.ReceivedAt.IsZero() || m.State != spool.StateQueued {
				t.Fatalf("message %+v", m)
			}
		}
		if q.NextCursor == "" {
			break
		}
		cursor = q.NextCursor
		if pages > 5 {
			t.Fatal("paging does not end")
		}
	}
	if pages != 3 || len(got) != len(ids) {
		t.Fatalf("%d pages, %d messages", pages, len(got))
	}
	for i := range ids {
		if got[i] != ids[i].String() {
			t.Fatalf("message %d is %s, want %s (oldest first, no duplicates)", i, got[i], ids[i])
		}
	}
	var q queueResponse
	op.do("GET", "/api/v1/domains/"+acmeDom+"/queue", nil).json(t, &q)
	if len(q.Messages) != 50 {
		t.Errorf("default page size %d", len(q.Messages))
	}
	for _, bad := range []struct{ qs, field string }{
		{"limit=0", "limit"}, {"limit=1001", "limit"}, {"limit=ten", "limit"},
		{"cursor=xyz", "cursor"}, {"cursor=00000000000000001", "cursor"},
	} {
		r := op.do("GET", "/api/v1/domains/"+acmeDom+"/queue?"+bad.qs, nil)
		expect(t, bad.qs, r, http.StatusBadRequest)
		if f := r.errField(t); f != bad.field {
			t.Errorf("%s: field %q", bad.qs, f)
		}
	}
	expect(t, "unknown domain", op.do("GET", "/api/v1/domains/nope.example/queue", nil), http.StatusNotFound)

	// An operator can still reach the queue of a domain removed from the
	// registry (e.g. declared only in an old config).
	if err := e.reg.Delete(globexDom); err != nil {
		t.Fatal(err)
	}
	op.do("GET", "/api/v1/domains/"+globexDom+"/queue", nil).json(t, &q)
	if len(q.Messages) != 5 {
		t.Errorf("orphaned queue: %d messages", len(q.Messages))
	}
}

func TestFlush(t *testing.T) {
	e := newEnv(t)
	op := e.login("admin", opPass)
	r := op.do("POST", "/api/v1/domains/"+acmeDom+"/queue/flush", nil)
	expect(t, "flush", r, http.StatusAccepted)
	if len(e.relay.flushed) != 1 || e.relay.flushed[0] != acmeDom {
		t.Fatalf("relay flushed %v", e.relay.flushed)
	}
	evs, _, _ := e.srv.Events().List(eventsQuery(events.QueueFlushed))
	if len(evs) != 1 || evs[0].Actor != "admin" || evs[0].Account != "acme" {
		t.Fatalf("flush events %+v", evs)
	}

	// Operators can flush the leftover queue of a removed domain.
	e.appendN("orphan.example", 1)
	expect(t, "flush orphan", op.do("POST", "/api/v1/domains/orphan.example/queue/flush", nil), http.StatusAccepted)
	for i := 0; i < 20; i++ {
		op.do("POST", "/api/v1/domains/xxxxxx.example/queue/flush", nil)
	}
	evs, _, _ = e.srv.Events().List(eventsQuery(events.QueueFlushed))
	if len(evs) != 2 || evs[0].Domain != "orphan.example" {
		t.Fatalf("orphan flush events %+v", evs)
	}
}

func TestMessageDetailRetryDelete(t *testing.T) {
	e := newEnv(t)
	op := e.login("admin", opPass)
	ids := e.appendN(acmeDom, 3)
	id := ids[1].String()
	if err := e.sp.RecordAttempt(ids[1], spool.Attempt{Delivered: []int{1}, Error: "451 4.3.0 try later"}); err != nil {
		t.Fatal(err)
	}

	r := op.do("GET", "/api/v1/messages/"+id, nil)
	expect(t, "get message", r, http.StatusOK)
	var m messageDetail
	r.json(t, &m)
	if m.ID != id || m.Attempts != 1 || m.LastError != "451 4.3.0 try later" || m.State != spool.StateQueued {
		t.Fatalf("message %+v", m.messageView)
	}
	if len(m.Recipients) != 2 || m.Recipients[0].Status != "pending" || m.Recipients[1].Status != "delivered" {
		t.Fatalf("recipients %+v", m.Recipients)
	}
	hdr := map[string]string{}
	for _, h := range m.Headers {
		hdr[h.Name] = h.Value
	}
	if hdr["Subject"] != "café 1" || hdr["From"] != "Sender <s@sender.example>" || m.HeadersTruncated {
		t.Fatalf("headers %+v (truncated %v)", m.Headers, m.HeadersTruncated)
	}
	if m.Delivery.RelayHost != "mail.acme.example:25" || m.Delivery.RelayState != RelayUnknown {
		t.Fatalf("delivery %+v", m.Delivery)
	}
	for _, bad := range []string{"xyz", "123", strings.Repeat("g", 16)} {
		r := op.do("GET", "/api/v1/messages/"+bad, nil)
		expect(t, "bad id "+bad, r, http.StatusBadRequest)
		if f := r.errField(t); f != "id" {
			t.Errorf("field %q", f)
		}
	}
	expect(t, "unknown id", op.do("GET", "/api/v1/messages/00000000000000ff", nil), http.StatusNotFound)

	expect(t, "retry", op.do("POST", "/api/v1/messages/"+id+"/retry", nil), http.StatusOK)
	if len(e.relay.messages) != 1 || e.relay.messages[0] != ids[1] {
		t.Fatalf("relay asked to flush %v", e.relay.messages)
	}
	op.do("GET", "/api/v1/messages/"+id, nil).json(t, &m)
	if len(m.History) != 1 || m.History[0].Type != events.MessageRetried || m.History[0].Actor != "admin" {
		t.Fatalf("history %+v", m.History)
	}

	expect(t, "delete", op.do("DELETE", "/api/v1/messages/"+id, nil), http.StatusOK)
	expect(t, "get deleted", op.do("GET", "/api/v1/messages/"+id, nil), http.StatusNotFound)
	expect(t, "delete again", op.do("DELETE", "/api/v1/messages/"+id, nil), http.StatusNotFound)
	expect(t, "retry deleted", op.do("POST", "/api/v1/messages/"+id+"/retry", nil), http.StatusNotFound)
	if n := e.sp.DomainStats(acmeDom).Messages; n != 2 {
		t.Fatalf("%d messages left, want 2", n)
	}
	evs, _, _ := e.srv.Events().List(eventsQuery(events.MessageDeleted))
	if len(evs) != 1 || evs[0].MessageID != id || evs[0].Domain != acmeDom || evs[0].Actor != "admin" {
		t.Fatalf("deletion events %+v", evs)
	}
}

func TestBulkDelete(t *testing.T) {
	e := newEnv(t)
	op := e.login("admin", opPass)
	ids := e.appendN(acmeDom, 40)
	var req []string
	for _, id := range ids[:30] {
		req = append(req, id.String())
	}
	req = append(req, "00000000000000ff", ids[0].String()) // unknown, duplicate

	r := op.do("POST", "/api/v1/messages/delete", map[string]any{"ids": req})
	expect(t, "bulk delete", r, http.StatusOK)
	var res bulkDeleteResponse
	r.json(t, &res)
	if len(res.Deleted) != 30 || len(res.NotFound) != 1 || res.NotFound[0] != "00000000000000ff" {
		t.Fatalf("bulk result: %d deleted, not found %v", len(res.Deleted), res.NotFound)
	}
	if n := e.sp.DomainStats(acmeDom).Messages; n != 10 {
		t.Fatalf("%d messages left, want 10", n)
	}
	for _, tc := range []struct{ body, field string }{
		{`{"ids":[]}`, "ids"},
		{`{}`, "ids"},
		{`{"ids":["` + ids[31].String() + `","` + ids[32].String() + `","nope"]}`, "ids[2]"},
		{`{"ids":"` + ids[31].String() + `"}`, "ids"},
		{fmt.Sprintf(`{"ids":[%s"x"]}`, strings.Repeat(`"0000000000000001",`, maxBulk)), "ids"},
	} {
		r := op.do("POST", "/api/v1/messages/delete", tc.body)
		expect(t, "bulk "+tc.field, r, http.StatusBadRequest)
		if f := r.errField(t); f != tc.field {
			t.Errorf("field %q, want %q", f, tc.field)
		}
	}
	if n := e.sp.DomainStats(acmeDom).Messages; n != 10 {
		t.Fatalf("invalid request deleted mail: %d left", n)
	}
}

func TestParseHeaders(t *testing.T) {
	for _, tc := range []struct {
		name      string
		in        string
		more      bool
		want      string // "Name=Value|..."
		truncated bool
	}{
		{"simple", "A: 1\r\nB: two\r\n\r\nbody: no\r\n", false, "A=1|B=two", false},
		{"folded", "Subject: a\r\n  b\r\n\tc\r\nX: y\r\n\r\n", false, "Subject=a b c|X=y", false},
		{"bare LF", "A: 1\nB: 2\n\nbody", false, "A=1|B=2", false},
		{"encoded", "Subject: =?ISO-8859-1?Q?Gr=FC=DFe?=\r\n\r\n", false, "Subject=Grüße", false},
		{"headers only", "A: 1\r\nB: 2", false, "A=1|B=2", false},
		{"no blank line", "A: 1\r\nthis is body text\r\n", false, "A=1", false},
		{"cut", "A: 1\r\nB: partial", true, "A=1", true},
		{"empty", "", false, "", false},
		{"invalid utf8", "A: \xff\xfe\r\n\r\n", false, "A=\uFFFD", false},
	} {
		hs, tr := parseHeaders([]byte(tc.in), tc.more)
		var parts []string
		for _, h := range hs {
			parts = append(parts, h.Name+"="+h.Value)
		}
		if got := strings.Join(parts, "|"); got != tc.want || tr != tc.truncated {
			t.Errorf("%s: got %q truncated=%v, want %q truncated=%v", tc.name, got, tr, tc.want, tc.truncated)
		}
	}
	var big strings.Builder
	for i := 0; i < maxHeaders+10; i++ {
		fmt.Fprintf(&big, "X-%d: v\r\n", i)
	}
	hs, tr := parseHeaders([]byte(big.String()+"\r\n"), false)
	if len(hs) != maxHeaders || !tr {
		t.Errorf("%d headers kept (truncated %v), want %d", len(hs), tr, maxHeaders)
	}
}

func TestLargeHeaderSection(t *testing.T) {
	e := newEnv(t)
	op := e.login("admin", opPass)
	body := "Subject: big\r\nX-Filler: " + strings.Repeat("x", 100<<10) + "\r\n\r\nbody\r\n"
	id, err := e.sp.Append(spool.Envelope{Domain: acmeDom, From: "a@b.example", Rcpts: []string{"u@" + acmeDom}}, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	var m messageDetail
	r := op.do("GET", "/api/v1/messages/"+id.String(), nil)
	expect(t, "get", r, http.StatusOK)
	r.json(t, &m)
	if !m.HeadersTruncated || len(m.Headers) != 1 || m.Headers[0].Value != "big" {
		t.Fatalf("headers %+v truncated %v", m.Headers, m.HeadersTruncated)
	}
}
