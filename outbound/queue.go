package outbound

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/mxcont/mxcont/engine/registry"
	"github.com/mxcont/mxcont/spool"
)

// store is the part of *spool.Spool the queue uses (a seam for fault
// injection in tests).
type store interface {
	Create(env spool.Envelope) (*spool.Writer, error)
	Domains() []spool.DomainStats
	Due(domain string, now time.Time, after spool.ID, limit int) ([]spool.Message, spool.ID)
	List(domain string, after spool.ID, limit int) ([]spool.Message, spool.ID)
	Get(id spool.ID) (spool.Message, error)
	OpenBody(id spool.ID) (*spool.BodyReader, error)
	RecordAttempt(id spool.ID, a spool.Attempt) error
	Delete(id spool.ID, actor string) error
	Close() error
}

// Queue is the outbound queue: a spool of its own and the workers that
// deliver from it. It is safe for concurrent use.
type Queue struct {
	log   *zap.Logger
	cfg   Config
	local Local
	sp    store

	kick   chan struct{}
	stopc  chan struct{}
	ctx    context.Context // cancelled when Stop gives up waiting
	cancel context.CancelFunc

	mu      sync.Mutex
	busy    map[string]bool        // recipient domains being delivered
	held    map[spool.ID]time.Time // outcome not recorded: not before then
	running int                    // delivery jobs in flight
	started bool
	stopped bool

	loopDone chan struct{}
	jobs     sync.WaitGroup
}

