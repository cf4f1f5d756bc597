package spool

import (
	"bytes"
	"io"
	"math/rand/v2"
	"slices"
	"testing"
)

// storedCodecs returns the codec of each record of a stored message: its
// chunks in order, then the MESSAGE record.
func storedCodecs(t *testing.T, sp *Spool, id ID) []Codec {
	t.Helper()
	sh := sp.shards[id.Shard()]
	sh.mu.RLock()
	m := sh.msgs[id]
	sh.mu.RUnlock()
	if m == nil {
		t.Fatalf("message %s not indexed", id)
	}
	rec := func(idx uint64) record {
		b, err := sh.read(idx)
		if err != nil {
			t.Fatalf("read %d: %v", idx, err)
		}
		r, err := decodeRecord(b)
		if err != nil {
			t.Fatalf("decode %d: %v", idx, err)
		}
		return r
	}
	msgRec := rec(m.loc)
	mm, err := decodeMsgMeta(msgRec.meta)
	if err != nil {
		t.Fatal(err)
	}
	var out []Codec
	for _, c := range mm.chunks {
		out = append(out, rec(c).codec)
	}
	return append(out, msgRec.codec)
}

// TestCodecPolicy checks which codec each record of a message is stored
// with, for the configured codec, the SmallBody threshold and the body's
// size and compressibility, and that every body reads back intact.
func TestCodecPolicy(t *testing.T) {
	text := func(n int) []byte { return prose(3, n) }
	random := func(n int) []byte {
		b := make([]byte, n)
		r := rand.New(rand.NewPCG(1, 2))
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return b
	}
	raw, s2c, zstd := CodecRaw, CodecS2, CodecZstd
	tests := []struct {
		name  string
		codec Codec
		small int // Config.SmallBody
		chunk int // Config.ChunkSize; 0: 64 KiB
		body  []byte
		want  []Codec // chunks..., MESSAGE
	}{
		{"zstd policy, 4 KiB text: s2", zstd, 0, 0, text(4 << 10), []Codec{s2c}},
		{"zstd policy, 128 KiB text (the threshold): s2 chunks", zstd, 0, 0, text(DefaultSmallBody), []Codec{s2c, s2c, raw}},
		{"zstd policy, 128 KiB + 1 text: zstd chunks, the 1-byte one raw", zstd, 0, 0, text(DefaultSmallBody + 1), []Codec{zstd, zstd, raw, raw}},
		{"zstd policy, 300 KiB text: zstd, also the first chunk and the short last one", zstd, 0, 0, text(300 << 10), []Codec{zstd, zstd, zstd, zstd, zstd, raw}},
		{"zstd policy, 100 KiB text inline (chunks of 1 MiB): s2", zstd, 0, 1 << 20, text(100 << 10), []Codec{s2c}},
		{"zstd policy, 10 bytes: raw (s2 would grow it)", zstd, 0, 0, []byte("hi there\r\n"), []Codec{raw}},
		{"zstd policy, empty body: raw", zstd, 0, 0, nil, []Codec{raw}},
		{"zstd policy, 4 KiB random: raw", zstd, 0, 0, random(4 << 10), []Codec{raw}},
		{"zstd policy, 100 KiB random: raw chunks", zstd, 0, 0, random(100 << 10), []Codec{raw, raw, raw}},
		{"zstd policy with threshold 1 KiB, 4 KiB text: zstd", zstd, 1 << 10, 0, text(4 << 10), []Codec{zstd}},
		{"zstd without policy, 4 KiB text: zstd", zstd, -1, 0, text(4 << 10), []Codec{zstd}},
		{"s2, 100 KiB text: s2", s2c, 0, 0, text(100 << 10), []Codec{s2c, s2c, raw}},
		{"raw, 4 KiB text: raw", raw, 0, 0, text(4 << 10), []Codec{raw}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.chunk == 0 {
				tc.chunk = 64 << 10
			}
			cfg := Config{Dir: t.TempDir(), Shards: 1, Codec: tc.codec, CodecSet: true, SmallBody: tc.small, ChunkSize: tc.chunk}
			sp := openT(t, cfg)
			defer sp.Close()
			id := mustAppend(t, sp, env("example.com"), tc.body)
			if got := storedCodecs(t, sp, id); !slices.Equal(got, tc.want) {
				t.Errorf("stored with %v, want %v", got, tc.want)
			}
			r, err := sp.OpenBody(id)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(r)
			r.Close()
			if err != nil || !bytes.Equal(got, tc.body) {
				t.Fatalf("body read back: %d bytes, err %v; want %d bytes", len(got), err, len(tc.body))
			}
		})
	}
}
