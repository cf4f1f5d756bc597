package imapd

// The matching below is adapted from go-imap v2.0.0-beta.8's example
// server, imapserver/imapmemserver/message.go (MIT licence, Copyright (c)
// 2013 The Go-IMAP Authors, 2016 Proton Technologies AG, 2023 Simon Ser),
// changed to load a message's file only when a criterion needs its
// content.

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	gomessage "github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"

	"github.com/mxcont/mxcont/mailbox"
)

// maxSearchBody bounds how much of one message a content search reads.
const maxSearchBody = 32 << 20

// Search implements SEARCH and UID SEARCH (with ESEARCH and SEARCHRES
// return options).
func (s *session) Search(kind imapserver.NumKind, criteria *imap.SearchCriteria, options *imap.SearchOptions) (*imap.SearchData, error) {
	sel := s.sel
	sel.staticCriteria(criteria)
	var (
		data   imap.SearchData
		seqSet imap.SeqSet
		uidSet imap.UIDSet
	)
	for i, vm := range sel.msgs {
		if vm.gone {
			continue
		}
		seq := uint32(i + 1)
		c := &candidate{s: s, m: vm.Message, seq: seq}
		ok, err := c.match(criteria)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		uidSet.AddNum(imap.UID(vm.UID))
		num := seq
		if kind == imapserver.NumKindUID {
			num = vm.UID
		} else {
			seqSet.AddNum(seq)
		}
		if data.Min == 0 || num < data.Min {
			data.Min = num
		}
		if num > data.Max {
			data.Max = num
		}
		data.Count++
	}
	if kind == imapserver.NumKindUID {
		data.All = uidSet
	} else {
		data.All = seqSet
	}
	if options.ReturnSave {
		sel.searchRes = uidSet
	}
	return &data, nil
}

// staticCriteria replaces "*" and "$" in the criteria's sets by concrete
// numbers.
func (sel *selected) staticCriteria(c *imap.SearchCriteria) {
	var seqs []imap.SeqSet
	for _, set := range c.SeqNum {
		if imap.IsSearchRes(set) {
			c.UID = append(c.UID, sel.searchRes)
			continue
		}
		n := uint32(len(sel.msgs))
		out := make(imap.SeqSet, len(set))
		for i, r := range set {
			out[i] = imap.SeqRange{Start: static(r.Start, n), Stop: static(r.Stop, n)}
			if out[i].Start > out[i].Stop {
				out[i].Start, out[i].Stop = out[i].Stop, out[i].Start
			}
		}
		seqs = append(seqs, out)
	}
	c.SeqNum = seqs
	top := sel.maxUID()
	for j, set := range c.UID {
		if imap.IsSearchRes(set) {
			c.UID[j] = sel.searchRes
			continue
		}
		out := make(imap.UIDSet, len(set))
		for i, r := range set {
			a, b := static(uint32(r.Start), top), static(uint32(r.Stop), top)
			if a > b {
				a, b = b, a
			}
			out[i] = imap.UIDRange{Start: imap.UID(a), Stop: imap.UID(b)}
		}
		c.UID[j] = out
	}
	for i := range c.Not {
		sel.staticCriteria(&c.Not[i])
	}
	for i := range c.Or {
		sel.staticCriteria(&c.Or[i][0])
		sel.staticCriteria(&c.Or[i][1])
	}
}

// candidate is one message being matched; its content is loaded at most
// once, on demand.
type candidate struct {
	s      *session
	m      mailbox.Message
	seq    uint32
	loaded bool
	buf    []byte
	hdr    *mail.Header
}

var errGone = errors.New("imapd: message gone")

func (c *candidate) content() ([]byte, error) {
	if c.loaded {
		return c.buf, nil
	}
	c.loaded = true
	f, _, err := c.s.st().OpenMessage(c.s.user, c.s.sel.folder, c.m.UID)
	if errors.Is(err, mailbox.ErrNoMessage) {
		return nil, errGone
	}
	if err != nil {
		return nil, c.s.storeErr("search", err)
	}
	defer f.Close()
	c.buf, err = io.ReadAll(io.LimitReader(f, maxSearchBody))
	if err != nil {
		return nil, c.s.storeErr("search", err)
	}
	return c.buf, nil
}

// header returns the message's header, reading only the header block
// unless the whole content is loaded already.
func (c *candidate) header() (mail.Header, error) {
	if c.loaded {
		e, err := c.entity()
		if err != nil {
			return mail.Header{}, err
		}
		return mail.Header{Header: e.Header}, nil
	}
	if c.hdr != nil {
		return *c.hdr, nil
	}
	f, _, err := c.s.st().OpenMessage(c.s.user, c.s.sel.folder, c.m.UID)
	if errors.Is(err, mailbox.ErrNoMessage) {
		return mail.Header{}, errGone
	}
	if err != nil {
		return mail.Header{}, c.s.storeErr("search", err)
	}
	defer f.Close()
	h, _ := textproto.ReadHeader(bufio.NewReader(io.LimitReader(f, maxSearchBody)))
	c.hdr = &mail.Header{Header: gomessage.Header{Header: h}}
	return *c.hdr, nil
}

