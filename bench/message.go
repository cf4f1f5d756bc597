package bench

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"math"
	mrand "math/rand/v2"
	"strconv"
	"strings"
	"time"
)

// DigestHeader carries "sha256=<hex>", the SHA-256 of the message body
// (everything after the blank line that ends the header) with every CRLF
// replaced by LF, so that a receiver can check the body arrived intact
// whatever line endings the MTAs in between used on disk.
const DigestHeader = "X-Mxbench-Digest"

// trailerLen is the fixed length of the unique last line of every body,
// so that a fixed-size body is exactly Size bytes.
const trailerLen = 96

// Mix weights and body size ranges of the realistic mix (percent, bytes).
var mixKinds = []struct {
	kind   string
	weight int
	lo, hi int
}{
	{"text", 60, 1 << 10, 8 << 10},
	{"html", 25, 8 << 10, 64 << 10},
	{"attachment", 12, 64 << 10, 1 << 20},
	{"large", 3, 1 << 20, 4 << 20},
}

// templatesPerKind is how many distinct bodies are built for each kind
// (or for a fixed size), so that messages are not all alike.
const templatesPerKind = 8

// template is a pre-built body. Every message appends its own trailer.
type template struct {
	kind  string
	extra []byte // MIME header fields, each ending in CRLF
	bulk  []byte // wire form: CRLF lines, none starting with '.', ends in CRLF
	state []byte // marshaled SHA-256 state after the canonical bulk
}

// Generator builds the messages of one run. It is safe for concurrent use.
type Generator struct {
	from      string
	run       string // random run id, part of every Message-ID
	size      int    // fixed body size, 0 for the mix
	templates []template
	cum       []int // mix: cumulative weights per kind
	byKind    [][]int
}

// NewGenerator returns a generator of messages from the given sender with
// bodies of exactly size bytes (size > 0) or, with size 0, the realistic
// mix: 60% plain text 1–8 KiB, 25% HTML 8–64 KiB, 12% a base64 attachment
// of 64 KiB–1 MiB, 3% one of 1–4 MiB (mean about 115 KiB).
func NewGenerator(from string, size int) (*Generator, error) {
	if size < 0 {
		return nil, errors.New("bench: negative message size")
	}
	var id [8]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, err
	}
	g := &Generator{from: from, run: hex.EncodeToString(id[:]), size: size}
	rng := mrand.New(mrand.NewPCG(uint64(size), 0x6d7862656e6368))
	if size > 0 {
		n := max(size-trailerLen, 0)
		for range templatesPerKind {
			g.templates = append(g.templates, newTemplate("fixed", nil, textBody(rng, n)))
		}
		return g, nil
	}
	total := 0
	for _, k := range mixKinds {
		var idx []int
		for i := range templatesPerKind {
			f := float64(i) / float64(templatesPerKind-1)
			n := int(float64(k.lo) * math.Pow(float64(k.hi)/float64(k.lo), f))
			extra, bulk := mixBody(rng, k.kind, n)
			idx = append(idx, len(g.templates))
			g.templates = append(g.templates, newTemplate(k.kind, extra, bulk))
		}
		g.byKind = append(g.byKind, idx)
		total += k.weight
		g.cum = append(g.cum, total)
	}
	return g, nil
}

// Run is the random id of this generator's run (part of every Message-ID).
func (g *Generator) Run() string { return g.run }

// MeanSize is the expected body size in bytes.
func (g *Generator) MeanSize() int {
	if g.size > 0 {
		return g.size
	}
	var sum, w float64
	for i, k := range mixKinds {
		var s float64
		for _, t := range g.byKind[i] {
			s += float64(len(g.templates[t].bulk) + trailerLen)
		}
		sum += float64(k.weight) * s / float64(len(g.byKind[i]))
		w += float64(k.weight)
	}
	return int(sum / w)
}

func newTemplate(kind string, extra, bulk []byte) template {
	h := sha256.New()
	_, _ = h.Write(bytes.ReplaceAll(bulk, []byte("\r\n"), []byte("\n")))
	st, err := h.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		panic(err) // crypto/sha256 always implements it
	}
	return template{kind: kind, extra: extra, bulk: bulk, state: st}
}

// Message is one generated message.
type Message struct {
	Seq    int64
	ID     string // Message-ID without the angle brackets
	From   string
	Rcpts  []string
	Digest string // hex SHA-256 of the canonical body
	Kind   string // "fixed", "text", "html", "attachment", "large"
	header []byte
	bulk   []byte // shared with the template: never modify
	tail   []byte
}

// Size is the message's size on the wire (header and body, without
// dot-stuffing and terminator).
func (m *Message) Size() int { return len(m.header) + len(m.bulk) + len(m.tail) }

