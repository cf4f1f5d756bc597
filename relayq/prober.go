package relayq

import (
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"
)

// State is a relay host's reachability as last seen.
type State string

// Relay host states.
const (
	StateUnknown State = "unknown" // not probed yet
	StateUp      State = "up"
	StateDown    State = "down"
)

// domainConf is what relayq uses of a registry domain.
type domainConf struct {
	name          string
	relayHost     string
	requireTLS    bool
	monitoring    bool
	alertEmails   []string
	retentionDays int
}

// host is one relay host: its prober, its pool, and the dispatcher of the
// queues of every domain relayed to it. Its run goroutine owns the
// dispatch state; mu guards what other goroutines read or request.
type host struct {
	q         *Queue
	addr      string
	pool      *pool
	wake      chan struct{} // cap 1: something was requested under mu
	results   chan result   // finished deliveries
	probeDone chan error    // cap 1: the probe result
	quit      chan struct{} // closed when the host is no longer used
	done      chan struct{} // closed when run returns

	mu           sync.Mutex
	state        State
	lastProbeAt  time.Time
	lastProbeErr string
	lastErr      string // last connection-level delivery error
	outage       *Outage
	domains      map[string]domainConf
	version      int
	kicks        map[string]kickKind
	probeSoon    bool
	removed      bool

	// Owned by run.
	seen      int // domains version applied
	conf      map[string]domainConf
	ds        map[string]*dstate
	order     []string
	rr        int
	active    int
	probing   bool
	nextProbe time.Time
	holdUntil time.Time
	holdFor   time.Duration
	rescanAt  time.Time
	retries   timeHeap // retry times recorded by our deliveries
	stopping  bool
}

// result reports one finished delivery to the host loop.
type result struct {
	domain    string
	delivered int       // recipients accepted
	hostDown  error     // connect failure: the host is down
	hold      error     // 421 or lost connection: pause the host
	next      time.Time // retry time of deferred recipients
	requeue   *queued   // handed back unattempted: to be tried again
}

func newHost(q *Queue, addr string, o *Outage) *host {
	h := &host{
		q:         q,
		addr:      addr,
		pool:      newPool(q, addr),
		wake:      make(chan struct{}, 1),
		results:   make(chan result, q.cfg.PoolSize),
		probeDone: make(chan error, 1),
		quit:      make(chan struct{}),
		done:      make(chan struct{}),
		state:     StateUnknown,
		outage:    o,
		domains:   make(map[string]domainConf),
		kicks:     make(map[string]kickKind),
		ds:        make(map[string]*dstate),
	}
	return h
}

