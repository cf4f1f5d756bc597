package smtpd

import (
	"maps"
	"sync"
	"sync/atomic"
)

// Reasons passed to Metrics.Rejected. They are stable label values.
const (
	ReasonRelayDenied   = "relay-denied"   // RCPT for a domain not in the registry
	ReasonSourceDenied  = "source-denied"  // client outside the domain's allowed sources
	ReasonRouting       = "routing"        // source route, '%', '!', '@' in a quoted local part, address literal
	ReasonAddress       = "address"        // malformed or overlong address
	ReasonSequence      = "sequence"       // nested MAIL
	ReasonTooManyRcpts  = "too-many-rcpts" // MaxDomains (go-smtp refuses MaxRecipients itself)
	ReasonTooLarge      = "too-large"      // message over MaxMessageBytes
	ReasonLoop          = "loop"           // too many Received: fields
	ReasonBareNewline   = "bare-newline"   // bare CR or LF in reject mode
	ReasonBadHeader     = "bad-header"     // NUL in the header section
	ReasonLongLine      = "long-line"      // body line over MaxDataLineLength
	ReasonSpool         = "spool-error"    // the spool failed: 451
	ReasonNoSpace       = "no-space"       // below MinFreeBytes: 452
	ReasonShadow        = "shadow-error"   // filing the shadow mailbox copy failed: 451
	ReasonTimeout       = "timeout"        // DataTimeout or IdleTimeout during DATA
	ReasonAborted       = "aborted"        // the client went away during DATA
	ReasonShutdown      = "shutdown"       // MAIL refused while shutting down
	ReasonConnLimit     = "conn-limit"     // over MaxConnections
	ReasonConnPerIP     = "conn-per-ip"    // over MaxConnectionsPerIP
	ReasonProxyRefused  = "proxy-refused"  // PROXY header from an untrusted address
	ReasonProxyBad      = "proxy-bad"      // malformed PROXY header from a trusted address
	ReasonHeloTooLong   = "helo-too-long"  // HELO/EHLO argument over 255 bytes
	ReasonInternalError = "internal-error" // a recovered panic
)

// Metrics receives the acceptor's counters. Implementations must be safe
// for concurrent use and must not block.
type Metrics interface {
	// Accepted is called once per transaction whose message was stored,
	// with the size of the body as received (before the Received: field).
	Accepted(bytes int)
	// Rejected is called once per refused command, message or connection
	// with one of the Reason* constants.
	Rejected(reason string)
}

// NopMetrics discards all counts.
type NopMetrics struct{}

// Accepted implements Metrics.
func (NopMetrics) Accepted(int) {}

// Rejected implements Metrics.
func (NopMetrics) Rejected(string) {}

// Stats is a Metrics that keeps totals in memory, for tests and for an
// exporter that reads them with Snapshot.
type Stats struct {
	accepted atomic.Uint64
	bytes    atomic.Uint64
	mu       sync.Mutex
	rejected map[string]uint64
}

// StatsSnapshot is a copy of the counters of a Stats.
type StatsSnapshot struct {
	Accepted uint64            // messages stored
	Bytes    uint64            // their total size
	Rejected map[string]uint64 // refusals by reason
}

// Accepted implements Metrics.
func (s *Stats) Accepted(bytes int) {
	s.accepted.Add(1)
	s.bytes.Add(uint64(bytes))
}

// Rejected implements Metrics.
func (s *Stats) Rejected(reason string) {
	s.mu.Lock()
	if s.rejected == nil {
		s.rejected = make(map[string]uint64)
	}
	s.rejected[reason]++
	s.mu.Unlock()
}

// Snapshot returns the current counters.
func (s *Stats) Snapshot() StatsSnapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := maps.Clone(s.rejected)
	if r == nil {
		r = map[string]uint64{}
	}
	return StatsSnapshot{Accepted: s.accepted.Load(), Bytes: s.bytes.Load(), Rejected: r}
}
