package spool

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Envelope is what the spool stores with each message: its recipient
// domain (already normalized by the caller: lower case, punycode), the
// reverse path and the recipients of that domain.
type Envelope struct {
	Domain string
	From   string
	Rcpts  []string
}

func (e *Envelope) validate() error {
	if e.Domain == "" {
		return errors.New("spool: envelope without domain")
	}
	if len(e.Rcpts) == 0 || len(e.Rcpts) > 0xffff {
		return fmt.Errorf("spool: %d recipients", len(e.Rcpts))
	}
	if strings.IndexByte(e.From, 0) >= 0 || strings.IndexByte(e.Domain, 0) >= 0 {
		return errors.New("spool: NUL in envelope")
	}
	for _, r := range e.Rcpts {
		if r == "" || strings.IndexByte(r, 0) >= 0 {
			return errors.New("spool: empty recipient or NUL in recipient")
		}
	}
	return nil
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 64<<10); return &b }}

// Writer streams one message body into the spool. Bodies larger than
// ChunkSize are written as CHUNK records while they arrive (so memory per
// writer stays about 2 × ChunkSize); Commit writes the MESSAGE record and
// returns once it is durable. A Writer is not safe for concurrent use.
type Writer struct {
	sp     *Spool
	sh     *shard
	env    Envelope
	id     ID
	epoch  uint64
	buf    *[]byte // raw bytes not yet written
	chunks []uint64
	cbytes int64 // stored bytes of the chunks
	size   int64
	err    error
	req    *request
	done   bool
}

// Create starts a message for env. It fails at once when the shard has a
// sticky write error (ErrWriteFailed) or the spool is closed.
func (s *Spool) Create(env Envelope) (*Writer, error) {
	if err := env.validate(); err != nil {
		return nil, err
	}
	sh := s.shards[s.ShardOf(env.Domain)]
	if sh.broken.Load() {
		return nil, fmt.Errorf("%w: shard %d", ErrWriteFailed, sh.n)
	}
	w := &Writer{sp: s, sh: sh, env: env, buf: bufPool.Get().(*[]byte), epoch: sh.epoch.Load()}
	*w.buf = (*w.buf)[:0]
	for {
		last := ID(sh.lastID.Load())
		id := nextID(last, sh.n, time.Now())
		if sh.lastID.CompareAndSwap(uint64(last), uint64(id)) {
			w.id = id
			break
		}
	}
	return w, nil
}

// ID is the message's ID (valid once Commit succeeds).
func (w *Writer) ID() ID { return w.id }

// Size is the number of body bytes written so far.
func (w *Writer) Size() int64 { return w.size }

// Write appends body bytes.
func (w *Writer) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if w.done {
		return 0, errors.New("spool: write after commit")
	}
	if w.size+int64(len(p)) > w.sp.cfg.MaxMessageBytes {
		w.err = ErrTooLarge
		return 0, w.err
	}
	chunk := w.sp.cfg.ChunkSize
	n := len(p)
	for len(p) > 0 {
		b := *w.buf
		if len(b) == chunk { // full, and more is coming: write it out
			if err := w.flushChunk(w.size + int64(len(p))); err != nil {
				w.err = err
				return n - len(p), err
			}
			b = *w.buf
		}
		k := min(chunk-len(b), len(p))
		*w.buf = append(b, p[:k]...)
		p = p[k:]
		w.size += int64(k)
	}
	return n, nil
}

// flushChunk writes the buffer as a CHUNK record; the message has at
// least atLeast bytes (this chooses the codec).
func (w *Writer) flushChunk(atLeast int64) error {
	raw := *w.buf
	meta := enc(nil).uv(uint64(len(raw)))
	rec := w.sp.cfg.bodyRecord(typeChunk, meta, raw, atLeast)
	r := &request{recs: [][]byte{rec}}
	if err := w.sh.do(r); err != nil {
		return err
	}
	if len(w.chunks) == 0 {
		w.sh.pin(w, r.first)
	}
	w.chunks = append(w.chunks, r.first)
	w.cbytes += int64(uvarintLen(uint64(len(rec))) + len(rec))
	*w.buf = raw[:0]
	return nil
}

