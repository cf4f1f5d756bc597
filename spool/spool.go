package spool

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cespare/xxhash/v2"
	"go.uber.org/zap"
)

// Errors returned by the spool. Callers test them with errors.Is.
var (
	// ErrCorrupt marks a record that failed framing, checksum or decoding.
	ErrCorrupt = errors.New("spool: corrupt record")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("spool: closed")
	// ErrNotFound is returned for an unknown or retired message.
	ErrNotFound = errors.New("spool: message not found")
	// ErrTooLarge is returned when a message exceeds Config.MaxMessageBytes.
	ErrTooLarge = errors.New("spool: message too large")
	// ErrWriteFailed wraps the write or fsync error that made a shard
	// refuse appends until it has been reopened and repaired (sticky error).
	// Callers answer it with a temporary failure (SMTP 451).
	ErrWriteFailed = errors.New("spool: shard write failed")
	// ErrLocked is returned by Open when another process holds the spool.
	ErrLocked = errors.New("spool: directory in use by another process")
	// ErrBusy is returned when compaction cannot move a message that is
	// being read; the operation is retried later.
	ErrBusy = errors.New("spool: message busy")
)

func errCorruptf(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, a...))
}

// Config holds the spool's settings. Zero values take the defaults shown.
type Config struct {
	Dir string // required
	// Shards is used only when the directory is created (default 8, max 256).
	Shards int
	// Codec compresses message bodies (default zstd; raw and s2 also).
	Codec Codec
	// CodecSet must be true for Codec=CodecRaw to be honoured (the zero
	// value of Codec is raw, but the default is zstd).
	CodecSet bool
	// SmallBody is the codec policy's threshold: with Codec zstd, the
	// body of a message of at most SmallBody bytes is compressed with s2,
	// a larger one with zstd (see codecFor). Default DefaultSmallBody
	// (128 KiB); negative: Codec for every size. Whatever the codec, a
	// body section (an inline body or one chunk) that it does not make
	// smaller is stored raw. Records say their codec, so changing this is
	// always safe.
	SmallBody int
	// SegmentSize is the target size of a WAL segment (default 4 MiB).
	// tidwall/wal keeps the tail segment in memory and loads whole older
	// segments on a read, so memory per shard is about SegmentSize ×
	// (1 + SegmentCache).
	SegmentSize int
	// SegmentCache is the number of older segments cached per shard (default 2).
	SegmentCache int
	// ChunkSize bounds the raw bytes of one CHUNK record (default 1 MiB).
	// Bodies up to ChunkSize are stored inline in their MESSAGE record.
	ChunkSize int
	// MaxMessageBytes bounds one body (default 50 MiB).
	MaxMessageBytes int64
	// MaxBatchBytes bounds one group-commit batch (default 4 MiB).
	MaxBatchBytes int
	// MaintainInterval is how often each shard fsyncs asynchronous
	// updates and reclaims space (default 200 ms).
	MaintainInterval time.Duration
	// OnCommit, if set, is called after each group commit with the number of
	// records and bytes written and the time the fsync took (0: no fsync).
	OnCommit func(shard, records, bytes int, fsync time.Duration)

	// wrapLog is a test seam: it wraps each shard's log after opening.
	wrapLog func(shard int, l walLog) walLog
	// fsyncHook is a test seam: a non-nil error replaces an fsync.
	fsyncHook func(shard int) error
}

func (c *Config) setDefaults() {
	if c.Shards <= 0 {
		c.Shards = 8
	}
	if !c.CodecSet && c.Codec == CodecRaw {
		c.Codec = CodecZstd
	}
	if c.SmallBody == 0 {
		c.SmallBody = DefaultSmallBody
	}
	if c.SegmentSize <= 0 {
		c.SegmentSize = 4 << 20
	}
	if c.SegmentCache <= 0 {
		c.SegmentCache = 2
	}
	if c.ChunkSize <= 0 {
		c.ChunkSize = 1 << 20
	}
	if c.MaxMessageBytes <= 0 {
		c.MaxMessageBytes = 50 << 20
	}
	if c.MaxBatchBytes <= 0 {
		c.MaxBatchBytes = 4 << 20
	}
	if c.MaintainInterval <= 0 {
		c.MaintainInterval = 200 * time.Millisecond
	}
}

type manifest struct {
	Version int       `json:"version"`
	Shards  int       `json:"shards"`
	Created time.Time `json:"created"`
}

// Spool is a sharded message store. It is safe for concurrent use.
type Spool struct {
	log    *zap.Logger
	cfg    Config
	lock   *os.File
	shards []*shard
	damage []Damage
	notify atomic.Pointer[func(domain string)]

	closeMu sync.RWMutex
	closed  bool
}

