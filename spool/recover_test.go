package spool

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fillSpool writes n messages of about size bytes into a one-shard spool
// and closes it, returning the ids.
func fillSpool(t *testing.T, dir string, p perm, n, size int) []ID {
	t.Helper()
	sp := openT(t, testCfg(dir, p))
	ids := make([]ID, n)
	for i := range ids {
		ids[i] = mustAppend(t, sp, env("r.example"), body(uint64(i), size))
	}
	if err := sp.Close(); err != nil {
		t.Fatal(err)
	}
	return ids
}

func segFiles(t *testing.T, dir string) []string {
	t.Helper()
	segs, err := listSegments(filepath.Join(dir, "shard-000"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, s := range segs {
		out = append(out, filepath.Join(dir, "shard-000", segmentName(s.start)))
	}
	return out
}

// survivors reopens the spool and checks that every message is either
// intact or gone (never a wrong body or a read error); it returns how many
// are intact.
func survivors(t *testing.T, sp *Spool, ids []ID, size int) int {
	t.Helper()
	ok := 0
	for i, id := range ids {
		b, err := sp.ReadBody(id)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if string(b) != string(body(uint64(i), size)) {
			t.Fatalf("message %d: wrong body", i)
		}
		ok++
	}
	return ok
}

func damageTotal(sp *Spool) (entries, msgs int, reasons string) {
	for _, d := range sp.Damage() {
		entries += d.Entries
		msgs += d.Messages
		reasons += d.Reason + "|"
	}
	return
}

// repaired reopens a damaged spool and reports what survived and what
// repair reported.
type repaired struct {
	intact, entries, msgs int
	why                   string
	stats                 ShardStats
}

func reopenDamaged(t *testing.T, dir string, p perm, ids []ID, size int) repaired {
	t.Helper()
	sp := openT(t, testCfg(dir, p))
	defer sp.Close()
	r := repaired{intact: survivors(t, sp, ids, size), stats: sp.Stats()[0]}
	r.entries, r.msgs, r.why = damageTotal(sp)
	return r
}

func reopenClean(t *testing.T, dir string, p perm, ids []ID, size, want int) {
	t.Helper()
	sp := openT(t, testCfg(dir, p))
	defer sp.Close()
	if len(sp.Damage()) != 0 {
		t.Fatalf("second reopen still reports damage: %+v", sp.Damage())
	}
	if got := survivors(t, sp, ids, size); got != want {
		t.Fatalf("after second reopen %d intact, want %d", got, want)
	}
	// and the shard takes new mail
	mustAppend(t, sp, env("r.example"), []byte("after repair"))
}

func TestRecoverTornTail(t *testing.T) {
	forEachPerm(t, func(t *testing.T, p perm) {
		p.shards = 1
		dir := t.TempDir()
		ids := fillSpool(t, dir, p, 50, 3000)
		segs := segFiles(t, dir)
		last := segs[len(segs)-1]
		fi, _ := os.Stat(last)
		if fi.Size() < 100 {
			// the tail segment may be fresh and empty; tear the one before
			last = segs[len(segs)-2]
			fi, _ = os.Stat(last)
			if err := os.Remove(segs[len(segs)-1]); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Truncate(last, fi.Size()-100); err != nil {
			t.Fatal(err)
		}
		r := reopenDamaged(t, dir, p, ids, 3000)
		got := r.intact
		ent := r.entries
		msgs := r.msgs
		why := r.why
		if got != 49 || ent != 1 || !strings.Contains(why, "torn") {
			t.Fatalf("intact %d (want 49), damage entries %d msgs %d: %s", got, ent, msgs, why)
		}
		if _, err := os.Stat(last + ".broken"); err != nil {
			t.Fatalf("no .broken copy: %v", err)
		}
		reopenClean(t, dir, p, ids, 3000, 49)
	})
}

func TestRecoverZeroFilledTail(t *testing.T) {
	forEachPerm(t, func(t *testing.T, p perm) {
		p.shards = 1
		dir := t.TempDir()
		ids := fillSpool(t, dir, p, 30, 2000)
		segs := segFiles(t, dir)
		f, err := os.OpenFile(segs[len(segs)-1], os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.Write(make([]byte, 4096))
		f.Close()
		r := reopenDamaged(t, dir, p, ids, 2000)
		got := r.intact
		ent := r.entries
		why := r.why
		st := r.stats
		if got != 30 || ent != 4096 || !strings.Contains(why, "tail") {
			t.Fatalf("intact %d (want 30), damage %d: %s", got, ent, why)
		}
		if st.Messages != 30 {
			t.Fatalf("phantom entries indexed: %+v", st)
		}
		reopenClean(t, dir, p, ids, 2000, 30)
	})
}

func TestRecoverBitFlip(t *testing.T) {
	forEachPerm(t, func(t *testing.T, p perm) {
		p.shards = 1
		dir := t.TempDir()
		ids := fillSpool(t, dir, p, 60, 3000)
		segs := segFiles(t, dir)
		if len(segs) < 3 {
			t.Fatalf("want several segments, have %d", len(segs))
		}
		b, _ := os.ReadFile(segs[0])
		b[len(b)/2] ^= 0x10 // inside some record of the first segment
		os.WriteFile(segs[0], b, 0o640)
		r := reopenDamaged(t, dir, p, ids, 3000)
		got := r.intact
		ent := r.entries
		msgs := r.msgs
		if got != 59 || ent != 1 || msgs != 1 {
			t.Fatalf("intact %d (want 59), damage entries %d msgs %d", got, ent, msgs)
		}
		reopenClean(t, dir, p, ids, 3000, 59)
	})
}

func TestRecoverTruncatedMiddleSegment(t *testing.T) {
	forEachPerm(t, func(t *testing.T, p perm) {
		p.shards = 1
		dir := t.TempDir()
		ids := fillSpool(t, dir, p, 80, 3000)
		segs := segFiles(t, dir)
		if len(segs) < 4 {
			t.Fatalf("want several segments, have %d", len(segs))
		}
		fi, _ := os.Stat(segs[1])
		os.Truncate(segs[1], fi.Size()/2)
		r := reopenDamaged(t, dir, p, ids, 3000)
		got := r.intact
		ent := r.entries
		why := r.why
		if got >= 80 || got < 60 || ent != 80-got || !strings.Contains(why, "missing") {
			t.Fatalf("intact %d, damage entries %d: %s", got, ent, why)
		}
		reopenClean(t, dir, p, ids, 3000, got)
	})
}

func TestRecoverDeletedMiddleSegment(t *testing.T) {
	forEachPerm(t, func(t *testing.T, p perm) {
		p.shards = 1
		dir := t.TempDir()
		ids := fillSpool(t, dir, p, 80, 3000)
		segs := segFiles(t, dir)
		os.Remove(segs[1])
		r := reopenDamaged(t, dir, p, ids, 3000)
		got := r.intact
		ent := r.entries
		if got >= 80 || got < 50 || ent != 80-got {
			t.Fatalf("intact %d, damage entries %d", got, ent)
		}
		reopenClean(t, dir, p, ids, 3000, got)
	})
}

func TestRecoverChunkedMessageAcrossDamage(t *testing.T) {
	p := perm{CodecRaw, 1, false}
	dir := t.TempDir()
	// 200 KiB messages with 16 KiB chunks span several 64 KiB segments.
	ids := fillSpool(t, dir, p, 4, 200<<10)
	segs := segFiles(t, dir)
	os.Remove(segs[2])
	r := reopenDamaged(t, dir, p, ids, 200<<10)
	got, msgs := r.intact, r.msgs
	if got != 3 || msgs != 1 {
		t.Fatalf("intact %d (want 3), lost messages reported %d (want 1)", got, msgs)
	}
}

func TestRecoverLeftoverTempFiles(t *testing.T) {
	p := perm{CodecZstd, 1, false}
	dir := t.TempDir()
	ids := fillSpool(t, dir, p, 10, 1000)
	sd := filepath.Join(dir, "shard-000")
	for _, n := range []string{"00000000000000000005.TEMP", "00000000000000000001.tmp"} {
		os.WriteFile(filepath.Join(sd, n), []byte("junk"), 0o640)
	}
	sp := openT(t, testCfg(dir, p))
	got := survivors(t, sp, ids, 1000)
	sp.Close()
	if got != 10 {
		t.Fatalf("intact %d", got)
	}
	ents, _ := os.ReadDir(sd)
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".TEMP") || strings.HasSuffix(e.Name(), ".tmp") {
			t.Fatalf("leftover %s not removed", e.Name())
		}
	}
}

func TestRecoverFlippedLengthPrefix(t *testing.T) {
	p := perm{CodecRaw, 1, false}
	dir := t.TempDir()
	ids := fillSpool(t, dir, p, 60, 3000)
	segs := segFiles(t, dir)
	b, _ := os.ReadFile(segs[0])
	frames, _ := parseSegment(b)
	if len(frames) < 4 {
		t.Fatalf("%d frames", len(frames))
	}
	// Make the third entry's length prefix claim 5 bytes less: framing
	// desynchronises for the rest of the segment.
	f := frames[2]
	b[f.off] -= 5
	os.WriteFile(segs[0], b, 0o640)
	sp := openT(t, testCfg(dir, p))
	got := survivors(t, sp, ids, 3000)
	ent, _, why := damageTotal(sp)
	sp.Close()
	if got != 59 || ent != 1 {
		t.Fatalf("intact %d (want 59: resync keeps the rest), damage entries %d: %s", got, ent, why)
	}
	reopenClean(t, dir, p, ids, 3000, 59)
}