// Open opens (creating if needed) the outbound spool in cfg.Dir. Nothing
// is delivered until Start; Submit works at once. local may be nil only
// when no recipient domain is ever local (tests).
func Open(log *zap.Logger, cfg Config, local Local) (*Queue, error) {
	if log == nil {
		log = zap.NewNop()
	}
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	sp, err := spool.Open(log, spool.Config{Dir: cfg.Dir, Shards: cfg.Shards, MaxMessageBytes: cfg.MaxMessageBytes})
	if err != nil {
		return nil, fmt.Errorf("outbound: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	q := &Queue{
		log: log, cfg: cfg, local: local, sp: sp,
		kick:  make(chan struct{}, 1),
		stopc: make(chan struct{}),
		ctx:   ctx, cancel: cancel,
		busy:     make(map[string]bool),
		held:     make(map[spool.ID]time.Time),
		loopDone: make(chan struct{}),
	}
	return q, nil
}

// Submit queues a message: one spool record per recipient domain, all of
// them durable (fsync'd) before it returns their IDs. from is the reverse
// path ("" for a DSN); rcpts are grouped by their domain, normalized
// (lower case, punycode), exact duplicates dropped. The caller has
// checked that from may send (package submit does). An error leaves
// nothing queued: body errors are returned wrapped, a body over
// MaxMessageBytes wraps ErrTooLarge, a bad envelope ErrInvalid, spool
// failures the spool's error (spool.ErrWriteFailed, spool.ErrClosed).
func (q *Queue) Submit(from string, rcpts []string, body io.Reader) ([]spool.ID, error) {
	groups, err := groupRcpts(rcpts)
	if err != nil {
		return nil, err
	}
	return q.enqueue(from, groups, body, "submitted")
}

// group is the recipients of one domain, in submission order.
type group struct {
	domain string
	rcpts  []string
}

// groupRcpts splits recipients by domain (normalized: lower case,
// punycode) and drops exact duplicates.
func groupRcpts(rcpts []string) ([]group, error) {
	if len(rcpts) == 0 {
		return nil, fmt.Errorf("%w: no recipients", ErrInvalid)
	}
	var gs []group
	idx := map[string]int{}
	seen := map[string]bool{}
	for _, r := range rcpts {
		at := strings.LastIndexByte(r, '@')
		if at <= 0 || at == len(r)-1 {
			return nil, fmt.Errorf("%w: recipient %q has no domain", ErrInvalid, r)
		}
		d, err := registry.NormalizeName(r[at+1:])
		if err != nil {
			return nil, fmt.Errorf("%w: recipient %q: %v", ErrInvalid, r, err)
		}
		addr := r[:at+1] + d
		if seen[addr] {
			continue
		}
		seen[addr] = true
		i, ok := idx[d]
		if !ok {
			i = len(gs)
			idx[d] = i
			gs = append(gs, group{domain: d})
		}
		gs[i].rcpts = append(gs[i].rcpts, addr)
	}
	return gs, nil
}

// enqueue streams body into one writer per group and commits them all.
func (q *Queue) enqueue(from string, groups []group, body io.Reader, event string) ([]spool.ID, error) {
	ws := make([]*spool.Writer, 0, len(groups))
	committed := false
	defer func() {
		if !committed {
			for _, w := range ws {
				w.Abort()
			}
		}
	}()
	for _, g := range groups {
		w, err := q.sp.Create(spool.Envelope{Domain: g.domain, From: from, Rcpts: g.rcpts})
		if err != nil {
			return nil, fmt.Errorf("outbound: %w", err)
		}
		ws = append(ws, w)
	}
	buf := make([]byte, 32<<10)
	for {
		n, rerr := body.Read(buf)
		if n > 0 {
			for _, w := range ws {
				if _, err := w.Write(buf[:n]); err != nil {
					return nil, fmt.Errorf("outbound: %w", err)
				}
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return nil, fmt.Errorf("outbound: read body: %w", rerr)
		}
	}
	committed = true
	ids, err := spool.CommitAll(ws)
	if err != nil {
		return nil, fmt.Errorf("outbound: %w", err)
	}
	for i, id := range ids {
		q.log.Info("queued", zap.String("msg-id", id.String()), zap.String("event", event),
			zap.String("domain", groups[i].domain), zap.String("from", from),
			zap.Int("rcpts", len(groups[i].rcpts)), zap.Int64("size", ws[i].Size()))
	}
	q.wake()
	return ids, nil
}

// wake makes the scheduler look for due mail now.
func (q *Queue) wake() {
	select {
	case q.kick <- struct{}{}:
	default:
	}
}

// Start starts delivering. A second call does nothing; a call after
// Stop fails with ErrStopped.
func (q *Queue) Start() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.stopped {
		return ErrStopped
	}
	if q.started {
		return nil
	}
	q.started = true
	q.sweep()
	go q.loop()
	return nil
}

// sweep deletes records left with no pending recipient (a crash between
// recording failures and deleting the record); their DSN was queued first.
func (q *Queue) sweep() {
	for _, d := range q.sp.Domains() {
		if d.Failed == 0 {
			continue
		}
		var after spool.ID
		for {
			ms, next := q.sp.List(d.Domain, after, 500)
			for _, m := range ms {
				if m.State != spool.StateFailed {
					continue
				}
				if err := q.sp.Delete(m.ID, "system: failed, swept at start"); err != nil {
					q.log.Error("sweep failed message", zap.String("msg-id", m.ID.String()), zap.Error(err))
					continue
				}
				q.log.Info("deleted", zap.String("msg-id", m.ID.String()), zap.String("domain", m.Domain),
					zap.String("actor", "system: failed, swept at start"))
			}
			if next == 0 {
				break
			}
			after = next
		}
	}
}

// Stop stops delivering: no new attempt starts, attempts in flight may
// finish until ctx is done, then they are cut off (their messages stay
// queued). The spool is closed last; Submit fails afterwards.
func (q *Queue) Stop(ctx context.Context) error {
	q.mu.Lock()
	if q.stopped {
		q.mu.Unlock()
		return nil
	}
	q.stopped = true
	started := q.started
	q.mu.Unlock()
	close(q.stopc)
	var err error
	if started {
		<-q.loopDone
		done := make(chan struct{})
		go func() { q.jobs.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			err = ctx.Err()
			q.cancel()
			<-done
		}
	}
	q.cancel()
	return errors.Join(err, q.sp.Close())
}

// loop dispatches due mail whenever it is woken up or ScanInterval passes.
func (q *Queue) loop() {
	defer close(q.loopDone)
	t := time.NewTicker(q.cfg.ScanInterval)
	defer t.Stop()
	for {
		q.dispatch()
		select {
		case <-q.stopc:
			return
		case <-q.kick:
		case <-t.C:
		}
	}
}

// dispatch starts a delivery job for each domain with due mail that is not
// already being delivered, as long as workers are free.
func (q *Queue) dispatch() {
	now := time.Now()
	for _, d := range q.sp.Domains() {
		q.mu.Lock()
		full := q.running >= q.cfg.Workers
		busy := q.busy[d.Domain]
		q.mu.Unlock()
		if full {
			return
		}
		if busy {
			continue
		}
		ms, _ := q.sp.Due(d.Domain, now, 0, q.cfg.Batch)
		ms = q.notHeld(ms, now)
		if len(ms) == 0 {
			continue
		}
		q.mu.Lock()
		q.busy[d.Domain] = true
		q.running++
		q.mu.Unlock()
		q.jobs.Add(1)
		go func() {
			defer q.jobs.Done()
			q.deliverDomain(q.ctx, d.Domain, ms)
			q.mu.Lock()
			delete(q.busy, d.Domain)
			q.running--
			q.mu.Unlock()
			q.wake()
		}()
	}
}

// hold keeps a message from being tried again before until. It is used
// when the spool failed to record an attempt's outcome: without it the
// message would look due at once and, having been delivered, be delivered
// again at every scan.
func (q *Queue) hold(id spool.ID, until time.Time) {
	q.mu.Lock()
	q.held[id] = until
	q.mu.Unlock()
}

// notHeld drops held messages from ms and forgets expired holds.
func (q *Queue) notHeld(ms []spool.Message, now time.Time) []spool.Message {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.held) == 0 {
		return ms
	}
	out := ms[:0]
	for _, m := range ms {
		if until, ok := q.held[m.ID]; ok {
			if now.Before(until) {
				continue
			}
			delete(q.held, m.ID)
		}
		out = append(out, m)
	}
	for id, until := range q.held {
		if !now.Before(until) {
			delete(q.held, id)
		}
	}
	return out
}

