package registry

import "go.uber.org/zap"

// MemStore is a Store that keeps domains in memory only, for tests and
// nodes run entirely from configuration.
type MemStore struct {
	c *core
}

var _ Store = (*MemStore)(nil)

// NewMemory returns an empty MemStore. A nil log is replaced by a no-op
// logger.
func NewMemory(log *zap.Logger) *MemStore {
	return &MemStore{c: newCore(log, nil)}
}

func nopPersist(Domain) error { return nil }

// Lookup implements Store.
func (s *MemStore) Lookup(name string) (*Domain, bool) { return s.c.lookup(name) }

// Get implements Store.
func (s *MemStore) Get(name string) (Domain, error) { return s.c.get(name) }

// List implements Store.
func (s *MemStore) List() ([]Domain, error) { return s.c.list() }

// Put implements Store.
func (s *MemStore) Put(d Domain) (Domain, error) { return s.c.put(d, false, nopPersist) }

// Create implements Store.
func (s *MemStore) Create(d Domain) (Domain, error) { return s.c.put(d, true, nopPersist) }

// Delete implements Store.
func (s *MemStore) Delete(name string) error {
	return s.c.del(name, func(string) error { return nil })
}

// Watch implements Store.
func (s *MemStore) Watch() <-chan struct{} { return s.c.watch() }

// Close implements Store.
func (s *MemStore) Close() error {
	s.c.close()
	return nil
}
