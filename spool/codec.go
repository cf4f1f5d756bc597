package spool

import (
	"fmt"
	"runtime"

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

func compress(c Codec, dst, src []byte) []byte {
	switch c {
	case CodecZstd:
		return zenc.EncodeAll(src, dst)
	case CodecS2:
		return s2.Encode(dst[:cap(dst)], src)
	}
	return append(dst, src...)
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
