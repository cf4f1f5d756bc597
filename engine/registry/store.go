package registry

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// Errors returned by stores. Test for them with errors.Is: they are
// usually wrapped with the domain name.
var (
	// ErrNotFound means the domain is not in the registry.
	ErrNotFound = errors.New("registry: domain not found")
	// ErrExists means Create found the domain already present.
	ErrExists = errors.New("registry: domain exists")
	// ErrClosed means the store has been closed.
	ErrClosed = errors.New("registry: closed")
)

// Store is a domain registry. Implementations must be safe for concurrent
// use, validate and normalize every domain they store (see Normalize), and
// serve Lookup without blocking on writers.
type Store interface {
	// Lookup returns the domain for name, as written in an SMTP RCPT
	// command: case-insensitive, trailing dot ignored, U-label (Unicode)
	// or A-label (punycode) form. It reads an immutable snapshot and takes
	// no lock; the returned Domain is shared and must not be modified.
	Lookup(name string) (*Domain, bool)
	// Get returns a copy of the named domain, or an error wrapping
	// ErrNotFound.
	Get(name string) (Domain, error)
	// List returns copies of all domains, sorted by name.
	List() ([]Domain, error)
	// Put creates or replaces a domain and returns it as stored
	// (normalized, with timestamps). Invalid domains yield a
	// *ValidationError.
	Put(d Domain) (Domain, error)
	// Create is Put for a new domain; it fails with an error wrapping
	// ErrExists if the domain is present.
	Create(d Domain) (Domain, error)
	// Delete removes a domain, or fails with an error wrapping
	// ErrNotFound.
	Delete(name string) error
	// Watch returns a channel that is closed at the next change to the
	// registry. To follow changes, call Watch before reading the
	// registry and again after each wake-up.
	Watch() <-chan struct{}
	// Close releases the store. Lookup keeps answering from the last
	// snapshot; other methods fail with ErrClosed.
	Close() error
}

// snapshot is an immutable view of the registry. Writers build a new one
// and swap it in; readers never lock.
type snapshot struct {
	byName  map[string]*Domain
	version uint64
	// changed is closed when the next snapshot replaces this one.
	changed chan struct{}
}

// core holds the snapshot logic shared by the Store implementations. The
// backend-specific persistence is passed in as callbacks that run under mu,
// so the order of snapshots matches the order of durable writes.
type core struct {
	log  *zap.Logger
	now  func() time.Time
	snap atomic.Pointer[snapshot]

	mu     sync.Mutex // serializes writers and Close
	closed atomic.Bool
}

func newCore(log *zap.Logger, domains []Domain) *core {
	if log == nil {
		log = zap.NewNop()
	}
	c := &core{log: log, now: func() time.Time { return time.Now().UTC() }}
	m := make(map[string]*Domain, len(domains))
	for i := range domains {
		m[domains[i].Name] = &domains[i]
	}
	c.snap.Store(&snapshot{byName: m, changed: make(chan struct{})})
	return c
}

// publish installs a snapshot derived from the current one with d set (or
// name removed, when d is nil) and wakes watchers. Callers hold mu.
func (c *core) publish(name string, d *Domain) {
	old := c.snap.Load()
	m := make(map[string]*Domain, len(old.byName)+1)
	for k, v := range old.byName {
		m[k] = v
	}
	if d != nil {
		m[name] = d
	} else {
		delete(m, name)
	}
	c.snap.Store(&snapshot{byName: m, version: old.version + 1, changed: make(chan struct{})})
	close(old.changed)
}

func (c *core) lookup(name string) (*Domain, bool) {
	s := c.snap.Load()
	if d, ok := s.byName[name]; ok {
		return d, true
	}
	key, ok := lookupKey(name)
	if !ok {
		return nil, false
	}
	d, ok := s.byName[key]
	return d, ok
}

func (c *core) get(name string) (Domain, error) {
	if c.closed.Load() {
		return Domain{}, ErrClosed
	}
	if d, ok := c.lookup(name); ok {
		return d.clone(), nil
	}
	return Domain{}, fmt.Errorf("%w: %q", ErrNotFound, name)
}

func (c *core) list() ([]Domain, error) {
	if c.closed.Load() {
		return nil, ErrClosed
	}
	s := c.snap.Load()
	out := make([]Domain, 0, len(s.byName))
	for _, d := range s.byName {
		out = append(out, d.clone())
	}
	slices.SortFunc(out, func(a, b Domain) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

func (c *core) watch() <-chan struct{} { return c.snap.Load().changed }

// put implements Put and Create. persist makes n durable; it returns
// ErrExists (for create) or an I/O error, and the snapshot is left alone.
func (c *core) put(d Domain, create bool, persist func(n Domain) error) (Domain, error) {
	n, err := Normalize(d)
	if err != nil {
		return Domain{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed.Load() {
		return Domain{}, ErrClosed
	}
	old, exists := c.snap.Load().byName[n.Name]
	if exists && create {
		return Domain{}, fmt.Errorf("%w: %q", ErrExists, n.Name)
	}
	n.UpdatedAt = c.now()
	n.CreatedAt = n.UpdatedAt
	if exists {
		n.CreatedAt = old.CreatedAt
	}
	if err := persist(n); err != nil {
		return Domain{}, err
	}
	stored := n.clone()
	c.publish(n.Name, &stored)
	c.log.Info("domain stored", zap.String("domain", n.Name), zap.String("relay-host", n.RelayHost),
		zap.String("mode", n.Mode), zap.Bool("created", !exists))
	return n, nil
}

// del implements Delete. persist removes the domain durably.
func (c *core) del(name string, persist func(name string) error) error {
	key, ok := lookupKey(name)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed.Load() {
		return ErrClosed
	}
	if !ok {
		return fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	if _, exists := c.snap.Load().byName[key]; !exists {
		return fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	if err := persist(key); err != nil {
		return err
	}
	c.publish(key, nil)
	c.log.Info("domain deleted", zap.String("domain", key))
	return nil
}

// close marks the store closed; it reports false if it already was.
func (c *core) close() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed.CompareAndSwap(false, true)
}
