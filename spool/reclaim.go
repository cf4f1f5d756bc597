package spool

import (
	"math"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/tidwall/wal"
	"go.uber.org/zap"
)

// Space reclamation. tidwall/wal can only drop entries from the front
// (TruncateFront, which rewrites the segment that holds the new first
// entry), so:
//
//   - when no live record remains at all, the whole log is dropped (cheap:
//     an empty segment is written);
//   - when the oldest live record sits in segment k > 0, segments 0..k-1
//     are dropped once they are worth at least 4× the partial rewrite of
//     segment k (or 64 MiB), which bounds write amplification;
//   - when live mail pins old segments (a domain whose primary has been
//     down for days) and the log holds more than twice the live bytes,
//     compaction copies the live messages of the oldest segment to the
//     tail, with their current state, and the segment is dropped.
//
// Everything here runs on the shard's committer goroutine, so no append
// interleaves with a copy.

// pin keeps entries from idx on from being truncated while a reader or an
// unfinished writer uses them.
func (s *shard) pin(key any, idx uint64) {
	s.mu.Lock()
	if s.pins == nil {
		s.pins = make(map[any]uint64)
	}
	s.pins[key] = idx
	s.mu.Unlock()
}

func (s *shard) unpin(key any) {
	s.mu.Lock()
	delete(s.pins, key)
	s.mu.Unlock()
}

// oldestLive returns the lowest WAL index still needed, or MaxUint64.
func (s *shard) oldestLive() (uint64, int64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	low := uint64(math.MaxUint64)
	for _, m := range s.msgs {
		low = min(low, m.min)
	}
	for _, p := range s.pins {
		low = min(low, p)
	}
	return low, s.live
}

// maintain runs between batches: it fsyncs asynchronous writes, retries a
// failed shard, and reclaims space.
func (s *shard) maintain() {
	s.logMu.Lock()
	if s.werr != nil {
		retry := time.Since(s.lastTry) >= time.Second
		s.logMu.Unlock()
		if retry {
			if err := s.reopen(); err != nil {
				s.logMu.Lock()
				s.lastTry = time.Now()
				s.logMu.Unlock()
				s.log.Warn("spool shard still failing", zap.Error(err))
			}
		}
		return
	}
	if s.lastIdx > s.syncedIdx {
		t0 := time.Now()
		if err := s.syncLocked(); err != nil {
			s.failLocked(err)
			s.logMu.Unlock()
			return
		}
		if fn := s.sp.cfg.OnCommit; fn != nil {
			fn(s.n, 0, 0, time.Since(t0))
		}
	}
	s.logMu.Unlock()
	if s.retired.Swap(0) > 0 || s.compactQ {
		s.reclaim()
	}
}

func (s *shard) reclaim() {
	low, live := s.oldestLive()
	s.logMu.Lock()
	defer s.logMu.Unlock()
	s.compactQ = false
	if s.werr != nil {
		return
	}
	if err := s.truncateLocked(low, false); err != nil {
		s.failLocked(err)
		return
	}
	var disk int64
	for _, g := range s.segs {
		disk += g.bytes
	}
	seg := int64(s.sp.cfg.SegmentSize)
	if len(s.segs) > 2 && disk > 2*live+2*seg {
		moved, err := s.compactLocked()
		if err != nil {
			s.failLocked(err)
			return
		}
		if moved >= 0 {
			low, _ = s.oldestLive()
			if err := s.truncateLocked(low, true); err != nil {
				s.failLocked(err)
				return
			}
			s.compactQ = true // go on next tick while the log is mostly dead
		}
	}
}

