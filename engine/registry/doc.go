// Package registry is the domain registry: the set of customer domains this
// node accepts mail for, with each domain's relay host and policy.
//
// Domains live behind the Store interface so that a shared control-plane
// store can replace the embedded one for fleets (DESIGN.md section 6).
// BoltStore keeps them in the "domains" bucket of a bbolt database owned by
// the caller; MemStore keeps them in memory (tests, ephemeral nodes).
//
// The SMTP hot path never takes a lock: Store.Lookup reads an immutable
// snapshot map published through an atomic.Pointer. Every successful Put,
// Create or Delete publishes a new snapshot after the change is durable, so
// the change applies to every SMTP transaction that checks a recipient
// afterwards, and closes the channel handed out by Store.Watch.
//
// Every domain written through a Store is first validated and normalized by
// Normalize: names are lower-cased ASCII (IDNs converted to punycode with the
// IDNA Lookup profile) without a trailing dot, relay hosts carry an explicit
// port, source CIDRs are masked. Validation failures are *ValidationError
// values naming the offending field.
package registry
