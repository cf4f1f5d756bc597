package imapd

import (
	"errors"
	"sort"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/mxcont/mxcont/mailbox"
)

// selected is a session's view of its selected folder: the messages in
// the sequence-number order the client knows. Messages expunged by
// someone else stay (gone) until the session may announce the EXPUNGE.
type selected struct {
	folder      string
	readOnly    bool
	uidValidity uint32
	uidNext     uint32
	msgs        []viewMsg
	watch       <-chan struct{} // closed when the user's mailbox changes
	stale       bool            // gone messages not yet announced
	searchRes   imap.UIDSet     // SEARCHRES ($)
}

type viewMsg struct {
	mailbox.Message
	gone bool
}

func (sel *selected) maxUID() uint32 {
	if len(sel.msgs) == 0 {
		return 0
	}
	return sel.msgs[len(sel.msgs)-1].UID
}

func (s *session) Select(name string, options *imap.SelectOptions) (*imap.SelectData, error) {
	s.sel = nil
	watch := s.st().Watch(s.user) // before reading: a change after the read wakes us
	f, msgs, err := s.st().Messages(s.user, name)
	if err != nil {
		return nil, s.storeErr("select", err)
	}
	sel := &selected{folder: f.Name, readOnly: options != nil && options.ReadOnly,
		uidValidity: f.UIDValidity, uidNext: f.UIDNext, watch: watch}
	sel.msgs = make([]viewMsg, len(msgs))
	var firstUnseen uint32
	for i, m := range msgs {
		sel.msgs[i] = viewMsg{Message: m}
		if firstUnseen == 0 && !hasFlag(m.Flags, mailbox.FlagSeen) {
			firstUnseen = uint32(i + 1)
		}
	}
	s.sel = sel
	flags := mailboxFlags(msgs)
	return &imap.SelectData{
		Flags:             flags,
		PermanentFlags:    append(append([]imap.Flag(nil), flags...), imap.FlagWildcard),
		NumMessages:       uint32(len(msgs)),
		FirstUnseenSeqNum: firstUnseen,
		UIDNext:           imap.UID(f.UIDNext),
		UIDValidity:       f.UIDValidity,
	}, nil
}

// mailboxFlags are the system flags plus the keywords in use.
func mailboxFlags(msgs []mailbox.Message) []imap.Flag {
	out := []imap.Flag{imap.FlagSeen, imap.FlagAnswered, imap.FlagFlagged, imap.FlagDeleted, imap.FlagDraft}
	seen := map[string]bool{}
	for _, m := range msgs {
		for _, f := range m.Flags {
			if len(f) > 0 && f[0] != '\\' && !seen[f] {
				seen[f] = true
				out = append(out, imap.Flag(f))
			}
		}
	}
	sort.Slice(out[5:], func(i, j int) bool { return out[5+i] < out[5+j] })
	return out
}

func (s *session) Unselect() error {
	s.sel = nil
	return nil
}

