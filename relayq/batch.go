package relayq

import (
	"context"
	"errors"
	"time"

	"github.com/mxcont/mxcont/spool"
)

// maxBatch bounds the messages one delivery goroutine takes at a time.
const maxBatch = 16

// maxStaleRetries bounds how often a run takes a fresh connection after
// a stale one (the server closed it without a reply to MAIL).
const maxStaleRetries = 3

// run delivers a batch of claimed messages of one domain, in order, over
// one connection of the host's pool at a time. With PIPELINING the next
// message's MAIL, RCPT and DATA follow the previous message's final dot
// in the same write, so a message costs one round trip and one write.
// Each outcome is recorded in its own goroutine, so that the connection
// does not wait for the spool's group commit; a message stays claimed
// until its outcome is recorded. Every message of the batch ends with
// exactly one result to the host loop: recorded, skipped (no longer due,
// or abandoned at shutdown), or handed back unattempted (requeue).
type run struct {
	h     *host
	ctx   context.Context
	d     domainConf
	buf   []byte
	batch []queued
	next  int     // index in batch of the next message to take
	again *queued // taken again before batch[next]: retry on a fresh connection

	pc     *pconn
	stop   func() bool // stops the shutdown hook that closes pc
	reused bool        // pc came idle from the pool
	txs    int         // transactions started on pc in this run
	stale  int         // fresh connections taken after stale ones
	halt   bool        // the host is down or paused: hand the rest back
}

// deliverBatch runs a batch in its own goroutine; the caller has claimed
// the messages and taken a pool slot, both released here.
func (h *host) deliverBatch(ctx context.Context, batch []queued, d domainConf) {
	bp := bufPool.Get().(*[]byte)
	r := &run{h: h, ctx: ctx, d: d, buf: *bp, batch: batch}
	defer func() {
		r.end()
		bufPool.Put(bp)
		h.q.wg.Done()
	}()
	r.loop()
}

func (r *run) loop() {
	q := r.h.q
	var ahead *tx // the next transaction, its envelope sent behind the last body
	for {
		t := ahead
		ahead = nil
		if t == nil {
			if t = r.start(); t == nil {
				return
			}
		}
		if !q.readEnvelope(r.pc, t, t.werr) {
			if t.o.staleConn && t.onUsed && r.stale < maxStaleRetries {
				// A pooled connection the server has closed meanwhile:
				// try again on a fresh one without counting an attempt.
				// When the first idle connection taken is stale (the
				// primary restarted), the others are too: drop them all,
				// or each would cost a message a failed attempt and a
				// retry delay.
				r.stale++
				t.close()
				closeIdle := r.reused && r.txs == 1
				r.release(false)
				if closeIdle {
					r.h.pool.closeIdle()
				}
				it := t.it
				r.again = &it
				continue
			}
			r.finish(t)
			continue
		}
		if !q.writeBody(r.pc, t, r.buf) {
			r.finish(t)
			continue
		}
		if r.pc.c.pipelining && r.pc.msgs < q.cfg.MaxMessagesPerConn {
			if ahead = r.take(); ahead != nil {
				ahead.onUsed = true
				r.txs++
				ahead.sendEnvelope(r.pc.c)
			}
		}
		if err := r.pc.c.bw.Flush(); err != nil {
			q.bodyFailed(t, nil, err)
			r.finish(t)
			if ahead != nil { // its envelope may not have left: not an attempt
				r.requeue(ahead)
				ahead = nil
			}
			continue
		}
		q.readEnd(r.pc, t)
		r.finish(t)
		if ahead != nil && r.pc == nil {
			// The connection broke at the end of the last message: the
			// server did not answer the next envelope. Not an attempt.
			r.requeue(ahead)
			ahead = nil
		}
	}
}

// take returns the next message of the batch that needs a transaction,
// prepared for the current connection, or nil. Messages no longer due
// are skipped; those whose outcome is known without sending are recorded.
func (r *run) take() *tx {
	q := r.h.q
	// Stop starting messages when the queue stops; those in flight finish.
	for !r.halt && r.ctx.Err() == nil && q.stopCtx.Err() == nil {
		var it queued
		switch {
		case r.again != nil:
			it, r.again = *r.again, nil
		case r.next < len(r.batch):
			it = r.batch[r.next]
			r.next++
		default:
			return nil
		}
		m, err := q.sp.Get(it.id)
		if err != nil || m.State != spool.StateQueued || m.NextAttempt.After(it.until) {
			r.skip(it) // delivered, expired or rescheduled since it was listed
			continue
		}
		if r.pc == nil && !r.connect(it, &m) {
			continue
		}
		t, o := q.prepare(r.pc.c, &m)
		if t == nil {
			r.record(it, &m, o)
			continue
		}
		t.it = it
		return t
	}
	return nil
}