func (h *host) poke() {
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// run is the host's goroutine.
func (h *host) run() {
	q := h.q
	defer q.wg.Done()
	defer close(h.done)
	h.nextProbe = time.Now()
	h.mu.Lock()
	h.stopping = h.removed
	h.mu.Unlock()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	quit, stop := h.quit, q.stopping
	for {
		h.sync()
		now := time.Now()
		var reapAt time.Time
		if h.stopping {
			if h.active == 0 && !h.probing {
				h.exit()
				return
			}
		} else {
			if !h.probing && !now.Before(h.nextProbe) {
				h.startProbe(now)
			}
			h.dispatch(now)
			h.checkAlerts()
			reapAt = h.pool.reap(now)
		}
		timer.Reset(h.nextWake(now, reapAt))
		select {
		case <-h.wake:
		case r := <-h.results:
			h.onResult(r)
		case err := <-h.probeDone:
			h.onProbe(err)
		case <-timer.C:
		case <-quit:
			quit, h.stopping = nil, true
		case <-stop:
			stop, h.stopping = nil, true
		}
	}
}

// nextWake is how long the loop may sleep.
func (h *host) nextWake(now, reapAt time.Time) time.Duration {
	next := now.Add(time.Minute)
	at := func(t time.Time) {
		if !t.IsZero() && t.Before(next) {
			next = t
		}
	}
	if h.stopping {
		return time.Minute // woken by results and probe
	}
	if !h.probing {
		at(h.nextProbe)
	}
	at(reapAt)
	if h.state == StateUp {
		if now.Before(h.holdUntil) {
			at(h.holdUntil)
		} else if h.pool.free() > 0 {
			at(h.rescanAt)
			if len(h.retries) > 0 {
				at(h.realTime(h.retries[0]))
			}
		}
	}
	if o := h.outage; o != nil && o.Alerted == nil {
		at(h.realTime(o.StartedAt.Add(h.q.cfg.AlertGrace)))
	}
	for _, ds := range h.ds {
		if ds.endAlert != nil {
			at(h.realTime(ds.endAlert.at.Add(h.q.cfg.EndAlertWait)))
		}
	}
	return max(next.Sub(now), time.Millisecond)
}

// realTime converts a time of the queue's clock (Config.Now) to wall time.
func (h *host) realTime(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return time.Now().Add(t.Sub(h.q.now()))
}

func (h *host) startProbe(now time.Time) {
	q := h.q
	if !h.pool.tryAcquire() {
		// Every slot is delivering: those deliveries tell us about the host.
		h.nextProbe = now.Add(jitter(q.cfg.ProbeInterval, 0.1))
		return
	}
	h.pool.reserveProbe()
	h.probing = true
	q.wg.Add(1)
	go func() {
		defer q.wg.Done()
		start := time.Now()
		err := q.probe(q.stopCtx, h.addr)
		h.pool.unreserveProbe()
		h.pool.release()
		q.cfg.Metrics.Probe(h.addr, err == nil, time.Since(start))
		h.probeDone <- err
	}()
}

func (h *host) onProbe(err error) {
	h.probing = false
	if h.stopping {
		return // a probe cut short by shutdown says nothing
	}
	now := h.q.now()
	h.mu.Lock()
	h.lastProbeAt = now
	prev := h.lastProbeErr
	if err != nil {
		h.lastProbeErr = err.Error()
	} else {
		h.lastProbeErr = ""
	}
	changed := err != nil && h.outage != nil && h.lastProbeErr != prev && prev != ""
	h.mu.Unlock()
	if changed {
		h.probeFailedEvents(now, err)
	}
	if err != nil {
		h.setDown(err)
		h.nextProbe = time.Now().Add(jitter(h.q.cfg.probeEvery(h.mailWaiting()), 0.1))
		return
	}
	h.setUp()
	h.nextProbe = time.Now().Add(jitter(h.q.cfg.ProbeInterval, 0.1))
}

// mailWaiting reports whether any domain of the host has queued mail.
func (h *host) mailWaiting() bool {
	for _, name := range h.order {
		if st := h.q.sp.DomainStats(name); st.Messages > st.Failed {
			return true
		}
	}
	return false
}

func (h *host) onResult(r result) {
	h.active--
	now := time.Now()
	if ds := h.ds[r.domain]; ds != nil {
		ds.active--
		if ds.endAlert != nil && r.delivered > 0 {
			ds.endAlert.redelivered++
		}
		if r.requeue != nil { // a duplicate in buf is harmless: claims and Get guard
			ds.buf = append([]queued{*r.requeue}, ds.buf...)
		}
	}
	if !r.next.IsZero() {
		h.addRetry(r.next)
	}
	if h.stopping {
		return
	}
	switch {
	case r.delivered > 0:
		h.holdFor = 0
		h.setUp()
	case r.hostDown != nil:
		h.mu.Lock()
		h.lastErr = r.hostDown.Error()
		h.mu.Unlock()
		h.setDown(r.hostDown)
		h.nextProbe = now.Add(jitter(h.q.cfg.probeEvery(true), 0.1))
	case r.hold != nil && !now.Before(h.holdUntil):
		h.holdFor = h.q.cfg.holdFor(h.holdFor)
		h.holdUntil = now.Add(h.holdFor)
		if h.holdUntil.Before(h.nextProbe) {
			h.nextProbe = h.holdUntil
		}
		h.mu.Lock()
		h.lastErr = r.hold.Error()
		h.mu.Unlock()
		h.q.log.Warn("relay host paused", zapHost(h.addr), zap.Duration("hold", h.holdFor), zapErr(r.hold))
	}
}

// setDown marks the host down and starts an outage if none is open.
func (h *host) setDown(err error) {
	q := h.q
	var o *Outage
	h.mu.Lock()
	was := h.state
	h.state = StateDown
	if h.outage == nil {
		o = &Outage{ID: q.store.newOutageID(), RelayHost: h.addr, Domains: slices.Clone(h.order), StartedAt: q.now(), Error: err.Error()}
		h.outage = o
	}
	h.mu.Unlock()
	if o != nil { // visible in Status already; now make it durable
		h.flushEndAlerts()
		rec := *o
		rec.Domains = slices.Clone(o.Domains)
		if err := q.store.addOutage(&rec); err != nil {
			q.log.Error("store outage", zapHost(h.addr), zapErr(err))
		}
		q.log.Warn("outage started", zapHost(h.addr), zap.Strings("domains", o.Domains), zapErr(err))
	}
	if was != StateDown {
		q.log.Info("relay host down", zapHost(h.addr), zap.String("was", string(was)), zapErr(err))
		h.resetScan()
		q.updateDown()
	}
}

// setUp marks the host up, ends its outage, and restarts its queues from
// the oldest message.
func (h *host) setUp() {
	q := h.q
	h.mu.Lock()
	was := h.state
	h.state = StateUp
	o := h.outage
	h.outage = nil
	h.lastErr = ""
	h.mu.Unlock()
	if o != nil {
		h.endOutage(o, "relay host reachable")
	}
	if was != StateUp {
		q.log.Info("relay host up", zapHost(h.addr), zap.String("was", string(was)))
		h.holdUntil = time.Time{}
		h.resetScan()
		q.updateDown()
	}
}

func (h *host) endOutage(o *Outage, reason string) {
	q := h.q
	now := q.now()
	o.EndedAt = now
	o.Duration = now.Sub(o.StartedAt)
	o.EndReason = reason
	if err := q.store.putOutage(o); err != nil {
		q.log.Error("store outage", zapHost(h.addr), zapErr(err))
	}
	q.log.Info("outage ended", zapHost(h.addr), zap.Duration("duration", o.Duration), zap.String("reason", reason))
	for _, name := range o.Alerted {
		ds := h.ds[name]
		if ds == nil || h.stopping {
			q.sendEndAlert(*o, name, 0)
			continue
		}
		ds.endAlert = &pendingEnd{o: *o, at: now}
	}
}

// resetScan makes every queue start again from its oldest message.
func (h *host) resetScan() {
	for _, ds := range h.ds {
		ds.cursor, ds.atEnd, ds.buf = 0, false, nil
	}
}

// checkAlerts sends the outage start alert after the grace period and the
// end alerts once the backlog has drained (or EndAlertWait has passed).
func (h *host) checkAlerts() {
	q := h.q
	now := q.now()
	h.mu.Lock()
	o := h.outage
	var start *Outage
	if o != nil && o.Alerted == nil && !now.Before(o.StartedAt.Add(q.cfg.AlertGrace)) {
		o.Alerted = []string{}
		for _, name := range h.order {
			if h.conf[name].monitoring {
				o.Alerted = append(o.Alerted, name)
			}
		}
		c := *o
		start = &c
	}
	h.mu.Unlock()
	if start != nil {
		if err := q.store.putOutage(start); err != nil {
			q.log.Error("store outage", zapHost(h.addr), zapErr(err))
		}
		for _, name := range start.Alerted {
			q.sendStartAlert(*start, name)
		}
	}
	for name, ds := range h.ds {
		e := ds.endAlert
		if e == nil {
			continue
		}
		drained := ds.atEnd && len(ds.buf) == 0 && ds.active == 0 && !ds.flush
		if drained || !now.Before(e.at.Add(q.cfg.EndAlertWait)) {
			ds.endAlert = nil
			q.sendEndAlert(e.o, name, e.redelivered)
		}
	}
}

// flushEndAlerts sends the pending end alerts now (a new outage starts).
func (h *host) flushEndAlerts() {
	for name, ds := range h.ds {
		if e := ds.endAlert; e != nil {
			ds.endAlert = nil
			h.q.sendEndAlert(e.o, name, e.redelivered)
		}
	}
}

// exit runs when the loop stops: close idle connections; if the host is
// no longer used, end its outage.
func (h *host) exit() {
	h.pool.closeIdle()
	h.mu.Lock()
	removed := h.removed && h.q.stopCtx.Err() == nil
	o := h.outage
	if removed {
		h.outage = nil
	}
	h.mu.Unlock()
	if removed {
		h.flushEndAlerts()
		if o != nil {
			h.ds = nil
			h.endOutage(o, "relay host no longer used")
		}
	}
}

// status returns the host's state for Status.
func (h *host) status() (State, time.Time, string, *Outage) {
	h.mu.Lock()
	defer h.mu.Unlock()
	errText := h.lastProbeErr
	if errText == "" && h.lastErr != "" {
		errText = h.lastErr
	}
	var o *Outage
	if h.outage != nil {
		c := *h.outage
		c.Domains = slices.Clone(c.Domains)
		o = &c
	}
	return h.state, h.lastProbeAt, errText, o
}

// probeFailedEvents records that the probe error of a down host changed.
func (h *host) probeFailedEvents(now time.Time, err error) {
	evs := make([]Event, 0, len(h.order))
	for _, name := range h.order {
		evs = append(evs, Event{Time: now, Kind: EventProbeFailed, Domain: name, RelayHost: h.addr, Detail: err.Error()})
	}
	if err := h.q.store.addEvents(evs); err != nil {
		h.q.log.Error("store events", zapHost(h.addr), zapErr(err))
	}
}
