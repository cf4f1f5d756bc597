package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tidwall/wal"
	"go.uber.org/zap"
)

// walLog is the part of *wal.Log the spool uses. It exists as a seam for
// write-failure injection in tests.
type walLog interface {
	WriteBatch(b *wal.Batch) error
	Sync() error
	Read(index uint64) ([]byte, error)
	FirstIndex() (uint64, error)
	LastIndex() (uint64, error)
	TruncateFront(index uint64) error
	TruncateBack(index uint64) error
	Close() error
}

// segInfo mirrors one tidwall/wal segment file: its first index and size.
type segInfo struct {
	start uint64
	bytes int64
}

// request is one unit of work for a shard's committer: records to append
// in order, whether the caller needs them durable, and an index update to
// apply once they are.
type request struct {
	recs  [][]byte
	sync  bool
	apply func(first uint64) // under shard.mu, after the write (and fsync)
	first uint64             // WAL index of recs[0], set by the committer
	epoch uint64             // if non-zero, fail unless the shard's epoch still matches
	err   error
	done  chan struct{}
}

// shard is one WAL and its index.
//
// Lock order: logMu before mu. The committer goroutine is the only writer
// of the log; readers take logMu for each Read (tidwall/wal's Read mutates
// its cache and is not safe for concurrent use: upstream issue #34).
type shard struct {
	sp  *Spool
	n   int
	dir string
	log *zap.Logger

	logMu    sync.Mutex
	wl       walLog
	lastIdx  uint64 // last index written (guarded by logMu)
	segs     []segInfo
	batch    wal.Batch
	dirDirty bool  // a segment was created since the last directory fsync
	dirty    bool  // unsynced writes exist
	werr     error // sticky write error
	lastTry  time.Time

	epoch  atomic.Uint64 // bumped on every write failure; invalidates open writers
	broken atomic.Bool   // mirrors werr != nil for lock-free checks
	lastID atomic.Uint64

	reqs  chan *request
	stopc chan struct{}
	// committer-only batching state
	conc      int           // appenders seen in the last two batches
	prevBatch int           // size of the last batch
	lastSync  time.Duration // duration of the last fsync
	donec     chan struct{}
	closed    bool
	started   bool

	mu       sync.RWMutex
	msgs     map[ID]*msg
	domains  map[string]*domainQueue
	live     int64 // stored bytes of live messages
	retired  atomic.Int64
	damage   []Damage
	compactQ bool
	pins     map[any]uint64 // open readers and unfinished writers → lowest entry they use
}

func openShard(sp *Spool, n int) (*shard, error) {
	s := &shard{
		sp:      sp,
		n:       n,
		dir:     filepath.Join(sp.cfg.Dir, fmt.Sprintf("shard-%03d", n)),
		log:     sp.log.With(zap.Int("shard", n)),
		reqs:    make(chan *request, 1024),
		stopc:   make(chan struct{}),
		donec:   make(chan struct{}),
		msgs:    make(map[ID]*msg),
		domains: make(map[string]*domainQueue),
	}
	s.epoch.Store(1) // request.epoch 0 means "unchecked"
	if err := os.MkdirAll(s.dir, 0o750); err != nil {
		return nil, fmt.Errorf("spool: shard %d: %w", n, err)
	}
	if err := s.recover(); err != nil {
		return nil, fmt.Errorf("spool: shard %d: %w", n, err)
	}
	if err := s.openLog(); err != nil {
		return nil, fmt.Errorf("spool: shard %d: %w", n, err)
	}
	return s, nil
}

func (s *shard) walOptions() *wal.Options {
	return &wal.Options{
		NoSync:           true, // we fsync once per group commit
		SegmentSize:      s.sp.cfg.SegmentSize,
		SegmentCacheSize: s.sp.cfg.SegmentCache,
		LogFormat:        wal.Binary,
		AllowEmpty:       true,
		DirPerms:         0o750,
		FilePerms:        0o640,
	}
}

// openLog opens the tidwall/wal log on a directory that recover has
// scanned and repaired, and loads the segment list.
func (s *shard) openLog() error {
	l, err := wal.Open(s.dir, s.walOptions())
	if err != nil {
		return fmt.Errorf("open log: %w", err)
	}
	var wl walLog = l
	if s.sp.cfg.wrapLog != nil {
		wl = s.sp.cfg.wrapLog(s.n, wl)
	}
	last, err := wl.LastIndex()
	if err != nil {
		_ = wl.Close()
		return fmt.Errorf("open log: %w", err)
	}
	segs, err := listSegments(s.dir)
	if err != nil {
		_ = wl.Close()
		return err
	}
	s.wl, s.lastIdx, s.segs = wl, last, segs
	return syncDir(s.dir)
}

