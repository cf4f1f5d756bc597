package bench

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
)

// RecordEntry is one acknowledged message, a line of a record file.
type RecordEntry struct {
	MessageID string   `json:"message_id"`
	QueueID   string   `json:"queue_id,omitempty"` // from "250 ... queued as <id>"
	Digest    string   `json:"digest"`             // hex SHA-256 of the canonical body
	Rcpts     []string `json:"rcpts"`              // recipients the MTA accepted
	Size      int      `json:"size"`
}

// Recorder collects acknowledged messages: as JSONL on a writer, in
// memory, or both. It is safe for concurrent use.
type Recorder struct {
	mu      sync.Mutex
	w       *bufio.Writer
	enc     *json.Encoder
	keep    bool
	entries []RecordEntry
	n       int64
	err     error
}

// NewRecorder writes entries to w (nil: none) and keeps them in memory
// when keep is set.
func NewRecorder(w io.Writer, keep bool) *Recorder {
	r := &Recorder{keep: keep}
	if w != nil {
		r.w = bufio.NewWriterSize(w, 256<<10)
		r.enc = json.NewEncoder(r.w)
	}
	return r
}

// Add records one message.
func (r *Recorder) Add(e RecordEntry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.n++
	if r.keep {
		r.entries = append(r.entries, e)
	}
	if r.enc != nil && r.err == nil {
		r.err = r.enc.Encode(e)
	}
}

// Flush writes buffered entries and returns the first write error.
func (r *Recorder) Flush() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.w != nil && r.err == nil {
		r.err = r.w.Flush()
	}
	return r.err
}

// Len is the number of messages recorded.
func (r *Recorder) Len() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

// Entries returns the entries kept in memory.
func (r *Recorder) Entries() []RecordEntry {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.entries
}

// ReadRecord reads a record file.
func ReadRecord(rd io.Reader) ([]RecordEntry, error) {
	var out []RecordEntry
	err := readJSONL(rd, func(b []byte) error {
		var e RecordEntry
		if err := json.Unmarshal(b, &e); err != nil {
			return err
		}
		out = append(out, e)
		return nil
	})
	return out, err
}

// Delivery is one message received by the sink, a line of its log.
type Delivery struct {
	MessageID string   `json:"message_id"`
	Rcpts     []string `json:"rcpts"`
	Digest    string   `json:"digest"` // DigestOK, DigestBad or DigestMissing
	Size      int64    `json:"size"`
	T         float64  `json:"t"` // seconds since the sink started
}

// ReadDeliveries reads a sink log.
func ReadDeliveries(rd io.Reader) ([]Delivery, error) {
	var out []Delivery
	err := readJSONL(rd, func(b []byte) error {
		var d Delivery
		if err := json.Unmarshal(b, &d); err != nil {
			return err
		}
		out = append(out, d)
		return nil
	})
	return out, err
}

func readJSONL(rd io.Reader, fn func([]byte) error) error {
	sc := bufio.NewScanner(rd)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	line := 0
	for sc.Scan() {
		line++
		b := sc.Bytes()
		if len(strings.TrimSpace(string(b))) == 0 {
			continue
		}
		if err := fn(b); err != nil {
			return fmt.Errorf("bench: line %d: %w", line, err)
		}
	}
	return sc.Err()
}

// Checker matches deliveries against a record, one (Message-ID,
// recipient) pair at a time, so that a message split per recipient
// domain, or delivered in several transactions, is counted right. It is
// safe for concurrent use.
type Checker struct {
	mu         sync.Mutex
	seen       map[string]int32 // pair → copies delivered
	msgs       int
	delivered  int // distinct expected pairs seen
	dups       int // extra copies of expected pairs
	unexpected int // pairs not in the record
	digestBad  int
	noDigest   int
}

func pairKey(mid, rcpt string) string { return mid + "\x00" + strings.ToLower(rcpt) }

// NewChecker expects every recipient of every entry exactly once.
func NewChecker(entries []RecordEntry) *Checker {
	c := &Checker{seen: make(map[string]int32, len(entries)), msgs: len(entries)}
	for _, e := range entries {
		for _, r := range e.Rcpts {
			c.seen[pairKey(e.MessageID, r)] = 0
		}
	}
	return c
}

// Observe accounts for one delivery and returns how many expected pairs
// it delivered for the first time.
func (c *Checker) Observe(d Delivery) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch d.Digest {
	case DigestBad:
		c.digestBad++
	case DigestMissing:
		c.noDigest++
	}
	fresh := 0
	for _, r := range d.Rcpts {
		k := pairKey(d.MessageID, r)
		n, ok := c.seen[k]
		if !ok {
			c.unexpected++
			continue
		}
		c.seen[k] = n + 1
		if n == 0 {
			c.delivered++
			fresh++
		} else {
			c.dups++
		}
	}
	return fresh
}

// Done reports whether every expected pair was delivered.
func (c *Checker) Done() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.delivered == len(c.seen)
}

// Delivered is the number of distinct expected pairs seen so far.
func (c *Checker) Delivered() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.delivered
}

// CheckResult compares what was acknowledged with what was delivered.
type CheckResult struct {
	ExpectedMessages int      `json:"expected_messages"`
	ExpectedRcpts    int      `json:"expected_rcpts"`
	DeliveredRcpts   int      `json:"delivered_rcpts"`
	Missing          int      `json:"missing_rcpts"`    // acknowledged, never delivered: lost
	MissingMessages  int      `json:"missing_messages"` // messages with a missing recipient
	Duplicates       int      `json:"duplicate_copies"` // extra copies of acknowledged recipients
	Unexpected       int      `json:"unexpected_rcpts"` // delivered, not in the record (other mail)
	DigestBad        int      `json:"digest_bad"`       // body does not match its digest header
	NoDigest         int      `json:"no_digest"`        // delivered without a digest header
	MissingSample    []string `json:"missing_sample,omitempty"`
	OK               bool     `json:"ok"` // nothing missing, no duplicate, no bad digest
}

// Result summarises the check; up to sample missing Message-IDs are
// listed.
func (c *Checker) Result(sample int) CheckResult {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := CheckResult{ExpectedMessages: c.msgs, ExpectedRcpts: len(c.seen), DeliveredRcpts: c.delivered,
		Duplicates: c.dups, Unexpected: c.unexpected, DigestBad: c.digestBad, NoDigest: c.noDigest}
	missingMsgs := map[string]bool{}
	for k, n := range c.seen {
		if n == 0 {
			r.Missing++
			mid, _, _ := strings.Cut(k, "\x00")
			missingMsgs[mid] = true
		}
	}
	r.MissingMessages = len(missingMsgs)
	for mid := range missingMsgs {
		r.MissingSample = append(r.MissingSample, mid)
	}
	sort.Strings(r.MissingSample)
	if len(r.MissingSample) > sample {
		r.MissingSample = r.MissingSample[:sample]
	}
	r.OK = r.Missing == 0 && r.Duplicates == 0 && r.DigestBad == 0
	return r
}

// Check compares a record with a sink log offline.
func Check(entries []RecordEntry, deliveries []Delivery) CheckResult {
	c := NewChecker(entries)
	for _, d := range deliveries {
		c.Observe(d)
	}
	return c.Result(10)
}
