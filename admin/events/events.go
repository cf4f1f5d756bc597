// Package events is the admin audit and activity log: outages starting and
// ending, probe failures, configuration changes, logins, deletions. Each
// Event says when, who (Actor), for which domain and account, and what.
//
// Events are kept in the "events" bucket of the bbolt database shared with
// the registry, keyed by an 8-byte big-endian ID that orders them in time
// (microseconds since the Unix epoch, bumped to stay unique). The bucket is
// capped: when it holds more than Config.Max events the oldest are dropped.
//
// Record never blocks on the disk: events are queued and a writer goroutine
// stores them in batches, one bbolt transaction per batch. When the queue
// is full, events are dropped and counted (Dropped). List first waits until
// every event recorded before the call is stored.
package events

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/bbolt"
	"go.uber.org/zap"
)

// Bucket is the bbolt bucket holding the events.
const Bucket = "events"

// Event types.
const (
	OutageStarted  = "outage-started"
	OutageEnded    = "outage-ended"
	ProbeFailed    = "probe-failed"
	DomainCreated  = "domain-created"
	DomainUpdated  = "domain-updated"
	DomainDeleted  = "domain-deleted"
	Login          = "login"
	LoginFailed    = "login-failed"
	Logout         = "logout"
	MessageDeleted = "message-deleted"
	MessageRetried = "message-retried"
	QueueFlushed   = "queue-flushed"
	AccountCreated = "account-created"
	UserCreated    = "user-created"
	TokenCreated   = "token-created"
	TokenRevoked   = "token-revoked"
	// PasswordChanged: a user changed its own password; PasswordReset: an
	// operator or tenant admin set another user's.
	PasswordChanged = "password-changed"
	PasswordReset   = "password-reset"
	UserDeleted     = "user-deleted"
	// Mailbox users of domains in mode "both".
	MailboxCreated       = "mailbox-created"
	MailboxDeleted       = "mailbox-deleted"
	MailboxPasswordReset = "mailbox-password-reset"
)

// Event is one entry of the log.
type Event struct {
	// ID orders events in time; 16 hex digits. Record assigns it.
	ID string `json:"id"`
	// Time is when it happened (Record sets it when zero).
	Time time.Time `json:"time"`
	// Type is one of the constants above (other values are kept as is).
	Type string `json:"type"`
	// Actor is the user name, or "system" / a component name.
	Actor string `json:"actor"`
	// Domain concerned, if any.
	Domain string `json:"domain,omitempty"`
	// Account owning the domain or the user, if any; tenant admins see
	// only the events of their account.
	Account string `json:"account,omitempty"`
	// MessageID of the message concerned, if any.
	MessageID string `json:"message_id,omitempty"`
	// Detail is a human-readable description.
	Detail string `json:"detail,omitempty"`
}

// Config holds the store's settings; zero values take the defaults shown.
type Config struct {
	// Max is the number of events kept (100 000).
	Max int
	// QueueLen bounds the events waiting to be written (10 000).
	QueueLen int
}

// Store is the event log. It is safe for concurrent use.
type Store struct {
	log *zap.Logger
	db  *bbolt.DB
	cfg Config
	now func() time.Time

	mu      sync.Mutex
	cond    *sync.Cond // signalled when written advances or work arrives
	pending []Event
	queued  uint64 // events accepted so far
	written uint64 // events stored (or failed) so far
	lastID  uint64
	closed  bool

	count   int // events in the bucket; only the writer touches it
	dropped atomic.Uint64
	done    chan struct{}
}

// Open creates the bucket if needed, counts the events in it and starts
// the writer. The caller owns db and closes it after Close.
func Open(log *zap.Logger, db *bbolt.DB, cfg Config) (*Store, error) {
	if log == nil {
		log = zap.NewNop()
	}
	if cfg.Max <= 0 {
		cfg.Max = 100_000
	}
	if cfg.QueueLen <= 0 {
		cfg.QueueLen = 10_000
	}
	s := &Store{log: log, db: db, cfg: cfg, now: time.Now, done: make(chan struct{})}
	s.cond = sync.NewCond(&s.mu)
	err := db.Update(func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte(Bucket))
		if err != nil {
			return err
		}
		s.count = b.Stats().KeyN
		if k, _ := b.Cursor().Last(); len(k) == 8 {
			s.lastID = binary.BigEndian.Uint64(k)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("events: open: %w", err)
	}
	go s.run()
	return s, nil
}

// Record queues e for storage, assigning its ID (and Time when zero). It
// does not wait for the disk; when the queue is full, e is dropped.
func (s *Store) Record(e Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || len(s.pending) >= s.cfg.QueueLen {
		if n := s.dropped.Add(1); n&(n-1) == 0 { // log on powers of two
			s.log.Warn("event dropped", zap.String("event", e.Type), zap.Uint64("dropped", n))
		}
		return
	}
	if e.Time.IsZero() {
		e.Time = s.now()
	}
	e.Time = e.Time.UTC()
	id := uint64(e.Time.UnixMicro())
	if id <= s.lastID {
		id = s.lastID + 1
	}
	s.lastID = id
	e.ID = formatID(id)
	s.pending = append(s.pending, e)
	s.queued++
	s.cond.Broadcast()
}