// Poll brings the selected folder's view up to date with the store and
// writes the differences: EXPUNGE (when allowed), FETCH FLAGS, EXISTS.
func (s *session) Poll(w *imapserver.UpdateWriter, allowExpunge bool) error {
	sel := s.sel
	if sel == nil {
		return nil
	}
	changed, added := false, false
	select {
	case <-sel.watch:
		changed = true
	default:
	}
	if !changed && !(sel.stale && allowExpunge) {
		return nil
	}
	if changed {
		sel.watch = s.st().Watch(s.user)
		f, cur, err := s.st().Messages(s.user, sel.folder)
		switch {
		case errors.Is(err, mailbox.ErrNoFolder):
			cur = nil // deleted or renamed away: everything is gone
		case err != nil:
			return s.storeErr("poll", err)
		default:
			if f.UIDValidity != sel.uidValidity {
				cur = nil // deleted and re-created: none of our UIDs are valid
			} else {
				sel.uidNext = f.UIDNext
			}
		}
		byUID := make(map[uint32]mailbox.Message, len(cur))
		for _, m := range cur {
			byUID[m.UID] = m
		}
		for i := range sel.msgs {
			vm := &sel.msgs[i]
			if vm.gone {
				continue
			}
			m, ok := byUID[vm.UID]
			if !ok {
				vm.gone = true
				sel.stale = true
				continue
			}
			if !sameFlags(vm.Flags, m.Flags) {
				vm.Flags = m.Flags
				if err := w.WriteMessageFlags(uint32(i+1), imap.UID(vm.UID), imapFlags(vm.Flags)); err != nil {
					return err
				}
			}
		}
		top := sel.maxUID()
		for _, m := range cur {
			if m.UID > top {
				sel.msgs = append(sel.msgs, viewMsg{Message: m})
				added = true
			}
		}
	}
	if sel.stale && allowExpunge {
		for i := len(sel.msgs) - 1; i >= 0; i-- {
			if sel.msgs[i].gone {
				if err := w.WriteExpunge(uint32(i + 1)); err != nil {
					return err
				}
				sel.msgs = append(sel.msgs[:i], sel.msgs[i+1:]...)
			}
		}
		sel.stale = false
	}
	if added {
		// After the expunges, so the count is the client's new view.
		return w.WriteNumMessages(uint32(len(sel.msgs)))
	}
	return nil
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

// Idle writes updates as the store reports changes, until stop.
func (s *session) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	for {
		var wake <-chan struct{}
		if s.sel != nil {
			wake = s.sel.watch
		}
		select {
		case <-wake:
			if err := s.Poll(w, true); err != nil {
				return err
			}
		case <-stop:
			return nil
		}
	}
}

// resolve turns a sequence or UID set into view indexes, ascending,
// skipping messages already expunged elsewhere.
func (sel *selected) resolve(numSet imap.NumSet) []int {
	var out []int
	switch set := numSet.(type) {
	case imap.SeqSet:
		if imap.IsSearchRes(set) {
			return sel.resolve(sel.searchRes)
		}
		n := uint32(len(sel.msgs))
		if n == 0 {
			return nil
		}
		for _, r := range set {
			start, stop := static(r.Start, n), static(r.Stop, n)
			if start > stop {
				start, stop = stop, start
			}
			if start == 0 {
				start = 1
			}
			for seq := start; seq <= stop && seq <= n; seq++ {
				out = append(out, int(seq-1))
			}
		}
	case imap.UIDSet:
		if imap.IsSearchRes(set) {
			set = sel.searchRes
		}
		top := sel.maxUID()
		var uidSet imap.UIDSet
		for _, r := range set {
			start, stop := static(uint32(r.Start), top), static(uint32(r.Stop), top)
			if start > stop {
				start, stop = stop, start
			}
			uidSet = append(uidSet, imap.UIDRange{Start: imap.UID(start), Stop: imap.UID(stop)})
		}
		for i, m := range sel.msgs {
			if uidSet.Contains(imap.UID(m.UID)) {
				out = append(out, i)
			}
		}
	}
	sort.Ints(out)
	uniq := out[:0]
	for i, x := range out {
		if (i == 0 || x != out[i-1]) && !sel.msgs[x].gone {
			uniq = append(uniq, x)
		}
	}
	return uniq
}

// static replaces "*" (0 in go-imap's sets) by the largest number.
func static(v, top uint32) uint32 {
	if v == 0 {
		return top
	}
	return v
}

func (sel *selected) uids(idx []int) []uint32 {
	out := make([]uint32, len(idx))
	for i, x := range idx {
		out[i] = sel.msgs[x].UID
	}
	return out
}

var errReadOnly = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot,
	Text: "Mailbox is read-only (EXAMINE)"}

