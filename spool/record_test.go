package spool

import (
	"bytes"
	"errors"
	"testing"
)

func sampleRecord() []byte {
	mm := msgMeta{id: 0x1234, size: 5, domain: "example.com", from: "a@b.c", rcpts: []string{"x@example.com"}}
	return appendRecord(nil, typeMessage, CodecRaw, mm.encode(nil), []byte("hello"))
}

func TestDecodeRecordTable(t *testing.T) {
	good := sampleRecord()
	if _, err := decodeRecord(good); err != nil {
		t.Fatalf("good record: %v", err)
	}
	cases := []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"zeros", make([]byte, len(good))},
		{"short header", good[:headerLen-1]},
		{"header only", good[:headerLen]},
		{"missing last byte", good[:len(good)-1]},
		{"extra byte", append(append([]byte(nil), good...), 0)},
		{"bad magic", patch(good, 0, 'Z')},
		{"bad version", patch(good, 2, 9)},
		{"bad type", patch(good, 3, 99)},
		{"bad codec", patch(good, 4, 7)},
		{"reserved set", patch(good, 6, 1)},
		{"meta length", patch(good, 8, good[8]+1)},
		{"crc", patch(good, 16, good[16]^1)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := decodeRecord(c.b); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("got %v, want ErrCorrupt", err)
			}
		})
	}
	// Every truncation and every single-bit flip is detected.
	for n := 0; n < len(good); n++ {
		if _, err := decodeRecord(good[:n]); err == nil {
			t.Fatalf("truncated to %d bytes: accepted", n)
		}
	}
	for i := 0; i < len(good)*8; i++ {
		b := patch(good, i/8, good[i/8]^(1<<(i%8)))
		if _, err := decodeRecord(b); err == nil {
			t.Fatalf("bit %d flipped: accepted", i)
		}
	}
}

func patch(b []byte, i int, v byte) []byte {
	c := append([]byte(nil), b...)
	c[i] = v
	return c
}

func TestMetaRoundTrip(t *testing.T) {
	mm := msgMeta{id: 77, size: 123456, chunkBytes: 999, domain: "d.example", from: "",
		rcpts: []string{"a@d.example", "b@d.example"}, attempts: 3, next: 1700000000000,
		lastErr: "451 4.3.0 try later", status: []uint8{rcptDelivered, rcptPending}, chunks: []uint64{5, 9, 12}}
	got, err := decodeMsgMeta(mm.encode(nil))
	if err != nil {
		t.Fatal(err)
	}
	if got.id != mm.id || got.size != mm.size || got.domain != mm.domain || got.lastErr != mm.lastErr ||
		len(got.chunks) != 3 || got.chunks[2] != 12 || got.status[0] != rcptDelivered || got.rcpts[1] != "b@d.example" {
		t.Fatalf("round trip: %+v", got)
	}
	u := updMeta{id: 5, op: opAttempt, attempts: 2, next: -5, lastErr: "x", rcpts: []rcptUpdate{{1, rcptFailed}}, actor: "admin"}
	gu, err := decodeUpdMeta(u.encode(nil))
	if err != nil || gu.actor != "admin" || gu.rcpts[0].status != rcptFailed || gu.next != -5 {
		t.Fatalf("update round trip: %+v %v", gu, err)
	}
	// Truncated meta never decodes.
	b := mm.encode(nil)
	for n := 0; n < len(b); n++ {
		if _, err := decodeMsgMeta(b[:n]); err == nil {
			t.Fatalf("meta truncated to %d decoded", n)
		}
	}
}

func TestCodecsRoundTrip(t *testing.T) {
	src := bytes.Repeat([]byte("continuity "), 5000)
	for _, c := range []Codec{CodecRaw, CodecZstd, CodecS2} {
		enc := compress(c, nil, src)
		out, err := decompress(c, nil, enc, len(src))
		if err != nil || !bytes.Equal(out, src) {
			t.Fatalf("%s: %v", c, err)
		}
		if c != CodecRaw && len(enc) >= len(src)/4 {
			t.Fatalf("%s did not compress: %d of %d", c, len(enc), len(src))
		}
		if _, err := decompress(c, nil, enc, len(src)+1); err == nil {
			t.Fatalf("%s: wrong length accepted", c)
		}
	}
}

func FuzzDecodeRecord(f *testing.F) {
	f.Add(sampleRecord())
	f.Add(appendRecord(nil, typeChunk, CodecZstd, enc(nil).uv(5), compress(CodecZstd, nil, []byte("hello"))))
	u := updMeta{id: 1, op: opDelete, actor: "x"}
	f.Add(appendRecord(nil, typeUpdate, CodecRaw, u.encode(nil), nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		rec, err := decodeRecord(b)
		if err != nil {
			return
		}
		switch rec.typ {
		case typeMessage:
			if m, err := decodeMsgMeta(rec.meta); err == nil && len(m.chunks) == 0 {
				_, _ = decompress(rec.codec, nil, rec.body, int(min(m.size, maxChunkRaw+1)))
			}
		case typeChunk:
			if n, err := decodeChunkMeta(rec.meta); err == nil {
				_, _ = decompress(rec.codec, nil, rec.body, n)
			}
		case typeUpdate:
			_, _ = decodeUpdMeta(rec.meta)
		}
	})
}
