package mailbox

import (
	"fmt"
	"io"
	"time"

	"go.etcd.io/bbolt"
	"go.uber.org/zap"
)

// Deliver files one copy of a message into the INBOX of every recipient
// that has a user (others are skipped; recipients are compared after
// NormalizeAddress) and returns how many copies it filed. When it returns
// nil the copies are durable: the body file and its directory entry are
// fsynced and the index is committed. The body is written once and shared
// by all recipients; concurrent calls share index commits.
func (s *Store) Deliver(rcpts []string, body io.Reader, received time.Time) (filed int, err error) {
	if err := s.enter(); err != nil {
		return 0, err
	}
	defer s.life.RUnlock()
	var users []string
	for _, r := range rcpts {
		a, err := NormalizeAddress(r)
		if err != nil || !s.HasUser(a) {
			continue
		}
		dup := false
		for _, u := range users {
			dup = dup || u == a
		}
		if !dup {
			users = append(users, a)
		}
	}
	if len(users) == 0 {
		return 0, nil
	}
	if received.IsZero() {
		received = s.now()
	}
	id, size, err := s.writeBlob(body)
	if err != nil {
		return 0, err
	}
	rec := msgRec{Blob: id, Size: size, Date: received, Arrival: received}
	v := rec.encode()
	var got []string
	err = s.groupUpdate(func(tx *bbolt.Tx) error {
		got = got[:0]
		for _, a := range users {
			box, err := boxTx(tx, a)
			if err != nil {
				continue // deleted meanwhile
			}
			if _, err := appendTx(box, "INBOX", v, size); err != nil {
				return err
			}
			got = append(got, a)
		}
		if len(got) == 0 {
			return nil
		}
		return incref(tx, id, len(got))
	})
	if err != nil || len(got) == 0 {
		s.removeBlobs([]string{id})
		if err != nil {
			return 0, fmt.Errorf("mailbox: deliver: %w", err)
		}
		return 0, nil
	}
	s.changed(got...)
	s.log.Debug("mailbox delivered", zap.Strings("rcpts", got), zap.Int64("size", size), zap.String("blob", id))
	return len(got), nil
}

// appendTx adds a message record (encoded) to a folder of box and returns
// its UID.
func appendTx(box *bbolt.Bucket, folder string, v []byte, size int64) (uint32, error) {
	rec, msgs, err := folderTx(box, folder)
	if err != nil {
		return 0, err
	}
	uid := rec.UIDNext
	if uid == 0 || uid == ^uint32(0) {
		return 0, fmt.Errorf("mailbox: folder %q: UIDs exhausted", folder)
	}
	rec.UIDNext++
	if err := msgs.Put(u32key(uid), v); err != nil {
		return 0, err
	}
	if err := putFolder(box.Bucket(bktFolders), folder, rec); err != nil {
		return 0, err
	}
	return uid, addStatTx(box, 1, size)
}

// Append stores a message in a folder of address (IMAP APPEND, saving
// sent mail) with the given flags and internal date (zero: now), and
// returns its UID. Like Deliver it returns only once the message is
// durable. ErrNotFound for an unknown user, ErrNoFolder for a missing
// folder.
func (s *Store) Append(address, folder string, flags []string, date time.Time, body io.Reader) (uid uint32, err error) {
	_, uid, err = s.AppendUID(address, folder, flags, date, body)
	return uid, err
}

// AppendUID is Append that also returns the folder's UIDVALIDITY (for
// IMAP's APPENDUID response code).
func (s *Store) AppendUID(address, folder string, flags []string, date time.Time, body io.Reader) (uidValidity, uid uint32, err error) {
	if err := s.enter(); err != nil {
		return 0, 0, err
	}
	defer s.life.RUnlock()
	addr, name, err := target(address, folder)
	if err != nil {
		return 0, 0, err
	}
	if !s.HasUser(addr) {
		return 0, 0, ErrNotFound
	}
	// Fail before writing the body if the folder is missing.
	if err := s.db.View(func(tx *bbolt.Tx) error {
		box, err := boxTx(tx, addr)
		if err != nil {
			return err
		}
		_, _, err = folderTx(box, name)
		return err
	}); err != nil {
		return 0, 0, err
	}
	now := s.now()
	if date.IsZero() {
		date = now
	}
	id, size, err := s.writeBlob(body)
	if err != nil {
		return 0, 0, err
	}
	v := (&msgRec{Blob: id, Size: size, Date: date, Arrival: now, Flags: normalizeFlags(flags)}).encode()
	err = s.groupUpdate(func(tx *bbolt.Tx) error {
		box, err := boxTx(tx, addr)
		if err != nil {
			return err
		}
		rec, _, err := folderTx(box, name)
		if err != nil {
			return err
		}
		uidValidity = rec.UIDValidity
		if uid, err = appendTx(box, name, v, size); err != nil {
			return err
		}
		return incref(tx, id, 1)
	})
	if err != nil {
		s.removeBlobs([]string{id})
		return 0, 0, err
	}
	s.changed(addr)
	return uidValidity, uid, nil
}