// start submits the MESSAGE record without waiting for it.
func (w *Writer) start() error {
	if w.err != nil {
		return w.err
	}
	if w.done {
		return errors.New("spool: commit twice")
	}
	w.done = true
	if len(w.chunks) > 0 && len(*w.buf) > 0 {
		if err := w.flushChunk(w.size); err != nil {
			return err
		}
	}
	mm := msgMeta{
		id:         w.id,
		size:       w.size,
		chunkBytes: w.cbytes,
		domain:     w.env.Domain,
		from:       w.env.From,
		rcpts:      w.env.Rcpts,
		chunks:     w.chunks,
	}
	meta := mm.encode(make(enc, 0, 64+len(w.env.From)+len(w.env.Domain)+32*len(w.env.Rcpts)))
	var raw []byte // with chunks, the body section is empty
	if len(w.chunks) == 0 {
		raw = *w.buf
	}
	rec := w.sp.cfg.bodyRecord(typeMessage, meta, raw, w.size)
	sh := w.sh
	w.req = &request{recs: [][]byte{rec}, sync: true}
	if len(w.chunks) > 0 {
		// A write failure since our first chunk may have reused the chunk
		// indexes we hold: the committer refuses the commit then.
		w.req.epoch = w.epoch
	}
	w.req.apply = func(first uint64) {
		stored := int64(uvarintLen(uint64(len(rec)))+len(rec)) + w.cbytes
		low := first
		for _, c := range w.chunks {
			low = minU64(low, c)
		}
		sh.addMessage(&mm, first, low, stored)
	}
	w.release()
	return sh.submit(w.req)
}

func (w *Writer) wait() (ID, error) {
	<-w.req.done
	w.unpin()
	if w.req.err != nil {
		return 0, w.req.err
	}
	w.sh.notify(w.env.Domain)
	return w.id, nil
}

// Commit writes the MESSAGE record and returns once it is on disk
// (fsync'd together with whatever else the shard committed in that batch).
func (w *Writer) Commit() (ID, error) {
	if err := w.start(); err != nil {
		w.release()
		w.unpin()
		return 0, err
	}
	return w.wait()
}

// Abort drops the message. Chunks already written are unreferenced and
// reclaimed with their segment.
func (w *Writer) Abort() {
	w.done = true
	w.release()
	w.unpin()
}

func (w *Writer) unpin() {
	if len(w.chunks) > 0 {
		w.sh.unpin(w)
	}
}

func (w *Writer) release() {
	if w.buf != nil {
		if cap(*w.buf) <= 2*w.sp.cfg.ChunkSize {
			bufPool.Put(w.buf)
		}
		w.buf = nil
	}
}

// CommitAll commits several writers (one message split per recipient
// domain) concurrently and waits for all of them. If any fails, the ones
// that succeeded are deleted again (best effort) and the error returned:
// the client will retry the whole message.
func CommitAll(ws []*Writer) ([]ID, error) {
	var firstErr error
	started := make([]bool, len(ws))
	for i, w := range ws {
		if err := w.start(); err != nil {
			w.release()
			w.unpin()
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		started[i] = true
	}
	ids := make([]ID, len(ws))
	for i, w := range ws {
		if !started[i] {
			continue
		}
		id, err := w.wait()
		if err != nil && firstErr == nil {
			firstErr = err
		}
		ids[i] = id
	}
	if firstErr != nil {
		for i, w := range ws {
			if ids[i] != 0 {
				_ = w.sp.Delete(ids[i], "system: partial commit")
			}
		}
		return nil, firstErr
	}
	return ids, nil
}

// Append stores a whole message in one call.
func (s *Spool) Append(env Envelope, body []byte) (ID, error) {
	w, err := s.Create(env)
	if err != nil {
		return 0, err
	}
	if _, err := w.Write(body); err != nil {
		w.Abort()
		return 0, err
	}
	return w.Commit()
}

func (s *shard) notify(domain string) {
	if fn := s.sp.notify.Load(); fn != nil {
		(*fn)(domain)
	}
}
