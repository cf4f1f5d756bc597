package auth

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.etcd.io/bbolt"
	"go.uber.org/zap"
)

// TokenPrefix starts every API token, so that leaked tokens are easy to
// recognise (and to scan for).
const TokenPrefix = "mxc_"

// secretBytes is the entropy of session and API token secrets.
const secretBytes = 32

// Session is a browser session. Its secret (the cookie value) is not
// stored, only its SHA-256. The CSRF token is stored as is: it is useless
// without the cookie, and the portal needs it back after a page reload.
type Session struct {
	Username  string    `json:"username"`
	CSRF      string    `json:"csrf"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
}

// Token is an API token bound to the user who created it; it acts with
// that user's current role and account. Its secret is not stored. ID is
// the first 6 bytes of the secret's SHA-256 in hex (the bucket key's
// prefix), so it names the token without revealing anything usable.
type Token struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Username  string    `json:"username"`
	CreatedAt time.Time `json:"created_at"`
	// LastUsedAt is when the token last authenticated a request, to
	// within TokenUseResolution; zero if never.
	LastUsedAt time.Time `json:"last_used_at,omitzero"`
}

func digest(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// plausible rejects secrets that cannot be ours before any lookup.
func plausible(secret string) bool { return len(secret) >= 32 && len(secret) <= 128 }

// NewSession starts a session for username and returns its secret (the
// cookie value) and the session with its CSRF token.
func (s *Store) NewSession(username string) (string, Session, error) {
	if _, ok := s.User(username); !ok {
		return "", Session{}, fmt.Errorf("%w: user %q", ErrNotFound, username)
	}
	secret, err := randomToken(secretBytes)
	if err != nil {
		return "", Session{}, err
	}
	csrf, err := randomToken(secretBytes)
	if err != nil {
		return "", Session{}, err
	}
	now := s.now().UTC()
	sess := Session{Username: username, CSRF: csrf, CreatedAt: now, ExpiresAt: now.Add(s.cfg.SessionTTL)}
	if err := s.putForUser(BucketSessions, digest(secret), sess, username); err != nil {
		return "", Session{}, err
	}
	return secret, sess, nil
}

// SessionTTL returns the lifetime of new sessions.
func (s *Store) SessionTTL() time.Duration { return s.cfg.SessionTTL }

// Session returns the live session for a cookie value and its user, or
// ErrNoSession.
func (s *Store) Session(secret string) (Session, User, error) {
	if !plausible(secret) {
		return Session{}, User{}, ErrNoSession
	}
	var sess Session
	found, err := s.getRaw(BucketSessions, digest(secret), &sess)
	if err != nil {
		return Session{}, User{}, err
	}
	if !found || !s.now().Before(sess.ExpiresAt) {
		return Session{}, User{}, ErrNoSession
	}
	u, ok := s.User(sess.Username)
	if !ok {
		return Session{}, User{}, ErrNoSession
	}
	return sess, u, nil
}

// DeleteSession ends a session; unknown secrets are ignored.
func (s *Store) DeleteSession(secret string) error {
	if !plausible(secret) {
		return nil
	}
	return s.deleteRaw(BucketSessions, digest(secret))
}

// NewToken creates an API token for username and returns its secret, to
// be shown once.
func (s *Store) NewToken(username, name string) (string, Token, error) {
	if _, ok := s.User(username); !ok {
		return "", Token{}, fmt.Errorf("%w: user %q", ErrNotFound, username)
	}
	name = strings.TrimSpace(name)
	if len(name) > 100 {
		return "", Token{}, &FieldError{Field: "name", Msg: "must be at most 100 characters"}
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return "", Token{}, &FieldError{Field: "name", Msg: "must not contain control characters"}
		}
	}
	raw, err := randomToken(secretBytes)
	if err != nil {
		return "", Token{}, err
	}
	secret := TokenPrefix + raw
	d := digest(secret)
	t := Token{ID: hex.EncodeToString(d[:6]), Name: name, Username: username, CreatedAt: s.now().UTC()}
	if err := s.putForUser(BucketTokens, d, t, username); err != nil {
		return "", Token{}, err
	}
	s.log.Info("api token created", zap.String("username", username), zap.String("token-id", t.ID))
	return secret, t, nil
}

// TokenUser returns the token for a bearer secret and its user, or
// ErrNoSession.
func (s *Store) TokenUser(secret string) (Token, User, error) {
	if !strings.HasPrefix(secret, TokenPrefix) || !plausible(secret) {
		return Token{}, User{}, ErrNoSession
	}
	var t Token
	found, err := s.getRaw(BucketTokens, digest(secret), &t)
	if err != nil {
		return Token{}, User{}, err
	}
	if !found {
		return Token{}, User{}, ErrNoSession
	}
	u, ok := s.User(t.Username)
	if !ok {
		return Token{}, User{}, ErrNoSession
	}
	if now := s.now().UTC(); now.Sub(t.LastUsedAt) >= TokenUseResolution {
		t.LastUsedAt = now
		s.touchToken(digest(secret), now)
	}
	return t, u, nil
}

// PurgeExpired deletes expired sessions and returns how many it removed.
func (s *Store) PurgeExpired() (int, error) {
	now := s.now()
	n := 0
	err := s.db.Update(func(tx *bbolt.Tx) error {
		c := tx.Bucket([]byte(BucketSessions)).Cursor()
		for k, v := c.First(); k != nil; {
			var sess Session
			if json.Unmarshal(v, &sess) != nil || !now.Before(sess.ExpiresAt) {
				if err := c.Delete(); err != nil {
					return err
				}
				n++
				k, v = c.Seek(k) // Delete moves the cursor; re-seek past k
				continue
			}
			k, v = c.Next()
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("auth: purge sessions: %w", err)
	}
	return n, nil
}

// putForUser stores v as JSON under key in bucket if username still
// exists, checked in the same transaction: a session or token is never
// written for a user that DeleteUser has just removed (bbolt runs one
// writer at a time).
func (s *Store) putForUser(bucket string, key []byte, v any, username string) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("auth: encode: %w", err)
	}
	if err := s.db.Update(func(tx *bbolt.Tx) error {
		if tx.Bucket([]byte(BucketUsers)).Get([]byte(username)) == nil {
			return fmt.Errorf("%w: user %q", ErrNotFound, username)
		}
		return tx.Bucket([]byte(bucket)).Put(key, b)
	}); err != nil {
		if errors.Is(err, ErrNotFound) {
			return err
		}
		return fmt.Errorf("auth: write %s: %w", bucket, err)
	}
	return nil
}

func (s *Store) getRaw(bucket string, key []byte, v any) (bool, error) {
	found := false
	err := s.db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket([]byte(bucket)).Get(key)
		if b == nil {
			return nil
		}
		found = true
		return json.Unmarshal(b, v)
	})
	if err != nil {
		return false, fmt.Errorf("auth: read %s: %w", bucket, err)
	}
	return found, nil
}

func (s *Store) deleteRaw(bucket string, key []byte) error {
	if err := s.db.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket([]byte(bucket)).Delete(key)
	}); err != nil {
		return fmt.Errorf("auth: delete %s: %w", bucket, err)
	}
	return nil
}
