// Package relayq delivers spooled mail to each customer domain's primary
// server (its relay host) once that server is reachable again.
//
// One prober per distinct relay host (shared by every domain relayed to
// it) checks reachability: TCP connect, 220 banner, EHLO, QUIT. A host
// that turns down opens an Outage, stored in bbolt; the first success
// ends it and drains the queues of the host's domains at once, oldest
// message first, through a bounded pool of reused SMTP connections with a
// deadline on every step, body writes included. A backlog goes out in
// batches, each over one connection; when the relay host offers
// PIPELINING (RFC 2920) a message's MAIL, RCPTs and DATA leave in one
// write, behind the previous message's body, and outcomes are written to
// the spool off the connection's path. Bodies are dot-stuffed a line at a
// time, and a bare CR or LF never reaches the relay host. Per recipient,
// 2xx is delivered, 4xx retried with exponential backoff, 5xx kept as
// failed with the server's reply; nothing is dropped silently. Mail older than
// its domain's retention is expired with an event and an alert. Alerts
// (outage start after a grace period, end with the redelivered count,
// queue age thresholds, expiry) go through a smarthost and/or a webhook.
//
// Lock order: Queue.mu before host.mu. A host's dispatch state is owned
// by its run goroutine; other goroutines only post requests under
// host.mu and wake it.
package relayq

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/bbolt"
	"go.uber.org/zap"

	"github.com/mxcont/mxcont/engine/registry"
	"github.com/mxcont/mxcont/spool"
)

// ErrUnknownDomain is returned for a domain relayq does not know.
var ErrUnknownDomain = errors.New("relayq: unknown domain")

// Domains is the domain registry as relayq uses it; registry.Store
// satisfies it. If it also has a Watch() <-chan struct{} method (as
// registry.Store does), changes are picked up without calling Refresh.
type Domains interface {
	List() ([]registry.Domain, error)
}

type watcher interface {
	Watch() <-chan struct{}
}

// Queue is the relay side of mxcont. It is safe for concurrent use.
type Queue struct {
	log      *zap.Logger
	cfg      Config
	sp       *spool.Spool
	store    *store
	domains  Domains
	alerters []Alerter
	own      atomic.Pointer[ownAddrs]
	ownMu    sync.Mutex // serializes AddOwnAddr

	mu       sync.RWMutex
	hosts    map[string]*host // by relay host
	byDomain map[string]*host
	doms     map[string]domainConf
	restored map[string]*Outage // open outages found at start, by relay host
	started  bool

	downMu sync.Mutex
	downN  int

	refreshMu  sync.Mutex
	inflightMu sync.Mutex
	inflight   map[spool.ID]struct{}

	recq       chan recJob // to an idle recorder (unbuffered)
	refreshReq chan struct{}
	alertCh    chan Alert
	stopping   chan struct{}
	stopOnce   sync.Once
	stopCtx    context.Context // canceled when Stop begins: probes, sweeps
	stopNow    context.CancelFunc
	abortCtx   context.Context // canceled when Stop gives up waiting: deliveries
	abort      context.CancelFunc
	wg         sync.WaitGroup

	ageLevel map[string]int // owned by the sweep loop
}

// New returns a queue for the mail in sp. Outages and events are kept in
// db (buckets OutagesBucket and EventsBucket). Call Start to begin.
func New(log *zap.Logger, cfg Config, sp *spool.Spool, db *bbolt.DB, domains Domains) (*Queue, error) {
	if log == nil {
		log = zap.NewNop()
	}
	if sp == nil || db == nil || domains == nil {
		return nil, errors.New("relayq: spool, database and domains are required")
	}
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	own, err := newOwnAddrs(ctx, cfg.OwnAddrs)
	cancel()
	if err != nil {
		return nil, err
	}
	st, err := newStore(db, cfg.OnEvent)
	if err != nil {
		return nil, err
	}
	restored, err := st.openOutages()
	if err != nil {
		return nil, fmt.Errorf("relayq: read outages: %w", err)
	}
	q := &Queue{
		log:        log,
		cfg:        cfg,
		sp:         sp,
		store:      st,
		domains:    domains,
		alerters:   cfg.alerters(),
		hosts:      make(map[string]*host),
		byDomain:   make(map[string]*host),
		doms:       make(map[string]domainConf),
		restored:   restored,
		inflight:   make(map[spool.ID]struct{}),
		recq:       make(chan recJob),
		refreshReq: make(chan struct{}, 1),
		alertCh:    make(chan Alert, 1024),
		stopping:   make(chan struct{}),
		ageLevel:   make(map[string]int),
	}
	q.own.Store(own)
	q.stopCtx, q.stopNow = context.WithCancel(context.Background())
	q.abortCtx, q.abort = context.WithCancel(context.Background())
	if err := q.Refresh(); err != nil {
		return nil, err
	}
	return q, nil
}

