package spool

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/tidwall/wal"
	"go.uber.org/zap"
)

// Damage describes what repair found in one segment and moved aside.
type Damage struct {
	Shard      int
	Segment    string // segment file name
	Entries    int    // WAL entries lost (unreadable, torn, or missing)
	Messages   int    // messages known to be lost with them
	Bytes      int64  // bytes cut from the segment
	Reason     string
	BrokenFile string // where the original segment was saved
}

// frame is one uvarint-framed entry found in a segment file.
type frame struct {
	off, end int // the whole frame, length prefix included
	data     []byte
	rec      record
	ok       bool // framing, header and checksum are valid
	reason   string
}

// parseSegment splits a segment file into frames. It stops at the first
// frame whose length prefix is unreadable or runs past the end; torn is the
// offset where it stopped (len(data) when the file parsed completely).
func parseSegment(data []byte) (frames []frame, torn int) {
	off := 0
	for off < len(data) {
		size, n := binary.Uvarint(data[off:])
		if n <= 0 || uint64(len(data)-off-n) < size {
			return frames, off
		}
		f := frame{off: off, end: off + n + int(size), data: data[off+n : off+n+int(size)]}
		rec, err := decodeRecord(f.data)
		if err != nil {
			f.reason = err.Error()
		} else {
			f.rec, f.ok = rec, true
		}
		frames = append(frames, f)
		off = f.end
	}
	return frames, off
}

var fillerFrame = func() []byte {
	rec := appendRecord(nil, typeFiller, CodecRaw, nil, nil)
	return append(binary.AppendUvarint(nil, uint64(len(rec))), rec...)
}()

// cleanTemp removes files left by interrupted writes (tidwall/wal's
// *.TEMP, our *.tmp) and lets tidwall/wal finish an interrupted
// TruncateFront/TruncateBack (*.START, *.END).
func (s *shard) cleanTemp() (bool, error) {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return false, err
	}
	changed, startEnd := false, false
	for _, e := range ents {
		name := e.Name()
		switch {
		case strings.HasSuffix(name, ".TEMP"), strings.HasSuffix(name, ".tmp"):
			if err := os.Remove(filepath.Join(s.dir, name)); err != nil {
				return false, err
			}
			s.log.Warn("spool removed leftover temp file", zap.String("file", name))
			changed = true
		case strings.HasSuffix(name, ".START"), strings.HasSuffix(name, ".END"):
			startEnd = true
		}
	}
	if startEnd {
		// wal.load completes the rename before it reads the tail; a torn
		// tail may still make Open fail, which recover then repairs.
		if l, err := wal.Open(s.dir, s.walOptions()); err == nil {
			_ = l.Close()
		}
		changed = true
	}
	return changed, nil
}

// recover scans every segment, repairs damage and rebuilds the index.
func (s *shard) recover() error {
	changed, err := s.cleanTemp()
	if err != nil {
		return err
	}
	segs, err := listSegments(s.dir)
	if err != nil {
		return err
	}
	chunks := make(map[uint64]int) // valid CHUNK entries: index → frame bytes
	for i, seg := range segs {
		expected := -1
		if i+1 < len(segs) {
			expected = int(segs[i+1].start - seg.start)
		}
		c, err := s.scanSegment(seg, expected, func(idx uint64, f *frame) {
			s.replay(idx, f, chunks)
		})
		if err != nil {
			return err
		}
		changed = changed || c
	}
	if changed {
		return syncDir(s.dir)
	}
	return nil
}

// repairTail cuts a torn or invalid tail off the last segment, without
// touching the index. Used when reopening after a write failure.
func (s *shard) repairTail() (bool, error) {
	changed, err := s.cleanTemp()
	if err != nil {
		return false, err
	}
	segs, err := listSegments(s.dir)
	if err != nil || len(segs) == 0 {
		return changed, err
	}
	c, err := s.scanSegment(segs[len(segs)-1], -1, nil)
	return changed || c, err
}

