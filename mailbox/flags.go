package mailbox

import (
	"strings"
)

// System flags, spelled as stored and shown.
const (
	FlagSeen     = `\Seen`
	FlagAnswered = `\Answered`
	FlagFlagged  = `\Flagged`
	FlagDeleted  = `\Deleted`
	FlagDraft    = `\Draft`
)

var systemFlags = []string{FlagSeen, FlagAnswered, FlagFlagged, FlagDeleted, FlagDraft}

// maxFlags and maxFlagLen bound what a client can store on a message.
const (
	maxFlags   = 64
	maxFlagLen = 100
)

// FlagOp says how StoreFlags combines flags with a message's flags.
type FlagOp int

// Flag operations (STORE FLAGS, +FLAGS, -FLAGS).
const (
	FlagsSet FlagOp = iota
	FlagsAdd
	FlagsRemove
)

// canonicalFlag returns the stored spelling of a flag: system flags in
// their standard case, keywords as given. It returns "" for flags that
// are not stored (\Recent, unknown system flags, malformed keywords).
func canonicalFlag(f string) string {
	if strings.HasPrefix(f, `\`) {
		for _, sf := range systemFlags {
			if strings.EqualFold(f, sf) {
				return sf
			}
		}
		return ""
	}
	if f == "" || len(f) > maxFlagLen {
		return ""
	}
	for i := 0; i < len(f); i++ {
		c := f[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`(){%*"\]`, c) >= 0 {
			return ""
		}
	}
	return f
}

// hasFlag reports whether flags contains f (case-insensitively).
func hasFlag(flags []string, f string) bool {
	for _, x := range flags {
		if strings.EqualFold(x, f) {
			return true
		}
	}
	return false
}

// normalizeFlags canonicalizes and de-duplicates flags.
func normalizeFlags(flags []string) []string {
	var out []string
	for _, f := range flags {
		if c := canonicalFlag(f); c != "" && !hasFlag(out, c) && len(out) < maxFlags {
			out = append(out, c)
		}
	}
	return out
}

// applyFlags returns cur changed by op with flags (already normalized),
// and whether it differs from cur.
func applyFlags(cur []string, op FlagOp, flags []string) ([]string, bool) {
	var out []string
	switch op {
	case FlagsSet:
		out = append(out, flags...)
	case FlagsAdd:
		out = append(out, cur...)
		for _, f := range flags {
			if !hasFlag(out, f) && len(out) < maxFlags {
				out = append(out, f)
			}
		}
	case FlagsRemove:
		for _, f := range cur {
			if !hasFlag(flags, f) {
				out = append(out, f)
			}
		}
	}
	return out, !sameFlags(cur, out)
}

func sameFlags(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for _, f := range a {
		if !hasFlag(b, f) {
			return false
		}
	}
	return true
}
