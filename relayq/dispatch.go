package relayq

import (
	"container/heap"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/mxcont/mxcont/spool"
)

// dstate is the dispatch state of one domain's queue, owned by its host's
// run goroutine. A pass walks the queue oldest first with spool.Due; new
// mail continues the pass from the cursor, a rescan (retry time reached,
// every ProbeInterval, host back up) starts again from the oldest.
type dstate struct {
	cursor   spool.ID
	atEnd    bool
	flush    bool // this pass ignores retry times (FlushDomain)
	buf      []queued
	active   int
	endAlert *pendingEnd
}

type queued struct {
	id    spool.ID
	until time.Time // due if NextAttempt is not later (far future when flushing)
}

// pendingEnd is an outage end alert waiting for the backlog to drain.
type pendingEnd struct {
	o           Outage
	at          time.Time
	redelivered int
}

type kickKind uint8

const (
	kickNew    kickKind = iota + 1 // new mail: continue the pass
	kickRescan                     // a message became due: start from the oldest
	kickFlush                      // retry everything now
)

// dueBatch is how many messages one spool.Due call returns.
const dueBatch = 64

// farFuture makes spool.Due return every message with a pending recipient.
var farFuture = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)

// kick records a request for domain and wakes the host loop.
func (h *host) kick(domain string, k kickKind) {
	h.mu.Lock()
	if h.kicks[domain] < k {
		h.kicks[domain] = k
	}
	if h.state != StateUp || k == kickFlush {
		h.probeSoon = true
	}
	h.mu.Unlock()
	h.poke()
}

// sync applies domain changes and kicks made by other goroutines.
func (h *host) sync() {
	now := time.Now()
	var ended []pendingEnd
	var endedNames []string
	var changed *Outage
	h.mu.Lock()
	kicks := h.kicks
	if len(kicks) > 0 {
		h.kicks = make(map[string]kickKind)
	} else {
		kicks = nil // never iterate the live map outside h.mu
	}
	probeSoon := h.probeSoon
	h.probeSoon = false
	if h.version != h.seen {
		h.seen = h.version
		h.conf = maps.Clone(h.domains)
		h.order = slices.Sorted(maps.Keys(h.conf))
		var added []string
		for _, name := range h.order {
			if h.ds[name] == nil {
				h.ds[name] = &dstate{}
				added = append(added, name)
			}
		}
		for name, ds := range h.ds {
			if _, ok := h.conf[name]; !ok {
				delete(h.ds, name)
				if ds.endAlert != nil {
					ended = append(ended, *ds.endAlert)
					endedNames = append(endedNames, name)
				}
			}
		}
		if o := h.outage; o != nil {
			n := len(o.Domains)
			for _, name := range added {
				if !slices.Contains(o.Domains, name) {
					o.Domains = append(o.Domains, name)
				}
			}
			if len(o.Domains) != n && o.ID != 0 {
				c := *o
				c.Domains = slices.Clone(o.Domains)
				changed = &c
			}
		}
	}
	h.mu.Unlock()
	for i, e := range ended {
		h.q.sendEndAlert(e.o, endedNames[i], e.redelivered)
	}
	if changed != nil {
		if err := h.q.store.putOutage(changed); err != nil {
			h.q.log.Error("store outage", zapHost(h.addr), zapErr(err))
		}
	}
	flush := false
	for name, k := range kicks {
		ds := h.ds[name]
		if ds == nil {
			continue
		}
		switch k {
		case kickNew:
			ds.atEnd = false
		case kickRescan:
			ds.cursor, ds.atEnd = 0, false
		case kickFlush:
			ds.cursor, ds.atEnd, ds.buf, ds.flush = 0, false, nil, true
			h.holdUntil = time.Time{}
			flush = true
		}
	}
	if probeSoon && !h.probing && h.state != StateUp {
		soon := now.Add(jitter(h.q.cfg.probeEvery(true), 0.1))
		if flush {
			soon = now
		}
		if soon.Before(h.nextProbe) {
			h.nextProbe = soon
		}
	}
}

