package bench

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
)

func TestGeneratorFixedSizeAndDigest(t *testing.T) {
	for _, size := range []int{10, 4096, 65536} {
		g, err := NewGenerator("s@example.org", size)
		if err != nil {
			t.Fatal(err)
		}
		ids := map[string]bool{}
		for seq := range int64(20) {
			m := g.New(seq, []string{"a@example.test"})
			if size >= trailerLen && m.BodySize() != size {
				t.Errorf("size %d: body is %d bytes", size, m.BodySize())
			}
			if ids[m.ID] {
				t.Fatalf("duplicate Message-ID %s", m.ID)
			}
			ids[m.ID] = true
			in, err := Inspect(bytes.NewReader(m.Bytes()))
			if err != nil {
				t.Fatal(err)
			}
			if in.Digest != DigestOK || in.MessageID != m.ID || in.Size != int64(m.Size()) {
				t.Fatalf("size %d seq %d: %+v, want ok/%s/%d", size, seq, in, m.ID, m.Size())
			}
			for _, l := range strings.Split(string(m.Bytes()), "\r\n") {
				if strings.HasPrefix(l, ".") {
					t.Fatalf("line starts with a dot: %q", l)
				}
			}
		}
	}
}

func TestGeneratorMix(t *testing.T) {
	g, err := NewGenerator("s@example.org", 0)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for seq := range int64(2000) {
		m := g.New(seq, []string{"a@example.test"})
		kinds[m.Kind]++
		if seq%97 == 0 {
			in, err := Inspect(bytes.NewReader(m.Bytes()))
			if err != nil || in.Digest != DigestOK {
				t.Fatalf("seq %d (%s): %+v %v", seq, m.Kind, in, err)
			}
		}
		if m.BodySize() > 5<<20 {
			t.Fatalf("seq %d: body of %d bytes", seq, m.BodySize())
		}
	}
	// 60/25/12/3 % of 2000, loosely
	for kind, lo := range map[string]int{"text": 1000, "html": 350, "attachment": 150, "large": 20} {
		if kinds[kind] < lo {
			t.Errorf("%d %s messages of 2000 (%v)", kinds[kind], kind, kinds)
		}
	}
	if mean := g.MeanSize(); mean < 60<<10 || mean > 200<<10 {
		t.Errorf("mean size %d", mean)
	}
}

func TestInspectDetectsDamageAndSurvivesLineEndings(t *testing.T) {
	g, _ := NewGenerator("s@example.org", 2000)
	m := g.New(7, []string{"a@example.test"})
	raw := m.Bytes()

	// An MTA that stores LF line endings and adds a trace field is fine.
	lf := append([]byte("Received: from x by y; now\r\n"), raw...)
	lf = bytes.ReplaceAll(lf, []byte("\r\n"), []byte("\n"))
	if in, _ := Inspect(bytes.NewReader(lf)); in.Digest != DigestOK {
		t.Errorf("LF endings: %+v", in)
	}
	// A changed body byte is not.
	bad := bytes.Clone(raw)
	bad[len(bad)-150] ^= 0x20
	if in, _ := Inspect(bytes.NewReader(bad)); in.Digest != DigestBad {
		t.Errorf("damaged body: %+v", in)
	}
	// Truncation neither.
	if in, _ := Inspect(bytes.NewReader(raw[:len(raw)-10])); in.Digest != DigestBad {
		t.Errorf("truncated body: %+v", in)
	}
	// Mail without the header is counted apart.
	if in, _ := Inspect(strings.NewReader("Subject: x\r\nMessage-ID: <a@b>\r\n\r\nbody\r\n")); in.Digest != DigestMissing || in.MessageID != "a@b" {
		t.Errorf("foreign mail: %+v", in)
	}
}

func TestLFHashChunking(t *testing.T) {
	data := []byte("a\r\nb\r\r\nc\rd\r\n\r\n\r")
	whole := newLFHash()
	whole.Write(data)
	want := whole.sum()
	for chunk := 1; chunk < len(data); chunk++ {
		h := newLFHash()
		for i := 0; i < len(data); i += chunk {
			h.Write(data[i:min(i+chunk, len(data))])
		}
		if got := h.sum(); got != want {
			t.Fatalf("chunk %d: %s, want %s", chunk, got, want)
		}
	}
	ref := sha256.Sum256([]byte("a\nb\r\nc\rd\n\n\r"))
	if hex.EncodeToString(ref[:]) != want {
		t.Fatal("CRLF is not hashed as LF")
	}
}

func TestQueueID(t *testing.T) {
	for text, want := range map[string]string{
		"2.0.0 queued as 1a220f35d1000401":                  "1a220f35d1000401",
		"2.0.0 queued as 1a2,1a3":                           "1a2,1a3",
		"2.0.0 Ok: queued as 4dHk5z1Xq7z9tRx":               "4dHk5z1Xq7z9tRx",
		"2.0.0 OK: queued":                                  "",
		"2.0.0 Ok: queued as <abc> (and some comment text)": "abc",
	} {
		if got := queueID(text); got != want {
			t.Errorf("queueID(%q) = %q, want %q", text, got, want)
		}
	}
}