func (q *Queue) now() time.Time { return q.cfg.Now() }

// Start starts probing and delivering. New mail is announced through the
// spool's notify hook.
func (q *Queue) Start() {
	q.mu.Lock()
	if q.started {
		q.mu.Unlock()
		return
	}
	q.started = true
	for _, h := range q.hosts {
		q.wg.Add(1)
		go h.run()
	}
	q.mu.Unlock()
	q.sp.SetNotify(q.Kick)
	q.wg.Add(2)
	go q.loop()
	go q.alertLoop()
}

// Stop stops probing and dispatching and waits for deliveries in flight.
// When ctx ends first, they are abandoned (their connections closed, no
// attempt recorded): the messages are simply retried later, so a message
// may be delivered twice but never lost. Open outages stay open and are
// resumed by the next Queue. Stop returns ctx.Err() if it had to abandon.
func (q *Queue) Stop(ctx context.Context) error {
	var err error
	q.stopOnce.Do(func() {
		q.sp.SetNotify(func(string) {})
		close(q.stopping)
		q.stopNow()
		done := make(chan struct{})
		go func() {
			q.wg.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-ctx.Done():
			err = ctx.Err()
			q.abort()
			<-done
		}
		q.abort()
	})
	return err
}

// loop refreshes domains on request and runs the retention sweep.
func (q *Queue) loop() {
	defer q.wg.Done()
	var watch <-chan struct{}
	w, _ := q.domains.(watcher)
	if w != nil {
		watch = w.Watch()
		if err := q.Refresh(); err != nil {
			q.log.Error("refresh domains", zapErr(err))
		}
	}
	tick := time.NewTicker(q.cfg.SweepInterval)
	defer tick.Stop()
	for {
		select {
		case <-q.stopping:
			return
		case <-watch:
			watch = w.Watch()
			if err := q.Refresh(); err != nil {
				q.log.Error("refresh domains", zapErr(err))
			}
		case <-q.refreshReq:
			if err := q.Refresh(); err != nil {
				q.log.Error("refresh domains", zapErr(err))
			}
		case <-tick.C:
			q.sweep()
		}
	}
}

// Refresh re-reads the domains and applies changes at once: a domain
// whose relay host changed is probed and delivered through the new host
// immediately. The engine calls it after changing the registry.
func (q *Queue) Refresh() error {
	q.refreshMu.Lock()
	defer q.refreshMu.Unlock()
	list, err := q.domains.List()
	if err != nil {
		return fmt.Errorf("relayq: list domains: %w", err)
	}
	doms := make(map[string]domainConf, len(list))
	byHost := make(map[string]map[string]domainConf)
	for _, d := range list {
		if d.RelayHost == "" {
			continue
		}
		c := domainConf{
			name: d.Name, relayHost: d.RelayHost, requireTLS: d.RequireTLS, monitoring: d.Monitoring,
			alertEmails: append([]string(nil), d.AlertEmails...), retentionDays: d.RetentionDays,
		}
		doms[d.Name] = c
		if byHost[d.RelayHost] == nil {
			byHost[d.RelayHost] = make(map[string]domainConf)
		}
		byHost[d.RelayHost][d.Name] = c
	}

	q.mu.Lock()
	defer q.mu.Unlock()
	select {
	case <-q.stopping:
		return nil
	default:
	}
	for addr, h := range q.hosts {
		if _, ok := byHost[addr]; !ok {
			h.mu.Lock()
			h.removed = true
			h.mu.Unlock()
			close(h.quit)
			delete(q.hosts, addr)
			q.log.Info("relay host no longer used", zapHost(addr))
			if !q.started {
				q.wg.Add(1)
				go h.run() // to close its outage
			}
		}
	}
	byDomain := make(map[string]*host, len(doms))
	for addr, ds := range byHost {
		h := q.hosts[addr]
		if h == nil {
			h = newHost(q, addr, q.restored[addr])
			delete(q.restored, addr)
			q.hosts[addr] = h
			if q.started {
				q.wg.Add(1)
				go h.run()
			}
		}
		h.mu.Lock()
		if !sameDomains(h.domains, ds) {
			h.domains = ds
			h.version++
		}
		h.mu.Unlock()
		h.poke()
		for name := range ds {
			byDomain[name] = h
		}
	}
	// Outages of relay hosts no domain uses any more end now.
	for addr, o := range q.restored {
		h := newHost(q, addr, o)
		h.removed = true
		close(h.quit)
		q.wg.Add(1)
		go h.run()
		delete(q.restored, addr)
	}
	q.doms, q.byDomain = doms, byDomain
	return nil
}

