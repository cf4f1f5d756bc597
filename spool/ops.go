package spool

import (
	"fmt"
	"time"
)

// Get returns a snapshot of one live message.
func (s *Spool) Get(id ID) (Message, error) {
	sh, err := s.shardFor(id)
	if err != nil {
		return Message{}, err
	}
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	m := sh.msgs[id]
	if m == nil {
		return Message{}, ErrNotFound
	}
	return m.snapshot(), nil
}

// List returns up to limit live messages of domain with an ID greater than
// after, oldest first, and the cursor for the next page (0 at the end).
// It costs O(log n + limit) whatever the queue's length.
func (s *Spool) List(domain string, after ID, limit int) ([]Message, ID) {
	return s.scan(domain, after, limit, nil)
}

// Due returns up to limit messages of domain, oldest first, after the
// cursor, that still have a pending recipient and whose next attempt is not
// later than now; and the cursor to continue from (0 at the end). It may
// return fewer than limit before the end: it examines at most 64×limit
// messages per call, so a queue that is all backing off costs bounded time.
func (s *Spool) Due(domain string, now time.Time, after ID, limit int) ([]Message, ID) {
	ms := now.UnixMilli()
	budget := 64 * limit
	return s.scan(domain, after, limit, func(m *msg) (bool, bool) {
		budget--
		return m.pending > 0 && m.next <= ms, budget > 0
	})
}

// scan walks domain's queue from the cursor; keep says whether to include
// a message and whether to go on.
func (s *Spool) scan(domain string, after ID, limit int, keep func(*msg) (bool, bool)) ([]Message, ID) {
	if limit <= 0 {
		limit = 100
	}
	sh := s.shards[s.ShardOf(domain)]
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	q := sh.domains[domain]
	if q == nil {
		return nil, 0
	}
	var out []Message
	last := after
	for i := q.search(after); i < len(q.msgs); i++ {
		m := q.msgs[i]
		if m.removed {
			continue
		}
		if len(out) == limit {
			return out, last // at least one more live message
		}
		last = m.id
		include, more := true, true
		if keep != nil {
			include, more = keep(m)
		}
		if include {
			out = append(out, m.snapshot())
		}
		if !more {
			return out, last
		}
	}
	return out, 0
}

// DomainStats returns the queue summary of one domain.
func (s *Spool) DomainStats(domain string) DomainStats {
	sh := s.shards[s.ShardOf(domain)]
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	if q := sh.domains[domain]; q != nil {
		return q.stats()
	}
	return DomainStats{Domain: domain}
}

// Domains returns the summary of every domain with live mail.
func (s *Spool) Domains() []DomainStats {
	var out []DomainStats
	for _, sh := range s.shards {
		sh.mu.RLock()
		for _, q := range sh.domains {
			if q.live > 0 {
				out = append(out, q.stats())
			}
		}
		sh.mu.RUnlock()
	}
	return out
}

// ShardStats describes one shard.
type ShardStats struct {
	Shard      int
	Messages   int
	LiveBytes  int64 // bytes on disk that belong to live messages
	DiskBytes  int64 // bytes in the shard's segments
	Segments   int
	FirstIndex uint64
	LastIndex  uint64
	Err        string // sticky write error, if any
}

// Stats returns per-shard figures.
func (s *Spool) Stats() []ShardStats {
	out := make([]ShardStats, len(s.shards))
	for i, sh := range s.shards {
		st := ShardStats{Shard: i}
		sh.logMu.Lock()
		for _, g := range sh.segs {
			st.DiskBytes += g.bytes
		}
		st.Segments = len(sh.segs)
		if len(sh.segs) > 0 {
			st.FirstIndex = sh.segs[0].start
		}
		st.LastIndex = sh.lastIdx
		if sh.werr != nil {
			st.Err = sh.werr.Error()
		}
		sh.logMu.Unlock()
		sh.mu.RLock()
		st.Messages = len(sh.msgs)
		st.LiveBytes = sh.live
		sh.mu.RUnlock()
		out[i] = st
	}
	return out
}

// Attempt is the outcome of one delivery attempt of a message.
type Attempt struct {
	Delivered []int     // recipient indexes accepted (2xx)
	Failed    []int     // recipient indexes refused permanently (5xx)
	Error     string    // the last error or reply text, kept for the admin
	Next      time.Time // when to try the still-pending recipients again
}

// RecordAttempt stores the outcome of a delivery attempt. The record is
// written at once but fsync'd with the next group commit or within
// MaintainInterval: losing it in a crash means a duplicate delivery, never
// a lost message (at-least-once). The index is updated before it returns.
func (s *Spool) RecordAttempt(id ID, a Attempt) error {
	sh, err := s.shardFor(id)
	if err != nil {
		return err
	}
	sh.mu.RLock()
	m := sh.msgs[id]
	var attempts int
	if m != nil {
		attempts = int(m.attempts) + 1
	}
	sh.mu.RUnlock()
	if m == nil {
		return ErrNotFound
	}
	u := updMeta{id: id, op: opAttempt, attempts: attempts, lastErr: a.Error}
	if !a.Next.IsZero() {
		u.next = a.Next.UnixMilli()
	}
	for _, i := range a.Delivered {
		u.rcpts = append(u.rcpts, rcptUpdate{idx: i, status: rcptDelivered})
	}
	for _, i := range a.Failed {
		u.rcpts = append(u.rcpts, rcptUpdate{idx: i, status: rcptFailed})
	}
	return sh.update(&u, false)
}

// Delete removes a message on an admin's request; actor is recorded.
func (s *Spool) Delete(id ID, actor string) error {
	return s.simpleUpdate(id, opDelete, actor)
}

// Expire removes a message whose retention has passed.
func (s *Spool) Expire(id ID) error { return s.simpleUpdate(id, opExpire, "system: retention") }

// Retry makes failed recipients pending again and the message due now.
func (s *Spool) Retry(id ID, actor string) error { return s.simpleUpdate(id, opRetry, actor) }

func (s *Spool) simpleUpdate(id ID, op uint8, actor string) error {
	sh, err := s.shardFor(id)
	if err != nil {
		return err
	}
	sh.mu.RLock()
	ok := sh.msgs[id] != nil
	sh.mu.RUnlock()
	if !ok {
		return ErrNotFound
	}
	return sh.update(&updMeta{id: id, op: op, actor: actor}, true)
}

func (sh *shard) update(u *updMeta, durable bool) error {
	meta := u.encode(make(enc, 0, 48+len(u.lastErr)+len(u.actor)+3*len(u.rcpts)))
	rec := appendRecord(make([]byte, 0, headerLen+len(meta)), typeUpdate, CodecRaw, meta, nil)
	r := &request{recs: [][]byte{rec}, sync: durable, apply: func(uint64) { sh.applyUpdate(u) }}
	if err := sh.do(r); err != nil {
		return fmt.Errorf("spool: update %s: %w", u.id, err)
	}
	return nil
}