// Store implements STORE and UID STORE.
func (s *session) Store(w *imapserver.FetchWriter, numSet imap.NumSet, flags *imap.StoreFlags, _ *imap.StoreOptions) error {
	sel := s.sel
	if sel.readOnly {
		return errReadOnly
	}
	idx := sel.resolve(numSet)
	if len(idx) == 0 {
		return nil
	}
	var op mailbox.FlagOp
	switch flags.Op {
	case imap.StoreFlagsSet:
		op = mailbox.FlagsSet
	case imap.StoreFlagsAdd:
		op = mailbox.FlagsAdd
	case imap.StoreFlagsDel:
		op = mailbox.FlagsRemove
	}
	fl := make([]string, len(flags.Flags))
	for i, f := range flags.Flags {
		fl[i] = string(f)
	}
	updated, err := s.st().StoreFlags(s.user, sel.folder, sel.uids(idx), op, fl)
	if err != nil {
		return s.storeErr("store", err)
	}
	byUID := make(map[uint32][]string, len(updated))
	for _, m := range updated {
		byUID[m.UID] = m.Flags
	}
	for _, i := range idx {
		nf, ok := byUID[sel.msgs[i].UID]
		if !ok {
			continue // expunged meanwhile; the next poll says so
		}
		sel.msgs[i].Flags = nf
		if flags.Silent {
			continue
		}
		rw := w.CreateMessage(uint32(i + 1))
		rw.WriteUID(imap.UID(sel.msgs[i].UID))
		rw.WriteFlags(imapFlags(nf))
		if err := rw.Close(); err != nil {
			return err
		}
	}
	return nil
}

// Expunge implements EXPUNGE, UID EXPUNGE and CLOSE.
func (s *session) Expunge(w *imapserver.ExpungeWriter, uids *imap.UIDSet) error {
	sel := s.sel
	if sel.readOnly {
		return nil // EXAMINE: nothing is removed (CLOSE must still succeed)
	}
	var want []uint32
	if uids != nil {
		want = sel.uids(sel.resolve(*uids))
		if len(want) == 0 {
			return nil
		}
	}
	gone, err := s.st().Expunge(s.user, sel.folder, want)
	if err != nil {
		return s.storeErr("expunge", err)
	}
	return sel.announceGone(gone, w.WriteExpunge)
}

// announceGone removes expunged UIDs from the view, writing EXPUNGE for
// each from the highest sequence number down.
func (sel *selected) announceGone(gone []uint32, write func(uint32) error) error {
	set := make(map[uint32]bool, len(gone))
	for _, u := range gone {
		set[u] = true
	}
	for i := len(sel.msgs) - 1; i >= 0; i-- {
		if set[sel.msgs[i].UID] {
			if err := write(uint32(i + 1)); err != nil {
				return err
			}
			sel.msgs = append(sel.msgs[:i], sel.msgs[i+1:]...)
		}
	}
	return nil
}

// Copy implements COPY and UID COPY.
func (s *session) Copy(numSet imap.NumSet, dest string) (*imap.CopyData, error) {
	sel := s.sel
	idx := sel.resolve(numSet)
	res, err := s.st().Copy(s.user, sel.folder, dest, sel.uids(idx))
	if err != nil {
		return nil, s.copyErr(err)
	}
	return copyData(res), nil
}

func (s *session) copyErr(err error) error {
	if errors.Is(err, mailbox.ErrNoFolder) {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeTryCreate, Text: "No such mailbox"}
	}
	return s.storeErr("copy", err)
}

func copyData(res mailbox.CopyResult) *imap.CopyData {
	d := &imap.CopyData{UIDValidity: res.UIDValidity}
	for i := range res.Source {
		d.SourceUIDs.AddNum(imap.UID(res.Source[i]))
		d.DestUIDs.AddNum(imap.UID(res.Dest[i]))
	}
	return d
}

// Move implements MOVE and UID MOVE.
func (s *session) Move(w *imapserver.MoveWriter, numSet imap.NumSet, dest string) error {
	sel := s.sel
	if sel.readOnly {
		return errReadOnly
	}
	idx := sel.resolve(numSet)
	res, err := s.st().Move(s.user, sel.folder, dest, sel.uids(idx))
	if err != nil {
		return s.copyErr(err)
	}
	if err := w.WriteCopyData(copyData(res)); err != nil {
		return err
	}
	return sel.announceGone(res.Source, w.WriteExpunge)
}
