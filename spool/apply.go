package spool

// Index mutations. Every function here runs with shard.mu held for writing
// (or during recovery, before the shard is shared).

func (s *shard) queue(domain string) *domainQueue {
	q := s.domains[domain]
	if q == nil {
		q = &domainQueue{name: domain}
		s.domains[domain] = q
	}
	return q
}

// addMessage indexes a MESSAGE record. A record for a known id is a copy
// made by compaction (or replayed after one): it replaces the location and
// the delivery state.
func (s *shard) addMessage(mm *msgMeta, loc, min uint64, stored int64) {
	if m := s.msgs[mm.id]; m != nil {
		s.live += stored - int64(m.stored)
		s.mutate(m, func() {
			m.loc, m.min, m.stored = loc, min, uint32(stored)
			setState(m, mm)
		})
		return
	}
	m := &msg{
		id:     mm.id,
		loc:    loc,
		min:    min,
		stored: uint32(stored),
		size:   uint32(mm.size),
		env:    packEnv(mm.from, mm.rcpts),
	}
	setState(m, mm)
	if m.pending == 0 && m.failed == 0 {
		return // nothing left to do for it
	}
	q := s.queue(mm.domain)
	m.dq = q
	q.insert(m)
	s.msgs[m.id] = m
	s.live += stored
}

func setState(m *msg, mm *msgMeta) {
	m.attempts = uint16(min(mm.attempts, 0xffff))
	m.next = mm.next
	m.ext = nil
	n := len(mm.rcpts)
	for i := 0; i < n && i < len(mm.status); i++ {
		if mm.status[i] != rcptPending {
			m.setStatus(i, mm.status[i], n)
		}
	}
	if mm.lastErr != "" {
		if m.ext == nil {
			m.ext = &msgExt{}
		}
		m.ext.lastErr = mm.lastErr
	}
	m.recount(n)
}

// mutate runs f on m and keeps the queue's counters right; a message with
// nothing pending and nothing failed is retired.
func (s *shard) mutate(m *msg, f func()) {
	q := m.dq
	was := q != nil && m.pending == 0 && m.failed > 0
	f()
	is := m.pending == 0 && m.failed > 0
	if q != nil && was != is {
		if is {
			q.failed++
		} else {
			q.failed--
		}
	}
	if m.pending == 0 && m.failed == 0 {
		s.retire(m)
	}
}

func (s *shard) retire(m *msg) {
	if m.removed || s.msgs[m.id] != m {
		return
	}
	delete(s.msgs, m.id)
	if m.dq != nil {
		m.dq.remove(m)
	}
	s.live -= int64(m.stored)
	s.retired.Add(1)
}

func (s *shard) applyUpdate(u *updMeta) {
	m := s.msgs[u.id]
	if m == nil {
		return
	}
	n := m.nrcpt()
	switch u.op {
	case opDelete, opExpire:
		s.retire(m)
	case opRetry:
		s.mutate(m, func() {
			for i := 0; i < n; i++ {
				if m.status(i) == rcptFailed {
					m.setStatus(i, rcptPending, n)
				}
			}
			m.next = 0
			m.recount(n)
		})
	case opAttempt:
		s.mutate(m, func() {
			m.attempts = uint16(min(u.attempts, 0xffff))
			m.next = u.next
			for _, r := range u.rcpts {
				if r.idx >= 0 && r.idx < n {
					m.setStatus(r.idx, r.status, n)
				}
			}
			if u.lastErr != "" || m.ext != nil {
				if m.ext == nil {
					m.ext = &msgExt{}
				}
				m.ext.lastErr = u.lastErr
			}
			m.recount(n)
		})
	}
}