// BodySize is the size of the body alone.
func (m *Message) BodySize() int { return len(m.bulk) + len(m.tail) }

// WriteTo writes the message in SMTP DATA form, without the final
// ".\r\n": no line of it starts with a dot, so no stuffing is needed.
func (m *Message) WriteTo(w io.Writer) (int64, error) {
	var n int64
	for _, b := range [][]byte{m.header, m.bulk, m.tail} {
		k, err := w.Write(b)
		n += int64(k)
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// Bytes returns the whole message (for tests and small tools).
func (m *Message) Bytes() []byte {
	var b bytes.Buffer
	_, _ = m.WriteTo(&b)
	return b.Bytes()
}

// New builds message number seq for the given recipients.
func (g *Generator) New(seq int64, rcpts []string) *Message {
	t := &g.templates[g.pick(seq)]
	m := &Message{Seq: seq, From: g.from, Rcpts: rcpts, Kind: t.kind, bulk: t.bulk}
	m.ID = strconv.FormatInt(seq, 10) + "." + g.run + "@mxbench.invalid"
	tail := make([]byte, 0, trailerLen)
	tail = append(tail, "-- mxbench "...)
	tail = append(tail, m.ID...)
	tail = append(tail, ' ')
	for len(tail) < trailerLen-2 {
		tail = append(tail, '-')
	}
	m.tail = append(tail, '\r', '\n')

	h := sha256.New()
	if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(t.state); err != nil {
		panic(err)
	}
	_, _ = h.Write(m.tail[:len(m.tail)-2])
	_, _ = h.Write([]byte{'\n'})
	m.Digest = hex.EncodeToString(h.Sum(nil))

	var hb bytes.Buffer
	hb.Grow(256 + len(t.extra))
	fmt.Fprintf(&hb, "From: <%s>\r\nTo: <%s>\r\n", g.from, firstOr(rcpts, "undisclosed-recipients:;"))
	fmt.Fprintf(&hb, "Subject: mxbench message %d\r\nDate: %s\r\nMessage-ID: <%s>\r\n", seq, time.Now().Format(time.RFC1123Z), m.ID)
	fmt.Fprintf(&hb, "%s: sha256=%s\r\n", DigestHeader, m.Digest)
	if t.extra != nil {
		hb.Write(t.extra)
	} else {
		hb.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n")
	}
	hb.WriteString("\r\n")
	m.header = hb.Bytes()
	return m
}

func firstOr(s []string, def string) string {
	if len(s) > 0 {
		return s[0]
	}
	return def
}

// pick chooses the template of message seq, deterministically.
func (g *Generator) pick(seq int64) int {
	x := splitmix(uint64(seq))
	if g.size > 0 {
		return int(x % uint64(len(g.templates)))
	}
	w := int(x % uint64(g.cum[len(g.cum)-1]))
	for k, c := range g.cum {
		if w < c {
			idx := g.byKind[k]
			return idx[int((x>>32)%uint64(len(idx)))]
		}
	}
	return 0
}

func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

var words = strings.Fields(`the continuity of mail service during an outage depends on a queue that
accepts messages for protected domains and delivers them once the primary server returns invoice
meeting report quarterly budget customer support ticket please find attached the document we
discussed yesterday regards thanks schedule update project status network maintenance window
security review payroll contract signature shipping order confirmation delivery tracking number
account statement reminder agenda minutes presentation draft final version approved pending
request information about your subscription renewal offer discount price list catalogue`)

// textBody returns n bytes of CRLF-terminated lines of words (the last
// line is padded so the length is exact). No line starts with a dot.
func textBody(rng *mrand.Rand, n int) []byte {
	b := make([]byte, 0, n)
	line := make([]byte, 0, 80)
	for len(b) < n {
		line = line[:0]
		width := 50 + rng.IntN(26)
		for len(line) < width {
			if len(line) > 0 {
				line = append(line, ' ')
			}
			line = append(line, words[rng.IntN(len(words))]...)
		}
		rest := n - len(b)
		if len(line)+2 > rest {
			if rest < 2 {
				b = append(b, bytes.Repeat([]byte{'x'}, rest)...)
				break
			}
			line = line[:rest-2]
		}
		b = append(b, line...)
		b = append(b, '\r', '\n')
	}
	return b
}

// base64Lines returns the base64 of n random bytes in 76-column CRLF
// lines.
func base64Lines(rng *mrand.Rand, n int) []byte {
	raw := make([]byte, n)
	for i := 0; i < n; i += 8 {
		v := rng.Uint64()
		for j := 0; j < 8 && i+j < n; j++ {
			raw[i+j] = byte(v >> (8 * j))
		}
	}
	enc := base64.StdEncoding.EncodeToString(raw)
	out := make([]byte, 0, len(enc)+len(enc)/76*2+2)
	for len(enc) > 76 {
		out = append(out, enc[:76]...)
		out = append(out, '\r', '\n')
		enc = enc[76:]
	}
	out = append(out, enc...)
	return append(out, '\r', '\n')
}

// mixBody builds a body of about n bytes of the given kind, with the MIME
// header fields it needs.
func mixBody(rng *mrand.Rand, kind string, n int) (extra, body []byte) {
	const boundary = "mxbench-boundary-7d1f"
	var b bytes.Buffer
	switch kind {
	case "text":
		return nil, textBody(rng, max(n-trailerLen, 0))
	case "html":
		extra = []byte("MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"" + boundary + "\"\r\n")
		text := textBody(rng, n/3)
		fmt.Fprintf(&b, "--%s\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n", boundary)
		b.Write(text)
		fmt.Fprintf(&b, "--%s\r\nContent-Type: text/html; charset=us-ascii\r\n\r\n<html><body>\r\n", boundary)
		for _, l := range bytes.SplitAfter(textBody(rng, max(n-b.Len()-200, 0)), []byte("\r\n")) {
			if len(l) > 2 {
				b.WriteString("<p>")
				b.Write(l[:len(l)-2])
				b.WriteString("</p>\r\n")
			}
		}
		fmt.Fprintf(&b, "</body></html>\r\n--%s--\r\n", boundary)
	default: // attachment, large
		extra = []byte("MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"" + boundary + "\"\r\n")
		fmt.Fprintf(&b, "--%s\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n", boundary)
		b.Write(textBody(rng, 600))
		fmt.Fprintf(&b, "--%s\r\nContent-Type: application/pdf; name=\"report.pdf\"\r\n"+
			"Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"report.pdf\"\r\n\r\n", boundary)
		raw := max((n-b.Len()-trailerLen-64)*57/78, 0)
		b.Write(base64Lines(rng, raw))
		fmt.Fprintf(&b, "--%s--\r\n", boundary)
	}
	return extra, b.Bytes()
}

// lfHash hashes what is written to it with every CRLF turned into LF.
type lfHash struct {
	h  hash.Hash
	cr bool // the last byte written was a CR, not yet hashed
}

func newLFHash() *lfHash { return &lfHash{h: sha256.New()} }

func (c *lfHash) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if c.cr {
			c.cr = false
			if p[0] != '\n' {
				_, _ = c.h.Write([]byte{'\r'})
			}
		}
		i := bytes.IndexByte(p, '\r')
		if i < 0 {
			_, _ = c.h.Write(p)
			break
		}
		_, _ = c.h.Write(p[:i])
		p = p[i+1:]
		c.cr = true
	}
	return n, nil
}

