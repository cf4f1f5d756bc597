package mailbox

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"go.etcd.io/bbolt"
	"go.uber.org/zap"
)

// check runs at Open, before anything else touches the store: it makes
// the index and the blob files agree (see the package documentation) and
// loads the user set.
func (s *Store) check() error {
	onDisk, err := s.scanBlobs()
	if err != nil {
		return err
	}
	refs := make(map[string]uint32)
	var dropped, fixedStats int
	err = s.db.Update(func(tx *bbolt.Tx) error {
		for _, b := range [][]byte{bktUsers, bktBoxes, bktBlobs} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		clear(refs)
		dropped, fixedStats = 0, 0
		boxes := tx.Bucket(bktBoxes)
		var boxNames [][]byte
		if err := boxes.ForEachBucket(func(k []byte) error {
			boxNames = append(boxNames, bytes.Clone(k))
			return nil
		}); err != nil {
			return err
		}
		for _, addr := range boxNames {
			if tx.Bucket(bktUsers).Get(addr) == nil {
				// A box without a user: drop it (its references are not
				// counted, so its files go below).
				s.log.Warn("mailbox check: box without user removed", zap.ByteString("address", addr))
				if err := boxes.DeleteBucket(addr); err != nil {
					return err
				}
				continue
			}
			box := boxes.Bucket(addr)
			var st stat
			msgs := box.Bucket(bktMsgs)
			if msgs == nil || box.Bucket(bktFolders) == nil {
				return corrupt("box", fmt.Errorf("%s has no folders", addr))
			}
			var fids [][]byte
			if err := msgs.ForEachBucket(func(fid []byte) error {
				fids = append(fids, bytes.Clone(fid))
				return nil
			}); err != nil {
				return err
			}
			for _, fid := range fids {
				fb := msgs.Bucket(fid)
				var bad [][]byte
				err := fb.ForEach(func(k, v []byte) error {
					m, err := decodeMsgRec(v)
					if err != nil || !validBlobID(m.Blob) {
						s.log.Error("mailbox check: malformed index entry dropped",
							zap.ByteString("address", addr), zap.Uint32("uid", binary.BigEndian.Uint32(k)))
						bad = append(bad, bytes.Clone(k))
						return nil
					}
					if _, ok := onDisk[m.Blob]; !ok {
						s.log.Error("mailbox check: message body missing, index entry dropped",
							zap.ByteString("address", addr), zap.Uint32("uid", binary.BigEndian.Uint32(k)),
							zap.String("blob", m.Blob))
						bad = append(bad, bytes.Clone(k))
						return nil
					}
					refs[m.Blob]++
					st.messages++
					st.bytes += m.Size
					return nil
				})
				if err != nil {
					return err
				}
				for _, k := range bad {
					if err := fb.Delete(k); err != nil {
						return err
					}
				}
				dropped += len(bad)
			}
			if got := decodeStat(box.Get(keyStat)); got != st {
				fixedStats++
				if err := box.Put(keyStat, st.encode()); err != nil {
					return err
				}
			}
		}
		// Make the reference counts match the index.
		blobs := tx.Bucket(bktBlobs)
		var stale [][]byte
		if err := blobs.ForEach(func(k, v []byte) error {
			if n, ok := refs[string(k)]; !ok || getU32(v) != n {
				stale = append(stale, bytes.Clone(k))
			}
			return nil
		}); err != nil {
			return err
		}
		for _, k := range stale {
			if err := blobs.Delete(k); err != nil {
				return err
			}
		}
		for id, n := range refs {
			if getU32(blobs.Get([]byte(id))) != n {
				if err := blobs.Put([]byte(id), u32key(n)); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("mailbox: check index: %w", err)
	}
	var orphans int
	for id, p := range onDisk {
		if _, ok := refs[id]; ok {
			continue
		}
		if err := os.Remove(p); err != nil {
			s.log.Warn("mailbox check: remove unreferenced file", zap.String("path", p), zap.Error(err))
			continue
		}
		orphans++
	}
	err = s.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bktUsers).ForEach(func(k, _ []byte) error {
			s.users[string(k)] = struct{}{}
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("mailbox: load users: %w", err)
	}
	s.log.Info("mailbox store opened", zap.String("dir", s.cfg.Dir), zap.Int("users", len(s.users)),
		zap.Int("bodies", len(refs)), zap.Int("unreferenced-removed", orphans),
		zap.Int("entries-dropped", dropped), zap.Int("stats-fixed", fixedStats))
	return nil
}

// scanBlobs returns the blob files on disk (id → path), removing files
// that are not blobs (temporary files of older versions, editor debris).
func (s *Store) scanBlobs() (map[string]string, error) {
	out := make(map[string]string)
	dirs, err := os.ReadDir(s.blobDir)
	if err != nil {
		return nil, fmt.Errorf("mailbox: %w", err)
	}
	for _, d := range dirs {
		if !d.IsDir() || len(d.Name()) != 2 {
			continue
		}
		dir := filepath.Join(s.blobDir, d.Name())
		ents, err := os.ReadDir(dir)
		if err != nil {
			return nil, fmt.Errorf("mailbox: %w", err)
		}
		for _, e := range ents {
			name := e.Name()
			p := filepath.Join(dir, name)
			if e.Type().IsRegular() && validBlobID(name) && strings.HasPrefix(name, d.Name()) {
				out[name] = p
				continue
			}
			if err := os.Remove(p); err != nil {
				s.log.Warn("mailbox check: remove stray file", zap.String("path", p), zap.Error(err))
			}
		}
	}
	return out, nil
}
