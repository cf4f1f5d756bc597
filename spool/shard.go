package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
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

	logMu     sync.Mutex
	wl        walLog
	lastIdx   uint64 // last index written (guarded by logMu)
	segs      []segInfo
	batch     wal.Batch
	dirDirty  bool   // a segment was created since the last directory fsync
	syncedIdx uint64 // last index known to be fsync'd
	gen       uint64 // bumped whenever maintenance replaces segment files
	werr      error  // sticky write error
	lastTry   time.Time

	// syncer stage (see commit)
	synq      chan *written
	syncDone  chan struct{}
	inflight  sync.WaitGroup
	syncFile  *os.File
	syncGen   uint64
	syncStart uint64

	epoch  atomic.Uint64 // bumped on every write failure; invalidates open writers
	broken atomic.Bool   // mirrors werr != nil for lock-free checks
	lastID atomic.Uint64

	reqs  chan *request
	stopc chan struct{}
	// committer-only batching state
	conc      int          // appenders seen in the last two batches
	prevBatch int          // size of the last batch
	lastSync  atomic.Int64 // duration of the last fsync (ns), set by the syncer
	waitTimer *time.Timer  // committer's straggler wait
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
		sp:       sp,
		n:        n,
		dir:      filepath.Join(sp.cfg.Dir, fmt.Sprintf("shard-%03d", n)),
		log:      sp.log.With(zap.Int("shard", n)),
		reqs:     make(chan *request, 1024),
		synq:     make(chan *written, 1),
		syncDone: make(chan struct{}),
		stopc:    make(chan struct{}),
		donec:    make(chan struct{}),
		msgs:     make(map[ID]*msg),
		domains:  make(map[string]*domainQueue),
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
	s.syncedIdx = last
	s.gen++
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
	go s.runSyncer()
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
	if s.lastIdx > s.syncedIdx && s.werr == nil {
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
	s.waitTimer = time.NewTimer(time.Hour)
	s.waitTimer.Stop()
	tick := time.NewTicker(s.sp.cfg.MaintainInterval)
	defer tick.Stop()
	var batch []*request
	for {
		select {
		case r := <-s.reqs:
			batch = append(batch[:0], r)
		case <-tick.C:
			s.drain()
			s.maintain()
			continue
		case <-s.stopc:
			for {
				select {
				case r := <-s.reqs:
					s.commit([]*request{r})
				default:
					s.drain()
					close(s.synq)
					<-s.syncDone
					if s.syncFile != nil {
						_ = s.syncFile.Close()
					}
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
		if want := s.conc * 7 / 8; len(batch) < want && s.lastSync.Load() > 0 {
			// A blocking receive with a timer, not a spin: on two cores a
			// Gosched/time.Now loop cost 8-13 % of the node's CPU (profile
			// in docs/PERFORMANCE.md).
			s.waitTimer.Reset(min(time.Duration(s.lastSync.Load()), 2*time.Millisecond))
		wait:
			for len(batch) < want && size < s.sp.cfg.MaxBatchBytes && len(batch) < maxBatchReqs {
				select {
				case r := <-s.reqs:
					batch = append(batch, r)
					size += reqBytes(r)
				case <-s.waitTimer.C:
					break wait
				}
			}
			if !s.waitTimer.Stop() {
				select { // drain a fired timer (Go ≥1.23 timers need no drain, but be explicit)
				case <-s.waitTimer.C:
				default:
				}
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

// Group commit is a two-stage pipeline. The committer goroutine gathers a
// batch and writes it (one WriteBatch: one write(2), no fsync); the syncer
// goroutine fsyncs the tail segment through its own file descriptor, then
// applies the index updates and releases the waiters. While one batch is
// being fsync'd the next is already gathered and written, so the disk is
// never idle waiting for appenders to come back. fsync(2) flushes the
// inode whatever descriptor it is called on; tidwall/wal fsyncs a segment
// itself when it rotates, so at any moment only the tail can hold unsynced
// data. Maintenance (truncation, compaction, repair) replaces files, so it
// runs only with the pipeline drained.

// written is one batch handed from the committer to the syncer.
type written struct {
	batch    []*request
	last     uint64 // last index of the batch
	needSync bool
	nrec     int
	nbytes   int
	err      error // write failed: fail the batch, no fsync
}

// commit writes a batch and hands it to the syncer.
func (s *shard) commit(batch []*request) {
	live := make([]*request, 0, len(batch))
	for _, r := range batch {
		if r.epoch != 0 && r.epoch != s.epoch.Load() {
			r.err = fmt.Errorf("%w: shard %d failed during the message", ErrWriteFailed, s.n)
			close(r.done)
			continue
		}
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	w := &written{batch: live}
	s.logMu.Lock()
	w.err = s.werr
	if w.err == nil {
		idx := s.lastIdx
		for _, r := range live {
			r.first = idx + 1
			for _, rec := range r.recs {
				idx++
				s.batch.Write(idx, rec)
				s.trackEntry(idx, len(rec), w.nrec == 0)
				w.nrec++
				w.nbytes += len(rec)
			}
			w.needSync = w.needSync || r.sync
		}
		if err := s.wl.WriteBatch(&s.batch); err != nil {
			s.failLocked(err)
			w.err = err
		} else {
			s.lastIdx = idx
			w.last = idx
		}
		s.batch.Clear() // keeps its buffer: bounded by MaxBatchBytes + one chunk
	}
	s.logMu.Unlock()
	s.inflight.Add(1)
	s.synq <- w
}

// drain waits until the syncer has finished every batch handed to it.
func (s *shard) drain() { s.inflight.Wait() }

// runSyncer is the second pipeline stage.
func (s *shard) runSyncer() {
	defer close(s.syncDone)
	var group []*written
	for w := range s.synq {
		group = append(group[:0], w)
	more:
		for {
			select {
			case w, ok := <-s.synq:
				if !ok {
					break more
				}
				group = append(group, w)
			default:
				break more
			}
		}
		s.finish(group)
		for range group {
			s.inflight.Done()
		}
		clear(group)
	}
}

// finish fsyncs (if any batch needs it) and completes a group of batches.
func (s *shard) finish(group []*written) {
	needSync, nrec, nbytes := false, 0, 0
	var last uint64
	for _, w := range group {
		if w.err == nil {
			needSync = needSync || w.needSync
			nrec += w.nrec
			nbytes += w.nbytes
			last = max(last, w.last)
		}
	}
	var err error
	var took time.Duration
	if needSync {
		t0 := time.Now()
		err = s.syncTail(last)
		took = time.Since(t0)
		s.lastSync.Store(int64(took))
	}
	if err != nil {
		s.logMu.Lock()
		if s.werr == nil {
			s.failLocked(err)
		}
		s.logMu.Unlock()
	}
	ok := false
	s.mu.Lock()
	for _, w := range group {
		if w.err != nil || err != nil {
			continue
		}
		ok = true
		for _, r := range w.batch {
			if r.apply != nil {
				r.apply(r.first)
			}
		}
	}
	s.mu.Unlock()
	if ok {
		if fn := s.sp.cfg.OnCommit; fn != nil {
			fn(s.n, nrec, nbytes, took)
		}
	}
	for _, w := range group {
		e := w.err
		if e == nil {
			e = err
		}
		if e != nil {
			e = fmt.Errorf("%w: %w", ErrWriteFailed, e)
		}
		for _, r := range w.batch {
			r.err = e
			close(r.done)
		}
	}
}

// syncTail makes every entry up to last durable: fsync of the tail segment
// through the syncer's own descriptor, and of the directory if a segment
// was created. It never retries a failed fsync.
func (s *shard) syncTail(last uint64) error {
	s.logMu.Lock()
	if s.werr != nil {
		err := s.werr
		s.logMu.Unlock()
		return err
	}
	tail := s.segs[len(s.segs)-1].start
	gen := s.gen
	needDir := s.dirDirty
	s.dirDirty = false
	s.logMu.Unlock()

	if s.syncFile == nil || s.syncGen != gen || s.syncStart != tail {
		if s.syncFile != nil {
			_ = s.syncFile.Close()
			s.syncFile = nil
		}
		f, err := os.Open(filepath.Join(s.dir, segmentName(tail)))
		if err != nil {
			return err
		}
		s.syncFile, s.syncGen, s.syncStart = f, gen, tail
	}
	if err := s.fsync(s.syncFile); err != nil {
		return err
	}
	if needDir {
		if err := syncDir(s.dir); err != nil {
			return err
		}
	}
	s.logMu.Lock()
	s.syncedIdx = max(s.syncedIdx, last)
	s.logMu.Unlock()
	return nil
}

func (s *shard) fsync(f *os.File) error {
	if err := s.fsyncFault(); err != nil {
		return err
	}
	return f.Sync()
}

// fsyncFault is the test seam shared by both fsync paths.
func (s *shard) fsyncFault() error {
	if h := s.sp.cfg.fsyncHook; h != nil {
		return h(s.n)
	}
	return nil
}

// syncLocked fsyncs the tail through tidwall/wal (pipeline drained, logMu
// held) and, if a segment was created since the last time, the directory.
func (s *shard) syncLocked() error {
	if err := s.fsyncFault(); err != nil {
		return err
	}
	if err := s.wl.Sync(); err != nil {
		return err
	}
	if s.dirDirty {
		if err := syncDir(s.dir); err != nil {
			return err
		}
		s.dirDirty = false
	}
	s.syncedIdx = s.lastIdx
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
	// Everything after the last successful fsync is suspect: batches whose
	// fsync failed were refused to their senders and must not come back.
	// (Asynchronous updates in that range are lost too: at-least-once.)
	good := s.syncedIdx
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
		s.gen++
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
	s.dirDirty = false
	s.syncedIdx = s.lastIdx
	s.broken.Store(false)
	s.log.Info("spool shard repaired; accepting appends again", zap.Uint64("last-index", s.lastIdx))
	return nil
}
