package mailbox

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"go.etcd.io/bbolt"
	"go.uber.org/zap"

	"github.com/mxcont/mxcont/admin/auth"
	"github.com/mxcont/mxcont/engine/registry"
)

// Limits on addresses (RFC 5321 section 4.5.3.1) and passwords.
const (
	maxLocalLen    = 64
	maxAddressLen  = 254
	MinPasswordLen = 8   // bytes
	MaxPasswordLen = 256 // bytes
)

// NormalizeAddress returns address in the store's canonical form: trimmed,
// lower-cased, the domain in ASCII (IDNs as punycode, via
// registry.NormalizeName). Errors wrap ErrInvalid and name the field
// "address".
func NormalizeAddress(address string) (string, error) {
	a := strings.ToLower(strings.TrimSpace(address))
	if a == "" {
		return "", fmt.Errorf("%w: address: required", ErrInvalid)
	}
	at := strings.LastIndexByte(a, '@')
	if at <= 0 || at == len(a)-1 {
		return "", fmt.Errorf("%w: address: %q is not local@domain", ErrInvalid, address)
	}
	local, domain := a[:at], a[at+1:]
	if why := checkLocal(local); why != "" {
		return "", fmt.Errorf("%w: address: %q: local part %s", ErrInvalid, address, why)
	}
	d, err := registry.NormalizeName(domain)
	if err != nil {
		return "", fmt.Errorf("%w: address: %q: bad domain", ErrInvalid, address)
	}
	a = local + "@" + d
	if len(a) > maxAddressLen {
		return "", fmt.Errorf("%w: address: longer than %d bytes", ErrInvalid, maxAddressLen)
	}
	return a, nil
}

// checkLocal accepts a dot-atom local part of RFC 5322 atext, plus UTF-8
// (RFC 6531). It returns why local is unacceptable, or "".
func checkLocal(local string) string {
	if len(local) > maxLocalLen {
		return fmt.Sprintf("longer than %d bytes", maxLocalLen)
	}
	if !utf8.ValidString(local) {
		return "is not UTF-8"
	}
	if local[0] == '.' || local[len(local)-1] == '.' || strings.Contains(local, "..") {
		return "has a misplaced dot"
	}
	for _, r := range local {
		switch {
		case r >= 0xa0 && r != utf8.RuneError && unicode.IsGraphic(r) && !unicode.IsSpace(r):
		case 'a' <= r && r <= 'z', '0' <= r && r <= '9', r == '.':
		case strings.ContainsRune("!#$%&'*+-/=?^_`{|}~", r):
		default:
			return fmt.Sprintf("has a forbidden character %q", r)
		}
	}
	return ""
}

// checkPassword validates a new password: 8 to 256 bytes, and no NUL, CR
// or LF (they cannot travel in IMAP LOGIN or SASL PLAIN).
func checkPassword(password string) error {
	if len(password) < MinPasswordLen || len(password) > MaxPasswordLen {
		return fmt.Errorf("%w: password: must be %d to %d bytes", ErrInvalid, MinPasswordLen, MaxPasswordLen)
	}
	if strings.ContainsAny(password, "\x00\r\n") {
		return fmt.Errorf("%w: password: must not contain NUL, CR or LF", ErrInvalid)
	}
	return nil
}

func domainOf(address string) string {
	return address[strings.LastIndexByte(address, '@')+1:]
}

// standardFolders are created with every user and can be neither deleted
// nor renamed.
var standardFolders = []struct{ name, use string }{
	{"INBOX", ""},
	{"Sent", `\Sent`},
	{"Drafts", `\Drafts`},
	{"Trash", `\Trash`},
}

// hash runs argon2id under the store's work semaphore.
func (s *Store) hash(ctx context.Context, password string) (string, error) {
	if err := s.acquire(ctx); err != nil {
		return "", err
	}
	defer s.release()
	h, err := auth.HashPassword(password, s.cfg.Hash)
	if err != nil {
		return "", fmt.Errorf("mailbox: %w", err)
	}
	return h, nil
}

