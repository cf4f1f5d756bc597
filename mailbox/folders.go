package mailbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"go.etcd.io/bbolt"
	"go.uber.org/zap"
)

// Folder errors; test them with errors.Is.
var (
	ErrNoFolder        = errors.New("mailbox: no such folder")
	ErrFolderExists    = errors.New("mailbox: folder exists")
	ErrFolderProtected = errors.New("mailbox: standard folders cannot be deleted or renamed")
)

// Delimiter separates the levels of folder names ("Projects/2026").
const Delimiter = '/'

// maxFolderName bounds folder names in bytes.
const maxFolderName = 200

// Folder describes one folder of a user.
type Folder struct {
	Name        string
	SpecialUse  string // `\Sent`, `\Drafts`, `\Trash` or ""
	Subscribed  bool
	UIDValidity uint32
	UIDNext     uint32
	Messages    int
	Unseen      int
	Bytes       int64
}

// CanonicalFolder validates a folder name and returns it with "INBOX"
// spelled in upper case (the name is case-insensitive, RFC 3501 5.1).
// Errors wrap ErrInvalid and name the field "folder".
func CanonicalFolder(name string) (string, error) {
	if name == "" {
		return "", fmt.Errorf("%w: folder: required", ErrInvalid)
	}
	if len(name) > maxFolderName {
		return "", fmt.Errorf("%w: folder: longer than %d bytes", ErrInvalid, maxFolderName)
	}
	if !utf8.ValidString(name) {
		return "", fmt.Errorf("%w: folder: not UTF-8", ErrInvalid)
	}
	for _, r := range name {
		if unicode.IsControl(r) || r == '*' || r == '%' {
			return "", fmt.Errorf("%w: folder: forbidden character %q", ErrInvalid, r)
		}
	}
	d := string(Delimiter)
	if strings.HasPrefix(name, d) || strings.HasSuffix(name, d) || strings.Contains(name, d+d) {
		return "", fmt.Errorf("%w: folder: misplaced %q", ErrInvalid, d)
	}
	if strings.EqualFold(name, "INBOX") {
		return "INBOX", nil
	}
	if len(name) > 6 && strings.EqualFold(name[:6], "INBOX"+d) {
		return "INBOX" + name[5:], nil
	}
	return name, nil
}

func isStandard(name string) bool {
	for _, f := range standardFolders {
		if f.name == name {
			return true
		}
	}
	return false
}

// createFolderTx adds a folder to box.
func createFolderTx(box *bbolt.Bucket, name, use string) (folderRec, error) {
	folders := box.Bucket(bktFolders)
	if folders.Get([]byte(name)) != nil {
		return folderRec{}, ErrFolderExists
	}
	fid := getU64(box.Get(keyFID)) + 1
	uv := uint32(time.Now().Unix())
	if last := getU32(box.Get(keyUV)); uv <= last {
		uv = last + 1
	}
	rec := folderRec{ID: fid, UIDValidity: uv, UIDNext: 1, Subscribed: true, SpecialUse: use}
	if err := box.Put(keyFID, u64key(fid)); err != nil {
		return rec, err
	}
	if err := box.Put(keyUV, u32key(uv)); err != nil {
		return rec, err
	}
	if _, err := box.Bucket(bktMsgs).CreateBucket(u64key(fid)); err != nil {
		return rec, err
	}
	return rec, putFolder(folders, name, rec)
}

func putFolder(folders *bbolt.Bucket, name string, rec folderRec) error {
	v, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return folders.Put([]byte(name), v)
}

// boxTx returns addr's box bucket or ErrNotFound.
func boxTx(tx *bbolt.Tx, addr string) (*bbolt.Bucket, error) {
	box := tx.Bucket(bktBoxes).Bucket([]byte(addr))
	if box == nil {
		return nil, ErrNotFound
	}
	return box, nil
}

// folderTx returns a folder's record and its message bucket.
func folderTx(box *bbolt.Bucket, name string) (folderRec, *bbolt.Bucket, error) {
	v := box.Bucket(bktFolders).Get([]byte(name))
	if v == nil {
		return folderRec{}, nil, ErrNoFolder
	}
	var rec folderRec
	if err := json.Unmarshal(v, &rec); err != nil {
		return rec, nil, corrupt("folder record", err)
	}
	msgs := box.Bucket(bktMsgs).Bucket(u64key(rec.ID))
	if msgs == nil {
		return rec, nil, corrupt("folder", fmt.Errorf("no messages bucket for %q", name))
	}
	return rec, msgs, nil
}

// target normalizes an address and a folder name for an operation.
func target(address, folder string) (string, string, error) {
	addr, err := NormalizeAddress(address)
	if err != nil {
		return "", "", ErrNotFound
	}
	name, err := CanonicalFolder(folder)
	if err != nil {
		return "", "", err
	}
	return addr, name, nil
}

func folderInfo(name string, rec folderRec, msgs *bbolt.Bucket) (Folder, error) {
	f := Folder{Name: name, SpecialUse: rec.SpecialUse, Subscribed: rec.Subscribed,
		UIDValidity: rec.UIDValidity, UIDNext: rec.UIDNext}
	err := msgs.ForEach(func(_, v []byte) error {
		m, err := decodeMsgRec(v)
		if err != nil {
			return corrupt("message record", err)
		}
		f.Messages++
		f.Bytes += m.Size
		if !hasFlag(m.Flags, FlagSeen) {
			f.Unseen++
		}
		return nil
	})
	return f, err
}

