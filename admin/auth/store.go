package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"go.etcd.io/bbolt"
	"go.uber.org/zap"
)

// Roles a user can have.
const (
	// RoleOperator is the hosting provider's staff: sees every account.
	RoleOperator = "operator"
	// RoleAdmin is a customer's administrator: sees only its own account.
	RoleAdmin = "admin"
)

// Bucket names in the shared bbolt database.
const (
	BucketAccounts = "accounts"
	BucketUsers    = "users"
	BucketSessions = "sessions"
	BucketTokens   = "tokens"
)

// Errors returned by the Store; test them with errors.Is.
var (
	// ErrExists means an account or user of that name is already present.
	ErrExists = errors.New("auth: already exists")
	// ErrNotFound means an account or user is unknown.
	ErrNotFound = errors.New("auth: not found")
	// ErrInvalidCredentials means a wrong user name or password.
	ErrInvalidCredentials = errors.New("auth: invalid username or password")
	// ErrNoSession means an unknown, expired or malformed session or token.
	ErrNoSession = errors.New("auth: no such session or token")
	// ErrLastOperator means the change would leave no operator.
	ErrLastOperator = errors.New("auth: the last operator cannot be removed")
)

// FieldError reports an invalid field of a request; Field is its JSON name.
type FieldError struct {
	Field string
	Msg   string
}

// Error returns "field: msg".
func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// Account is a tenant: a customer of the hosting provider owning domains.
type Account struct {
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
}

// User is a person or program allowed into the admin API. The password
// hash never leaves the package.
type User struct {
	Username  string    `json:"username"`
	Role      string    `json:"role"`
	Account   string    `json:"account"`
	CreatedAt time.Time `json:"created_at"`
}

// IsOperator reports whether u sees every account.
func (u User) IsOperator() bool { return u.Role == RoleOperator }

// NewUser is what CreateUser needs.
type NewUser struct {
	Username string `json:"username"`
	Password string `json:"password"`
	Role     string `json:"role"`
	Account  string `json:"account"`
}

type userRecord struct {
	User
	Hash string `json:"password_hash"`
}

// Config holds the store's settings; zero values take the defaults shown.
type Config struct {
	// Params are the argon2id costs for new password hashes (DefaultParams).
	Params Params
	// SessionTTL is the lifetime of a browser session (default 12 h).
	SessionTTL time.Duration
	// HashConcurrency bounds concurrent argon2 computations, and so the
	// memory logins can take (default GOMAXPROCS, at least 2).
	HashConcurrency int
}

// Store keeps accounts, users, sessions and API tokens. Accounts and users
// are cached in memory (they are few); sessions and tokens are read from
// bbolt on each request. It is safe for concurrent use.
type Store struct {
	log   *zap.Logger
	db    *bbolt.DB
	cfg   Config
	now   func() time.Time
	sem   chan struct{}
	dummy string // hash checked for unknown users, to equalize timing

	mu       sync.RWMutex
	accounts map[string]Account
	users    map[string]userRecord
}

