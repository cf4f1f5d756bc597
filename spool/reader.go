package spool

import (
	"errors"
	"fmt"
	"io"
)

// BodyReader streams one message body, one chunk in memory at a time.
// While it is open, the entries it reads are pinned against truncation.
// Close it.
type BodyReader struct {
	sh     *shard
	m      *msg
	chunks []uint64
	next   int
	cur    []byte
	buf    []byte
	err    error
}

// OpenBody returns a reader for the body of a live message.
func (s *Spool) OpenBody(id ID) (*BodyReader, error) {
	sh, err := s.shardFor(id)
	if err != nil {
		return nil, err
	}
	sh.mu.Lock()
	m := sh.msgs[id]
	if m == nil {
		sh.mu.Unlock()
		return nil, ErrNotFound
	}
	r := &BodyReader{sh: sh, m: m}
	if sh.pins == nil {
		sh.pins = make(map[any]uint64)
	}
	sh.pins[r] = m.min
	loc := m.loc
	sh.mu.Unlock()
	if err := r.load(loc); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

func (r *BodyReader) load(loc uint64) error {
	b, err := r.sh.read(loc)
	if err != nil {
		return err
	}
	rec, err := decodeRecord(b)
	if err != nil {
		return fmt.Errorf("spool: entry %d: %w", loc, err)
	}
	if rec.typ != typeMessage {
		return fmt.Errorf("%w: entry %d is type %d, not a message", ErrCorrupt, loc, rec.typ)
	}
	mm, err := decodeMsgMeta(rec.meta)
	if err != nil {
		return err
	}
	if mm.id != r.m.id {
		return fmt.Errorf("%w: entry %d holds message %s, want %s", ErrCorrupt, loc, mm.id, r.m.id)
	}
	r.chunks = mm.chunks
	if len(mm.chunks) == 0 {
		r.cur, err = decompress(rec.codec, nil, rec.body, int(mm.size))
		return err
	}
	return nil
}

// Read implements io.Reader.
func (r *BodyReader) Read(p []byte) (int, error) {
	for len(r.cur) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		if r.next >= len(r.chunks) {
			return 0, io.EOF
		}
		if err := r.loadChunk(); err != nil {
			r.err = err
			return 0, err
		}
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

func (r *BodyReader) loadChunk() error {
	idx := r.chunks[r.next]
	r.next++
	b, err := r.sh.read(idx)
	if err != nil {
		return err
	}
	rec, err := decodeRecord(b)
	if err != nil {
		return fmt.Errorf("spool: chunk %d: %w", idx, err)
	}
	if rec.typ != typeChunk {
		return fmt.Errorf("%w: entry %d is not a chunk", ErrCorrupt, idx)
	}
	n, err := decodeChunkMeta(rec.meta)
	if err != nil {
		return err
	}
	if cap(r.buf) < n {
		r.buf = make([]byte, 0, n)
	}
	r.buf, err = decompress(rec.codec, r.buf[:0], rec.body, n)
	r.cur = r.buf
	return err
}

// Close releases the message for compaction.
func (r *BodyReader) Close() error {
	if r.m != nil {
		r.sh.unpin(r)
		r.m = nil
	}
	return nil
}

// ReadBody returns a whole body; for tests and small messages.
func (s *Spool) ReadBody(id ID) ([]byte, error) {
	r, err := s.OpenBody(id)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return b, nil
}
