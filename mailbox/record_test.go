package mailbox

import (
	"slices"
	"testing"
	"time"
)

func TestMsgRecRoundTrip(t *testing.T) {
	zone := time.FixedZone("", -5*3600)
	for _, m := range []msgRec{
		{Blob: "0123456789abcdef01234567", Size: 4096, Date: time.Date(2026, 1, 2, 3, 4, 5, 6, zone),
			Arrival: time.Unix(1700000000, 5), Flags: []string{`\Seen`, "$Label1"}},
		{Blob: "ffffffffffffffffffffffff", Size: 0, Date: time.Unix(0, 0).UTC(), Arrival: time.Unix(0, 0)},
	} {
		got, err := decodeMsgRec(m.encode())
		if err != nil {
			t.Fatal(err)
		}
		_, off := got.Date.Zone()
		_, wantOff := m.Date.Zone()
		if got.Blob != m.Blob || got.Size != m.Size || !got.Date.Equal(m.Date) || off != wantOff ||
			!got.Arrival.Equal(m.Arrival) || !slices.Equal(got.Flags, m.Flags) {
			t.Errorf("round trip: %+v != %+v", got, m)
		}
	}
}

// TestMsgRecDamaged: truncated or bit-flipped records are rejected or
// decode to something, but never panic; truncation is always detected.
func TestMsgRecDamaged(t *testing.T) {
	m := msgRec{Blob: "0123456789abcdef01234567", Size: 123456, Date: time.Now(), Arrival: time.Now(),
		Flags: []string{`\Seen`, `\Flagged`, "kw"}}
	b := m.encode()
	for n := 0; n < len(b); n++ {
		if _, err := decodeMsgRec(b[:n]); err == nil {
			t.Errorf("truncated to %d of %d bytes: no error", n, len(b))
		}
	}
	for i := 0; i < len(b); i++ {
		for bit := 0; bit < 8; bit++ {
			c := slices.Clone(b)
			c[i] ^= 1 << bit
			_, _ = decodeMsgRec(c)
		}
	}
	if _, err := decodeMsgRec(append(slices.Clone(b), 0)); err == nil {
		t.Error("trailing byte accepted")
	}
}