// Stats summarises the queue.
type Stats struct {
	Messages int       // queued records (one per message and recipient domain)
	Bytes    int64     // their body sizes
	Oldest   time.Time // when the oldest was queued (zero: empty)
	Domains  int       // recipient domains with queued mail
}

// Stats returns the queue's current figures.
func (q *Queue) Stats() Stats {
	var st Stats
	for _, d := range q.sp.Domains() {
		st.Domains++
		st.Messages += d.Messages
		st.Bytes += d.Bytes
		if !d.Oldest.IsZero() && (st.Oldest.IsZero() || d.Oldest.Before(st.Oldest)) {
			st.Oldest = d.Oldest
		}
	}
	return st
}

// Domains returns the queue summary of each recipient domain with mail.
func (q *Queue) Domains() []spool.DomainStats { return q.sp.Domains() }

// List returns up to limit queued messages for a recipient domain after
// the cursor, oldest first, and the next cursor (0 at the end).
func (q *Queue) List(domain string, after spool.ID, limit int) ([]spool.Message, spool.ID) {
	return q.sp.List(domain, after, limit)
}

// Get returns one queued message.
func (q *Queue) Get(id spool.ID) (spool.Message, error) { return q.sp.Get(id) }

// Delete removes a queued message without delivering it or bouncing it;
// actor is recorded.
func (q *Queue) Delete(id spool.ID, actor string) error {
	m, err := q.sp.Get(id)
	if err != nil {
		return err
	}
	if err := q.sp.Delete(id, actor); err != nil {
		return err
	}
	q.log.Info("deleted", zap.String("msg-id", id.String()), zap.String("domain", m.Domain), zap.String("actor", actor))
	return nil
}

// Body returns a reader for a queued message's body (headers included);
// close it.
func (q *Queue) Body(id spool.ID) (io.ReadCloser, error) { return q.sp.OpenBody(id) }
