package mailbox

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/json"
	"time"

	"go.etcd.io/bbolt"
	"go.uber.org/zap"

	"github.com/mxcont/mxcont/admin/auth"
)

// Login cache: Roundcube logs in to IMAP on every HTTP request, and each
// argon2id verification costs tens of milliseconds and 19 MiB.
const (
	authTTL      = 5 * time.Minute
	authMaxCache = 4096
)

type authEntry struct {
	address string
	expires time.Time
}

// Authenticate checks a user's password and returns the user. Unknown
// users and wrong passwords both fail with ErrAuth after the same argon2id
// work. Successful checks are remembered for a few minutes under a keyed
// hash of address and password (never the password itself); SetPassword
// and DeleteUser forget them.
func (s *Store) Authenticate(ctx context.Context, address, password string) (User, error) {
	if err := s.enter(); err != nil {
		return User{}, err
	}
	defer s.life.RUnlock()
	addr, err := NormalizeAddress(address)
	if err != nil || len(password) > MaxPasswordLen {
		return User{}, ErrAuth
	}
	key := s.loginKey(addr, password)
	now := time.Now()
	s.auth.mu.Lock()
	e, hit := s.auth.cache[key]
	if hit && now.After(e.expires) {
		delete(s.auth.cache, key)
		hit = false
	}
	gen := s.auth.gen
	s.auth.mu.Unlock()
	if hit && e.address == addr {
		if u, err := s.user(addr); err == nil {
			return u, nil
		}
	}

	hash, known := s.auth.dummy, false
	var u User
	err = s.db.View(func(tx *bbolt.Tx) error {
		v := tx.Bucket(bktUsers).Get([]byte(addr))
		if v == nil {
			return nil
		}
		var rec userRec
		if err := json.Unmarshal(v, &rec); err != nil {
			return corrupt("user record", err)
		}
		var err error
		if u, err = userFromTx(tx, addr, v); err != nil {
			return err
		}
		hash, known = rec.Hash, true
		return nil
	})
	if err != nil {
		s.log.Error("authenticate", zap.String("address", addr), zap.Error(err))
		hash, known = s.auth.dummy, false
	}
	if err := s.acquire(ctx); err != nil {
		return User{}, err
	}
	ok, verr := auth.VerifyPassword(password, hash)
	s.release()
	if verr != nil {
		s.log.Error("authenticate: stored hash", zap.String("address", addr), zap.Error(verr))
		return User{}, ErrAuth
	}
	if !ok || !known {
		return User{}, ErrAuth
	}
	s.auth.mu.Lock()
	if s.auth.gen == gen {
		if len(s.auth.cache) >= authMaxCache {
			for k, e := range s.auth.cache {
				if now.After(e.expires) {
					delete(s.auth.cache, k)
				}
			}
			if len(s.auth.cache) >= authMaxCache {
				clear(s.auth.cache)
			}
		}
		s.auth.cache[key] = authEntry{address: addr, expires: now.Add(authTTL)}
	}
	s.auth.mu.Unlock()
	return u, nil
}

// loginKey is HMAC-SHA256 under a per-process random key of
// address NUL password.
func (s *Store) loginKey(addr, password string) [32]byte {
	m := hmac.New(sha256.New, s.auth.key[:])
	m.Write([]byte(addr))
	m.Write([]byte{0})
	m.Write([]byte(password))
	var k [32]byte
	m.Sum(k[:0])
	return k
}

// forgetLogins drops the cached logins of addr and keeps verifications
// that started before now from being cached.
func (s *Store) forgetLogins(addr string) {
	s.auth.mu.Lock()
	s.auth.gen++
	for k, e := range s.auth.cache {
		if e.address == addr {
			delete(s.auth.cache, k)
		}
	}
	s.auth.mu.Unlock()
}

// acquire takes a slot of the argon2 semaphore.
func (s *Store) acquire(ctx context.Context) error {
	if ctx == nil {
		ctx = context.Background()
	}
	select {
	case s.auth.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Store) release() { <-s.auth.sem }
