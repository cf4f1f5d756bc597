package imapd

import (
	"bufio"
	"errors"
	"io"
	"os"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-message/textproto"

	"github.com/mxcont/mxcont/mailbox"
)

// Fetch implements FETCH and UID FETCH. Bodies are read from the store's
// files; BODY[] is streamed, other sections go through go-imap's
// extraction helpers. Fetching a body section without .PEEK sets \Seen
// (unless the folder was EXAMINEd) and reports the new flags.
func (s *session) Fetch(w *imapserver.FetchWriter, numSet imap.NumSet, options *imap.FetchOptions) error {
	sel := s.sel
	idx := sel.resolve(numSet)
	if len(idx) == 0 {
		return nil
	}
	markSeen := false
	for _, bs := range options.BodySection {
		markSeen = markSeen || !bs.Peek
	}
	for _, bs := range options.BinarySection {
		markSeen = markSeen || !bs.Peek
	}
	flagsChanged := map[int]bool{}
	if markSeen && !sel.readOnly {
		var unseen []int
		for _, i := range idx {
			if !hasFlag(sel.msgs[i].Flags, mailbox.FlagSeen) {
				unseen = append(unseen, i)
			}
		}
		if len(unseen) > 0 {
			updated, err := s.st().StoreFlags(s.user, sel.folder, sel.uids(unseen), mailbox.FlagsAdd, []string{mailbox.FlagSeen})
			if err != nil {
				return s.storeErr("fetch", err)
			}
			byUID := map[uint32][]string{}
			for _, m := range updated {
				byUID[m.UID] = m.Flags
			}
			for _, i := range unseen {
				if nf, ok := byUID[sel.msgs[i].UID]; ok {
					sel.msgs[i].Flags = nf
					flagsChanged[i] = true
				}
			}
		}
	}
	needBody := options.Envelope || options.BodyStructure != nil || len(options.BodySection) > 0 ||
		len(options.BinarySection) > 0 || len(options.BinarySectionSize) > 0
	for _, i := range idx {
		m := sel.msgs[i]
		var f *os.File
		if needBody {
			var err error
			f, _, err = s.st().OpenMessage(s.user, sel.folder, m.UID)
			if errors.Is(err, mailbox.ErrNoMessage) {
				continue // expunged by another session; the next poll says so
			}
			if err != nil {
				return s.storeErr("fetch", err)
			}
		}
		err := writeMessage(w.CreateMessage(uint32(i+1)), m.Message, f, options, flagsChanged[i])
		if f != nil {
			_ = f.Close()
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// writeMessage writes one FETCH response; f (nil when no item needs the
// body) is the message file.
func writeMessage(w *imapserver.FetchResponseWriter, m mailbox.Message, f *os.File, options *imap.FetchOptions, flagsChanged bool) error {
	w.WriteUID(imap.UID(m.UID))
	if options.Flags || flagsChanged {
		w.WriteFlags(imapFlags(m.Flags))
	}
	if options.InternalDate {
		w.WriteInternalDate(m.Date)
	}
	if options.RFC822Size {
		w.WriteRFC822Size(m.Size)
	}
	rewind := func() io.Reader {
		_, _ = f.Seek(0, io.SeekStart)
		return f
	}
	if options.Envelope {
		hdr, err := textproto.ReadHeader(bufio.NewReader(rewind()))
		if err != nil {
			w.WriteEnvelope(nil)
		} else {
			w.WriteEnvelope(imapserver.ExtractEnvelope(hdr))
		}
	}
	if options.BodyStructure != nil {
		w.WriteBodyStructure(imapserver.ExtractBodyStructure(bufio.NewReader(rewind())))
	}
	for _, bs := range options.BodySection {
		if isWholeMessage(bs) {
			wc := w.WriteBodySection(bs, m.Size)
			_, err := io.CopyN(wc, rewind(), m.Size)
			if cerr := wc.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
			continue
		}
		buf := imapserver.ExtractBodySection(rewind(), bs)
		if err := writeLiteral(w.WriteBodySection(bs, int64(len(buf))), buf); err != nil {
			return err
		}
	}
	for _, bs := range options.BinarySection {
		buf := imapserver.ExtractBinarySection(rewind(), bs)
		if err := writeLiteral(w.WriteBinarySection(bs, int64(len(buf))), buf); err != nil {
			return err
		}
	}
	for _, bss := range options.BinarySectionSize {
		w.WriteBinarySectionSize(bss, imapserver.ExtractBinarySectionSize(rewind(), bss))
	}
	return w.Close()
}

func isWholeMessage(bs *imap.FetchItemBodySection) bool {
	return bs.Specifier == imap.PartSpecifierNone && len(bs.Part) == 0 && bs.Partial == nil &&
		len(bs.HeaderFields) == 0 && len(bs.HeaderFieldsNot) == 0
}

func writeLiteral(wc io.WriteCloser, b []byte) error {
	_, err := wc.Write(b)
	if cerr := wc.Close(); err == nil {
		err = cerr
	}
	return err
}
