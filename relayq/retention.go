package relayq

import (
	"fmt"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/mxcont/mxcont/spool"
)

// sweep expires mail past its domain's retention and sends queue-age
// alerts. It runs every SweepInterval in the queue's loop.
func (q *Queue) sweep() {
	now := q.now()
	q.mu.RLock()
	doms := make(map[string]domainConf, len(q.doms))
	for k, v := range q.doms {
		doms[k] = v
	}
	q.mu.RUnlock()
	names := make(map[string]bool, len(doms))
	for n := range doms {
		names[n] = true
	}
	for _, st := range q.sp.Domains() {
		names[st.Domain] = true // mail of domains no longer registered too
	}
	for name := range names {
		if q.stopCtx.Err() != nil {
			return
		}
		conf, known := doms[name]
		days := conf.retentionDays
		if days <= 0 {
			days = q.cfg.DefaultRetentionDays
		}
		q.expire(name, now.Add(-time.Duration(days)*24*time.Hour))
		if known && conf.monitoring {
			q.checkAge(name, now)
		}
	}
	for name := range q.ageLevel {
		if !names[name] {
			delete(q.ageLevel, name)
		}
	}
}

// expire removes the messages of domain received before cutoff, oldest
// first, with an event each and one alert.
func (q *Queue) expire(domain string, cutoff time.Time) {
	var evs []Event
	var ids []string
	undelivered := 0
	var cursor spool.ID
scan:
	for {
		msgs, next := q.sp.List(domain, cursor, 256)
		for _, m := range msgs {
			if !m.ReceivedAt.Before(cutoff) {
				break scan
			}
			if !q.claimMsg(m.ID) {
				continue // being delivered: next sweep
			}
			err := q.sp.Expire(m.ID)
			q.releaseMsg(m.ID)
			if err != nil {
				q.log.Error("expire", zapMsg(m.ID), zap.String("domain", domain), zapErr(err))
				continue
			}
			n := 0
			for _, s := range m.Status {
				if s != spool.Delivered {
					n++
				}
			}
			undelivered += n
			q.log.Warn("expired", zapMsg(m.ID), zap.String("domain", domain),
				zap.Time("received-at", m.ReceivedAt), zap.Int("rcpts", n), zap.String("last-error", m.LastError))
			evs = append(evs, Event{Time: q.now(), Kind: EventExpired, Domain: domain, MsgID: m.ID.String(),
				Detail: fmt.Sprintf("received %s, %d recipients undelivered; last error: %s",
					m.ReceivedAt.UTC().Format(time.RFC3339), n, m.LastError)})
			ids = append(ids, m.ID.String())
		}
		if next == 0 {
			break
		}
		cursor = next
	}
	if len(evs) == 0 {
		return
	}
	if err := q.store.addEvents(evs); err != nil {
		q.log.Error("store events", zap.String("domain", domain), zapErr(err))
	}
	q.cfg.Metrics.Recipients(domain, "expired", undelivered)
	shown := ids
	if len(shown) > 20 {
		shown = append(shown[:20:20], "...")
	}
	q.alert(Alert{
		Kind: AlertExpired, Domain: domain, Expired: len(evs),
		Subject: fmt.Sprintf("[mxcont] %s: %d messages expired undelivered", domain, len(evs)),
		Text: fmt.Sprintf("%d messages for %s were received before %s, past the domain's retention, "+
			"and could not be delivered to its primary server. They have been removed from the queue.\n\n"+
			"Message IDs: %s\n", len(evs), domain, cutoff.UTC().Format(time.RFC3339), strings.Join(shown, ", ")),
	})
}

// oldestQueued returns the oldest message of domain with a pending
// recipient (examining a bounded number of messages).
func (q *Queue) oldestQueued(domain string) (spool.Message, bool) {
	var cursor spool.ID
	for range 64 {
		msgs, next := q.sp.Due(domain, farFuture, cursor, 1)
		if len(msgs) > 0 {
			return msgs[0], true
		}
		if next == 0 {
			break
		}
		cursor = next
	}
	return spool.Message{}, false
}

// checkAge alerts once per threshold while a domain's backlog ages; the
// level resets when the oldest queued message is younger than the first
// threshold (the backlog drained).
func (q *Queue) checkAge(domain string, now time.Time) {
	m, ok := q.oldestQueued(domain)
	level := 0
	var age time.Duration
	if ok {
		age = now.Sub(m.ReceivedAt)
		for i, a := range q.cfg.AlertAges {
			if age >= a {
				level = i + 1
			}
		}
	}
	prev := q.ageLevel[domain]
	q.ageLevel[domain] = level
	if level <= prev {
		return
	}
	st := q.sp.DomainStats(domain)
	status := q.Status(domain)
	state := string(status.RelayState)
	if status.LastProbeError != "" {
		state += " (" + status.LastProbeError + ")"
	}
	q.alert(Alert{
		Kind: AlertQueueAge, Domain: domain, RelayHost: status.RelayHost,
		Queued: st.Messages - st.Failed, OldestQueuedAt: m.ReceivedAt, Error: status.LastProbeError,
		Subject: fmt.Sprintf("[mxcont] %s: mail queued for over %s", domain, q.cfg.AlertAges[level-1]),
		Text: fmt.Sprintf("The oldest message queued for %s has waited %s (received %s).\n"+
			"%d messages are queued. Primary server %s is %s.\n",
			domain, age.Round(time.Minute), m.ReceivedAt.UTC().Format(time.RFC3339),
			st.Messages-st.Failed, status.RelayHost, state),
	})
}
