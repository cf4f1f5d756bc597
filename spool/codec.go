package spool

import (
	"fmt"
	"runtime"
	"slices"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
)

// Codec identifies how the body section of a record is compressed.
type Codec uint8

// Codecs. The value is stored in every record header; never renumber.
const (
	CodecRaw  Codec = 0
	CodecZstd Codec = 1
	CodecS2   Codec = 2
)

func (c Codec) String() string {
	switch c {
	case CodecRaw:
		return "raw"
	case CodecZstd:
		return "zstd"
	case CodecS2:
		return "s2"
	}
	return fmt.Sprintf("codec(%d)", uint8(c))
}

// ParseCodec turns "raw", "zstd" or "s2" into a Codec.
func ParseCodec(s string) (Codec, error) {
	switch s {
	case "raw", "none":
		return CodecRaw, nil
	case "zstd", "":
		return CodecZstd, nil
	case "s2":
		return CodecS2, nil
	}
	return 0, fmt.Errorf("spool: unknown codec %q", s)
}

// One shared encoder and decoder: EncodeAll/DecodeAll are safe for
// concurrent use and allocation-free once warmed up. Without
// WithAllLitEntropyCompression, blocks without matches (base64 of already
// compressed attachments) are stored raw (see shared/research/dependencies.md).
var (
	zenc, _ = zstd.NewWriter(nil,
		zstd.WithEncoderLevel(zstd.SpeedFastest),
		zstd.WithAllLitEntropyCompression(true),
		zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)))
	zdec, _ = zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(0),
		zstd.WithDecoderMaxMemory(maxChunkRaw+1))
)

// maxChunkRaw bounds the decoded size of any one body section, so that a
// record that passes its checksum still cannot make us allocate more.
const maxChunkRaw = 64 << 20

// DefaultSmallBody is the default Config.SmallBody.
const DefaultSmallBody = 128 << 10

// codecFor is the codec policy: the codec for the body sections of a
// message of size bytes. With zstd configured (the default), messages of
// at most SmallBody bytes use s2 instead. On the acceptance path CPU is
// what limits messages per second, and zstd costs far more of it than it
// saves in writes: for a 64 KiB message (mxbench's body) the node used
// 1.2–1.5 ms of CPU with zstd and 0.8–0.9 ms with s2, to store 17.4 KB
// instead of 21.5 KB; writing 4 KB more costs microseconds. At 4 KiB
// (BenchmarkCodec, prose) s2 takes 7 µs against zstd's 38 µs. Text and HTML mail is a small share of
// the bytes queued during an outage (a realistic mix is dominated by
// attachments, which stay zstd), so the queue's disk space grows by a
// few percent only. Configured raw or s2 are used as they are.
func (c *Config) codecFor(size int64) Codec {
	if c.Codec == CodecZstd && size <= int64(c.SmallBody) {
		return CodecS2
	}
	return c.Codec
}

// compress appends src, compressed with c, to dst.
func compress(c Codec, dst, src []byte) []byte {
	switch c {
	case CodecZstd:
		return zenc.EncodeAll(src, dst)
	case CodecS2:
		n := s2.MaxEncodedLen(len(src)) // len(src)+a few bytes; sections are far below s2's 4 GiB
		dst = slices.Grow(dst, n)
		out := s2.Encode(dst[len(dst):len(dst)+n], src)
		return dst[:len(dst)+len(out)]
	}
	return append(dst, src...)
}

// bodyRecord frames meta and raw, a body section of a message of at least
// size bytes compressed by the codec policy, into a new record. A section
// the codec does not make smaller is stored raw, which also spares its
// readers the decompression.
func (c *Config) bodyRecord(typ uint8, meta, raw []byte, size int64) []byte {
	codec := c.codecFor(size)
	start := headerLen + len(meta)
	rec := make([]byte, start, start+len(raw)+len(raw)/8+64)
	copy(rec[headerLen:], meta)
	if codec != CodecRaw {
		rec = compress(codec, rec, raw)
		if len(rec)-start >= len(raw) {
			codec = CodecRaw
		}
	}
	if codec == CodecRaw {
		rec = append(rec[:start], raw...)
	}
	sealRecord(rec, typ, codec, len(meta))
	return rec
}

func decompress(c Codec, dst, src []byte, rawLen int) ([]byte, error) {
	if rawLen > maxChunkRaw {
		return nil, fmt.Errorf("%w: body of %d bytes", ErrCorrupt, rawLen)
	}
	var out []byte
	var err error
	switch c {
	case CodecZstd:
		out, err = zdec.DecodeAll(src, dst[:0])
	case CodecS2:
		n, derr := s2.DecodedLen(src)
		if derr != nil {
			return nil, fmt.Errorf("%w: %v", ErrCorrupt, derr)
		}
		if n != rawLen {
			return nil, fmt.Errorf("%w: s2 length %d, want %d", ErrCorrupt, n, rawLen)
		}
		if cap(dst) < n {
			dst = make([]byte, n)
		}
		out, err = s2.Decode(dst[:n], src)
	case CodecRaw:
		out = append(dst[:0], src...)
	default:
		return nil, fmt.Errorf("%w: unknown codec %d", ErrCorrupt, c)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	if len(out) != rawLen {
		return nil, fmt.Errorf("%w: decoded %d bytes, want %d", ErrCorrupt, len(out), rawLen)
	}
	return out, nil
}
