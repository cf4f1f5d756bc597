package relayq

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"
)

// pool holds the connections to one relay host. At most size connections
// exist at any time, probes included: every user first takes a slot
// (tryAcquire), and a new connection is dialled only when no idle one is
// left, so open ≤ slots taken ≤ size.
type pool struct {
	q       *Queue
	addr    string // relay host, "host:port"
	tlsName string // host part, for certificate verification
	size    int
	sem     chan struct{}

	mu         sync.Mutex
	idle       []*pconn // most recently used last
	open       int      // idle + in use + being dialled
	noTLSUntil time.Time
}

func newPool(q *Queue, addr string) *pool {
	name, _, err := net.SplitHostPort(addr)
	if err != nil {
		name = addr
	}
	return &pool{q: q, addr: addr, tlsName: name, size: q.cfg.PoolSize, sem: make(chan struct{}, q.cfg.PoolSize)}
}

// tryAcquire takes a slot without waiting.
func (p *pool) tryAcquire() bool {
	select {
	case p.sem <- struct{}{}:
		return true
	default:
		return false
	}
}

func (p *pool) release() { <-p.sem }

// free is the number of slots not taken.
func (p *pool) free() int { return p.size - len(p.sem) }

// get returns a connection for one message, reused if possible; the
// caller holds a slot. Connections idle for IdleTimeout are dropped, and
// so is a plain-text fallback connection when the domain requires TLS and
// the host offers it.
func (p *pool) get(ctx context.Context, requireTLS bool) (*pconn, bool, error) {
	now := time.Now()
	var stale []*pconn
	p.mu.Lock()
	for len(p.idle) > 0 {
		pc := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		if now.Sub(pc.idleSince) >= p.q.cfg.IdleTimeout || (requireTLS && pc.offered && !pc.tls) {
			stale = append(stale, pc)
			p.open--
			continue
		}
		p.mu.Unlock()
		p.q.quitLater(stale)
		return pc, true, nil
	}
	p.open++
	useTLS := requireTLS || now.After(p.noTLSUntil)
	p.mu.Unlock()
	p.q.quitLater(stale)

	pc, err := p.connect(ctx, useTLS)
	if errors.Is(err, errTLSHandshake) && !requireTLS {
		// Opportunistic TLS failed: remember, and use plain text for a while.
		p.q.log.Warn("STARTTLS failed, delivering without TLS for an hour", zapHost(p.addr), zapErr(err))
		p.mu.Lock()
		p.noTLSUntil = time.Now().Add(time.Hour)
		p.mu.Unlock()
		pc, err = p.connect(ctx, false)
	}
	if err != nil {
		p.mu.Lock()
		p.open--
		p.mu.Unlock()
		return nil, false, err
	}
	return pc, false, nil
}

// put returns a healthy connection after a completed transaction.
func (p *pool) put(pc *pconn) {
	if pc.msgs >= p.q.cfg.MaxMessagesPerConn {
		p.retire(pc)
		return
	}
	pc.idleSince = time.Now()
	p.mu.Lock()
	p.idle = append(p.idle, pc)
	p.mu.Unlock()
}

// retire says QUIT on a healthy connection and forgets it.
func (p *pool) retire(pc *pconn) {
	p.mu.Lock()
	p.open--
	p.mu.Unlock()
	p.q.quitLater([]*pconn{pc})
}

// discard closes a broken connection.
func (p *pool) discard(pc *pconn) {
	_ = pc.raw.Close()
	p.mu.Lock()
	p.open--
	p.mu.Unlock()
}

// reserveProbe accounts for a probe connection; the caller holds a slot.
// If the pool is full of idle connections, the oldest is closed to make
// room.
func (p *pool) reserveProbe() {
	var stale []*pconn
	p.mu.Lock()
	if p.open >= p.size && len(p.idle) > 0 {
		stale = append(stale, p.idle[0])
		p.idle = p.idle[1:]
		p.open--
	}
	p.open++
	p.mu.Unlock()
	p.q.quitLater(stale)
}

func (p *pool) unreserveProbe() {
	p.mu.Lock()
	p.open--
	p.mu.Unlock()
}

// reap closes connections idle for IdleTimeout and returns when the next
// one will be (zero if none is idle).
func (p *pool) reap(now time.Time) time.Time {
	var stale []*pconn
	var next time.Time
	p.mu.Lock()
	keep := p.idle[:0]
	for _, pc := range p.idle {
		exp := pc.idleSince.Add(p.q.cfg.IdleTimeout)
		if !now.Before(exp) {
			stale = append(stale, pc)
			p.open--
			continue
		}
		keep = append(keep, pc)
		if next.IsZero() || exp.Before(next) {
			next = exp
		}
	}
	clear(p.idle[len(keep):])
	p.idle = keep
	p.mu.Unlock()
	p.q.quitLater(stale)
	return next
}

// closeIdle says QUIT on every idle connection.
func (p *pool) closeIdle() {
	p.mu.Lock()
	stale := p.idle
	p.idle = nil
	p.open -= len(stale)
	p.mu.Unlock()
	p.q.quitLater(stale)
}

// quitLater closes connections gracefully in the background.
func (q *Queue) quitLater(pcs []*pconn) {
	if len(pcs) == 0 {
		return
	}
	q.wg.Add(1)
	go func() {
		defer q.wg.Done()
		stop := context.AfterFunc(q.abortCtx, func() {
			for _, pc := range pcs {
				_ = pc.raw.Close()
			}
		})
		defer stop()
		for _, pc := range pcs {
			pc.quit(min(q.cfg.ProbeTimeout, 5*time.Second))
		}
	}()
}