// AddUser creates a mailbox user with the folders INBOX, Sent, Drafts and
// Trash. It fails with ErrExists if the address has a user, and with an
// error wrapping ErrInvalid (naming "address" or "password") for bad input.
func (s *Store) AddUser(ctx context.Context, address, password string) (User, error) {
	if err := s.enter(); err != nil {
		return User{}, err
	}
	defer s.life.RUnlock()
	addr, err := NormalizeAddress(address)
	if err != nil {
		return User{}, err
	}
	if err := checkPassword(password); err != nil {
		return User{}, err
	}
	if s.HasUser(addr) {
		return User{}, ErrExists
	}
	h, err := s.hash(ctx, password)
	if err != nil {
		return User{}, err
	}
	s.umu.Lock()
	defer s.umu.Unlock()
	rec := userRec{Hash: h, Created: time.Now().UTC().Truncate(time.Second)}
	err = s.db.Update(func(tx *bbolt.Tx) error {
		users := tx.Bucket(bktUsers)
		if users.Get([]byte(addr)) != nil {
			return ErrExists
		}
		v, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		if err := users.Put([]byte(addr), v); err != nil {
			return err
		}
		boxes := tx.Bucket(bktBoxes)
		if boxes.Bucket([]byte(addr)) != nil {
			// A box without a user record cannot normally exist (Open
			// removes them); if one does, start afresh.
			if err := s.dropBoxTx(tx, addr, nil); err != nil {
				return err
			}
		}
		box, err := boxes.CreateBucket([]byte(addr))
		if err != nil {
			return err
		}
		if _, err := box.CreateBucket(bktFolders); err != nil {
			return err
		}
		if _, err := box.CreateBucket(bktMsgs); err != nil {
			return err
		}
		if err := box.Put(keyStat, stat{}.encode()); err != nil {
			return err
		}
		for _, f := range standardFolders {
			if _, err := createFolderTx(box, f.name, f.use); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		if err == ErrExists {
			return User{}, ErrExists
		}
		return User{}, fmt.Errorf("mailbox: add user: %w", err)
	}
	s.mu.Lock()
	s.users[addr] = struct{}{}
	s.mu.Unlock()
	s.log.Info("mailbox user added", zap.String("address", addr))
	return User{Address: addr, Domain: domainOf(addr), Created: rec.Created}, nil
}

// SetPassword replaces a user's password. It fails with ErrNotFound for an
// unknown user and ErrInvalid for a bad password. Cached logins of the user
// are forgotten.
func (s *Store) SetPassword(ctx context.Context, address, password string) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.life.RUnlock()
	addr, err := NormalizeAddress(address)
	if err != nil {
		return ErrNotFound
	}
	if err := checkPassword(password); err != nil {
		return err
	}
	if !s.HasUser(addr) {
		return ErrNotFound
	}
	h, err := s.hash(ctx, password)
	if err != nil {
		return err
	}
	s.umu.Lock()
	defer s.umu.Unlock()
	err = s.db.Update(func(tx *bbolt.Tx) error {
		users := tx.Bucket(bktUsers)
		v := users.Get([]byte(addr))
		if v == nil {
			return ErrNotFound
		}
		var rec userRec
		if err := json.Unmarshal(v, &rec); err != nil {
			return corrupt("user record", err)
		}
		rec.Hash = h
		nv, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		return users.Put([]byte(addr), nv)
	})
	s.forgetLogins(addr)
	if err != nil {
		if err == ErrNotFound {
			return ErrNotFound
		}
		return fmt.Errorf("mailbox: set password: %w", err)
	}
	s.log.Info("mailbox password changed", zap.String("address", addr))
	return nil
}

// DeleteUser removes a user with all its folders and messages; message
// files no other user references are unlinked. ErrNotFound if there is no
// such user.
func (s *Store) DeleteUser(address string) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.life.RUnlock()
	addr, err := NormalizeAddress(address)
	if err != nil {
		return ErrNotFound
	}
	s.umu.Lock()
	defer s.umu.Unlock()
	return s.deleteUserLocked(addr)
}

func (s *Store) deleteUserLocked(addr string) error {
	var unlink []string
	var st stat
	err := s.db.Update(func(tx *bbolt.Tx) error {
		unlink = unlink[:0]
		users := tx.Bucket(bktUsers)
		if users.Get([]byte(addr)) == nil {
			return ErrNotFound
		}
		if box := tx.Bucket(bktBoxes).Bucket([]byte(addr)); box != nil {
			st = decodeStat(box.Get(keyStat))
		}
		if err := s.dropBoxTx(tx, addr, &unlink); err != nil {
			return err
		}
		return users.Delete([]byte(addr))
	})
	if err != nil {
		if err == ErrNotFound {
			return ErrNotFound
		}
		return fmt.Errorf("mailbox: delete user: %w", err)
	}
	s.mu.Lock()
	delete(s.users, addr)
	s.mu.Unlock()
	s.forgetLogins(addr)
	s.removeBlobs(unlink)
	s.changed(addr)
	s.log.Info("mailbox user deleted", zap.String("address", addr),
		zap.Int64("messages", st.messages), zap.Int64("bytes", st.bytes))
	return nil
}

// dropBoxTx deletes addr's box bucket, dropping its blob references; blobs
// left without references are appended to unlink (if not nil).
func (s *Store) dropBoxTx(tx *bbolt.Tx, addr string, unlink *[]string) error {
	boxes := tx.Bucket(bktBoxes)
	box := boxes.Bucket([]byte(addr))
	if box == nil {
		return nil
	}
	if msgs := box.Bucket(bktMsgs); msgs != nil {
		err := msgs.ForEachBucket(func(fid []byte) error {
			return dropFolderMsgsTx(tx, msgs.Bucket(fid), unlink)
		})
		if err != nil {
			return err
		}
	}
	return boxes.DeleteBucket([]byte(addr))
}

