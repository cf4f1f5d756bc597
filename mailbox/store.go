package mailbox

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"go.etcd.io/bbolt"
	"go.uber.org/zap"

	"github.com/mxcont/mxcont/admin/auth"
)

// Store holds the shadow mailboxes. It is safe for concurrent use.
//
// Lock order: life → umu → (bbolt writer lock) → mu → authMu / watchMu.
type Store struct {
	log     *zap.Logger
	cfg     Config
	now     func() time.Time // clock for arrivals (tests replace it)
	db      *bbolt.DB
	blobDir string

	// life is held shared by every operation and exclusively by Close.
	life   sync.RWMutex
	closed bool

	// umu serializes AddUser, SetPassword and DeleteUser, so that the
	// in-memory user set changes in commit order.
	umu sync.Mutex

	mu    sync.RWMutex
	users map[string]struct{} // addresses (HasUser)

	watchMu sync.Mutex
	watch   map[string]chan struct{} // address → closed at its next change
	wclosed bool                     // Close ran: Watch returns closed channels

	auth authState

	commits    chan *commitReq
	commitDone chan struct{}
}

// Open opens (creating if needed) the store in cfg.Dir, checks it (see the
// package documentation) and returns it. A nil log means zap.NewNop().
func Open(log *zap.Logger, cfg Config) (*Store, error) {
	if log == nil {
		log = zap.NewNop()
	}
	if cfg.Dir == "" {
		return nil, fmt.Errorf("%w: dir: required", ErrInvalid)
	}
	if cfg.Keep <= 0 {
		cfg.Keep = DefaultKeep
	}
	s := &Store{
		log:     log,
		cfg:     cfg,
		now:     time.Now,
		blobDir: filepath.Join(cfg.Dir, "blobs"),
		users:   make(map[string]struct{}),
		watch:   make(map[string]chan struct{}),
	}
	if err := s.makeDirs(); err != nil {
		return nil, err
	}
	db, err := bbolt.Open(filepath.Join(cfg.Dir, "mailbox.db"), 0o600, &bbolt.Options{
		Timeout:      5 * time.Second,
		FreelistType: bbolt.FreelistMapType,
	})
	if err != nil {
		return nil, fmt.Errorf("mailbox: open index: %w", err)
	}
	s.db = db
	if err := s.check(); err != nil {
		_ = db.Close()
		return nil, err
	}
	if err := s.initAuth(); err != nil {
		_ = db.Close()
		return nil, err
	}
	s.commits = make(chan *commitReq, 256)
	s.commitDone = make(chan struct{})
	go s.committer()
	return s, nil
}

// makeDirs creates Dir, Dir/blobs and its 256 fan-out directories, and
// makes their entries durable.
func (s *Store) makeDirs() error {
	if err := os.MkdirAll(s.blobDir, 0o700); err != nil {
		return fmt.Errorf("mailbox: %w", err)
	}
	for i := 0; i < 256; i++ {
		d := filepath.Join(s.blobDir, fmt.Sprintf("%02x", i))
		if err := os.Mkdir(d, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("mailbox: %w", err)
		}
	}
	for _, d := range []string{s.blobDir, s.cfg.Dir, filepath.Dir(filepath.Clean(s.cfg.Dir))} {
		if err := syncDir(d); err != nil {
			return err
		}
	}
	return nil
}

// Close waits for running operations, then closes the store. Later calls
// return ErrClosed.
func (s *Store) Close() error {
	s.life.Lock()
	defer s.life.Unlock()
	if s.closed {
		return ErrClosed
	}
	s.closed = true
	close(s.commits)
	<-s.commitDone
	s.watchMu.Lock()
	s.wclosed = true
	for a, ch := range s.watch {
		close(ch)
		delete(s.watch, a)
	}
	s.watchMu.Unlock()
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("mailbox: close index: %w", err)
	}
	return nil
}

// enter starts an operation; the caller must call s.life.RUnlock when it
// succeeds.
func (s *Store) enter() error {
	s.life.RLock()
	if s.closed {
		s.life.RUnlock()
		return ErrClosed
	}
	return nil
}

// Watch returns a channel that is closed at the next change to address's
// mailbox (a message filed, appended, flagged, expunged, a folder created
// or removed) or when the store closes. Take the channel before reading
// the state it guards, then reread when it is closed.
func (s *Store) Watch(address string) <-chan struct{} {
	s.watchMu.Lock()
	defer s.watchMu.Unlock()
	ch := s.watch[address]
	if ch == nil {
		ch = make(chan struct{})
		if s.wclosed {
			close(ch)
			return ch
		}
		s.watch[address] = ch
	}
	return ch
}

// changed wakes the watchers of the given addresses.
func (s *Store) changed(addresses ...string) {
	s.watchMu.Lock()
	for _, a := range addresses {
		if ch := s.watch[a]; ch != nil {
			close(ch)
			delete(s.watch, a)
		}
	}
	s.watchMu.Unlock()
}

// commitReq is one transaction function waiting for a group commit.
type commitReq struct {
	fn   func(*bbolt.Tx) error
	done chan error
}

const maxGroup = 128

// groupUpdate runs fn in a write transaction shared with other concurrent
// callers (one commit, one fsync for all). fn may run more than once when
// another member of its group fails, so it must reset any results it
// records at its start. An error from fn rolls back only fn's effects.
func (s *Store) groupUpdate(fn func(*bbolt.Tx) error) error {
	req := &commitReq{fn: fn, done: make(chan error, 1)}
	s.commits <- req
	return <-req.done
}

// committer runs group commits until Close closes s.commits. A request
// that arrives while a commit is in progress joins the next one, so a
// lone caller never waits for a timer.
func (s *Store) committer() {
	defer close(s.commitDone)
	for req := range s.commits {
		group := []*commitReq{req}
	more:
		for len(group) < maxGroup {
			select {
			case r, ok := <-s.commits:
				if !ok {
					break more
				}
				group = append(group, r)
			default:
				break more
			}
		}
		s.runGroup(group)
	}
}

func (s *Store) runGroup(group []*commitReq) {
	for len(group) > 0 {
		failed := -1
		var ferr error
		err := s.db.Update(func(tx *bbolt.Tx) error {
			for i, r := range group {
				if err := r.fn(tx); err != nil {
					failed, ferr = i, err
					return err
				}
			}
			return nil
		})
		if failed >= 0 {
			group[failed].done <- ferr
			group = append(group[:failed], group[failed+1:]...)
			continue
		}
		for _, r := range group {
			r.done <- err
		}
		return
	}
}

// authState is the Authenticate machinery (see auth.go).
type authState struct {
	key   [32]byte
	dummy string        // hash of a random password, verified for unknown users
	sem   chan struct{} // bounds concurrent argon2 work

	mu    sync.Mutex
	gen   uint64 // bumped by SetPassword and DeleteUser
	cache map[[32]byte]authEntry
}

func (s *Store) initAuth() error {
	if _, err := rand.Read(s.auth.key[:]); err != nil {
		return fmt.Errorf("mailbox: random: %w", err)
	}
	var pw [16]byte
	if _, err := rand.Read(pw[:]); err != nil {
		return fmt.Errorf("mailbox: random: %w", err)
	}
	h, err := auth.HashPassword(string(pw[:]), s.cfg.Hash)
	if err != nil {
		return fmt.Errorf("mailbox: %w", err)
	}
	s.auth.dummy = h
	s.auth.sem = make(chan struct{}, max(1, runtime.GOMAXPROCS(0)))
	s.auth.cache = make(map[[32]byte]authEntry)
	return nil
}