func (c *lfHash) sum() string {
	if c.cr {
		_, _ = c.h.Write([]byte{'\r'})
		c.cr = false
	}
	return hex.EncodeToString(c.h.Sum(nil))
}

// Digest states of a received message.
const (
	DigestOK      = "ok"
	DigestBad     = "bad"
	DigestMissing = "none" // no X-Mxbench-Digest header (not an mxbench message)
)

// Inspected is what Inspect learns from one received message.
type Inspected struct {
	MessageID string // without angle brackets; empty if none
	Digest    string // DigestOK, DigestBad or DigestMissing
	Size      int64  // bytes read, header included
}

// Inspect reads a whole message (as received in DATA, dot-stuffing
// removed), returns its Message-ID and checks its body against the
// X-Mxbench-Digest header.
func Inspect(r io.Reader) (Inspected, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return Inspected{}, err
	}
	return InspectBytes(b), nil
}

// InspectBytes is Inspect on a message in memory.
func InspectBytes(msg []byte) Inspected {
	res := Inspected{Size: int64(len(msg))}
	var want string
	rest := msg
	for len(rest) > 0 {
		line := rest
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line, rest = rest[:i+1], rest[i+1:]
		} else {
			rest = nil
		}
		t := bytes.TrimRight(line, "\r\n")
		if len(t) == 0 {
			break // end of the header
		}
		if k, v, ok := bytes.Cut(t, []byte{':'}); ok {
			switch {
			case bytes.EqualFold(k, []byte("Message-ID")):
				res.MessageID = strings.Trim(strings.TrimSpace(string(v)), "<>")
			case bytes.EqualFold(k, []byte(DigestHeader)):
				want = strings.TrimPrefix(strings.TrimSpace(string(v)), "sha256=")
			}
		}
	}
	h := newLFHash()
	_, _ = h.Write(rest)
	switch got := h.sum(); {
	case want == "":
		res.Digest = DigestMissing
	case strings.EqualFold(got, want):
		res.Digest = DigestOK
	default:
		res.Digest = DigestBad
	}
	return res
}