func sameDomains(a, b map[string]domainConf) bool {
	if len(a) != len(b) {
		return false
	}
	for k, x := range a {
		y, ok := b[k]
		if !ok || x.requireTLS != y.requireTLS || x.monitoring != y.monitoring ||
			x.retentionDays != y.retentionDays || fmt.Sprint(x.alertEmails) != fmt.Sprint(y.alertEmails) {
			return false
		}
	}
	return true
}

// DomainsChanged is Refresh for callers that cannot act on its error
// (it is logged).
func (q *Queue) DomainsChanged() {
	if err := q.Refresh(); err != nil {
		q.log.Error("refresh domains", zapErr(err))
	}
}

func (q *Queue) domainConf(name string) (domainConf, bool) {
	q.mu.RLock()
	defer q.mu.RUnlock()
	c, ok := q.doms[name]
	return c, ok
}

func (q *Queue) hostOf(domain string) *host {
	q.mu.RLock()
	defer q.mu.RUnlock()
	return q.byDomain[domain]
}

// Kick tells the queue that new mail for domain is in the spool. It never
// blocks; the spool's notify hook calls it.
func (q *Queue) Kick(domain string) {
	if h := q.hostOf(domain); h != nil {
		h.kick(domain, kickNew)
		return
	}
	select { // perhaps a domain added since the last refresh
	case q.refreshReq <- struct{}{}:
	default:
	}
}

// FlushDomain retries every queued message of domain now, ignoring retry
// times, and probes its relay host at once if it is not up. It writes
// nothing to the spool.
func (q *Queue) FlushDomain(domain string) error {
	h := q.hostOf(domain)
	if h == nil {
		return fmt.Errorf("%w: %s", ErrUnknownDomain, domain)
	}
	h.kick(domain, kickFlush)
	return nil
}

// FlushMessage makes one message due now, its failed recipients pending
// again (spool.Retry, recorded with actor), and wakes its domain's queue.
func (q *Queue) FlushMessage(id spool.ID, actor string) error {
	if err := q.sp.Retry(id, actor); err != nil {
		return err
	}
	m, err := q.sp.Get(id)
	if err != nil {
		return err
	}
	if h := q.hostOf(m.Domain); h != nil {
		h.kick(m.Domain, kickRescan)
	}
	return nil
}

// DomainStatus is the relay state of one domain, as shown by the admin API.
type DomainStatus struct {
	Domain         string
	RelayHost      string
	RelayState     State
	LastProbeAt    time.Time // zero: never probed
	LastProbeError string    // or the last connection-level delivery error
	Outage         *Outage   // the ongoing outage, nil if none
}

// Status returns the relay state of a domain (StateUnknown if relayq does
// not know it).
func (q *Queue) Status(domain string) DomainStatus {
	st := DomainStatus{Domain: domain, RelayState: StateUnknown}
	h := q.hostOf(domain)
	if h == nil {
		return st
	}
	st.RelayHost = h.addr
	st.RelayState, st.LastProbeAt, st.LastProbeError, st.Outage = h.status()
	return st
}

// Outages returns up to limit outages affecting domain ("" for all),
// newest first.
func (q *Queue) Outages(domain string, limit int) ([]Outage, error) {
	if limit <= 0 {
		limit = 100
	}
	return q.store.list(domain, limit)
}

// Events returns up to limit relay events of domain ("" for all), newest
// first: outages started and ended, messages expired.
func (q *Queue) Events(domain string, limit int) ([]Event, error) {
	if limit <= 0 {
		limit = 100
	}
	return q.store.events(domain, limit)
}

// updateDown reports the number of domains whose relay host is down.
func (q *Queue) updateDown() {
	n := 0
	q.mu.RLock()
	for _, h := range q.hosts {
		h.mu.Lock()
		if h.state == StateDown {
			n += len(h.domains)
		}
		h.mu.Unlock()
	}
	q.mu.RUnlock()
	q.downMu.Lock()
	defer q.downMu.Unlock()
	if n != q.downN {
		q.downN = n
		q.cfg.Metrics.DomainsDown(n)
	}
}

func zapHost(addr string) zap.Field { return zap.String("relay-host", addr) }
func zapMsg(id spool.ID) zap.Field  { return zap.String("msg-id", id.String()) }
func zapErr(err error) zap.Field    { return zap.Error(err) }
