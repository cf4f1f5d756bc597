package mailbox

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"go.uber.org/zap"
)

// blobIDLen is the length of a blob id: 12 random bytes in hex.
const blobIDLen = 24

func newBlobID() (string, error) {
	var b [blobIDLen / 2]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("mailbox: random: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// validBlobID reports whether id looks like one of ours, so a damaged
// index can never make the store touch a path outside Dir/blobs.
func validBlobID(id string) bool {
	if len(id) != blobIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func (s *Store) blobPath(id string) string {
	return filepath.Join(s.blobDir, id[:2], id)
}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

// writeBlob stores r's bytes in a new blob file and makes the file and its
// directory entry durable. On error nothing is left behind.
func (s *Store) writeBlob(r io.Reader) (id string, size int64, err error) {
	id, err = newBlobID()
	if err != nil {
		return "", 0, err
	}
	p := s.blobPath(id)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", 0, fmt.Errorf("mailbox: create body: %w", err)
	}
	defer func() {
		if err != nil {
			_ = os.Remove(p)
		}
	}()
	bp := copyBufs.Get().(*[]byte)
	size, err = io.CopyBuffer(f, r, *bp)
	copyBufs.Put(bp)
	if err != nil {
		_ = f.Close()
		return "", 0, fmt.Errorf("mailbox: write body: %w", err)
	}
	if err = f.Sync(); err != nil {
		_ = f.Close()
		return "", 0, fmt.Errorf("mailbox: sync body: %w", err)
	}
	if err = f.Close(); err != nil {
		return "", 0, fmt.Errorf("mailbox: close body: %w", err)
	}
	if err = syncDir(filepath.Dir(p)); err != nil {
		return "", 0, err
	}
	return id, size, nil
}

// removeBlobs unlinks blob files whose last reference was committed away.
// Failures only leave garbage that the next Open removes.
func (s *Store) removeBlobs(ids []string) {
	for _, id := range ids {
		if !validBlobID(id) {
			continue
		}
		if err := os.Remove(s.blobPath(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.log.Warn("remove message body", zap.String("blob", id), zap.Error(err))
		}
	}
}

// openBlob opens a blob file for reading.
func (s *Store) openBlob(id string) (*os.File, error) {
	if !validBlobID(id) {
		return nil, corrupt("blob id", errBadRecord)
	}
	f, err := os.Open(s.blobPath(id))
	if err != nil {
		return nil, fmt.Errorf("mailbox: open body: %w", err)
	}
	return f, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("mailbox: open dir: %w", err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("mailbox: sync dir: %w", err)
	}
	return nil
}
