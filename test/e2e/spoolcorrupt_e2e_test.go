package e2e

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"
)

// TestSpoolCorruptionRestart damages the spool of a stopped node in four
// ways, one per shard: bytes flipped inside one entry of a middle segment,
// a middle segment deleted, a middle segment truncated inside an entry,
// and the tail of the last segment overwritten with zeros. The real binary
// must start on it, repair it, report each damage (log line, admin event,
// metric), deliver every message whose entry was not touched to a real
// Postfix primary, byte for byte and once, and start cleanly again.
//
// Which messages the damage destroys is worked out independently of the
// node: the test reads the segment files itself (framing in spool/doc.go)
// and maps each MESSAGE entry's id to a Message-ID through the
// "queued as <id>" replies.
func TestSpoolCorruptionRestart(t *testing.T) {
	t.Parallel()
	const (
		shards = 4
		size   = 128 << 10 // incompressible: about 40 messages per 4 MiB segment
	)
	kinds := []struct {
		name string
		msgs int // enough for three segments where a middle one is needed
	}{{"flip", 110}, {"delete", 110}, {"truncate", 110}, {"zero", 30}}
	domains := shardDomains(shards)
	port := freePort(t)
	var cfg strings.Builder
	cfg.WriteString("domains:\n")
	for _, d := range domains {
		fmt.Fprintf(&cfg, "  - name: %s\n    mode: relay\n    relay_host: 127.0.0.1:%d\n", d, port)
	}
	dir := t.TempDir()
	n := startNode(t, dir, cfg.String(), fmt.Sprintf("shards: %d", shards))

	// Fill every shard while the primary is down.
	type job struct{ kind, domain, msgID string }
	var jobs []job
	for i, k := range kinds {
		for j := 0; j < k.msgs; j++ {
			jobs = append(jobs, job{k.name, domains[i], fmt.Sprintf("<corrupt-%s-%d@e2e.test>", k.name, j)})
		}
	}
	var (
		mu     sync.Mutex
		byID   = map[uint64]string{} // spool id → Message-ID
		shard  = map[string]int{}    // kind → shard holding its domain
		failed []string
		next   atomic.Int64
		wg     sync.WaitGroup
	)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)) - 1; i < len(jobs); i = int(next.Add(1)) - 1 {
				j := jobs[i]
				to := "user@" + j.domain
				reply, err := sendData(n.smtpAddr, "sender@source.example", to, randomMessage(j.msgID, "sender@source.example", to, size), 0)
				qid, perr := strconv.ParseUint(queueID(reply), 16, 64)
				mu.Lock()
				if err != nil || perr != nil {
					failed = append(failed, fmt.Sprintf("%s: %q %v", j.msgID, reply, err))
				} else {
					byID[qid] = j.msgID
					shard[j.kind] = int(qid & 0xff) // the id's low byte is its shard
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(failed) > 0 {
		t.Fatalf("%d of %d not accepted while the primary was down, e.g. %s", len(failed), len(jobs), failed[0])
	}
	n.stop()

	// Damage each shard and note which messages that destroys.
	lost := map[string]bool{}
	for i, k := range kinds {
		if shard[k.name] != i {
			t.Fatalf("%s: mail for %s went to shard %d, want %d", k.name, domains[i], shard[k.name], i)
		}
		sdir := filepath.Join(dir, "data", "spool", fmt.Sprintf("shard-%03d", shard[k.name]))
		segs := segmentFiles(t, sdir)
		frames := make([][]walFrame, len(segs))
		for i, s := range segs {
			frames[i] = walFrames(t, s)
		}
		var gone []walFrame
		switch k.name {
		case "flip", "delete", "truncate":
			if len(segs) < 3 {
				t.Fatalf("%s: shard %d has %d segments, need 3 (segment size changed?)", k.name, shard[k.name], len(segs))
			}
		}
		switch k.name {
		case "flip": // three bytes in the body of one entry of a middle segment
			f := frames[1][len(frames[1])/2]
			mid := (f.off + f.end) / 2
			editFile(t, segs[1], func(b []byte) []byte {
				for _, p := range []int{mid, mid + 1, mid + 17} {
					b[p] ^= 0xff
				}
				return b
			})
			gone = []walFrame{f}
		case "delete": // a whole middle segment
			if err := os.Remove(segs[1]); err != nil {
				t.Fatal(err)
			}
			gone = frames[1]
		case "truncate": // a middle segment cut inside an entry
			f := frames[1][len(frames[1])/2]
			cut := (f.off + f.end) / 2
			if err := os.Truncate(segs[1], int64(cut)); err != nil {
				t.Fatal(err)
			}
			for _, g := range frames[1] {
				if g.end > cut {
					gone = append(gone, g)
				}
			}
		case "zero": // the last 200 KiB of the last segment
			last := len(segs) - 1
			var from int
			editFile(t, segs[last], func(b []byte) []byte {
				from = max(0, len(b)-200<<10)
				clear(b[from:])
				return b
			})
			for _, g := range frames[last] {
				if g.end > from {
					gone = append(gone, g)
				}
			}
		}
		msgs := 0
		for _, f := range gone {
			if f.typ == recMessage {
				lost[byID[f.id]] = true
				msgs++
			}
		}
		t.Logf("%s: shard %d, %d segments, %d entries (%d messages) destroyed", k.name, shard[k.name], len(segs), len(gone), msgs)
		if msgs == 0 {
			t.Fatalf("%s destroyed no message: the test would prove nothing", k.name)
		}
	}
	want := map[string]bool{}
	for _, id := range byID {
		if !lost[id] {
			want[id] = true
		}
	}

	// Restart on the damaged spool: repaired and reported three ways.
	n.start()
	a := login(t, n.httpAddr)
	repaired := n.waitLog("spool damage repaired", 10*time.Second)
	open := n.spoolOpen(10 * time.Second)
	t.Logf("spool open: %v messages, %v damaged segments, took %v ms", open["messages"], open["damaged"], open["took"])
	evs := a.events("spool-damage")
	for _, k := range kinds {
		s := shard[k.name]
		if !hasField(repaired, "shard", float64(s)) {
			t.Errorf("%s: no \"spool damage repaired\" log line for shard %d", k.name, s)
		}
		if !hasEvent(evs, fmt.Sprintf("shard %d ", s)) {
			t.Errorf("%s: no spool-damage event for shard %d: %+v", k.name, s, evs)
		}
		if m, _ := filepath.Glob(filepath.Join(dir, "data", "spool", fmt.Sprintf("shard-%03d", s), "*.broken*")); len(m) == 0 {
			t.Errorf("%s: no .broken copy kept in shard %d", k.name, s)
		}
	}
	for _, e := range evs {
		t.Logf("event %s: %s", e.Type, e.Detail)
	}
	dmg := a.metric("mxcont_spool_damaged_entries_total")
	if dmg < float64(len(kinds)) {
		t.Errorf("mxcont_spool_damaged_entries_total = %v, want at least %d", dmg, len(kinds))
	}

	// Every intact message reaches the primary, once, unaltered; nothing
	// else is left in the queues.
	p := startPostfix(t, strings.Join(domains, ", "), port)
	in := newInbox(p)
	got := in.wait(t, want, 120*time.Second)
	for _, d := range domains {
		a.waitQueued(d, 0, 60*time.Second)
	}
	in.scan()
	dups, extra := duplicates(want, got), 0
	for id, c := range in.ids {
		if !want[id] {
			extra += c
			t.Errorf("%s delivered %d times but its entry was destroyed", id, c)
		}
	}
	if len(in.bad) > 0 {
		t.Errorf("%d delivered messages differ from what was sent, e.g. %s", len(in.bad), in.bad[0])
	}
	t.Logf("%d acknowledged, %d destroyed by the damage, %d intact: %d delivered, %d duplicates, %d unexpected; damage metric %v",
		len(byID), len(lost), len(want), len(want), dups, extra, dmg)
	if dups > 0 {
		t.Errorf("%d duplicates", dups)
	}

	// The repair is durable: the next start finds nothing to repair.
	n.stop()
	n.start()
	if o := n.spoolOpen(10 * time.Second); o["damaged"] != float64(0) {
		t.Errorf("second start: damaged = %v\n%s", o["damaged"], tail(n.log.String(), 10))
	}
}

// shardDomains returns one domain name per spool shard, in shard order
// (the spool shards by xxhash(domain) % shards).
func shardDomains(shards int) []string {
	out := make([]string, shards)
	found := 0
	for i := 0; found < shards; i++ {
		d := fmt.Sprintf("c%d.test", i)
		if s := int(xxhash.Sum64String(d) % uint64(shards)); out[s] == "" {
			out[s] = d
			found++
		}
	}
	return out
}

// Entry types of the spool's record header (spool/doc.go).
const recMessage = 1

// walFrame is one WAL entry found in a segment file.
type walFrame struct {
	off, end int    // the whole entry, length prefix included
	typ      byte   // record type
	id       uint64 // spool id, for MESSAGE records
}

// segmentFiles lists a shard's WAL segments in order.
func segmentFiles(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if _, err := strconv.ParseUint(e.Name(), 10, 64); err == nil && len(e.Name()) == 20 {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	sort.Strings(out)
	return out
}

// walFrames parses a healthy segment: uvarint(length) + record, where a
// record starts "MX", version 1, type, and a MESSAGE's meta starts with
// its id (spool/doc.go).
func walFrames(t testing.TB, path string) []walFrame {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []walFrame
	for off := 0; off < len(b); {
		size, n := binary.Uvarint(b[off:])
		if n <= 0 || uint64(len(b)-off-n) < size || size < 20 {
			t.Fatalf("%s: bad entry at offset %d before any damage", path, off)
		}
		rec := b[off+n : off+n+int(size)]
		if rec[0] != 'M' || rec[1] != 'X' || rec[2] != 1 {
			t.Fatalf("%s: entry at offset %d is not an mxcont record", path, off)
		}
		f := walFrame{off: off, end: off + n + int(size), typ: rec[3]}
		if f.typ == recMessage {
			f.id = binary.LittleEndian.Uint64(rec[20:28])
		}
		out = append(out, f)
		off = f.end
	}
	return out
}

func editFile(t testing.TB, path string, edit func([]byte) []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, edit(b), 0o640); err != nil {
		t.Fatal(err)
	}
}

func hasField(lines []map[string]any, key string, v any) bool {
	for _, l := range lines {
		if l[key] == v {
			return true
		}
	}
	return false
}

func hasEvent(evs []event, detail string) bool {
	for _, e := range evs {
		if strings.Contains(e.Detail, detail) {
			return true
		}
	}
	return false
}
