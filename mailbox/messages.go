package mailbox

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sort"
	"time"

	"go.etcd.io/bbolt"
)

// ErrNoMessage is returned for a UID that is not (or no longer) in the
// folder.
var ErrNoMessage = errors.New("mailbox: no such message")

// Message is one message of a folder.
type Message struct {
	UID     uint32
	Size    int64
	Date    time.Time // internal date (IMAP INTERNALDATE)
	Arrival time.Time // when the store filed it
	Flags   []string
}

func messageOf(uid uint32, m msgRec) Message {
	return Message{UID: uid, Size: m.Size, Date: m.Date, Arrival: m.Arrival, Flags: m.Flags}
}

// Messages returns a folder (with its counts) and its messages in UID
// order.
func (s *Store) Messages(address, folder string) (Folder, []Message, error) {
	if err := s.enter(); err != nil {
		return Folder{}, nil, err
	}
	defer s.life.RUnlock()
	addr, name, err := target(address, folder)
	if err != nil {
		return Folder{}, nil, err
	}
	var f Folder
	var out []Message
	err = s.db.View(func(tx *bbolt.Tx) error {
		box, err := boxTx(tx, addr)
		if err != nil {
			return err
		}
		rec, msgs, err := folderTx(box, name)
		if err != nil {
			return err
		}
		f = Folder{Name: name, SpecialUse: rec.SpecialUse, Subscribed: rec.Subscribed,
			UIDValidity: rec.UIDValidity, UIDNext: rec.UIDNext}
		return msgs.ForEach(func(k, v []byte) error {
			m, err := decodeMsgRec(v)
			if err != nil {
				return corrupt("message record", err)
			}
			out = append(out, messageOf(binary.BigEndian.Uint32(k), m))
			f.Messages++
			f.Bytes += m.Size
			if !hasFlag(m.Flags, FlagSeen) {
				f.Unseen++
			}
			return nil
		})
	})
	if err != nil {
		return Folder{}, nil, err
	}
	return f, out, nil
}

// OpenMessage opens the body of one message for reading; the caller
// closes the file. ErrNoMessage if the UID is not in the folder.
func (s *Store) OpenMessage(address, folder string, uid uint32) (*os.File, Message, error) {
	if err := s.enter(); err != nil {
		return nil, Message{}, err
	}
	defer s.life.RUnlock()
	addr, name, err := target(address, folder)
	if err != nil {
		return nil, Message{}, err
	}
	var m msgRec
	err = s.db.View(func(tx *bbolt.Tx) error {
		box, err := boxTx(tx, addr)
		if err != nil {
			return err
		}
		_, msgs, err := folderTx(box, name)
		if err != nil {
			return err
		}
		v := msgs.Get(u32key(uid))
		if v == nil {
			return ErrNoMessage
		}
		m, err = decodeMsgRec(v)
		if err != nil {
			return corrupt("message record", err)
		}
		return nil
	})
	if err != nil {
		return nil, Message{}, err
	}
	f, err := s.openBlob(m.Blob)
	if errors.Is(err, os.ErrNotExist) {
		return nil, Message{}, ErrNoMessage // expunged since the lookup
	}
	if err != nil {
		return nil, Message{}, err
	}
	return f, messageOf(uid, m), nil
}