// Dropped returns the number of events lost to a full queue or after Close.
func (s *Store) Dropped() uint64 { return s.dropped.Load() }

// Sync waits until every event recorded before the call has been written
// (or its write has failed).
func (s *Store) Sync() {
	s.mu.Lock()
	target := s.queued
	for s.written < target {
		s.cond.Wait()
	}
	s.mu.Unlock()
}

// Close writes the queued events and stops the writer.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		<-s.done
		return nil
	}
	s.closed = true
	s.cond.Broadcast()
	s.mu.Unlock()
	<-s.done
	return nil
}

func (s *Store) run() {
	defer close(s.done)
	for {
		s.mu.Lock()
		for len(s.pending) == 0 && !s.closed {
			s.cond.Wait()
		}
		batch := s.pending
		s.pending = nil
		closed := s.closed
		s.mu.Unlock()
		if len(batch) > 0 {
			if err := s.write(batch); err != nil {
				s.log.Error("events not stored", zap.Int("events", len(batch)), zap.Error(err))
			}
			s.mu.Lock()
			s.written += uint64(len(batch))
			s.cond.Broadcast()
			s.mu.Unlock()
		}
		if closed {
			s.mu.Lock()
			empty := len(s.pending) == 0
			s.mu.Unlock()
			if empty {
				return
			}
		}
	}
}

// write stores batch in one transaction and trims the bucket to Max.
func (s *Store) write(batch []Event) error {
	n := s.count
	err := s.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket([]byte(Bucket))
		n = s.count
		for _, e := range batch {
			v, err := json.Marshal(e)
			if err != nil {
				return err
			}
			id, _ := parseID(e.ID)
			var k [8]byte
			binary.BigEndian.PutUint64(k[:], id)
			if err := b.Put(k[:], v); err != nil {
				return err
			}
			n++
		}
		// Trim in slices of 1% so that a full log is not trimmed on every batch.
		if n > s.cfg.Max {
			drop := n - s.cfg.Max + s.cfg.Max/100
			c := b.Cursor()
			for k, _ := c.First(); k != nil && drop > 0; k, _ = c.First() {
				if err := c.Delete(); err != nil {
					return err
				}
				drop--
				n--
			}
		}
		return nil
	})
	if err == nil {
		s.count = n
	}
	return err
}

// ErrBadCursor is returned by List for a malformed Before cursor.
var ErrBadCursor = errors.New("events: bad cursor")

// Query selects events for List.
type Query struct {
	// Domain, when set, keeps only that domain's events.
	Domain string
	// MessageID, when set, keeps only that message's events.
	MessageID string
	// Match, when set, must also accept the event (tenant filtering).
	Match func(*Event) bool
	// Before is a cursor: only events older than this ID (from a previous
	// page's next cursor).
	Before string
	// Limit is the page size (default 100, at most 1000).
	Limit int
	// Scan bounds the events examined, so that a filter matching nothing
	// costs bounded time (default: all).
	Scan int
}

// List returns events matching q, newest first, and the cursor for the
// next page ("" at the end).
func (s *Store) List(q Query) ([]Event, string, error) {
	s.Sync()
	if q.Limit <= 0 {
		q.Limit = 100
	}
	q.Limit = min(q.Limit, 1000)
	var before uint64
	if q.Before != "" {
		var err error
		if before, err = parseID(q.Before); err != nil {
			return nil, "", ErrBadCursor
		}
	}
	out := []Event{}
	next := ""
	err := s.db.View(func(tx *bbolt.Tx) error {
		c := tx.Bucket([]byte(Bucket)).Cursor()
		var k, v []byte
		if before != 0 {
			var bk [8]byte
			binary.BigEndian.PutUint64(bk[:], before)
			k, v = c.Seek(bk[:])
			if k == nil {
				k, v = c.Last()
			}
			for k != nil && binary.BigEndian.Uint64(k) >= before {
				k, v = c.Prev()
			}
		} else {
			k, v = c.Last()
		}
		scanned := 0
		for ; k != nil; k, v = c.Prev() {
			if q.Scan > 0 && scanned >= q.Scan {
				break
			}
			scanned++
			var e Event
			if err := json.Unmarshal(v, &e); err != nil {
				continue
			}
			if q.Domain != "" && e.Domain != q.Domain || q.MessageID != "" && e.MessageID != q.MessageID ||
				q.Match != nil && !q.Match(&e) {
				continue
			}
			if len(out) == q.Limit {
				next = out[len(out)-1].ID
				break
			}
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("events: list: %w", err)
	}
	return out, next, nil
}

func formatID(id uint64) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], id)
	return hex.EncodeToString(b[:])
}

func parseID(s string) (uint64, error) {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 8 {
		return 0, ErrBadCursor
	}
	return binary.BigEndian.Uint64(b), nil
}
