package admin

import (
	"context"
	"time"

	"github.com/mxcont/mxcont/admin/events"
	"github.com/mxcont/mxcont/mailbox"
	"github.com/mxcont/mxcont/spool"
)

// Spool is the part of *spool.Spool the admin server uses.
type Spool interface {
	// Get returns a snapshot of one live message or spool.ErrNotFound.
	Get(id spool.ID) (spool.Message, error)
	// List pages through a domain's queue, oldest first, after a cursor.
	List(domain string, after spool.ID, limit int) ([]spool.Message, spool.ID)
	// DomainStats summarises one domain's queue.
	DomainStats(domain string) spool.DomainStats
	// Domains summarises every domain with live mail.
	Domains() []spool.DomainStats
	// Stats returns per-shard figures.
	Stats() []spool.ShardStats
	// Delete removes a message; actor is recorded with it.
	Delete(id spool.ID, actor string) error
	// Retry makes failed recipients pending again and the message due now.
	Retry(id spool.ID, actor string) error
	// OpenBody streams a message body; the caller closes it.
	OpenBody(id spool.ID) (*spool.BodyReader, error)
}

var _ Spool = (*spool.Spool)(nil)

// Relay states reported in DomainStatus.State.
const (
	RelayUp      = "up"
	RelayDown    = "down"
	RelayUnknown = "unknown"
)

// DomainStatus is the relay engine's view of one domain.
type DomainStatus struct {
	// State is RelayUp, RelayDown or RelayUnknown ("" is read as unknown).
	State string
	// LastProbeAt is when the domain's relay host was last probed (zero:
	// never).
	LastProbeAt time.Time
	// LastProbeError is the last probe's error ("" when it succeeded).
	LastProbeError string
	// Outage is the current outage, nil when there is none.
	Outage *Outage
}

// Outage is one period during which a domain's relay host was down.
type Outage struct {
	StartedAt time.Time
	// EndedAt is zero while the outage lasts.
	EndedAt time.Time
	// Error is the probe error that started it.
	Error string
}

// Relay is the part of the relay engine the admin server uses. Its methods
// must not block for long: they are called from HTTP handlers.
type Relay interface {
	// Status returns the relay state of a domain (normalized name).
	Status(domain string) DomainStatus
	// FlushDomain asks for an immediate delivery attempt of the domain's
	// queue (after a probe, if the relay host is down).
	FlushDomain(domain string)
	// FlushMessage asks for an immediate delivery attempt of one message.
	FlushMessage(id spool.ID)
}

// OutageHistory may be implemented by a Relay to list a domain's past
// outages, newest first; GET /api/v1/domains/{domain} then includes them.
type OutageHistory interface {
	Outages(domain string, limit int) []Outage
}

// EventSink receives events from the other components (the relay engine's
// outages and probe failures). *Server implements it.
type EventSink interface {
	Record(e events.Event)
}

// Mailboxes is the part of the shadow mailbox store (*mailbox.Store) the
// admin server uses for the mailbox users of domains in mode "both".
// Addresses are normalized by the store (lower case, IDN domain in
// punycode); a User's Domain is the normalized domain. Errors wrap the
// mailbox package's sentinels: mailbox.ErrInvalid (text naming the field,
// "address" or "password"), mailbox.ErrExists, mailbox.ErrNotFound.
type Mailboxes interface {
	// AddUser creates a mailbox user with a password.
	AddUser(ctx context.Context, address, password string) (mailbox.User, error)
	// SetPassword replaces a user's password.
	SetPassword(ctx context.Context, address, password string) error
	// DeleteUser removes a user and its mail.
	DeleteUser(address string) error
	// DeleteDomain removes every user of a domain and returns how many.
	DeleteDomain(domain string) (int, error)
	// User returns one user.
	User(address string) (mailbox.User, error)
	// Users lists a domain's users.
	Users(domain string) ([]mailbox.User, error)
}

var _ Mailboxes = (*mailbox.Store)(nil)
