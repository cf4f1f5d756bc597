package smtpd

import (
	"sync/atomic"
	"syscall"
	"time"
)

// freeBytes returns the bytes available to unprivileged users on the
// filesystem holding dir.
func freeBytes(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

// freeSpaceTTL is how long a free-space reading is reused. MAIL and DATA
// both check the floor, which cost two statfs(2) per message (2 % of the
// node's CPU at 4 KiB); at the disk's 130–160 MB/s of fsync'd writes the
// floor can be overrun by at most ~15 MB in 100 ms, and the spool refuses
// appends on a real ENOSPC anyway (451).
const freeSpaceTTL = 100 * time.Millisecond

// freeSpace caches freeBytes for freeSpaceTTL. It is safe for concurrent
// use; concurrent refreshes are harmless.
type freeSpace struct {
	at   atomic.Int64 // monotonic reading time, ns since spaceEpoch; 0: none
	free atomic.Int64
}

var spaceEpoch = time.Now()

func (f *freeSpace) get(dir string) (int64, error) {
	now := int64(time.Since(spaceEpoch)) + 1
	if at := f.at.Load(); at != 0 && now-at < int64(freeSpaceTTL) {
		return f.free.Load(), nil
	}
	free, err := freeBytes(dir)
	if err != nil {
		return 0, err
	}
	f.free.Store(free)
	f.at.Store(now)
	return free, nil
}