// dispatch starts deliveries while the host is up and slots are free.
func (h *host) dispatch(now time.Time) {
	q := h.q
	if h.state != StateUp || now.Before(h.holdUntil) {
		return
	}
	qnow := q.now()
	rescan := !now.Before(h.rescanAt)
	for len(h.retries) > 0 && !qnow.Before(h.retries[0]) {
		heap.Pop(&h.retries)
		rescan = true
	}
	if rescan {
		for _, ds := range h.ds {
			if ds.atEnd {
				ds.cursor, ds.atEnd = 0, false
			}
		}
		h.rescanAt = now.Add(jitter(q.cfg.ProbeInterval, 0.1))
	}
	if len(h.order) == 0 {
		return
	}
	for h.pool.tryAcquire() {
		batch, name := h.nextBatch(qnow)
		if len(batch) == 0 {
			h.pool.release()
			return
		}
		ds := h.ds[name]
		ds.active += len(batch)
		h.active += len(batch)
		q.wg.Add(1)
		go h.deliverBatch(q.abortCtx, batch, h.conf[name])
	}
}

// nextBatch claims the next messages to try, of one domain: one if they
// are few, so that the free slots share them; up to maxBatch from a long
// queue, so that they follow each other on one connection.
func (h *host) nextBatch(qnow time.Time) ([]queued, string) {
	var it queued
	var name string
	for {
		var ok bool
		if it, name, ok = h.next(qnow); !ok {
			return nil, ""
		}
		if h.q.claimMsg(it.id) {
			break
		}
		// in flight already (e.g. before a relay host change)
	}
	batch := []queued{it}
	ds := h.ds[name]
	want := min(maxBatch, 1+len(ds.buf)/(h.pool.free()+1))
	for len(batch) < want && len(ds.buf) > 0 {
		it := ds.buf[0]
		ds.buf = ds.buf[1:]
		if h.q.claimMsg(it.id) {
			batch = append(batch, it)
		}
	}
	return batch, name
}

// next returns the next message to try, taking the domains in turn.
func (h *host) next(qnow time.Time) (queued, string, bool) {
	for range h.order {
		name := h.order[h.rr%len(h.order)]
		h.rr++
		ds := h.ds[name]
		if len(ds.buf) == 0 && !ds.atEnd {
			h.fill(name, ds, qnow)
		}
		if len(ds.buf) > 0 {
			it := ds.buf[0]
			ds.buf = ds.buf[1:]
			return it, name, true
		}
	}
	return queued{}, "", false
}

// fill reads the next due messages of a domain from the spool.
func (h *host) fill(name string, ds *dstate, qnow time.Time) {
	until := qnow
	if ds.flush {
		until = farFuture
	}
	for len(ds.buf) == 0 && !ds.atEnd {
		msgs, cur := h.q.sp.Due(name, until, ds.cursor, dueBatch)
		for _, m := range msgs {
			ds.buf = append(ds.buf, queued{id: m.ID, until: until})
		}
		if cur != 0 {
			ds.cursor = cur
			continue
		}
		// End of the queue. New mail continues from here; it gets IDs
		// above every message present now, except one whose body was
		// still arriving: go back a little, and the periodic rescan
		// finds anything older.
		ds.atEnd, ds.flush = true, false
		tail := spool.ID(uint64(time.Now().Add(-5*time.Minute).UnixMilli()) << 20)
		if n := len(msgs); n > 0 && msgs[n-1].ID > tail {
			tail = msgs[n-1].ID
		}
		ds.cursor = max(ds.cursor, tail)
	}
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// claimMsg marks a message in flight; false if it already is.
func (q *Queue) claimMsg(id spool.ID) bool {
	q.inflightMu.Lock()
	defer q.inflightMu.Unlock()
	if _, ok := q.inflight[id]; ok {
		return false
	}
	q.inflight[id] = struct{}{}
	return true
}

func (q *Queue) releaseMsg(id spool.ID) {
	q.inflightMu.Lock()
	delete(q.inflight, id)
	q.inflightMu.Unlock()
}

// timeHeap is a min-heap of retry times recorded by the host's deliveries,
// so that the queue wakes when a deferred message becomes due. It is
// bounded: beyond maxRetryTimes the periodic rescan finds the rest.
type timeHeap []time.Time

const maxRetryTimes = 4096

func (t timeHeap) Len() int           { return len(t) }
func (t timeHeap) Less(i, j int) bool { return t[i].Before(t[j]) }
func (t timeHeap) Swap(i, j int)      { t[i], t[j] = t[j], t[i] }
func (t *timeHeap) Push(x any)        { *t = append(*t, x.(time.Time)) }
func (t *timeHeap) Pop() any {
	old := *t
	x := old[len(old)-1]
	*t = old[:len(old)-1]
	return x
}

func (h *host) addRetry(at time.Time) {
	if len(h.retries) < maxRetryTimes {
		heap.Push(&h.retries, at)
	}
}