// Folders returns address's folders sorted by name, with their counts.
func (s *Store) Folders(address string) ([]Folder, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.life.RUnlock()
	addr, err := NormalizeAddress(address)
	if err != nil {
		return nil, ErrNotFound
	}
	var out []Folder
	err = s.db.View(func(tx *bbolt.Tx) error {
		box, err := boxTx(tx, addr)
		if err != nil {
			return err
		}
		return box.Bucket(bktFolders).ForEach(func(k, _ []byte) error {
			rec, msgs, err := folderTx(box, string(k))
			if err != nil {
				return err
			}
			f, err := folderInfo(string(k), rec, msgs)
			out = append(out, f)
			return err
		})
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Folder returns one folder with its counts.
func (s *Store) Folder(address, name string) (Folder, error) {
	if err := s.enter(); err != nil {
		return Folder{}, err
	}
	defer s.life.RUnlock()
	addr, name, err := target(address, name)
	if err != nil {
		return Folder{}, err
	}
	var f Folder
	err = s.db.View(func(tx *bbolt.Tx) error {
		box, err := boxTx(tx, addr)
		if err != nil {
			return err
		}
		rec, msgs, err := folderTx(box, name)
		if err != nil {
			return err
		}
		f, err = folderInfo(name, rec, msgs)
		return err
	})
	return f, err
}

// CreateFolder creates a folder (ErrFolderExists if it exists). Parent
// levels need not exist.
func (s *Store) CreateFolder(address, name string) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.life.RUnlock()
	addr, name, err := target(address, name)
	if err != nil {
		return err
	}
	err = s.db.Update(func(tx *bbolt.Tx) error {
		box, err := boxTx(tx, addr)
		if err != nil {
			return err
		}
		_, err = createFolderTx(box, name, "")
		return err
	})
	if err != nil {
		return err
	}
	s.changed(addr)
	s.log.Info("mailbox folder created", zap.String("address", addr), zap.String("folder", name))
	return nil
}

// DeleteFolder deletes a folder and its messages. The standard folders
// (INBOX, Sent, Drafts, Trash) cannot be deleted: ErrFolderProtected.
// Folders below it are kept.
func (s *Store) DeleteFolder(address, name string) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.life.RUnlock()
	addr, name, err := target(address, name)
	if err != nil {
		return err
	}
	if isStandard(name) {
		return ErrFolderProtected
	}
	var unlink []string
	err = s.db.Update(func(tx *bbolt.Tx) error {
		unlink = unlink[:0]
		box, err := boxTx(tx, addr)
		if err != nil {
			return err
		}
		rec, msgs, err := folderTx(box, name)
		if err != nil {
			return err
		}
		f, err := folderInfo(name, rec, msgs)
		if err != nil {
			return err
		}
		if err := dropFolderMsgsTx(tx, msgs, &unlink); err != nil {
			return err
		}
		if err := box.Bucket(bktMsgs).DeleteBucket(u64key(rec.ID)); err != nil {
			return err
		}
		if err := addStatTx(box, -int64(f.Messages), -f.Bytes); err != nil {
			return err
		}
		return box.Bucket(bktFolders).Delete([]byte(name))
	})
	if err != nil {
		return err
	}
	s.removeBlobs(unlink)
	s.changed(addr)
	s.log.Info("mailbox folder deleted", zap.String("address", addr), zap.String("folder", name))
	return nil
}

// RenameFolder renames a folder and the folders below it. The standard
// folders cannot be renamed (ErrFolderProtected) and the new name must be
// free (ErrFolderExists).
func (s *Store) RenameFolder(address, from, to string) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.life.RUnlock()
	addr, from, err := target(address, from)
	if err != nil {
		return err
	}
	to, err = CanonicalFolder(to)
	if err != nil {
		return err
	}
	if isStandard(from) || isStandard(to) {
		return ErrFolderProtected
	}
	if from == to || strings.HasPrefix(to, from+string(Delimiter)) {
		return fmt.Errorf("%w: folder: cannot rename %q into itself", ErrInvalid, from)
	}
	err = s.db.Update(func(tx *bbolt.Tx) error {
		box, err := boxTx(tx, addr)
		if err != nil {
			return err
		}
		folders := box.Bucket(bktFolders)
		if folders.Get([]byte(from)) == nil {
			return ErrNoFolder
		}
		// Collect from and its children, then move them.
		type mv struct{ old, new string }
		var moves []mv
		prefix := from + string(Delimiter)
		err = folders.ForEach(func(k, _ []byte) error {
			n := string(k)
			if n == from {
				moves = append(moves, mv{n, to})
			} else if strings.HasPrefix(n, prefix) {
				moves = append(moves, mv{n, to + n[len(from):]})
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, m := range moves {
			if folders.Get([]byte(m.new)) != nil || isStandard(m.new) {
				return ErrFolderExists
			}
		}
		for _, m := range moves {
			v := append([]byte(nil), folders.Get([]byte(m.old))...)
			if err := folders.Delete([]byte(m.old)); err != nil {
				return err
			}
			if err := folders.Put([]byte(m.new), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.changed(addr)
	s.log.Info("mailbox folder renamed", zap.String("address", addr), zap.String("folder", from), zap.String("new-name", to))
	return nil
}

// Subscribe sets a folder's subscription.
func (s *Store) Subscribe(address, name string, subscribed bool) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.life.RUnlock()
	addr, name, err := target(address, name)
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *bbolt.Tx) error {
		box, err := boxTx(tx, addr)
		if err != nil {
			return err
		}
		rec, _, err := folderTx(box, name)
		if err != nil {
			return err
		}
		rec.Subscribed = subscribed
		return putFolder(box.Bucket(bktFolders), name, rec)
	})
}