// truncateLocked drops every segment before the one holding low.
func (s *shard) truncateLocked(low uint64, force bool) error {
	if low == math.MaxUint64 {
		if s.lastIdx < s.segs[0].start || (len(s.segs) == 1 && s.segs[0].bytes == 0) {
			return nil // already empty
		}
		if err := s.wl.TruncateFront(s.lastIdx + 1); err != nil {
			return err
		}
		s.gen++
		s.segs = []segInfo{{start: s.lastIdx + 1}}
		return syncDir(s.dir)
	}
	k := 0
	for k+1 < len(s.segs) && s.segs[k+1].start <= low {
		k++
	}
	if k == 0 {
		return nil
	}
	var freed int64
	for _, g := range s.segs[:k] {
		freed += g.bytes
	}
	if !force && freed < 4*s.segs[k].bytes && freed < 64<<20 {
		return nil
	}
	if err := s.wl.TruncateFront(low); err != nil {
		return err
	}
	s.gen++
	s.segs = s.segs[k:]
	s.segs[0].start = low
	fi, err := os.Stat(filepath.Join(s.dir, segmentName(low)))
	if err != nil {
		return err
	}
	s.segs[0].bytes = fi.Size()
	return syncDir(s.dir)
}

// compactLocked copies every live message whose records start in the
// oldest segment to the tail of the log. It returns how many it moved, or
// -1 when the oldest segment is pinned by a reader or writer.
func (s *shard) compactLocked() (int, error) {
	end := s.segs[1].start
	s.mu.RLock()
	for _, p := range s.pins {
		if p < end {
			s.mu.RUnlock()
			return -1, nil
		}
	}
	var victims []*msg
	for _, m := range s.msgs {
		if m.min < end {
			victims = append(victims, m)
		}
	}
	s.mu.RUnlock()
	slices.SortFunc(victims, func(a, b *msg) int {
		if a.id < b.id {
			return -1
		}
		return 1
	})

	type move struct {
		m        *msg
		loc, low uint64
	}
	moves := make([]move, 0, len(victims))
	idx := s.lastIdx
	var batch wal.Batch
	pending := 0
	flush := func() error {
		if pending == 0 {
			return nil
		}
		if err := s.wl.WriteBatch(&batch); err != nil {
			return err
		}
		pending = 0
		return nil
	}
	add := func(rec []byte) uint64 {
		idx++
		batch.Write(idx, rec)
		s.trackEntry(idx, len(rec), pending == 0)
		pending += len(rec)
		return idx
	}
	var copied int64
	for _, v := range victims {
		b, err := s.readLocked(v.loc)
		if err != nil {
			return 0, err
		}
		rec, err := decodeRecord(b)
		if err != nil {
			return 0, err
		}
		mm, err := decodeMsgMeta(rec.meta)
		if err != nil {
			return 0, err
		}
		s.mu.RLock()
		n := len(mm.rcpts)
		mm.attempts, mm.next, mm.lastErr, mm.status = int(v.attempts), v.next, v.lastErr(), v.statuses(n)
		s.mu.RUnlock()
		low := uint64(math.MaxUint64)
		for i, c := range mm.chunks {
			cb, err := s.readLocked(c)
			if err != nil {
				return 0, err
			}
			mm.chunks[i] = add(cb)
			low = min(low, mm.chunks[i])
		}
		meta := mm.encode(nil)
		loc := add(appendRecord(nil, typeMessage, rec.codec, meta, rec.body))
		moves = append(moves, move{m: v, loc: loc, low: min(low, loc)})
		copied += int64(v.stored)
		if pending >= s.sp.cfg.MaxBatchBytes {
			if err := flush(); err != nil {
				return 0, err
			}
		}
	}
	if err := flush(); err != nil {
		return 0, err
	}
	s.lastIdx = idx
	if err := s.syncLocked(); err != nil {
		return 0, err
	}
	s.mu.Lock()
	for _, mv := range moves {
		if !mv.m.removed {
			mv.m.loc, mv.m.min = mv.loc, mv.low
		}
	}
	s.mu.Unlock()
	s.log.Info("spool compacted segment", zap.Uint64("segment", s.segs[0].start),
		zap.Int("messages", len(moves)), zap.Int64("bytes", copied))
	return len(moves), nil
}