// scanSegment parses one segment, rewrites it if it is damaged, and calls
// fn for every valid entry kept. expected is the number of entries the
// segment must hold (-1 for the last segment, which may be shorter).
func (s *shard) scanSegment(seg segInfo, expected int, fn func(idx uint64, f *frame)) (bool, error) {
	name := segmentName(seg.start)
	path := filepath.Join(s.dir, name)
	data, err := os.ReadFile(path)
	if err != nil {
		return false, err
	}
	slots, reasons, dropped := layoutSegment(data, expected)
	bad, lostMsgs := 0, 0
	for i, f := range slots {
		if f != nil && f.ok {
			if fn != nil {
				fn(seg.start+uint64(i), f)
			}
			continue
		}
		bad++
		if f != nil && len(f.data) > headerLen && f.data[3] == typeMessage {
			lostMsgs++
		}
	}
	if len(reasons) == 0 {
		return false, nil
	}

	// Rewrite: good entries kept, lost ones replaced by fillers, anything
	// after the last slot dropped. The original goes to .broken.
	out := make([]byte, 0, len(data)+bad*len(fillerFrame))
	kept := 0
	for _, f := range slots {
		if f != nil && f.ok {
			out = append(out, data[f.off:f.end]...)
			kept += f.end - f.off
		} else {
			out = append(out, fillerFrame...)
		}
	}
	broken, err := s.moveAside(name, data)
	if err != nil {
		return false, err
	}
	if err := writeFileSync(path, out); err != nil {
		return false, fmt.Errorf("rewrite %s: %w", name, err)
	}
	d := Damage{
		Shard:      s.n,
		Segment:    name,
		Entries:    bad + dropped,
		Messages:   lostMsgs,
		Bytes:      int64(len(data) - kept),
		Reason:     strings.Join(reasons, "; "),
		BrokenFile: broken,
	}
	if d.Entries == 0 {
		d.Entries = 1 // a torn entry at the tail
	}
	s.damage = append(s.damage, d)
	return true, nil
}

// layoutSegment decides which entry each WAL index of a segment holds:
// slots[i] is the frame for index start+i, or nil when it is lost. For a
// segment that is not the last, expected is the number of indexes it must
// cover (the next segment's first index minus its own); when its framing
// is broken (a torn write or a flipped length prefix) the entries after the
// damage are found again by resynchronising on our record magic and placed
// from the end. For the last segment (expected < 0) a damaged tail is cut.
func layoutSegment(data []byte, expected int) (slots []*frame, reasons []string, dropped int) {
	frames, torn := parseSegment(data)
	if torn < len(data) {
		reasons = append(reasons, fmt.Sprintf("torn entry at offset %d", torn))
	}
	ptrs := make([]*frame, len(frames))
	for i := range frames {
		ptrs[i] = &frames[i]
	}
	badInside := func(sl []*frame) {
		n := 0
		for _, f := range sl {
			if f == nil || !f.ok {
				if n == 0 && f != nil {
					reasons = append(reasons, "bad entry: "+f.reason)
				}
				n++
			}
		}
	}
	if expected < 0 {
		keep := len(ptrs)
		for keep > 0 && !ptrs[keep-1].ok {
			keep--
		}
		if keep < len(ptrs) {
			reasons = append(reasons, fmt.Sprintf("%d invalid entries at the tail (%s)", len(ptrs)-keep, ptrs[keep].reason))
		}
		badInside(ptrs[:keep])
		return ptrs[:keep], reasons, len(ptrs) - keep
	}
	if torn == len(data) && len(frames) == expected {
		badInside(ptrs) // framing intact: bad entries are flipped payloads
		return ptrs, reasons, 0
	}
	// Framing broken or entries missing. Keep what parses before the first
	// trouble, resynchronise after it.
	a := 0
	for a < len(frames) && frames[a].ok && a < expected {
		a++
	}
	from := torn
	if a < len(frames) {
		from = frames[a].off
	}
	var tail []*frame
	if from < len(data) {
		tail = resync(data, from+1, expected-a)
	}
	slots = make([]*frame, expected)
	copy(slots, ptrs[:a])
	copy(slots[expected-len(tail):], tail)
	lost := expected - a - len(tail)
	switch {
	case len(frames) > expected && torn == len(data) && a == expected:
		reasons = append(reasons, fmt.Sprintf("%d entries beyond the next segment", len(frames)-expected))
		dropped = len(frames) - expected
	case lost > 0:
		reasons = append(reasons, fmt.Sprintf("%d entries missing", lost))
	}
	return slots, reasons, dropped
}

