package relayq

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"go.etcd.io/bbolt"
)

// Bucket names in the injected bbolt database.
const (
	// OutagesBucket holds one JSON Outage per key (uint64 ID, big endian).
	OutagesBucket = "outages"
	// EventsBucket holds one JSON Event per key (uint64 sequence, big endian).
	EventsBucket = "relay-events"
)

// maxEvents bounds EventsBucket; the oldest events are pruned beyond it.
const maxEvents = 100_000

// Outage is a period during which a relay host could not be reached. It
// starts when a probe or a delivery fails to connect and ends at the first
// success. Outages are stored durably and survive restarts.
type Outage struct {
	ID        uint64        `json:"id"`
	RelayHost string        `json:"relay_host"`
	Domains   []string      `json:"domains"` // affected domains
	StartedAt time.Time     `json:"started_at"`
	EndedAt   time.Time     `json:"ended_at"` // zero while ongoing
	Duration  time.Duration `json:"duration"` // set when it ends
	Error     string        `json:"error"`    // what started it
	EndReason string        `json:"end_reason,omitempty"`
	// Alerted lists the domains sent a start alert (nil: not yet).
	Alerted []string `json:"alerted"`
	// Redelivered counts messages delivered after the end, as reported in
	// end alerts.
	Redelivered int `json:"redelivered"`
}

// Ongoing reports whether the outage has not ended.
func (o *Outage) Ongoing() bool { return o.EndedAt.IsZero() }

// Event kinds.
const (
	EventOutageStarted = "outage-started"
	EventOutageEnded   = "outage-ended"
	EventExpired       = "expired"
	// EventProbeFailed is recorded when the probe error of a host that is
	// down changes (not for every failed probe).
	EventProbeFailed = "probe-failed"
)

// Event is an entry of the relay event log shown to admins.
type Event struct {
	Seq       uint64    `json:"seq"`
	Time      time.Time `json:"time"`
	Kind      string    `json:"kind"`
	Domain    string    `json:"domain,omitempty"`
	RelayHost string    `json:"relay_host,omitempty"`
	MsgID     string    `json:"msg_id,omitempty"`
	Detail    string    `json:"detail,omitempty"`
}

// store keeps outages and events in bbolt.
type store struct {
	db      *bbolt.DB
	onEvent func(Event) // Config.OnEvent, called after the commit
	lastID  atomic.Uint64
}

// update runs fn in a write transaction; events it adds are passed to
// onEvent once the transaction has committed.
func (s *store) update(fn func(tx *bbolt.Tx, add func(Event) error) error) error {
	var added []Event
	err := s.db.Update(func(tx *bbolt.Tx) error {
		added = added[:0]
		return fn(tx, func(e Event) error {
			e, err := addEvent(tx, e)
			if err == nil {
				added = append(added, e)
			}
			return err
		})
	})
	if err == nil && s.onEvent != nil {
		for _, e := range added {
			s.onEvent(e)
		}
	}
	return err
}

