package registry

import (
	"encoding/json"
	"fmt"
	"time"

	"go.etcd.io/bbolt"
	"go.uber.org/zap"
)

// BucketName is the bbolt bucket holding the domains: key = normalized
// name, value = the Domain as JSON.
const BucketName = "domains"

// fileLockTimeout bounds how long OpenFile waits for another process
// holding the database file.
const fileLockTimeout = time.Second

// BoltStore is a Store persisted in a bbolt database. Every write is
// committed (and fsynced by bbolt) before the new snapshot is published.
type BoltStore struct {
	c      *core
	db     *bbolt.DB
	ownsDB bool
}

var _ Store = (*BoltStore)(nil)

// Open loads the registry from the "domains" bucket of db, creating the
// bucket if needed. The caller owns db (other packages may keep their own
// buckets in it) and closes it after Close. A nil log is replaced by a
// no-op logger.
func Open(log *zap.Logger, db *bbolt.DB) (*BoltStore, error) {
	if log == nil {
		log = zap.NewNop()
	}
	var domains []Domain
	err := db.Update(func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte(BucketName))
		if err != nil {
			return err
		}
		return b.ForEach(func(k, v []byte) error {
			var d Domain
			if err := json.Unmarshal(v, &d); err != nil {
				return fmt.Errorf("decode domain %q: %w", k, err)
			}
			if d.Name != string(k) {
				return fmt.Errorf("decode domain %q: record names %q", k, d.Name)
			}
			domains = append(domains, d)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("registry: open: %w", err)
	}
	log.Info("domain registry loaded", zap.String("path", db.Path()), zap.Int("domains", len(domains)))
	return &BoltStore{c: newCore(log, domains), db: db}, nil
}

// OpenFile opens (or creates) the bbolt database at path, waiting at most
// one second for another process's lock, and loads the registry from it.
// Close also closes the database.
func OpenFile(log *zap.Logger, path string) (*BoltStore, error) {
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: fileLockTimeout})
	if err != nil {
		return nil, fmt.Errorf("registry: open %s: %w", path, err)
	}
	s, err := Open(log, db)
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	s.ownsDB = true
	return s, nil
}

// Lookup implements Store.
func (s *BoltStore) Lookup(name string) (*Domain, bool) { return s.c.lookup(name) }

// Get implements Store.
func (s *BoltStore) Get(name string) (Domain, error) { return s.c.get(name) }

// List implements Store.
func (s *BoltStore) List() ([]Domain, error) { return s.c.list() }

// Put implements Store.
func (s *BoltStore) Put(d Domain) (Domain, error) {
	return s.c.put(d, false, func(n Domain) error { return s.write(n, false) })
}

// Create implements Store.
func (s *BoltStore) Create(d Domain) (Domain, error) {
	return s.c.put(d, true, func(n Domain) error { return s.write(n, true) })
}

func (s *BoltStore) write(d Domain, create bool) error {
	v, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("registry: encode %q: %w", d.Name, err)
	}
	err = s.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket([]byte(BucketName))
		if create && b.Get([]byte(d.Name)) != nil {
			return fmt.Errorf("%w: %q", ErrExists, d.Name)
		}
		return b.Put([]byte(d.Name), v)
	})
	if err != nil {
		return fmt.Errorf("registry: put %q: %w", d.Name, err)
	}
	return nil
}

// Delete implements Store.
func (s *BoltStore) Delete(name string) error {
	return s.c.del(name, func(key string) error {
		err := s.db.Update(func(tx *bbolt.Tx) error {
			return tx.Bucket([]byte(BucketName)).Delete([]byte(key))
		})
		if err != nil {
			return fmt.Errorf("registry: delete %q: %w", key, err)
		}
		return nil
	})
}

// Watch implements Store.
func (s *BoltStore) Watch() <-chan struct{} { return s.c.watch() }

// Close implements Store. It waits for a write in progress and closes the
// database if OpenFile opened it.
func (s *BoltStore) Close() error {
	if !s.c.close() || !s.ownsDB {
		return nil
	}
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("registry: close: %w", err)
	}
	return nil
}