// Open opens (creating if needed) the spool in cfg.Dir, repairs damage,
// and rebuilds the index from the logs.
func Open(log *zap.Logger, cfg Config) (*Spool, error) {
	if log == nil {
		log = zap.NewNop()
	}
	if cfg.Dir == "" {
		return nil, errors.New("spool: no directory")
	}
	cfg.setDefaults()
	if cfg.Shards > maxShards {
		return nil, fmt.Errorf("spool: %d shards, at most %d", cfg.Shards, maxShards)
	}
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	lock, err := lockDir(cfg.Dir)
	if err != nil {
		return nil, err
	}
	s := &Spool{log: log, cfg: cfg, lock: lock}
	ok := false
	defer func() {
		if !ok {
			for _, sh := range s.shards {
				sh.close()
			}
			_ = lock.Close()
		}
	}()
	n, err := s.loadManifest()
	if err != nil {
		return nil, err
	}
	s.shards = make([]*shard, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	start := time.Now()
	for i := range s.shards {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			s.shards[i], errs[i] = openShard(s, i)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	msgs := 0
	for _, sh := range s.shards {
		s.damage = append(s.damage, sh.damage...)
		msgs += len(sh.msgs)
	}
	for _, d := range s.damage {
		log.Error("spool damage repaired", zap.Int("shard", d.Shard), zap.String("segment", d.Segment),
			zap.Int("entries-lost", d.Entries), zap.Int64("bytes", d.Bytes), zap.String("reason", d.Reason),
			zap.String("moved-to", d.BrokenFile))
	}
	for _, sh := range s.shards {
		sh.start()
	}
	ok = true
	log.Info("spool open", zap.String("dir", cfg.Dir), zap.Int("shards", n), zap.Int("messages", msgs),
		zap.Duration("took", time.Since(start)), zap.Int("damaged", len(s.damage)))
	return s, nil
}

func (s *Spool) loadManifest() (int, error) {
	p := filepath.Join(s.cfg.Dir, "MANIFEST")
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		m := manifest{Version: 1, Shards: s.cfg.Shards, Created: time.Now().UTC()}
		b, _ = json.Marshal(m)
		if err := writeFileSync(p, b); err != nil {
			return 0, fmt.Errorf("spool: write manifest: %w", err)
		}
		return m.Shards, nil
	}
	if err != nil {
		return 0, fmt.Errorf("spool: read manifest: %w", err)
	}
	var m manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return 0, fmt.Errorf("spool: bad manifest: %w", err)
	}
	if m.Version != 1 || m.Shards <= 0 || m.Shards > maxShards {
		return 0, fmt.Errorf("spool: unsupported manifest (version %d, %d shards)", m.Version, m.Shards)
	}
	if m.Shards != s.cfg.Shards {
		s.log.Info("spool shard count fixed at creation", zap.Int("shards", m.Shards), zap.Int("configured", s.cfg.Shards))
	}
	return m.Shards, nil
}

// Close stops every shard's committer after it has finished the pending
// appends and closes the logs. Appends after Close fail with ErrClosed.
func (s *Spool) Close() error {
	s.closeMu.Lock()
	if s.closed {
		s.closeMu.Unlock()
		return nil
	}
	s.closed = true
	s.closeMu.Unlock()
	var errs []error
	for _, sh := range s.shards {
		errs = append(errs, sh.close())
	}
	errs = append(errs, s.lock.Close())
	return errors.Join(errs...)
}

// SetNotify registers fn, called (from a shard's committer goroutine, so
// it must not block) after a message for domain has been committed.
// SetNotify(nil) removes the hook.
func (s *Spool) SetNotify(fn func(domain string)) {
	if fn == nil {
		s.notify.Store(nil)
		return
	}
	s.notify.Store(&fn)
}

// Shards returns the number of shards.
func (s *Spool) Shards() int { return len(s.shards) }

// ShardOf returns the shard that holds mail for domain.
func (s *Spool) ShardOf(domain string) int {
	return int(xxhash.Sum64String(domain) % uint64(len(s.shards)))
}

// Damage lists what repair found and moved aside when the spool was opened.
func (s *Spool) Damage() []Damage { return append([]Damage(nil), s.damage...) }

// Dir returns the spool directory.
func (s *Spool) Dir() string { return s.cfg.Dir }

func (s *Spool) shardFor(id ID) (*shard, error) {
	n := id.Shard()
	if n >= len(s.shards) {
		return nil, ErrNotFound
	}
	return s.shards[n], nil
}

// lockDir takes an exclusive flock on <dir>/LOCK.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "LOCK"), os.O_CREATE|os.O_RDWR, 0o640)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s", ErrLocked, dir)
		}
		return nil, fmt.Errorf("spool: lock %s: %w", dir, err)
	}
	return f, nil
}

// syncDir fsyncs a directory so that created, renamed and removed entries
// are durable (tidwall/wal never does this).
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// writeFileSync writes p via a temp file, fsync, rename and directory fsync.
func writeFileSync(p string, b []byte) error {
	tmp := p + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o640)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, p); err != nil {
		return err
	}
	return syncDir(filepath.Dir(p))
}