// listSegments returns the segment files of a log directory in order.
func listSegments(dir string) ([]segInfo, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var segs []segInfo
	for _, e := range ents {
		idx, ok := segmentIndex(e.Name())
		if !ok {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			return nil, err
		}
		segs = append(segs, segInfo{start: idx, bytes: fi.Size()})
	}
	return segs, nil // os.ReadDir sorts by name; names are zero-padded
}

func segmentIndex(name string) (uint64, bool) {
	if len(name) != 20 {
		return 0, false
	}
	var v uint64
	for i := 0; i < 20; i++ {
		c := name[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + uint64(c-'0')
	}
	return v, v > 0
}

func segmentName(index uint64) string { return fmt.Sprintf("%020d", index) }

func (s *shard) start() {
	s.started = true
	go s.run()
}

// submit hands r to the committer. It fails fast when the shard is closed.
func (s *shard) submit(r *request) error {
	s.sp.closeMu.RLock()
	defer s.sp.closeMu.RUnlock()
	if s.sp.closed {
		return ErrClosed
	}
	r.done = make(chan struct{})
	s.reqs <- r
	return nil
}

// do submits r and waits for it.
func (s *shard) do(r *request) error {
	if err := s.submit(r); err != nil {
		return err
	}
	<-r.done
	return r.err
}

func (s *shard) close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	if s.started {
		close(s.stopc)
		<-s.donec
	}
	s.logMu.Lock()
	defer s.logMu.Unlock()
	if s.wl == nil {
		return nil
	}
	var err error
	if s.dirty && s.werr == nil {
		err = s.wl.Sync()
	}
	if cerr := s.wl.Close(); err == nil && s.werr == nil {
		err = cerr
	}
	s.wl = nil
	return err
}

func (s *shard) run() {
	defer close(s.donec)
	tick := time.NewTicker(s.sp.cfg.MaintainInterval)
	defer tick.Stop()
	var batch []*request
	for {
		select {
		case r := <-s.reqs:
			batch = append(batch[:0], r)
		case <-tick.C:
			s.maintain()
			continue
		case <-s.stopc:
			for {
				select {
				case r := <-s.reqs:
					s.commit([]*request{r})
				default:
					return
				}
			}
		}
		size := reqBytes(batch[0])
		gather := func() {
			for size < s.sp.cfg.MaxBatchBytes && len(batch) < maxBatchReqs {
				select {
				case r := <-s.reqs:
					batch = append(batch, r)
					size += reqBytes(r)
				default:
					return
				}
			}
		}
		gather()
		// Group commit alternates between the appenders released by the
		// last fsync and those that queued during it. When this batch is
		// much smaller than the recent concurrency, give the released ones
		// a moment (a fraction of an fsync) to come back, so that one fsync
		// covers nearly all of them instead of half.
		if want := s.conc * 3 / 4; len(batch) < want && s.lastSync > 0 {
			deadline := time.Now().Add(min(s.lastSync/2, time.Millisecond))
			for len(batch) < want && size < s.sp.cfg.MaxBatchBytes && time.Now().Before(deadline) {
				runtime.Gosched()
				gather()
			}
		}
		s.conc = min(s.prevBatch+len(batch), maxBatchReqs)
		s.prevBatch = len(batch)
		s.commit(batch)
		clear(batch)
	}
}

const maxBatchReqs = 4096

func reqBytes(r *request) int {
	n := 0
	for _, b := range r.recs {
		n += len(b)
	}
	return n
}

// commit writes a batch with one WriteBatch and, if any request needs it,
// one fsync; then applies the index updates and releases the waiters.
func (s *shard) commit(batch []*request) {
	live := batch[:0]
	for _, r := range batch {
		if r.epoch != 0 && r.epoch != s.epoch.Load() {
			r.err = fmt.Errorf("%w: shard %d failed during the message", ErrWriteFailed, s.n)
			close(r.done)
			continue
		}
		live = append(live, r)
	}
	if batch = live; len(batch) == 0 {
		return
	}
	s.logMu.Lock()
	err := s.werr
	nrec, nbytes, needSync := 0, 0, false
	var syncDur time.Duration
	if err == nil {
		idx := s.lastIdx
		for _, r := range batch {
			r.first = idx + 1
			for _, rec := range r.recs {
				idx++
				s.batch.Write(idx, rec)
				s.trackEntry(idx, len(rec), nrec == 0)
				nrec++
				nbytes += len(rec)
			}
			needSync = needSync || r.sync
		}
		err = s.wl.WriteBatch(&s.batch)
		if err == nil {
			s.dirty = true
			if needSync {
				t0 := time.Now()
				err = s.syncLocked()
				syncDur = time.Since(t0)
				s.lastSync = syncDur
			}
		}
		if err != nil {
			s.failLocked(err)
		} else {
			s.lastIdx = idx
		}
		s.batch.Clear() // keeps its buffer: bounded by MaxBatchBytes + one chunk
	}
	s.logMu.Unlock()

	if err == nil {
		s.mu.Lock()
		for _, r := range batch {
			if r.apply != nil {
				r.apply(r.first)
			}
		}
		s.mu.Unlock()
		if fn := s.sp.cfg.OnCommit; fn != nil {
			fn(s.n, nrec, nbytes, syncDur)
		}
	} else {
		err = fmt.Errorf("%w: %w", ErrWriteFailed, err)
	}
	for _, r := range batch {
		r.err = err
		close(r.done)
	}
}