// start takes the next message, on a connection with room for it, and
// sends its envelope.
func (r *run) start() *tx {
	if r.pc != nil && r.pc.msgs >= r.h.q.cfg.MaxMessagesPerConn {
		r.release(true) // the pool retires it
	}
	t := r.take()
	if t == nil {
		return nil
	}
	t.onUsed = r.reused || r.txs > 0
	r.txs++
	t.sendEnvelope(r.pc.c)
	t.werr = r.pc.c.bw.Flush()
	return t
}

// connect gets a connection from the pool for message it. When there is
// none, it reports the host down (the message was not attempted) or
// records a failed attempt, and returns false.
func (r *run) connect(it queued, m *spool.Message) bool {
	h := r.h
	pc, reused, err := h.pool.get(r.ctx, r.d.requireTLS)
	if err != nil {
		if r.ctx.Err() != nil {
			r.skip(it) // stopping: abandoned, retried after restart
			return false
		}
		var ce *connectError
		if errors.As(err, &ce) {
			r.halt = true // not an attempt of this message: the host is down
			r.result(it, result{domain: r.d.name, hostDown: err})
			return false
		}
		o := &outcome{deferred: pendingIdx(m)}
		o.note("connect: %v", err)
		r.record(it, m, o)
		return false
	}
	if err := pc.tlsProblem(r.d.requireTLS); err != nil {
		h.pool.put(pc)
		o := &outcome{deferred: pendingIdx(m)}
		o.note("%v", err)
		r.record(it, m, o)
		return false
	}
	r.pc, r.reused, r.txs = pc, reused, 0
	r.stop = context.AfterFunc(r.ctx, func() { _ = pc.raw.Close() })
	return true
}

// release gives the connection back to the pool, or closes it.
func (r *run) release(healthy bool) {
	if r.pc == nil {
		return
	}
	if !r.stop() { // shutdown closed it
		healthy = false
	}
	if healthy {
		r.h.pool.put(r.pc)
	} else {
		r.h.pool.discard(r.pc)
	}
	r.pc, r.stop = nil, nil
}

// finish settles a transaction: drops a broken connection and records
// the outcome, or abandons it if shutdown broke it.
func (r *run) finish(t *tx) {
	t.close()
	if t.o.brokenTx {
		r.release(false)
		if r.ctx.Err() != nil {
			r.skip(t.it) // abandoned: retried later (at-least-once)
			return
		}
	}
	r.record(t.it, &t.m, t.o)
}

// record stores an attempt and reports it to the host loop, in the
// background. An attempt that pauses the host is recorded at once and
// ends the run: the rest of the batch is handed back.
func (r *run) record(it queued, m *spool.Message, o *outcome) {
	q, h := r.h.q, r.h
	res := result{domain: r.d.name, delivered: len(o.delivered), hold: o.hold}
	if o.hold != nil {
		r.halt = true
		q.record(h.addr, m, o, &res)
		r.result(it, res)
		return
	}
	q.recordLater(recJob{r: r, it: it, m: *m, o: o, res: res})
}

// recJob is an outcome to record in the background.
type recJob struct {
	r   *run
	it  queued
	m   spool.Message
	o   *outcome
	res result
}

// recorderIdle is how long an idle recorder goroutine waits for work.
const recorderIdle = time.Second

// recordLater hands j to an idle recorder goroutine, or starts one: as
// many record at once as outcomes arrive, so that the spool's group
// commit takes them together, and a goroutine (its stack grown by the
// logger) serves many outcomes.
func (q *Queue) recordLater(j recJob) {
	select {
	case q.recq <- j:
	default:
		q.wg.Add(1)
		go q.recorder(j)
	}
}

func (q *Queue) recorder(j recJob) {
	defer q.wg.Done()
	idle := time.NewTimer(recorderIdle)
	defer idle.Stop()
	for {
		q.record(j.r.h.addr, &j.m, j.o, &j.res)
		j.r.result(j.it, j.res)
		idle.Reset(recorderIdle)
		select {
		case j = <-q.recq:
		case <-idle.C:
			return
		case <-q.stopping:
			return
		}
	}
}

// skip reports a message that was not attempted and needs nothing.
func (r *run) skip(it queued) { r.result(it, result{domain: r.d.name}) }

// requeue hands a prepared but unattempted message back to the host loop.
func (r *run) requeue(t *tx) {
	t.close()
	it := t.it
	r.result(it, result{domain: r.d.name, requeue: &it})
}

// result releases the message's claim and reports it to the host loop.
func (r *run) result(it queued, res result) {
	r.h.q.releaseMsg(it.id)
	r.h.results <- res
}

// end returns the connection, hands back the messages not taken (or
// abandons them at shutdown) and frees the slot.
func (r *run) end() {
	r.release(true)
	rest := r.batch[r.next:]
	if r.again != nil {
		rest = append([]queued{*r.again}, rest...)
	}
	for _, it := range rest {
		if r.ctx.Err() != nil {
			r.skip(it)
		} else {
			r.result(it, result{domain: r.d.name, requeue: &it})
		}
	}
	r.h.pool.release()
	r.h.poke()
}
