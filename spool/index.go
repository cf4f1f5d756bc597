package spool

import (
	"sort"
	"strings"
	"time"
)

// msg is the in-memory index entry of one live message. It is kept small:
// a spool holds up to millions of them (see BenchmarkIndexMemory).
// All fields are guarded by the owning shard's mu.
type msg struct {
	id       ID
	dq       *domainQueue
	loc      uint64 // WAL index of the MESSAGE record
	min      uint64 // lowest WAL index of the message's records
	stored   uint32 // bytes on disk (MESSAGE + CHUNK entries)
	size     uint32 // body size, uncompressed
	next     int64  // next attempt, Unix ms (0 = now)
	attempts uint16
	pending  uint16 // recipients not yet delivered or failed
	failed   uint16
	removed  bool
	env      string  // from, then each recipient, separated by NUL
	ext      *msgExt // nil while every recipient is pending and no error
}

type msgExt struct {
	status  []uint8
	lastErr string
}

func packEnv(from string, rcpts []string) string {
	var b strings.Builder
	n := len(from)
	for _, r := range rcpts {
		n += 1 + len(r)
	}
	b.Grow(n)
	b.WriteString(from)
	for _, r := range rcpts {
		b.WriteByte(0)
		b.WriteString(r)
	}
	return b.String()
}

func (m *msg) from() string {
	if i := strings.IndexByte(m.env, 0); i >= 0 {
		return m.env[:i]
	}
	return m.env
}

func (m *msg) rcpts() []string {
	parts := strings.Split(m.env, "\x00")
	return parts[1:]
}

func (m *msg) status(i int) uint8 {
	if m.ext == nil || i >= len(m.ext.status) {
		return rcptPending
	}
	return m.ext.status[i]
}

func (m *msg) setStatus(i int, st uint8, n int) {
	if m.ext == nil {
		m.ext = &msgExt{}
	}
	if len(m.ext.status) < n {
		s := make([]uint8, n)
		copy(s, m.ext.status)
		m.ext.status = s
	}
	m.ext.status[i] = st
}

func (m *msg) lastErr() string {
	if m.ext == nil {
		return ""
	}
	return m.ext.lastErr
}

func (m *msg) statuses(n int) []uint8 {
	s := make([]uint8, n)
	if m.ext != nil {
		copy(s, m.ext.status)
	}
	return s
}

// recount recomputes pending and failed from the recipient statuses.
func (m *msg) recount(n int) {
	var p, f uint16
	for i := 0; i < n; i++ {
		switch m.status(i) {
		case rcptPending:
			p++
		case rcptFailed:
			f++
		}
	}
	m.pending, m.failed = p, f
}

// domainQueue is one domain's live messages in ID order (oldest first).
// Removed messages stay in the slice, flagged, until they outnumber the
// live ones; that keeps removal O(log n) and listing cursor-stable.
type domainQueue struct {
	name   string
	msgs   []*msg
	head   int // msgs[:head] are all removed
	live   int
	failed int
	bytes  int64 // sum of body sizes
}

func (q *domainQueue) insert(m *msg) {
	if q.head == len(q.msgs) { // everything removed: start over
		q.msgs, q.head = q.msgs[:0], 0
	}
	n := len(q.msgs)
	if n == 0 || q.msgs[n-1].id < m.id {
		q.msgs = append(q.msgs, m)
	} else {
		i := q.head + sort.Search(n-q.head, func(i int) bool { return q.msgs[q.head+i].id >= m.id })
		if i == q.head && q.head > 0 {
			q.head--
			q.msgs[q.head] = m
		} else {
			q.msgs = append(q.msgs, nil)
			copy(q.msgs[i+1:], q.msgs[i:])
			q.msgs[i] = m
		}
	}
	q.live++
	q.bytes += int64(m.size)
	if m.pending == 0 && m.failed > 0 {
		q.failed++
	}
}

// remove flags m as removed and compacts the slice when it is mostly dead.
func (q *domainQueue) remove(m *msg) {
	m.removed = true
	q.live--
	q.bytes -= int64(m.size)
	if m.pending == 0 && m.failed > 0 {
		q.failed--
	}
	for q.head < len(q.msgs) && q.msgs[q.head].removed {
		q.msgs[q.head] = nil
		q.head++
	}
	dead := len(q.msgs) - q.live
	if dead > 64 && dead > q.live {
		live := make([]*msg, 0, q.live+q.live/4)
		for _, x := range q.msgs[q.head:] {
			if !x.removed {
				live = append(live, x)
			}
		}
		q.msgs, q.head = live, 0
	}
}

// search returns the position of the first message with id > after.
func (q *domainQueue) search(after ID) int {
	i := sort.Search(len(q.msgs)-q.head, func(i int) bool { return q.msgs[q.head+i].id > after })
	return q.head + i
}

func (q *domainQueue) oldest() *msg {
	for _, m := range q.msgs[q.head:] {
		if !m.removed {
			return m
		}
	}
	return nil
}

// RcptStatus is the delivery state of one recipient.
type RcptStatus uint8

// Recipient states.
const (
	Pending   RcptStatus = RcptStatus(rcptPending)
	Delivered RcptStatus = RcptStatus(rcptDelivered)
	Failed    RcptStatus = RcptStatus(rcptFailed)
)

func (s RcptStatus) String() string {
	switch s {
	case Pending:
		return "pending"
	case Delivered:
		return "delivered"
	case Failed:
		return "failed"
	}
	return "unknown"
}

// Message state names as shown to admins.
const (
	StateQueued = "queued" // at least one recipient pending
	StateFailed = "failed" // none pending, at least one refused permanently
)

// Message is a snapshot of one spooled message's envelope and state.
type Message struct {
	ID          ID
	Domain      string
	From        string
	Rcpts       []string
	Status      []RcptStatus // parallel to Rcpts
	Size        int64
	ReceivedAt  time.Time
	Attempts    int
	NextAttempt time.Time // zero: due now
	LastError   string
	State       string
}

// ASCIIEnvelope reports whether the sender and every recipient are ASCII;
// a message whose envelope is not needs SMTPUTF8 (RFC 6531) on the way out.
func (m *Message) ASCIIEnvelope() bool {
	if !isASCII(m.From) {
		return false
	}
	for _, r := range m.Rcpts {
		if !isASCII(r) {
			return false
		}
	}
	return true
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func (m *msg) snapshot() Message {
	rc := m.rcpts()
	st := make([]RcptStatus, len(rc))
	for i := range rc {
		st[i] = RcptStatus(m.status(i))
	}
	out := Message{
		ID:         m.id,
		Domain:     m.dq.name,
		From:       m.from(),
		Rcpts:      rc,
		Status:     st,
		Size:       int64(m.size),
		ReceivedAt: m.id.Time(),
		Attempts:   int(m.attempts),
		LastError:  m.lastErr(),
		State:      StateQueued,
	}
	if m.next != 0 {
		out.NextAttempt = time.UnixMilli(m.next)
	}
	if m.pending == 0 {
		out.State = StateFailed
	}
	return out
}

// DomainStats summarises one domain's queue.
type DomainStats struct {
	Domain   string
	Messages int   // live messages (queued or failed)
	Failed   int   // messages with no pending recipient left
	Bytes    int64 // sum of message sizes
	Oldest   time.Time
}

func (q *domainQueue) stats() DomainStats {
	st := DomainStats{Domain: q.name, Messages: q.live, Failed: q.failed, Bytes: q.bytes}
	if m := q.oldest(); m != nil {
		st.Oldest = m.id.Time()
	}
	return st
}

func (m *msg) nrcpt() int { return strings.Count(m.env, "\x00") }
