package mailbox

import (
	"encoding/binary"
	"fmt"
	"time"

	"go.etcd.io/bbolt"
	"go.uber.org/zap"
)

// Purge deletes the messages (of all folders) of users whose domain is not
// in an outage at now and that have outlived Config.Keep: now − max(message
// arrival, end of the domain's last outage) > Keep. Their files are
// unlinked, and bbolt reuses the freed index pages. Bytes in the result
// are the removed messages' sizes.
func (s *Store) Purge(now time.Time) (PurgeStats, error) {
	if err := s.enter(); err != nil {
		return PurgeStats{}, err
	}
	defer s.life.RUnlock()
	var total PurgeStats
	s.mu.RLock()
	addrs := make([]string, 0, len(s.users))
	for a := range s.users {
		addrs = append(addrs, a)
	}
	s.mu.RUnlock()
	type domState struct {
		active bool
		ended  time.Time
	}
	doms := make(map[string]domState)
	for _, a := range addrs {
		d := domainOf(a)
		st, ok := doms[d]
		if !ok {
			if s.cfg.Outages != nil {
				st.active, st.ended = s.cfg.Outages.DomainOutage(d)
			}
			doms[d] = st
		}
		if st.active {
			continue
		}
		ps, err := s.purgeUser(a, now, st.ended)
		if err != nil {
			return total, err
		}
		total.Messages += ps.Messages
		total.Bytes += ps.Bytes
	}
	if total.Messages > 0 {
		s.log.Info("mailbox purged", zap.Int("messages", total.Messages), zap.Int64("bytes", total.Bytes))
	}
	return total, nil
}

// purgeUser removes addr's expired messages.
func (s *Store) purgeUser(addr string, now, outageEnded time.Time) (PurgeStats, error) {
	expired := func(m msgRec) bool {
		t := m.Arrival
		if outageEnded.After(t) {
			t = outageEnded
		}
		return now.Sub(t) > s.cfg.Keep
	}
	// Look first, so that users with nothing to purge cost no commit.
	found := false
	err := s.db.View(func(tx *bbolt.Tx) error {
		box, err := boxTx(tx, addr)
		if err != nil {
			return nil
		}
		return forEachMsg(box, func(_ *bbolt.Bucket, _ uint32, m msgRec) bool {
			found = expired(m)
			return !found
		})
	})
	if err != nil || !found {
		return PurgeStats{}, err
	}
	var ps PurgeStats
	var unlink []string
	err = s.db.Update(func(tx *bbolt.Tx) error {
		ps, unlink = PurgeStats{}, unlink[:0]
		box, err := boxTx(tx, addr)
		if err != nil {
			return nil
		}
		victims := make(map[*bbolt.Bucket][]uint32)
		err = forEachMsg(box, func(b *bbolt.Bucket, uid uint32, m msgRec) bool {
			if expired(m) {
				victims[b] = append(victims[b], uid)
				ps.Messages++
				ps.Bytes += m.Size
			}
			return true
		})
		if err != nil {
			return err
		}
		for b, uids := range victims {
			if err := removeTx(tx, b, uids, &unlink); err != nil {
				return err
			}
		}
		return addStatTx(box, -int64(ps.Messages), -ps.Bytes)
	})
	if err != nil {
		return PurgeStats{}, fmt.Errorf("mailbox: purge %s: %w", addr, err)
	}
	s.removeBlobs(unlink)
	if ps.Messages > 0 {
		s.changed(addr)
	}
	return ps, nil
}

// forEachMsg calls fn for every message of every folder of box until fn
// returns false. Malformed records are skipped (Open's check drops them).
func forEachMsg(box *bbolt.Bucket, fn func(b *bbolt.Bucket, uid uint32, m msgRec) bool) error {
	msgs := box.Bucket(bktMsgs)
	if msgs == nil {
		return nil
	}
	stop := errStop
	err := msgs.ForEachBucket(func(fid []byte) error {
		b := msgs.Bucket(fid)
		return b.ForEach(func(k, v []byte) error {
			m, err := decodeMsgRec(v)
			if err != nil {
				return nil
			}
			if !fn(b, binary.BigEndian.Uint32(k), m) {
				return stop
			}
			return nil
		})
	})
	if err == stop {
		return nil
	}
	return err
}

var errStop = fmt.Errorf("mailbox: stop")

// Stats returns the number of users, messages and message bytes (a body
// shared by several users counts once per user).
func (s *Store) Stats() (users, messages int, bytes int64) {
	if err := s.enter(); err != nil {
		return 0, 0, 0
	}
	defer s.life.RUnlock()
	_ = s.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bktUsers).ForEach(func(k, _ []byte) error {
			users++
			if box := tx.Bucket(bktBoxes).Bucket(k); box != nil {
				st := decodeStat(box.Get(keyStat))
				messages += int(st.messages)
				bytes += st.bytes
			}
			return nil
		})
	})
	return users, messages, bytes
}