// StoreFlags changes the flags of the messages with the given UIDs
// (missing UIDs are ignored) and returns those messages with their new
// flags, in UID order.
func (s *Store) StoreFlags(address, folder string, uids []uint32, op FlagOp, flags []string) ([]Message, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.life.RUnlock()
	addr, name, err := target(address, folder)
	if err != nil {
		return nil, err
	}
	flags = normalizeFlags(flags)
	uids = sortedUnique(uids)
	var out []Message
	changed := false
	err = s.db.Update(func(tx *bbolt.Tx) error {
		out, changed = out[:0], false
		box, err := boxTx(tx, addr)
		if err != nil {
			return err
		}
		_, msgs, err := folderTx(box, name)
		if err != nil {
			return err
		}
		for _, uid := range uids {
			v := msgs.Get(u32key(uid))
			if v == nil {
				continue
			}
			m, err := decodeMsgRec(v)
			if err != nil {
				return corrupt("message record", err)
			}
			nf, diff := applyFlags(m.Flags, op, flags)
			if diff {
				m.Flags = nf
				if err := msgs.Put(u32key(uid), m.encode()); err != nil {
					return err
				}
				changed = true
			}
			out = append(out, messageOf(uid, m))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if changed {
		s.changed(addr)
	}
	return out, nil
}

// Expunge removes the messages flagged \Deleted among uids (nil: the whole
// folder) and returns their UIDs in ascending order.
func (s *Store) Expunge(address, folder string, uids []uint32) ([]uint32, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.life.RUnlock()
	addr, name, err := target(address, folder)
	if err != nil {
		return nil, err
	}
	var want map[uint32]bool
	if uids != nil {
		want = make(map[uint32]bool, len(uids))
		for _, u := range uids {
			want[u] = true
		}
	}
	var gone []uint32
	var unlink []string
	err = s.db.Update(func(tx *bbolt.Tx) error {
		gone, unlink = gone[:0], unlink[:0]
		box, err := boxTx(tx, addr)
		if err != nil {
			return err
		}
		_, msgs, err := folderTx(box, name)
		if err != nil {
			return err
		}
		var size int64
		err = msgs.ForEach(func(k, v []byte) error {
			uid := binary.BigEndian.Uint32(k)
			if want != nil && !want[uid] {
				return nil
			}
			m, err := decodeMsgRec(v)
			if err != nil {
				return corrupt("message record", err)
			}
			if hasFlag(m.Flags, FlagDeleted) {
				gone = append(gone, uid)
				size += m.Size
			}
			return nil
		})
		if err != nil {
			return err
		}
		if err := removeTx(tx, msgs, gone, &unlink); err != nil {
			return err
		}
		return addStatTx(box, -int64(len(gone)), -size)
	})
	if err != nil {
		return nil, err
	}
	s.removeBlobs(unlink)
	if len(gone) > 0 {
		s.changed(addr)
	}
	return gone, nil
}

// removeTx deletes messages from a folder bucket, dropping their blob
// references (blobs left unreferenced are appended to unlink).
func removeTx(tx *bbolt.Tx, msgs *bbolt.Bucket, uids []uint32, unlink *[]string) error {
	for _, uid := range uids {
		v := msgs.Get(u32key(uid))
		if v == nil {
			continue
		}
		m, err := decodeMsgRec(v)
		if err != nil {
			return corrupt("message record", err)
		}
		if err := msgs.Delete(u32key(uid)); err != nil {
			return err
		}
		last, err := decref(tx, m.Blob)
		if err != nil {
			return err
		}
		if last {
			*unlink = append(*unlink, m.Blob)
		}
	}
	return nil
}

// CopyResult reports a Copy or Move: the destination's UIDVALIDITY and
// the source and destination UIDs, pairwise.
type CopyResult struct {
	UIDValidity uint32
	Source      []uint32
	Dest        []uint32
}

// Copy copies messages (by UID; missing ones are ignored) to another
// folder of the same user, keeping flags and internal dates. The bodies
// are shared, not copied.
func (s *Store) Copy(address, from, to string, uids []uint32) (CopyResult, error) {
	return s.copyMove(address, from, to, uids, false)
}

// Move is Copy followed by the removal of the originals, atomically.
func (s *Store) Move(address, from, to string, uids []uint32) (CopyResult, error) {
	return s.copyMove(address, from, to, uids, true)
}

func (s *Store) copyMove(address, from, to string, uids []uint32, move bool) (CopyResult, error) {
	if err := s.enter(); err != nil {
		return CopyResult{}, err
	}
	defer s.life.RUnlock()
	addr, from, err := target(address, from)
	if err != nil {
		return CopyResult{}, err
	}
	if to, err = CanonicalFolder(to); err != nil {
		return CopyResult{}, err
	}
	if from == to {
		return CopyResult{}, fmt.Errorf("%w: folder: source and destination are the same", ErrInvalid)
	}
	uids = sortedUnique(uids)
	var res CopyResult
	var unlink []string
	err = s.db.Update(func(tx *bbolt.Tx) error {
		res, unlink = CopyResult{}, unlink[:0]
		box, err := boxTx(tx, addr)
		if err != nil {
			return err
		}
		_, src, err := folderTx(box, from)
		if err != nil {
			return err
		}
		drec, dst, err := folderTx(box, to)
		if err != nil {
			return err
		}
		res.UIDValidity = drec.UIDValidity
		var moved int64
		for _, uid := range uids {
			v := src.Get(u32key(uid))
			if v == nil {
				continue
			}
			m, err := decodeMsgRec(v)
			if err != nil {
				return corrupt("message record", err)
			}
			if drec.UIDNext == ^uint32(0) {
				return fmt.Errorf("mailbox: folder %q: UIDs exhausted", to)
			}
			nuid := drec.UIDNext
			drec.UIDNext++
			if err := dst.Put(u32key(nuid), v); err != nil {
				return err
			}
			if err := incref(tx, m.Blob, 1); err != nil {
				return err
			}
			res.Source = append(res.Source, uid)
			res.Dest = append(res.Dest, nuid)
			moved += m.Size
		}
		if err := putFolder(box.Bucket(bktFolders), to, drec); err != nil {
			return err
		}
		if !move {
			return addStatTx(box, int64(len(res.Source)), moved)
		}
		return removeTx(tx, src, res.Source, &unlink)
	})
	if err != nil {
		return CopyResult{}, err
	}
	s.removeBlobs(unlink)
	if len(res.Source) > 0 {
		s.changed(addr)
	}
	return res, nil
}

func sortedUnique(uids []uint32) []uint32 {
	out := append([]uint32(nil), uids...)
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	n := 0
	for i, u := range out {
		if i == 0 || u != out[n-1] {
			out[n] = u
			n++
		}
	}
	return out[:n]
}
