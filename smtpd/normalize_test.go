package smtpd

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// fixAll runs a newlineFixer over in cut at every split point.
func fixAll(t *testing.T, reject bool, in string) []struct {
	out string
	err error
} {
	t.Helper()
	var res []struct {
		out string
		err error
	}
	for cut := 0; cut <= len(in); cut++ {
		f := newlineFixer{reject: reject}
		var out []byte
		var err error
		for _, part := range []string{in[:cut], in[cut:]} {
			if err == nil {
				out, err = f.append(out, []byte(part))
			}
		}
		if err == nil {
			err = f.finish()
		}
		res = append(res, struct {
			out string
			err error
		}{string(out), err})
	}
	return res
}

func TestNewlineFixer(t *testing.T) {
	cases := []struct {
		in, normalized string
		rejectErr      error
	}{
		{"", "", nil},
		{"a\r\nb\r\n", "a\r\nb\r\n", nil},
		{"a\nb\n", "a\r\nb\r\n", errBareLF},
		{"a\rb\r", "a\r\nb\r\n", errBareCR},
		{"a\r\r\nb", "a\r\n\r\nb", errBareCR},
		{"\n\r\n\r", "\r\n\r\n\r\n", errBareLF},
		{"x\n.\ny", "x\r\n.\r\ny", errBareLF},
		{"x\r.\r\ny", "x\r\n.\r\ny", errBareCR},
		{"\r\n\r\n", "\r\n\r\n", nil},
	}
	for _, c := range cases {
		for i, r := range fixAll(t, false, c.in) {
			if r.err != nil || r.out != c.normalized {
				t.Errorf("normalize %q cut at %d: %q, %v; want %q", c.in, i, r.out, r.err, c.normalized)
			}
		}
		for i, r := range fixAll(t, true, c.in) {
			if !errors.Is(r.err, c.rejectErr) || (r.err == nil && r.out != c.in) {
				t.Errorf("reject %q cut at %d: %q, %v; want %v", c.in, i, r.out, r.err, c.rejectErr)
			}
		}
	}
}

func TestHeaderScanner(t *testing.T) {
	hops := strings.Repeat("Received: from a by b; date\r\n", 3)
	cases := []struct {
		name, in string
		want     error
		received int
	}{
		{"at limit", hops + "Subject: x\r\n\r\nbody", nil, 3},
		{"over limit", hops + "RECEIVED: x\r\n\r\n", errTooManyHops, 4},
		{"obsolete colon", hops + "Received \t: x\r\n\r\n", errTooManyHops, 4},
		{"folded", "Received: from a\r\n\tby b\r\n\tfor c; date\r\nReceived:x\r\n\r\n", nil, 2},
		{"not received", "Received-SPF: pass\r\nX-Received: 1\r\nReceivedx: 1\r\nReceive: 1\r\n\r\n", nil, 0},
		{"in body", "Subject: x\r\n\r\n" + hops + hops, nil, 0},
		{"body starts at non-header", "Subject: x\r\nnot a header\r\n" + hops + hops, nil, 0},
		{"NUL in header", "Subject: a\x00b\r\n\r\n", errNULInHeader, 0},
		{"NUL at line start", "Subject: a\r\n\x00\r\n\r\n", errNULInHeader, 0},
		{"NUL in body", "Subject: a\r\n\r\n\x00", nil, 0},
		{"no header section", "hello\r\nReceived: x\r\n", nil, 0},
	}
	for _, c := range cases {
		for cut := 0; cut <= len(c.in); cut++ {
			h := headerScanner{max: 3}
			err := h.scan([]byte(c.in[:cut]))
			if err == nil {
				err = h.scan([]byte(c.in[cut:]))
			}
			if !errors.Is(err, c.want) || h.received != c.received {
				t.Errorf("%s cut at %d: %v, %d Received; want %v, %d", c.name, cut, err, h.received, c.want, c.received)
				break
			}
		}
	}
}

func TestQuoteLocal(t *testing.T) {
	for in, want := range map[string]string{
		"user":        "user",
		"first.last":  "first.last",
		"o'hara+tag":  "o'hara+tag",
		"jöhn":        "jöhn",
		"john doe":    `"john doe"`,
		".lead":       `".lead"`,
		"a..b":        `"a..b"`,
		`say"hi\`:     `"say\"hi\\"`,
		"":            `""`,
		"with(paren)": `"with(paren)"`,
	} {
		if got := quoteLocal(in); got != want {
			t.Errorf("quoteLocal(%q) = %s, want %s", in, got, want)
		}
	}
}

// FuzzNewlineFixer checks newlineFixer's whole-piece fast path against its
// byte-by-byte loops, in both modes, with the input cut into pieces.
func FuzzNewlineFixer(f *testing.F) {
	for _, s := range []string{"a\r\nb\r\n", "a\nb", "a\rb", "\r\r\n", "\n", "\r", "x\r\n.\r\n", "\r\n\r"} {
		f.Add([]byte(s), uint8(1), false)
		f.Add([]byte(s), uint8(3), true)
	}
	f.Fuzz(func(t *testing.T, in []byte, piece uint8, reject bool) {
		if piece == 0 {
			piece = 1
		}
		fast := newlineFixer{reject: reject}
		slow := newlineFixer{reject: reject}
		var got, want []byte
		var gotErr, wantErr error
		for i := 0; i < len(in); i += int(piece) {
			p := in[i:min(len(in), i+int(piece))]
			if gotErr == nil {
				got, gotErr = fast.append(got, p)
			}
			if wantErr == nil {
				if reject {
					want, wantErr = slow.checkLoop(want, p)
				} else {
					want = slow.normalizeLoop(want, p)
				}
			}
		}
		if gotErr == nil {
			gotErr = fast.finish()
		}
		if wantErr == nil {
			wantErr = slow.finish()
		}
		if gotErr != wantErr || (gotErr == nil && !bytes.Equal(got, want)) {
			t.Fatalf("reject=%v pieces of %d: %q, %v; loops: %q, %v", reject, piece, got, gotErr, want, wantErr)
		}
	})
}