// resync finds the earliest offset at or after from where the rest of data
// parses as valid records to its very end, in at most max frames.
func resync(data []byte, from, max int) []*frame {
	magic := []byte{recMagic0, recMagic1, recVersion}
	for off := from; off < len(data); {
		j := bytes.Index(data[off:], magic)
		if j < 0 {
			return nil
		}
		pos := off + j
		for pl := 1; pl <= binary.MaxVarintLen32; pl++ {
			cand := pos - pl
			if cand < from {
				break
			}
			if fs, ok := parseAllValid(data[cand:], max); ok {
				out := make([]*frame, len(fs))
				for i := range fs {
					fs[i].off += cand
					fs[i].end += cand
					out[i] = &fs[i]
				}
				return out
			}
		}
		off = pos + 1
	}
	return nil
}

// parseAllValid parses data as frames that are all valid, ending exactly at
// its end, at most max of them.
func parseAllValid(data []byte, max int) ([]frame, bool) {
	var out []frame
	off := 0
	for off < len(data) {
		if len(out) == max {
			return nil, false
		}
		size, n := binary.Uvarint(data[off:])
		if n <= 0 || uint64(len(data)-off-n) < size {
			return nil, false
		}
		f := frame{off: off, end: off + n + int(size), data: data[off+n : off+n+int(size)]}
		rec, err := decodeRecord(f.data)
		if err != nil {
			return nil, false
		}
		f.rec, f.ok = rec, true
		out = append(out, f)
		off = f.end
	}
	return out, true
}

// moveAside saves a damaged segment's original bytes as <name>.broken[.N].
func (s *shard) moveAside(name string, data []byte) (string, error) {
	for i := 0; i < 1000; i++ {
		b := name + ".broken"
		if i > 0 {
			b = fmt.Sprintf("%s.broken.%d", name, i)
		}
		p := filepath.Join(s.dir, b)
		if _, err := os.Stat(p); err == nil {
			continue
		} else if !errors.Is(err, os.ErrNotExist) {
			return "", err
		}
		return b, writeFileSync(p, data)
	}
	return "", fmt.Errorf("too many .broken files for %s", name)
}

// replay applies one valid entry to the index during recovery.
func (s *shard) replay(idx uint64, f *frame, chunks map[uint64]int) {
	flen := f.end - f.off
	switch f.rec.typ {
	case typeChunk:
		chunks[idx] = flen
	case typeMessage:
		m, err := decodeMsgMeta(f.rec.meta)
		if err != nil {
			s.damage = append(s.damage, Damage{Shard: s.n, Segment: "", Entries: 1, Messages: 1,
				Reason: fmt.Sprintf("entry %d: %v", idx, err)})
			return
		}
		stored, min := int64(flen), idx
		for _, c := range m.chunks {
			n, ok := chunks[c]
			if !ok {
				s.damage = append(s.damage, Damage{Shard: s.n, Entries: 0, Messages: 1,
					Reason: fmt.Sprintf("message %s lost: chunk at entry %d missing or damaged", m.id, c)})
				if old := s.msgs[m.id]; old != nil {
					s.retire(old)
				}
				return
			}
			stored += int64(n)
			min = minU64(min, c)
		}
		s.addMessage(&m, idx, min, stored)
		if m.id > ID(s.lastID.Load()) && m.id.Shard() == s.n {
			s.lastID.Store(uint64(m.id))
		}
	case typeUpdate:
		u, err := decodeUpdMeta(f.rec.meta)
		if err != nil {
			s.damage = append(s.damage, Damage{Shard: s.n, Entries: 1, Reason: fmt.Sprintf("entry %d: %v", idx, err)})
			return
		}
		s.applyUpdate(&u)
	}
}

func minU64(a, b uint64) uint64 {
	if a < b {
		return a
	}
	return b
}