func (c *candidate) entity() (*gomessage.Entity, error) {
	b, err := c.content()
	if err != nil {
		return nil, err
	}
	e, _ := gomessage.Read(bytes.NewReader(b))
	if e == nil {
		e, _ = gomessage.New(gomessage.Header{}, bytes.NewReader(nil))
	}
	return e, nil
}

// match reports whether the message satisfies criteria. A message
// expunged meanwhile does not match.
func (c *candidate) match(criteria *imap.SearchCriteria) (bool, error) {
	ok, err := c.matchErr(criteria)
	if errors.Is(err, errGone) {
		return false, nil
	}
	return ok, err
}

func (c *candidate) matchErr(criteria *imap.SearchCriteria) (bool, error) {
	m := c.m
	for _, set := range criteria.SeqNum {
		if !set.Contains(c.seq) {
			return false, nil
		}
	}
	for _, set := range criteria.UID {
		if !set.Contains(imap.UID(m.UID)) {
			return false, nil
		}
	}
	if !matchDate(m.Date, criteria.Since, criteria.Before) {
		return false, nil
	}
	for _, f := range criteria.Flag {
		if !hasFlag(m.Flags, string(f)) {
			return false, nil
		}
	}
	for _, f := range criteria.NotFlag {
		if hasFlag(m.Flags, string(f)) {
			return false, nil
		}
	}
	if criteria.Larger != 0 && m.Size <= criteria.Larger {
		return false, nil
	}
	if criteria.Smaller != 0 && m.Size >= criteria.Smaller {
		return false, nil
	}
	if len(criteria.Header) > 0 || !criteria.SentSince.IsZero() || !criteria.SentBefore.IsZero() {
		header, err := c.header()
		if err != nil {
			return false, err
		}
		for _, hc := range criteria.Header {
			if !matchHeaderFields(header.FieldsByKey(hc.Key), hc.Value) {
				return false, nil
			}
		}
		if !criteria.SentSince.IsZero() || !criteria.SentBefore.IsZero() {
			t, err := header.Date()
			if err != nil || !matchDate(t, criteria.SentSince, criteria.SentBefore) {
				return false, nil
			}
		}
	}
	for _, text := range criteria.Text {
		e, err := c.entity()
		if err != nil {
			return false, err
		}
		if !matchEntity(e, text, true) {
			return false, nil
		}
	}
	for _, body := range criteria.Body {
		e, err := c.entity()
		if err != nil {
			return false, err
		}
		if !matchEntity(e, body, false) {
			return false, nil
		}
	}
	for i := range criteria.Not {
		ok, err := c.matchErr(&criteria.Not[i])
		if err != nil {
			return false, err
		}
		if ok {
			return false, nil
		}
	}
	for i := range criteria.Or {
		a, err := c.matchErr(&criteria.Or[i][0])
		if err != nil {
			return false, err
		}
		if a {
			continue
		}
		b, err := c.matchErr(&criteria.Or[i][1])
		if err != nil {
			return false, err
		}
		if !b {
			return false, nil
		}
	}
	return true, nil
}

// matchDate compares dates only: RFC 3501 wants zone-unaware comparison.
func matchDate(t, since, before time.Time) bool {
	t = time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	if !since.IsZero() && t.Before(since) {
		return false
	}
	if !before.IsZero() && !t.Before(before) {
		return false
	}
	return true
}

func matchHeaderFields(fields gomessage.HeaderFields, pattern string) bool {
	if pattern == "" {
		return fields.Len() > 0
	}
	pattern = strings.ToLower(pattern)
	for fields.Next() {
		v, _ := fields.Text()
		if strings.Contains(strings.ToLower(v), pattern) {
			return true
		}
	}
	return false
}

func matchEntity(e *gomessage.Entity, pattern string, includeHeader bool) bool {
	if pattern == "" {
		return true
	}
	if includeHeader && matchHeaderFields(e.Header.Fields(), pattern) {
		return true
	}
	if mr := e.MultipartReader(); mr != nil {
		for {
			part, err := mr.NextPart()
			if err != nil {
				return false
			}
			if matchEntity(part, pattern, includeHeader) {
				return true
			}
		}
	}
	t, _, _ := e.Header.ContentType()
	if t == "" {
		t = "text/plain" // RFC 2045 default
	}
	if !strings.HasPrefix(t, "text/") && !strings.HasPrefix(t, "message/") {
		return false
	}
	buf, err := io.ReadAll(e.Body)
	if err != nil {
		return false
	}
	return bytes.Contains(bytes.ToLower(buf), []byte(strings.ToLower(pattern)))
}