// syncLocked fsyncs the tail segment and, if a segment was created since
// the last time, the directory.
func (s *shard) syncLocked() error {
	if err := s.wl.Sync(); err != nil {
		return err
	}
	if s.dirDirty {
		if err := syncDir(s.dir); err != nil {
			return err
		}
		s.dirDirty = false
	}
	s.dirty = false
	return nil
}

// failLocked records a sticky write error. Nothing of the failed batch was
// applied to the index; appends are refused until reopen succeeds.
func (s *shard) failLocked(err error) {
	s.werr = err
	s.broken.Store(true)
	s.epoch.Add(1)
	s.lastTry = time.Now()
	s.log.Error("spool shard write failed; refusing appends until repaired", zap.Error(err))
}

// trackEntry mirrors tidwall/wal's segment rotation (writeBatch/cycle) so
// that we know segment boundaries and sizes without listing the directory:
// a segment is cycled once its buffer reaches SegmentSize.
func (s *shard) trackEntry(idx uint64, n int, batchStart bool) {
	size := int64(s.sp.cfg.SegmentSize)
	if batchStart && s.segs[len(s.segs)-1].bytes > size {
		s.segs = append(s.segs, segInfo{start: idx})
		s.dirDirty = true
	}
	tail := &s.segs[len(s.segs)-1]
	tail.bytes += int64(uvarintLen(uint64(n)) + n)
	if tail.bytes >= size {
		s.segs = append(s.segs, segInfo{start: idx + 1})
		s.dirDirty = true
	}
}

func uvarintLen(v uint64) int {
	var b [binary.MaxVarintLen64]byte
	return binary.PutUvarint(b[:], v)
}

// read returns a copy of entry idx.
func (s *shard) read(idx uint64) ([]byte, error) {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	return s.readLocked(idx)
}

func (s *shard) readLocked(idx uint64) ([]byte, error) {
	if s.wl == nil {
		return nil, ErrClosed
	}
	b, err := s.wl.Read(idx)
	if err != nil {
		if errors.Is(err, wal.ErrNotFound) {
			return nil, fmt.Errorf("%w: entry %d", ErrNotFound, idx)
		}
		return nil, fmt.Errorf("spool: shard %d: read %d: %w", s.n, idx, err)
	}
	return b, nil
}

// reopen tries to clear a sticky write error: close the log, cut a torn
// tail, reopen, and drop anything written after the last good entry.
// Called by the committer with no lock held.
func (s *shard) reopen() error {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	good := s.lastIdx // commit advances lastIdx only on success
	if s.wl != nil {
		_ = s.wl.Close()
		s.wl = nil
	}
	if _, err := s.repairTail(); err != nil {
		return err
	}
	if err := s.openLog(); err != nil {
		return err
	}
	switch {
	case s.lastIdx > good:
		if err := s.wl.TruncateBack(good); err != nil {
			return fmt.Errorf("truncate back: %w", err)
		}
		segs, err := listSegments(s.dir)
		if err != nil {
			return err
		}
		s.segs, s.lastIdx = segs, good
	case s.lastIdx < good:
		// Entries written without fsync (updates, chunks of messages not
		// yet committed) were lost with the failed fsync. Acknowledged
		// messages were fsync'd; open writers were invalidated by epoch.
		s.log.Warn("spool shard lost unsynced entries", zap.Uint64("had", good), zap.Uint64("now", s.lastIdx))
	}
	if err := syncDir(s.dir); err != nil {
		return err
	}
	s.werr = nil
	s.dirty, s.dirDirty = false, false
	s.broken.Store(false)
	s.log.Info("spool shard repaired; accepting appends again", zap.Uint64("last-index", s.lastIdx))
	return nil
}