func newStore(db *bbolt.DB, onEvent func(Event)) (*store, error) {
	s := &store{db: db, onEvent: onEvent}
	err := db.Update(func(tx *bbolt.Tx) error {
		for _, b := range []string{OutagesBucket, EventsBucket} {
			if _, err := tx.CreateBucketIfNotExists([]byte(b)); err != nil {
				return err
			}
		}
		b := tx.Bucket([]byte(OutagesBucket))
		last := b.Sequence()
		if k, _ := b.Cursor().Last(); len(k) == 8 {
			last = max(last, binary.BigEndian.Uint64(k))
		}
		s.lastID.Store(last)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("relayq: create buckets: %w", err)
	}
	return s, nil
}

// newOutageID assigns the next outage ID. IDs are handed out in memory
// (this process is the bucket's only writer), so that an outage is
// visible with its ID before its record is durable.
func (s *store) newOutageID() uint64 { return s.lastID.Add(1) }

func key(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }

// addOutage stores a new outage (ID from newOutageID) with its start
// events.
func (s *store) addOutage(o *Outage) error {
	return s.update(func(tx *bbolt.Tx, add func(Event) error) error {
		b := tx.Bucket([]byte(OutagesBucket))
		if o.ID > b.Sequence() {
			if err := b.SetSequence(o.ID); err != nil {
				return err
			}
		}
		if err := putJSON(b, o.ID, o); err != nil {
			return err
		}
		for _, d := range o.Domains {
			if err := add(Event{Time: o.StartedAt, Kind: EventOutageStarted, Domain: d, RelayHost: o.RelayHost, Detail: o.Error}); err != nil {
				return err
			}
		}
		return nil
	})
}

// putOutage rewrites an outage; when it has just ended, the end events are
// added.
func (s *store) putOutage(o *Outage) error {
	if o.ID == 0 {
		return nil // its start could not be stored
	}
	return s.update(func(tx *bbolt.Tx, add func(Event) error) error {
		b := tx.Bucket([]byte(OutagesBucket))
		var old Outage
		if v := b.Get(key(o.ID)); v != nil {
			_ = json.Unmarshal(v, &old)
		}
		if err := putJSON(b, o.ID, o); err != nil {
			return err
		}
		if !o.Ongoing() && old.Ongoing() {
			detail := fmt.Sprintf("after %s: %s", o.Duration.Round(time.Second), o.EndReason)
			for _, d := range o.Domains {
				if err := add(Event{Time: o.EndedAt, Kind: EventOutageEnded, Domain: d, RelayHost: o.RelayHost, Detail: detail}); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// addRedelivered adds n to an ended outage's Redelivered count.
func (s *store) addRedelivered(id uint64, n int) error {
	if id == 0 || n == 0 {
		return nil
	}
	return s.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket([]byte(OutagesBucket))
		v := b.Get(key(id))
		if v == nil {
			return nil
		}
		var o Outage
		if err := json.Unmarshal(v, &o); err != nil {
			return err
		}
		o.Redelivered += n
		return putJSON(b, id, &o)
	})
}

// openOutages returns the ongoing outages by relay host (the newest if a
// host has several).
func (s *store) openOutages() (map[string]*Outage, error) {
	out := make(map[string]*Outage)
	err := s.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket([]byte(OutagesBucket)).ForEach(func(k, v []byte) error {
			var o Outage
			if err := json.Unmarshal(v, &o); err != nil {
				return nil // skip a damaged entry
			}
			if o.Ongoing() {
				out[o.RelayHost] = &o
			}
			return nil
		})
	})
	return out, err
}

// list returns up to limit outages, newest first, of one domain ("" for all).
func (s *store) list(domain string, limit int) ([]Outage, error) {
	var out []Outage
	err := s.db.View(func(tx *bbolt.Tx) error {
		c := tx.Bucket([]byte(OutagesBucket)).Cursor()
		for k, v := c.Last(); k != nil && len(out) < limit; k, v = c.Prev() {
			var o Outage
			if err := json.Unmarshal(v, &o); err != nil {
				continue
			}
			if domain == "" || slices.Contains(o.Domains, domain) {
				out = append(out, o)
			}
		}
		return nil
	})
	return out, err
}

// addEvents stores events in one transaction.
func (s *store) addEvents(evs []Event) error {
	if len(evs) == 0 {
		return nil
	}
	return s.update(func(tx *bbolt.Tx, add func(Event) error) error {
		for _, e := range evs {
			if err := add(e); err != nil {
				return err
			}
		}
		return nil
	})
}

func addEvent(tx *bbolt.Tx, e Event) (Event, error) {
	b := tx.Bucket([]byte(EventsBucket))
	seq, err := b.NextSequence()
	if err != nil {
		return e, err
	}
	e.Seq = seq
	if err := putJSON(b, seq, &e); err != nil {
		return e, err
	}
	if seq > maxEvents && seq%1024 == 0 {
		var old [][]byte
		c := b.Cursor()
		for k, _ := c.First(); k != nil && binary.BigEndian.Uint64(k) <= seq-maxEvents; k, _ = c.Next() {
			old = append(old, slices.Clone(k))
		}
		for _, k := range old {
			if err := b.Delete(k); err != nil {
				return e, err
			}
		}
	}
	return e, nil
}

// events returns up to limit events, newest first, of one domain ("" for all).
func (s *store) events(domain string, limit int) ([]Event, error) {
	var out []Event
	err := s.db.View(func(tx *bbolt.Tx) error {
		c := tx.Bucket([]byte(EventsBucket)).Cursor()
		for k, v := c.Last(); k != nil && len(out) < limit; k, v = c.Prev() {
			var e Event
			if err := json.Unmarshal(v, &e); err != nil {
				continue
			}
			if domain == "" || e.Domain == domain {
				out = append(out, e)
			}
		}
		return nil
	})
	return out, err
}

func putJSON(b *bbolt.Bucket, id uint64, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(key(id), data)
}
