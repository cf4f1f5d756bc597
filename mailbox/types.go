package mailbox

import (
	"errors"
	"time"

	"github.com/mxcont/mxcont/admin/auth"
)

// Errors returned by the Store; test them with errors.Is. Validation
// errors wrap ErrInvalid and name the field in their text.
var (
	ErrNotFound = errors.New("mailbox: no such user")
	ErrExists   = errors.New("mailbox: user exists")
	ErrAuth     = errors.New("mailbox: authentication failed")
	ErrInvalid  = errors.New("mailbox: invalid")
	ErrClosed   = errors.New("mailbox: store closed")
)

// DefaultKeep is how long shadow copies are kept after the outage ends.
const DefaultKeep = 7 * 24 * time.Hour

// Config configures a Store.
type Config struct {
	// Dir holds the store (required); created if missing.
	Dir string
	// Keep is how long a message is kept after the later of its arrival
	// and the end of its domain's last outage (DefaultKeep).
	Keep time.Duration
	// Outages tells the purger about outages; nil means "never in an
	// outage" (messages live Keep after arrival).
	Outages OutageClock
	// Hash are the argon2id costs for new passwords (auth.DefaultParams);
	// tests use cheap ones.
	Hash auth.Params
}

// OutageClock reports a domain's outage state: whether one is open now,
// and when the last one ended (zero if none ever did).
type OutageClock interface {
	DomainOutage(domain string) (active bool, lastEnded time.Time)
}

// User is a mailbox user as the API shows it.
type User struct {
	Address  string    `json:"address"`
	Domain   string    `json:"domain"`
	Created  time.Time `json:"created_at"`
	Messages int       `json:"messages"`
	Bytes    int64     `json:"bytes"`
}

// PurgeStats reports one Purge pass.
type PurgeStats struct {
	Messages int
	Bytes    int64
}