// dropFolderMsgsTx drops the blob references of every message in b.
func dropFolderMsgsTx(tx *bbolt.Tx, b *bbolt.Bucket, unlink *[]string) error {
	return b.ForEach(func(_, v []byte) error {
		m, err := decodeMsgRec(v)
		if err != nil {
			return nil // counted by the next Open's check
		}
		gone, err := decref(tx, m.Blob)
		if err != nil {
			return err
		}
		if gone && unlink != nil {
			*unlink = append(*unlink, m.Blob)
		}
		return nil
	})
}

// DeleteDomain deletes every user of domain and returns how many there
// were.
func (s *Store) DeleteDomain(domain string) (int, error) {
	if err := s.enter(); err != nil {
		return 0, err
	}
	defer s.life.RUnlock()
	d, err := registry.NormalizeName(domain)
	if err != nil {
		return 0, fmt.Errorf("%w: domain: %q", ErrInvalid, domain)
	}
	s.umu.Lock()
	defer s.umu.Unlock()
	var victims []string
	s.mu.RLock()
	for a := range s.users {
		if domainOf(a) == d {
			victims = append(victims, a)
		}
	}
	s.mu.RUnlock()
	n := 0
	for _, a := range victims {
		if err := s.deleteUserLocked(a); err != nil && err != ErrNotFound {
			return n, err
		}
		n++
	}
	return n, nil
}

// HasUser reports whether address (in any spelling NormalizeAddress
// accepts) has a mailbox. It reads only memory.
func (s *Store) HasUser(address string) bool {
	s.mu.RLock()
	_, ok := s.users[address]
	s.mu.RUnlock()
	if ok {
		return true
	}
	addr, err := NormalizeAddress(address)
	if err != nil || addr == address {
		return false
	}
	s.mu.RLock()
	_, ok = s.users[addr]
	s.mu.RUnlock()
	return ok
}

// User returns a user with its message count and size. ErrNotFound if
// there is none.
func (s *Store) User(address string) (User, error) {
	if err := s.enter(); err != nil {
		return User{}, err
	}
	defer s.life.RUnlock()
	addr, err := NormalizeAddress(address)
	if err != nil {
		return User{}, ErrNotFound
	}
	return s.user(addr)
}

// user is User for a normalized address, inside an operation.
func (s *Store) user(addr string) (User, error) {
	var u User
	err := s.db.View(func(tx *bbolt.Tx) error {
		v := tx.Bucket(bktUsers).Get([]byte(addr))
		if v == nil {
			return ErrNotFound
		}
		var err error
		u, err = userFromTx(tx, addr, v)
		return err
	})
	return u, err
}

func userFromTx(tx *bbolt.Tx, addr string, v []byte) (User, error) {
	var rec userRec
	if err := json.Unmarshal(v, &rec); err != nil {
		return User{}, corrupt("user record", err)
	}
	u := User{Address: addr, Domain: domainOf(addr), Created: rec.Created}
	if box := tx.Bucket(bktBoxes).Bucket([]byte(addr)); box != nil {
		st := decodeStat(box.Get(keyStat))
		u.Messages, u.Bytes = int(st.messages), st.bytes
	}
	return u, nil
}

// Users returns the users of domain ("" for all), sorted by address.
func (s *Store) Users(domain string) ([]User, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.life.RUnlock()
	var d string
	if strings.TrimSpace(domain) != "" {
		var err error
		if d, err = registry.NormalizeName(domain); err != nil {
			return nil, fmt.Errorf("%w: domain: %q", ErrInvalid, domain)
		}
	}
	out := []User{}
	err := s.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bktUsers).ForEach(func(k, v []byte) error {
			addr := string(k)
			if d != "" && domainOf(addr) != d {
				return nil
			}
			u, err := userFromTx(tx, addr, v)
			if err != nil {
				return err
			}
			out = append(out, u)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("mailbox: list users: %w", err)
	}
	return out, nil
}

// decref drops one reference to blob and reports whether it was the last.
func decref(tx *bbolt.Tx, blob string) (bool, error) {
	b := tx.Bucket(bktBlobs)
	n := getU32(b.Get([]byte(blob)))
	if n <= 1 {
		return true, b.Delete([]byte(blob))
	}
	return false, b.Put([]byte(blob), u32key(n-1))
}

// incref adds k references to blob.
func incref(tx *bbolt.Tx, blob string, k int) error {
	b := tx.Bucket(bktBlobs)
	n := getU32(b.Get([]byte(blob)))
	return b.Put([]byte(blob), u32key(n+uint32(k)))
}

// addStatTx adds to the user's message count and byte total.
func addStatTx(box *bbolt.Bucket, messages, bytes int64) error {
	st := decodeStat(box.Get(keyStat))
	st.messages += messages
	st.bytes += bytes
	if st.messages < 0 {
		st.messages = 0
	}
	if st.bytes < 0 {
		st.bytes = 0
	}
	return box.Put(keyStat, st.encode())
}
