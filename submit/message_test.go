package submit

import (
	"bufio"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

func TestCRLFReader(t *testing.T) {
	cases := []struct{ in, want string }{
		{"a\r\nb\r\n", "a\r\nb\r\n"},
		{"a\nb\n", "a\r\nb\r\n"},
		{"a\rb\r", "a\r\nb\r\n"},
		{"a\r\r\nb", "a\r\n\r\nb"},
		{"\n\n.\n", "\r\n\r\n.\r\n"},
		{"x\n.\r\nMAIL FROM:<e@x>\r\n", "x\r\n.\r\nMAIL FROM:<e@x>\r\n"},
		{"", ""},
	}
	for _, c := range cases {
		// Whole, and one byte at a time (state across reads).
		for _, r := range []io.Reader{strings.NewReader(c.in), iotest.OneByteReader(strings.NewReader(c.in))} {
			got, err := io.ReadAll(newCRLFReader(r))
			if err != nil || string(got) != c.want {
				t.Errorf("%q → %q, %v; want %q", c.in, got, err, c.want)
			}
		}
	}
}

func TestScanHeader(t *testing.T) {
	long := "X-Long: " + strings.Repeat("z", 10000) + "\r\n"
	cases := []struct {
		name, in, hdr string
		info          headerInfo
	}{
		{"complete", "Subject: s\r\nDate: d\r\nMessage-ID: <m>\r\n\r\nbody\r\n",
			"Subject: s\r\nDate: d\r\nMessage-ID: <m>\r\n\r\n", headerInfo{messageID: true, date: true, complete: true}},
		{"folded and case", "message-id:\r\n <m@x>\r\nSubject: a\r\n\tb\r\n\r\nbody: not a field\r\n",
			"message-id:\r\n <m@x>\r\nSubject: a\r\n\tb\r\n\r\n", headerInfo{messageID: true, complete: true}},
		{"no blank line", "Subject: s\r\nthis is body text\r\nDate: no\r\n",
			"Subject: s\r\nthis is body text\r\n", headerInfo{complete: true}},
		{"long line", long + "Date: d\r\n\r\nb", long + "Date: d\r\n\r\n", headerInfo{date: true, complete: true}},
		{"body text that looks like a date field", "Subject: s\r\n\r\nDate: d\r\n",
			"Subject: s\r\n\r\n", headerInfo{complete: true}},
		{"only a header", "Subject: s\r\n", "Subject: s\r\n", headerInfo{complete: true}},
	}
	for _, c := range cases {
		br := bufio.NewReaderSize(strings.NewReader(c.in), 4096)
		hdr, info, err := scanHeader(br)
		if err != nil || string(hdr) != c.hdr || info != c.info {
			t.Errorf("%s: got %q %+v %v; want %q %+v", c.name, hdr, info, err, c.hdr, c.info)
			continue
		}
		rest, _ := io.ReadAll(br)
		if string(hdr)+string(rest) != c.in {
			t.Errorf("%s: header + rest != input", c.name)
		}
	}
}

func TestTraceFields(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tr := trace{helo: "evil\r\nBcc: x (y)", hostname: "mxcont.test", id: "abc", now: now}
	got := string(traceFields(tr, headerInfo{complete: true, date: true}, false))
	want := "Received: from evil??Bcc:?x??y? (unknown)\r\n\tby mxcont.test (mxcont) with ESMTPA id abc;\r\n\t" +
		"Fri, 02 Jan 2026 03:04:05 +0000\r\nMessage-ID: <"
	if !strings.HasPrefix(got, want) || !strings.HasSuffix(got, "@mxcont.test>\r\n") || strings.Contains(got, "Date:") {
		t.Fatalf("got %q", got)
	}
	if got := string(traceFields(tr, headerInfo{}, false)); strings.Contains(got, "Message-ID") || strings.Contains(got, "Date:") {
		t.Fatalf("fields added although the header was not seen whole: %q", got)
	}
}

func TestRateLimiter(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	r := newRateLimiter(2, time.Hour)
	r.now = func() time.Time { return now }
	for i := range 2 {
		if !r.allow("a") {
			t.Fatalf("message %d refused", i+1)
		}
		r.take("a")
	}
	if r.allow("a") {
		t.Fatal("third message allowed within the hour")
	}
	if !r.allow("b") {
		t.Fatal("another user limited")
	}
	now = now.Add(30 * time.Minute) // one token back
	if !r.allow("a") {
		t.Fatal("not refilled after half the window")
	}
	r.take("a")
	if r.allow("a") {
		t.Fatal("more than the refill allowed")
	}
	now = now.Add(10 * time.Hour)
	r.take("a")
	r.take("a")
	if r.allow("a") {
		t.Fatal("burst above the hourly rate")
	}
	if !newRateLimiter(-1, time.Hour).allow("a") {
		t.Fatal("negative rate must mean no limit")
	}
}
