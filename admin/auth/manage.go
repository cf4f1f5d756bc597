package auth

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.etcd.io/bbolt"
	"go.uber.org/zap"
)

// TokenUseResolution is how precisely Token.LastUsedAt is kept: a token's
// record is rewritten at most once per period, not on every request.
const TokenUseResolution = time.Minute

// tokenIDLen is the length of a token ID: 6 bytes in hex.
const tokenIDLen = 12

// SetPassword checks and hashes password, makes it username's password
// and ends the user's sessions, all but the one whose secret is keep
// (none when keep is ""), in the same transaction. API tokens stay valid.
// It returns the number of sessions ended, or ErrNotFound, or a
// *FieldError for field "password".
func (s *Store) SetPassword(ctx context.Context, username, password, keep string) (int, error) {
	if err := CheckPassword(password); err != nil {
		return 0, err
	}
	if _, ok := s.User(username); !ok {
		return 0, fmt.Errorf("%w: user %q", ErrNotFound, username)
	}
	hash, err := s.hash(ctx, password)
	if err != nil {
		return 0, err
	}
	var keepKey []byte
	if keep != "" {
		keepKey = digest(keep)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.users[username]
	if !ok {
		return 0, fmt.Errorf("%w: user %q", ErrNotFound, username)
	}
	rec.Hash = hash
	b, err := json.Marshal(rec)
	if err != nil {
		return 0, fmt.Errorf("auth: encode: %w", err)
	}
	n := 0
	if err := s.db.Update(func(tx *bbolt.Tx) error {
		if err := tx.Bucket([]byte(BucketUsers)).Put([]byte(username), b); err != nil {
			return err
		}
		n, err = deleteOwned(tx.Bucket([]byte(BucketSessions)), username, keepKey)
		return err
	}); err != nil {
		return 0, fmt.Errorf("auth: set password: %w", err)
	}
	s.users[username] = rec
	s.log.Info("password changed", zap.String("username", username), zap.Int("sessions-ended", n))
	return n, nil
}

// Removed counts what DeleteUser removed with the user.
type Removed struct {
	Sessions int
	Tokens   int
}

// DeleteUser removes username with its sessions and API tokens, in one
// transaction, so that none of them authenticates afterwards. It returns
// ErrNotFound for an unknown user and ErrLastOperator when username is
// the only operator.
func (s *Store) DeleteUser(username string) (User, Removed, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.users[username]
	if !ok {
		return User{}, Removed{}, fmt.Errorf("%w: user %q", ErrNotFound, username)
	}
	if rec.IsOperator() {
		ops := 0
		for _, r := range s.users {
			if r.IsOperator() {
				ops++
			}
		}
		if ops <= 1 {
			return User{}, Removed{}, ErrLastOperator
		}
	}
	var rm Removed
	if err := s.db.Update(func(tx *bbolt.Tx) error {
		if err := tx.Bucket([]byte(BucketUsers)).Delete([]byte(username)); err != nil {
			return err
		}
		var err error
		if rm.Sessions, err = deleteOwned(tx.Bucket([]byte(BucketSessions)), username, nil); err != nil {
			return err
		}
		rm.Tokens, err = deleteOwned(tx.Bucket([]byte(BucketTokens)), username, nil)
		return err
	}); err != nil {
		return User{}, Removed{}, fmt.Errorf("auth: delete user: %w", err)
	}
	delete(s.users, username)
	s.log.Info("user deleted", zap.String("username", username), zap.Int("sessions", rm.Sessions), zap.Int("tokens", rm.Tokens))
	return rec.User, rm, nil
}

// deleteOwned deletes the records of b (sessions or tokens) whose
// "username" is username, except the one under key keep, and returns how
// many it deleted. Records that do not decode are left alone.
func deleteOwned(b *bbolt.Bucket, username string, keep []byte) (int, error) {
	var keys [][]byte
	if err := b.ForEach(func(k, v []byte) error {
		var owner struct {
			Username string `json:"username"`
		}
		if json.Unmarshal(v, &owner) == nil && owner.Username == username && !bytes.Equal(k, keep) {
			keys = append(keys, bytes.Clone(k))
		}
		return nil
	}); err != nil {
		return 0, err
	}
	for _, k := range keys {
		if err := b.Delete(k); err != nil {
			return 0, err
		}
	}
	return len(keys), nil
}

// Tokens returns username's API tokens (every user's when username is
// ""), oldest first.
func (s *Store) Tokens(username string) ([]Token, error) {
	out := []Token{}
	err := s.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket([]byte(BucketTokens)).ForEach(func(k, v []byte) error {
			var t Token
			if err := json.Unmarshal(v, &t); err != nil {
				s.log.Warn("unreadable token record skipped", zap.String("token-id", hex.EncodeToString(k[:min(6, len(k))])))
				return nil
			}
			if username == "" || t.Username == username {
				out = append(out, t)
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("auth: read %s: %w", BucketTokens, err)
	}
	slices.SortFunc(out, func(a, b Token) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

// tokenPrefix decodes a token ID into the bucket key prefix it stands for.
func tokenPrefix(id string) ([]byte, bool) {
	if len(id) != tokenIDLen {
		return nil, false
	}
	p, err := hex.DecodeString(strings.ToLower(id))
	return p, err == nil
}

// TokenByID returns the API token with that ID, or ErrNotFound.
func (s *Store) TokenByID(id string) (Token, error) {
	prefix, ok := tokenPrefix(id)
	if !ok {
		return Token{}, fmt.Errorf("%w: token %q", ErrNotFound, id)
	}
	var t Token
	found := false
	err := s.db.View(func(tx *bbolt.Tx) error {
		c := tx.Bucket([]byte(BucketTokens)).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			if json.Unmarshal(v, &t) == nil {
				found = true
				return nil
			}
		}
		return nil
	})
	if err != nil {
		return Token{}, fmt.Errorf("auth: read %s: %w", BucketTokens, err)
	}
	if !found {
		return Token{}, fmt.Errorf("%w: token %q", ErrNotFound, id)
	}
	return t, nil
}

// DeleteToken revokes the API token with that ID belonging to username:
// it authenticates no further request. It returns ErrNotFound when there
// is no such token of that user.
func (s *Store) DeleteToken(id, username string) (Token, error) {
	prefix, ok := tokenPrefix(id)
	if !ok {
		return Token{}, fmt.Errorf("%w: token %q", ErrNotFound, id)
	}
	var t Token
	found := false
	err := s.db.Update(func(tx *bbolt.Tx) error {
		c := tx.Bucket([]byte(BucketTokens)).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			var cand Token
			if json.Unmarshal(v, &cand) != nil || cand.Username != username {
				continue
			}
			if err := c.Delete(); err != nil {
				return err
			}
			t, found = cand, true
			return nil
		}
		return nil
	})
	if err != nil {
		return Token{}, fmt.Errorf("auth: delete %s: %w", BucketTokens, err)
	}
	if !found {
		return Token{}, fmt.Errorf("%w: token %q", ErrNotFound, id)
	}
	s.log.Info("api token revoked", zap.String("username", username), zap.String("token-id", t.ID))
	return t, nil
}

// touchToken sets the LastUsedAt of the token under key, if it still
// exists (a token revoked meanwhile stays revoked). Failures are logged:
// they must not fail the request.
func (s *Store) touchToken(key []byte, now time.Time) {
	err := s.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket([]byte(BucketTokens))
		v := b.Get(key)
		if v == nil {
			return nil
		}
		var t Token
		if err := json.Unmarshal(v, &t); err != nil {
			return err
		}
		if now.Sub(t.LastUsedAt) < TokenUseResolution {
			return nil // another request was first
		}
		t.LastUsedAt = now
		nb, err := json.Marshal(t)
		if err != nil {
			return err
		}
		return b.Put(key, nb)
	})
	if err != nil {
		s.log.Warn("token last-use update failed", zap.String("token-id", hex.EncodeToString(key[:6])), zap.Error(err))
	}
}
