package spool

import (
	"fmt"
	"strconv"
	"time"
)

// ID identifies one spooled message (one message for one recipient
// domain). Bits 63..20 hold the Unix time in milliseconds when the shard
// committed it, bits 19..8 a sequence number, bits 7..0 the shard. IDs
// are unique within a spool and increase within a shard.
type ID uint64

const maxShards = 256

// String renders the ID as 16 lower-case hex digits, the form used in
// "250 2.0.0 queued as <id>" and in the API.
func (id ID) String() string { return fmt.Sprintf("%016x", uint64(id)) }

// Shard returns the shard that holds the message.
func (id ID) Shard() int { return int(id & 0xff) }

// Time returns when the message was committed (millisecond precision).
func (id ID) Time() time.Time { return time.UnixMilli(int64(id >> 20)) }

// ParseID parses the 16-hex-digit form.
func ParseID(s string) (ID, error) {
	if len(s) != 16 {
		return 0, fmt.Errorf("spool: bad message id %q", s)
	}
	v, err := strconv.ParseUint(s, 16, 64)
	if err != nil {
		return 0, fmt.Errorf("spool: bad message id %q", s)
	}
	return ID(v), nil
}

// nextID returns an ID for shard that is greater than last.
func nextID(last ID, shard int, now time.Time) ID {
	id := ID(uint64(now.UnixMilli())<<20 | uint64(shard))
	if id <= last {
		id = last + 0x100
	}
	return id
}
