package spool

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"

	"go.uber.org/zap/zaptest"
)

// perm is one spool configuration every storage test runs under
// (the NATS testFileStoreAllPermutations idea).
type perm struct {
	codec  Codec
	shards int
	policy bool // the default codec policy (s2 for small sections); otherwise codec for every size
}

func (p perm) String() string {
	c := p.codec.String()
	if p.policy {
		c += "+policy"
	}
	return fmt.Sprintf("%s-%dshard", c, p.shards)
}

// perms: each codec alone, and the default configuration (zstd with the
// codec policy, 8 shards).
var perms = []perm{{CodecRaw, 1, false}, {CodecZstd, 1, false}, {CodecS2, 1, false},
	{CodecRaw, 8, false}, {CodecZstd, 8, true}, {CodecS2, 8, false}}

func forEachPerm(t *testing.T, fn func(t *testing.T, p perm)) {
	for _, p := range perms {
		t.Run(p.String(), func(t *testing.T) { fn(t, p) })
	}
}

// testCfg is a small-segment config so that tests cross segment and chunk
// boundaries with little data.
func testCfg(dir string, p perm) Config {
	small := -1
	if p.policy {
		small = 0 // the default
	}
	return Config{
		Dir:              dir,
		Shards:           p.shards,
		Codec:            p.codec,
		CodecSet:         true,
		SmallBody:        small,
		SegmentSize:      32 << 10,
		ChunkSize:        16 << 10,
		MaxMessageBytes:  4 << 20,
		MaintainInterval: 20_000_000, // 20 ms
	}
}

func openT(t testing.TB, cfg Config) *Spool {
	t.Helper()
	sp, err := Open(zaptest.NewLogger(t), cfg)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	// Closed at the latest when the test ends (Close is idempotent), before
	// t.TempDir's removal: a spool left open would keep its shard goroutines
	// running, logging through a finished test (a panic) about a removed
	// directory.
	t.Cleanup(func() { _ = sp.Close() })
	return sp
}

// body returns a deterministic, partly compressible message body.
func body(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	var b bytes.Buffer
	fmt.Fprintf(&b, "Message-ID: <%d@test>\r\nSubject: test %d\r\n\r\n", seed, seed)
	words := []string{"continuity ", "mail ", "outage ", "spool ", "relay ", "queue\r\n"}
	for b.Len() < n {
		if r.IntN(4) != 0 {
			fmt.Fprintf(&b, "%016x", r.Uint64())
		} else {
			b.WriteString(words[r.IntN(len(words))])
		}
	}
	return b.Bytes()[:n]
}

// prose returns n bytes of English-like text (words and CRLF lines), which
// s2 compresses as well as zstd does, unlike body's hex digits.
func prose(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	words := []string{"the ", "customer ", "primary ", "server ", "is ", "down ", "and ", "mail ", "waits ",
		"in ", "our ", "continuity ", "queue ", "until ", "it ", "returns", ".\r\n", ", ", "relay ", "outage "}
	var b bytes.Buffer
	for b.Len() < n {
		b.WriteString(words[r.IntN(len(words))])
	}
	return b.Bytes()[:n]
}

func env(domain string, rcpts ...string) Envelope {
	if len(rcpts) == 0 {
		rcpts = []string{"user@" + domain}
	}
	return Envelope{Domain: domain, From: "sender@example.net", Rcpts: rcpts}
}

func mustAppend(t testing.TB, sp *Spool, e Envelope, b []byte) ID {
	t.Helper()
	id, err := sp.Append(e, b)
	if err != nil {
		t.Fatalf("append: %v", err)
	}
	return id
}

func mustBody(t testing.TB, sp *Spool, id ID, want []byte) {
	t.Helper()
	got, err := sp.ReadBody(id)
	if err != nil {
		t.Fatalf("read %s: %v", id, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("body of %s: got %d bytes, want %d (equal prefix %v)", id, len(got), len(want),
			bytes.HasPrefix(want, got[:min(len(got), 32)]))
	}
}
