package spool

import "testing"

func TestASCIIEnvelope(t *testing.T) {
	for _, tc := range []struct {
		from  string
		rcpts []string
		want  bool
	}{
		{"a@example.com", []string{"b@example.org", "c@example.org"}, true},
		{"", []string{"b@example.org"}, true},
		{"jörg@example.com", []string{"b@example.org"}, false},
		{"a@example.com", []string{"b@example.org", "用户@例子.广告"}, false},
	} {
		m := &Message{From: tc.from, Rcpts: tc.rcpts}
		if got := m.ASCIIEnvelope(); got != tc.want {
			t.Errorf("ASCIIEnvelope(%q, %q) = %v, want %v", tc.from, tc.rcpts, got, tc.want)
		}
	}
}