// Open creates the buckets if needed and loads accounts and users from db.
// The caller owns db. A nil log is replaced by a no-op logger.
func Open(log *zap.Logger, db *bbolt.DB, cfg Config) (*Store, error) {
	if log == nil {
		log = zap.NewNop()
	}
	cfg.Params = cfg.Params.withDefaults()
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = 12 * time.Hour
	}
	if cfg.HashConcurrency <= 0 {
		cfg.HashConcurrency = max(2, runtime.GOMAXPROCS(0))
	}
	s := &Store{log: log, db: db, cfg: cfg, now: time.Now, sem: make(chan struct{}, cfg.HashConcurrency),
		accounts: map[string]Account{}, users: map[string]userRecord{}}
	err := db.Update(func(tx *bbolt.Tx) error {
		for _, name := range []string{BucketAccounts, BucketUsers, BucketSessions, BucketTokens} {
			if _, err := tx.CreateBucketIfNotExists([]byte(name)); err != nil {
				return err
			}
		}
		if err := tx.Bucket([]byte(BucketAccounts)).ForEach(func(k, v []byte) error {
			var a Account
			if err := json.Unmarshal(v, &a); err != nil {
				return fmt.Errorf("decode account %q: %w", k, err)
			}
			s.accounts[a.Name] = a
			return nil
		}); err != nil {
			return err
		}
		return tx.Bucket([]byte(BucketUsers)).ForEach(func(k, v []byte) error {
			var u userRecord
			if err := json.Unmarshal(v, &u); err != nil {
				return fmt.Errorf("decode user %q: %w", k, err)
			}
			s.users[u.Username] = u
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("auth: open: %w", err)
	}
	if s.dummy, err = HashPassword("mxcont-dummy-password", cfg.Params); err != nil {
		return nil, err
	}
	log.Info("auth store loaded", zap.Int("accounts", len(s.accounts)), zap.Int("users", len(s.users)))
	return s, nil
}

// CreateAccount adds a tenant account. Names are 1..63 characters of
// lower-case letters, digits, '.', '_' and '-', starting with a letter or
// digit.
func (s *Store) CreateAccount(name string) (Account, error) {
	name = strings.ToLower(strings.TrimSpace(name))
	if err := checkName("name", name); err != nil {
		return Account{}, err
	}
	a := Account{Name: name, CreatedAt: s.now().UTC()}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.accounts[name]; ok {
		return Account{}, fmt.Errorf("%w: account %q", ErrExists, name)
	}
	if err := s.put(BucketAccounts, name, a); err != nil {
		return Account{}, err
	}
	s.accounts[name] = a
	s.log.Info("account created", zap.String("account", name))
	return a, nil
}

// Account returns the named account.
func (s *Store) Account(name string) (Account, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	a, ok := s.accounts[name]
	return a, ok
}

// Accounts returns every account, sorted by name.
func (s *Store) Accounts() []Account {
	s.mu.RLock()
	out := make([]Account, 0, len(s.accounts))
	for _, a := range s.accounts {
		out = append(out, a)
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b Account) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// CreateUser validates nu, hashes its password and stores the user. User
// names are lower-cased. An admin needs an existing account; an operator
// may name one (it must exist) or none.
func (s *Store) CreateUser(ctx context.Context, nu NewUser) (User, error) {
	u := User{
		Username: strings.ToLower(strings.TrimSpace(nu.Username)),
		Role:     strings.ToLower(strings.TrimSpace(nu.Role)),
		Account:  strings.ToLower(strings.TrimSpace(nu.Account)),
	}
	if err := checkUsername(u.Username); err != nil {
		return User{}, err
	}
	if err := CheckPassword(nu.Password); err != nil {
		return User{}, err
	}
	switch u.Role {
	case RoleOperator, RoleAdmin:
	default:
		return User{}, &FieldError{Field: "role", Msg: fmt.Sprintf("must be %q or %q", RoleOperator, RoleAdmin)}
	}
	if u.Role == RoleAdmin && u.Account == "" {
		return User{}, &FieldError{Field: "account", Msg: "an admin must belong to an account"}
	}
	if u.Account != "" {
		if _, ok := s.Account(u.Account); !ok {
			return User{}, &FieldError{Field: "account", Msg: fmt.Sprintf("no account %q", u.Account)}
		}
	}
	s.mu.RLock()
	_, exists := s.users[u.Username]
	s.mu.RUnlock()
	if exists {
		return User{}, fmt.Errorf("%w: user %q", ErrExists, u.Username)
	}
	hash, err := s.hash(ctx, nu.Password)
	if err != nil {
		return User{}, err
	}
	u.CreatedAt = s.now().UTC()
	rec := userRecord{User: u, Hash: hash}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.users[u.Username]; ok {
		return User{}, fmt.Errorf("%w: user %q", ErrExists, u.Username)
	}
	if err := s.put(BucketUsers, u.Username, rec); err != nil {
		return User{}, err
	}
	s.users[u.Username] = rec
	s.log.Info("user created", zap.String("username", u.Username), zap.String("role", u.Role), zap.String("account", u.Account))
	return u, nil
}

// User returns the named user.
func (s *Store) User(name string) (User, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	r, ok := s.users[name]
	return r.User, ok
}

// Users returns every user, sorted by name.
func (s *Store) Users() []User {
	s.mu.RLock()
	out := make([]User, 0, len(s.users))
	for _, r := range s.users {
		out = append(out, r.User)
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b User) int { return strings.Compare(a.Username, b.Username) })
	return out
}

// HasUsers reports whether any user exists.
func (s *Store) HasUsers() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.users) > 0
}

// Authenticate checks a user name and password. Unknown users cost the same
// hashing work as known ones. It returns ErrInvalidCredentials on mismatch.
func (s *Store) Authenticate(ctx context.Context, username, password string) (User, error) {
	username = strings.ToLower(strings.TrimSpace(username))
	s.mu.RLock()
	rec, ok := s.users[username]
	s.mu.RUnlock()
	hash := rec.Hash
	if !ok || len(password) > maxPasswordLen {
		hash = s.dummy
	}
	if err := s.acquire(ctx); err != nil {
		return User{}, err
	}
	match, err := VerifyPassword(password, hash)
	<-s.sem
	if err != nil {
		s.log.Error("stored password hash unreadable", zap.String("username", username), zap.Error(err))
		return User{}, ErrInvalidCredentials
	}
	if !ok || !match || len(password) > maxPasswordLen {
		return User{}, ErrInvalidCredentials
	}
	return rec.User, nil
}

// AdminUser is the name of the operator created on first start.
const AdminUser = "admin"

// EnsureAdmin creates the operator AdminUser when no user exists yet. The
// password is envPassword when it is not empty; otherwise a random one is
// generated and returned (only then), for the caller to show once.
func (s *Store) EnsureAdmin(ctx context.Context, envPassword string) (generated string, err error) {
	if s.HasUsers() {
		return "", nil
	}
	pw := envPassword
	if pw == "" {
		if pw, err = randomToken(15); err != nil { // 20 characters
			return "", err
		}
		generated = pw
	} else if len(pw) < minPasswordLen {
		s.log.Warn("initial admin password is short", zap.Int("length", len(pw)), zap.Int("recommended", minPasswordLen))
	}
	hash, err := s.hash(ctx, pw)
	if err != nil {
		return "", err
	}
	u := User{Username: AdminUser, Role: RoleOperator, CreatedAt: s.now().UTC()}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.users) > 0 {
		return "", nil
	}
	if err := s.put(BucketUsers, u.Username, userRecord{User: u, Hash: hash}); err != nil {
		return "", err
	}
	s.users[u.Username] = userRecord{User: u, Hash: hash}
	s.log.Info("initial operator created", zap.String("username", u.Username), zap.Bool("password-generated", generated != ""))
	return generated, nil
}

func (s *Store) acquire(ctx context.Context) error {
	select {
	case s.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Store) hash(ctx context.Context, password string) (string, error) {
	if err := s.acquire(ctx); err != nil {
		return "", err
	}
	defer func() { <-s.sem }()
	return HashPassword(password, s.cfg.Params)
}

// put stores v as JSON under key in bucket, durably.
func (s *Store) put(bucket, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("auth: encode: %w", err)
	}
	if err := s.db.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket([]byte(bucket)).Put([]byte(key), b)
	}); err != nil {
		return fmt.Errorf("auth: write %s: %w", bucket, err)
	}
	return nil
}
