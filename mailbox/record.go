package mailbox

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Bucket and key names of mailbox.db (see the package documentation).
var (
	bktUsers   = []byte("users")
	bktBoxes   = []byte("boxes")
	bktBlobs   = []byte("blobs")
	bktFolders = []byte("folders")
	bktMsgs    = []byte("msgs")
	keyStat    = []byte("stat")
	keyUV      = []byte("uv")
	keyFID     = []byte("fid")
)

// userRec is the value of a users entry.
type userRec struct {
	Hash    string    `json:"hash"`
	Created time.Time `json:"created"`
}

// folderRec is the value of a folders entry.
type folderRec struct {
	ID          uint64 `json:"id"`
	UIDValidity uint32 `json:"uv"`
	UIDNext     uint32 `json:"next"`
	Subscribed  bool   `json:"sub,omitempty"`
	SpecialUse  string `json:"use,omitempty"`
}

// msgRec is one message of a folder's index. Encoded (version 1):
//
//	byte     version (1)
//	uvarint  len(blob) ‖ blob id
//	varint   size in bytes
//	varint   internal date, Unix nanoseconds
//	varint   internal date's zone offset, seconds east of UTC
//	varint   arrival, Unix nanoseconds
//	uvarint  number of flags, then for each: uvarint len ‖ flag
type msgRec struct {
	Blob    string
	Size    int64
	Date    time.Time // INTERNALDATE
	Arrival time.Time // when the store filed it (Purge clock)
	Flags   []string
}

const msgRecVersion = 1

var errBadRecord = errors.New("mailbox: malformed index record")

func (m *msgRec) encode() []byte {
	n := 1 + binary.MaxVarintLen64*6 + len(m.Blob)
	for _, f := range m.Flags {
		n += binary.MaxVarintLen64 + len(f)
	}
	b := make([]byte, 0, n)
	b = append(b, msgRecVersion)
	b = binary.AppendUvarint(b, uint64(len(m.Blob)))
	b = append(b, m.Blob...)
	b = binary.AppendVarint(b, m.Size)
	b = binary.AppendVarint(b, m.Date.UnixNano())
	_, off := m.Date.Zone()
	b = binary.AppendVarint(b, int64(off))
	b = binary.AppendVarint(b, m.Arrival.UnixNano())
	b = binary.AppendUvarint(b, uint64(len(m.Flags)))
	for _, f := range m.Flags {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	return b
}

func decodeMsgRec(b []byte) (msgRec, error) {
	var m msgRec
	if len(b) == 0 || b[0] != msgRecVersion {
		return m, errBadRecord
	}
	d := decoder{b: b[1:]}
	m.Blob = d.str()
	m.Size = d.varint()
	date := d.varint()
	off := d.varint()
	m.Arrival = time.Unix(0, d.varint())
	nf := d.uvarint()
	if d.err != nil || nf > uint64(len(d.b)) {
		return m, errBadRecord
	}
	if nf > 0 {
		m.Flags = make([]string, 0, nf)
		for i := uint64(0); i < nf; i++ {
			m.Flags = append(m.Flags, d.str())
		}
	}
	if d.err != nil || len(d.b) != 0 || m.Blob == "" {
		return m, errBadRecord
	}
	m.Date = time.Unix(0, date).In(zoneFor(int(off)))
	return m, nil
}

func zoneFor(off int) *time.Location {
	if off == 0 {
		return time.UTC
	}
	return time.FixedZone("", off)
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errBadRecord
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errBadRecord
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) str() string {
	n := d.uvarint()
	if d.err != nil {
		return ""
	}
	if n > uint64(len(d.b)) {
		d.err = errBadRecord
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func u32key(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
func u64key(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func getU32(b []byte) uint32 {
	if len(b) != 4 {
		return 0
	}
	return binary.BigEndian.Uint32(b)
}

func getU64(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

// stat is a user's message count and byte total ("stat" key of a box).
type stat struct {
	messages int64
	bytes    int64
}

func (s stat) encode() []byte {
	b := binary.BigEndian.AppendUint64(nil, uint64(s.messages))
	return binary.BigEndian.AppendUint64(b, uint64(s.bytes))
}

func decodeStat(b []byte) stat {
	if len(b) != 16 {
		return stat{}
	}
	return stat{int64(binary.BigEndian.Uint64(b)), int64(binary.BigEndian.Uint64(b[8:]))}
}

func corrupt(what string, err error) error {
	return fmt.Errorf("mailbox: corrupt %s: %w", what, err)
}
