package spool

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// Record types. Stored on disk; never renumber.
const (
	typeMessage uint8 = 1
	typeChunk   uint8 = 2
	typeUpdate  uint8 = 3
	typeFiller  uint8 = 4
)

const (
	recMagic0  = 'M'
	recMagic1  = 'X'
	recVersion = 1
	headerLen  = 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// record is a decoded entry. meta and body alias the input buffer.
type record struct {
	typ   uint8
	codec Codec
	meta  []byte
	body  []byte
}

// appendRecord frames meta and body (already compressed with codec) into dst.
func appendRecord(dst []byte, typ uint8, codec Codec, meta, body []byte) []byte {
	start := len(dst)
	dst = append(dst, make([]byte, headerLen)...)
	dst = append(dst, meta...)
	dst = append(dst, body...)
	sealRecord(dst[start:], typ, codec, len(meta))
	return dst
}

// sealRecord fills in the header of a record laid out in rec (header
// space, meta of metaLen bytes, body).
func sealRecord(rec []byte, typ uint8, codec Codec, metaLen int) {
	h := rec[:headerLen]
	clear(h)
	h[0], h[1], h[2], h[3], h[4] = recMagic0, recMagic1, recVersion, typ, byte(codec)
	binary.LittleEndian.PutUint32(h[8:], uint32(metaLen))
	binary.LittleEndian.PutUint32(h[12:], uint32(len(rec)-headerLen-metaLen))
	crc := crc32.Update(0, castagnoli, h[:16])
	crc = crc32.Update(crc, castagnoli, rec[headerLen:])
	binary.LittleEndian.PutUint32(h[16:], crc)
}

// decodeRecord checks framing and checksum of one entry.
func decodeRecord(b []byte) (record, error) {
	if len(b) < headerLen {
		return record{}, fmt.Errorf("%w: %d-byte entry", ErrCorrupt, len(b))
	}
	if b[0] != recMagic0 || b[1] != recMagic1 {
		return record{}, fmt.Errorf("%w: bad magic %#x%02x", ErrCorrupt, b[0], b[1])
	}
	if b[2] != recVersion {
		return record{}, fmt.Errorf("%w: version %d", ErrCorrupt, b[2])
	}
	if b[3] < typeMessage || b[3] > typeFiller {
		return record{}, fmt.Errorf("%w: type %d", ErrCorrupt, b[3])
	}
	if b[4] > uint8(CodecS2) {
		return record{}, fmt.Errorf("%w: codec %d", ErrCorrupt, b[4])
	}
	if b[5] != 0 || b[6] != 0 || b[7] != 0 {
		return record{}, fmt.Errorf("%w: reserved bytes set", ErrCorrupt)
	}
	m := uint64(binary.LittleEndian.Uint32(b[8:]))
	n := uint64(binary.LittleEndian.Uint32(b[12:]))
	if uint64(len(b)) != headerLen+m+n {
		return record{}, fmt.Errorf("%w: length %d, header says %d", ErrCorrupt, len(b), headerLen+m+n)
	}
	crc := crc32.Update(0, castagnoli, b[:16])
	crc = crc32.Update(crc, castagnoli, b[headerLen:])
	if crc != binary.LittleEndian.Uint32(b[16:]) {
		return record{}, fmt.Errorf("%w: checksum mismatch", ErrCorrupt)
	}
	return record{
		typ:   b[3],
		codec: Codec(b[4]),
		meta:  b[headerLen : headerLen+m],
		body:  b[headerLen+m:],
	}, nil
}

// enc is a tiny append-only encoder for meta sections.
type enc []byte

func (e enc) u64(v uint64) enc { return binary.LittleEndian.AppendUint64(e, v) }
func (e enc) u8(v uint8) enc   { return append(e, v) }
func (e enc) uv(v uint64) enc  { return binary.AppendUvarint(e, v) }
func (e enc) sv(v int64) enc   { return binary.AppendVarint(e, v) }
func (e enc) str(s string) enc { return append(binary.AppendUvarint(e, uint64(len(s))), s...) }
func (e enc) ms(v int64) enc   { return e.sv(v) }
func (e enc) strs(ss []string) enc {
	e = e.uv(uint64(len(ss)))
	for _, s := range ss {
		e = e.str(s)
	}
	return e
}

// dec reads what enc wrote; the first error sticks.
type dec struct {
	b   []byte
	err error
}

func (d *dec) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: short or bad %s", ErrCorrupt, what)
	}
	d.b = nil
}

func (d *dec) u64() uint64 {
	if len(d.b) < 8 {
		d.fail("u64")
		return 0
	}
	v := binary.LittleEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

func (d *dec) u8() uint8 {
	if len(d.b) < 1 {
		d.fail("u8")
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *dec) uv() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("uvarint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *dec) sv() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads a uvarint element count and rejects counts that cannot fit
// in the remaining bytes (each element needs at least min bytes).
func (d *dec) count(min int) int {
	n := d.uv()
	if d.err == nil && n > uint64(len(d.b)/min) {
		d.fail("count")
		return 0
	}
	return int(n)
}

func (d *dec) raw(n int) []byte {
	if n < 0 || len(d.b) < n {
		d.fail("bytes")
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *dec) str() string {
	n := d.uv()
	if d.err != nil || n > uint64(len(d.b)) {
		d.fail("string")
		return ""
	}
	return string(d.raw(int(n)))
}

func (d *dec) done() error {
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%w: %d trailing meta bytes", ErrCorrupt, len(d.b))
	}
	return d.err
}
